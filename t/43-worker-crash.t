#!/usr/bin/perl

# Crash safety: the worker that owns an exchange is killed with SIGKILL in
# the middle of it.  Its claim ends at the exchange's time bound (timeout=),
# another worker takes the exchange over, waiting requests are served after
# a bounded wait, and nginx serves on.  The zone is never left locked.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep time);

my $PUBLIC  = 'pk-crash';
my $PRIVATE = 'Y3Jhc2gtdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
                  global => { delay_ms => 4000 });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-crash
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location = /_imburse/main {
            %%EXCHANGE_SIGNING%%
            proxy_read_timeout         10s;
            proxy_pass %%IDENTITY_URL%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "$http_authorization"; }
    }
NGINX

###############################################################################
# Scenario: a request starts an exchange; its worker is killed mid-way

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    # this client's connection dies with the worker
    $t->http_get('/api/doomed', {}, timeout => 8);
    POSIX::_exit(0);
}

my $owner = wait_for_exchange_owner($t);
ok($owner, "the exchange runs in worker $owner");
my $killed_at = time;
kill 'KILL', $owner;
$t->standin_set(global => { delay_ms => 0 });

# a request that needs the token now waits for the dead claim to end
my $t0 = time;
my $r = $t->http_get('/api/after-crash', {}, timeout => 10);
my $waited = time - $t0;
is($r->{status}, 200, 'after the crash: 200');
like($r->{body}, qr/^Bearer tok-/, 'after the crash: a token was injected');
cmp_ok($waited, '<', 4.5, sprintf('after the crash: served after a bounded '
    . 'wait (%.1f s, timeout=2s)', $waited));

my @lines = $t->grep_error_log(qr/taking it over/);
is(scalar @lines, 1, 'the take-over is logged once');
like($lines[0] // '', qr/worker $owner/, 'naming the dead worker');

###############################################################################
# nginx serves on: a new worker replaced the killed one, tokens are HIT

waitpid $pid, 0;
my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers again');
ok(!grep({ $_ == $owner } @workers), 'the killed worker was replaced');

my $load = $t->load('/api/later', 40, 8);
is_deeply($load->{by_status}, { 200 => 40 }, 'later: 40 requests, all 200');
is($t->stats->{exchanges}, 2, 'later: no further exchange');

$t->stop(allow => qr/exited on signal 9/);
done_testing;

###############################################################################

# The worker holding a connection to the identity service: its socket inode
# in /proc/net/tcp, then which worker has that socket open.
sub wait_for_exchange_owner {
    my ($t) = @_;
    my $port = sprintf '%04X', $t->identity_port;
    my $deadline = time + 3;
    while (time < $deadline) {
        my %inode;
        open my $fh, '<', '/proc/net/tcp' or die "/proc/net/tcp: $!";
        while (<$fh>) {
            my @f = split ' ';
            # remote address 127.0.0.1:port, state 01 (established)
            $inode{$f[9]} = 1 if $f[2] eq "0100007F:$port" && $f[3] eq '01';
        }
        close $fh;
        for my $w ($t->worker_pids) {
            for my $fd (glob "/proc/$w/fd/*") {
                my $l = readlink $fd // next;
                return $w if $l =~ /^socket:\[(\d+)\]$/ && $inode{$1};
            }
        }
        sleep 0.05;
    }
    return undef;
}
