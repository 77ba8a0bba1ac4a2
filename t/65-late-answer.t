#!/usr/bin/perl

# A taken-over exchange that answers late does not overwrite the newer
# token.  Worker X starts an exchange (the identity service takes 2.5 s for
# it) and is stopped (SIGSTOP, as a stuck worker): its claim (timeout=1s,
# plus a second of grace) expires, worker Y takes the exchange over and
# gets token T2 at once.  X goes on (SIGCONT) with its answer (T1) in its
# socket: the claim is no longer its own (or its exchange is past its
# bound), T1 is not stored, T2 stays in use.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

my $PUBLIC  = 'pk-late';
my $PRIVATE = 'bGF0ZS1hbnN3ZXItdGVzdC1rZXktMDEyMzQ1Njc4OWFi';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
                  global => { delay_ms => 2500 });

$t->run(<<'NGINX', events => 'accept_mutex off;');
    imburse_api_key main public_key=pk-late
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main timeout=1s retry=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pid {
            return 200 "$pid";
        }

        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

# keep-alive connections, each served by one worker: one to each of two
sub send_get {
    my ($sock, $path) = @_;
    print $sock "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}
sub read_response {
    my ($sock) = @_;
    my ($head, $body) = ('', '');
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread $sock, my $buf, 1;
        return {} unless $n;
        $head .= $buf;
    }
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my ($len) = $head =~ /^Content-Length: (\d+)/mi;
    while (length $body < ($len // 0)) {
        my $n = sysread $sock, my $buf, $len - length $body;
        last unless $n;
        $body .= $buf;
    }
    return { status => $status, body => $body };
}
my %by_pid;
for (1 .. 30) {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp', Timeout => 5) or next;
    send_get($sock, '/pid');
    my $pid = read_response($sock)->{body} // '';
    $by_pid{$pid} //= $sock if $pid =~ /^\d+$/;
    last if keys %by_pid >= 2;
}

SKIP: {
    skip 'no keep-alive connections to two different workers', 9
        if keys %by_pid < 2;
    my ($x, $y) = sort keys %by_pid;

    # A: a cold request on X's connection starts the exchange in X
    send_get($by_pid{$x}, '/api/a');
    for (1 .. 40) {
        last if $t->stats->{inflight};
        sleep 0.05;
    }
    kill 'STOP', $x;
    $t->standin_set(global => {});
    my $stopped = time;

    # B: on Y's connection, once X's claim has expired
    sleep $stopped + 2.3 - time;
    send_get($by_pid{$y}, '/api/b');
    is(read_response($by_pid{$y})->{status}, 200, 'B, in the other worker: '
        . '200');
    my $t2 = (grep { $_->{uri} eq '/api/b' } @{$t->upstream_requests})[0]
        {authorization}[0] // '';
    like($t2, qr/^Bearer tok-2-/, 'B: the take-over\'s token (T2)');
    ok($t->grep_error_log(qr/exchange of worker $x did not end in time/),
        'Y took X\'s exchange over');

    # X goes on, with its late answer (T1) waiting in its socket
    sleep $stopped + 3 - time;
    kill 'CONT', $x;
    is(read_response($by_pid{$x})->{status}, 200, 'A, in the resumed '
        . 'worker: 200');
    my ($late) = grep { $_->{token} =~ /^tok-1-/ } @{$t->stats->{tokens}};
    ok($late, 'X\'s exchange got its answer (T1), late');

    # once resumed, X either reads the answer first (the claim is no longer
    # its own) or finds its exchange past its bound first (timed out)
    my $why = qr/answered after another took it over, its token is not used|exchange failed: timed out/;
    my $w = 0;
    for (1 .. 40) {
        last if $w = $t->grep_error_log(qr/\] $x#.*(?:$why)/);
        sleep 0.05;
    }
    ok($w, 'X did not store T1 (logged why)');

    for my $pid ($x, $y) {
        send_get($by_pid{$pid}, "/api/after-$pid");
        read_response($by_pid{$pid});
    }
    my %seen;
    for my $up (@{$t->upstream_requests}) {
        $seen{$up->{uri}} = $up->{authorization}[0] // '';
    }
    is($seen{'/api/a'}, $t2, 'A went upstream with T2');
    is($seen{"/api/after-$x"}, $t2, 'after: X uses T2');
    is($seen{"/api/after-$y"}, $t2, 'after: Y uses T2');
}

$t->stop(allow => qr/did not end in time/);
done_testing;
