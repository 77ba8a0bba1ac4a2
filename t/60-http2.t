#!/usr/bin/perl

# HTTP/2 clients.  The basic flow (MISS, HIT, 503 with Retry-After) over
# HTTP/2 (curl --http2-prior-knowledge).  Then streams reset (RST_STREAM,
# python3-h2) at chosen moments:
# - the stream whose request started a cold exchange is reset while other
#   streams wait for the token: the exchange goes on (it is the module's,
#   not the stream's), one exchange serves the waiting streams;
# - the same with a failing identity service: the failure is counted and
#   retry= is respected (no second exchange at once);
# - a stream reset while it waits for the first token never reaches the
#   API.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep time);

use MIME::Base64 qw(encode_base64);
my %PRIVATE = map { ("pk-h2-$_" => encode_base64("h2-clients-$_-key-0123456789", ''))
    } qw(a b c d);

my $t = ImburseTest->new;
$t->write_key($_, $PRIVATE{"pk-h2-$_"}) for qw(a b c d);
$t->start_standin(keys => \%PRIVATE,
    tenants => { 'pk-h2-b' => { delay_ms => 1000 },
                 'pk-h2-c' => { delay_ms => 1000, status => 500 },
                 'pk-h2-d' => { delay_ms => 1500 } });

my $keys = join '', map { <<"EOF" } qw(a b c d);
    imburse_api_key $_ public_key=pk-h2-$_ private_key_file=%%KEYFILE:$_%%
                    exchange=/_imburse/$_ retry=3s;
EOF
my $locations = join '', map { <<"EOF" } qw(a b c d);
        location /$_/ {
            imburse_auth $_;
            proxy_pass %%UPSTREAM_URL%%;
        }
        %%EXCHANGE_LOCATION:/_imburse/$_%%
EOF

$t->run(<<"NGINX");
$keys
    server {
        %%LISTEN_H2:PORT%%

$locations
        location = /status {
            imburse_status;
        }
    }
NGINX

sub up_paths { map { $_->{uri} } @{$t->upstream_requests} }
sub tenant { $t->stats->{by_tenant}{"pk-h2-$_[0]"} // {} }
sub status_of { decode_json(($t->curl_h2('/status'))[2])->{keys}{$_[0]} }

###############################################################################
# Scenario: the basic flow over HTTP/2

my $mark = $t->access_mark;
my ($st, $h, $body) = $t->curl_h2('/a/first');
is($st, 200, 'HTTP/2: first request 200');
my $tok = tenant('a')->{tokens}[0] // '';
like($body, qr/"Bearer \Q$tok\E"/, 'HTTP/2: the API got the token');
($st) = $t->curl_h2('/a/second');
is($st, 200, 'HTTP/2: second request 200');
is(tenant('a')->{exchanges}, 1, 'HTTP/2: one exchange');
is_deeply([$t->token_statuses(since => $mark, wait_for => 2)],
    ['MISS', 'HIT'], 'HTTP/2: MISS, then HIT');

###############################################################################
# Scenario: the stream that started a cold exchange is reset at 300 ms;
# two more streams wait on the same connection, a third on another

$mark = $t->access_mark;
my $other;
my $pid = fork // die;
if ($pid == 0) {
    sleep 0.1;
    my $r = $t->h2([{ path => '/b/other' }]);
    ImburseTest::spew($t->prefix . '/h2-other.json',
        JSON::PP->new->encode($r));
    POSIX::_exit(0);
}
my $res = $t->h2([
    { path => '/b/starter', rst_ms => 300 },
    { path => '/b/wait1', start_ms => 50 },
    { path => '/b/wait2', start_ms => 100 },
]);
waitpid $pid, 0;
$other = decode_json(ImburseTest::slurp($t->prefix . '/h2-other.json'));

ok($res->[0]{reset}, 'cold: the starting stream was reset');
is($res->[1]{status}, 200, 'cold: a waiting stream is served');
is($res->[2]{status}, 200, 'cold: the other waiting stream is served');
is($other->[0]{status}, 200, 'cold: a stream of another connection too');
is(tenant('b')->{exchanges}, 1, 'cold: one exchange, the reset one\'s');
is(scalar @{tenant('b')->{tokens}}, 1, 'cold: its token serves them all');
ok(!grep({ $_ eq '/b/starter' } up_paths()),
    'cold: the reset request never reached the API');
my %seen = map { $_ => 1 } up_paths();
ok($seen{'/b/wait1'} && $seen{'/b/wait2'} && $seen{'/b/other'},
    'cold: the waiting requests did');

###############################################################################
# Scenario: the same with a failing identity service (500, retry=3s)

my $lmark = $t->log_mark;
$res = $t->h2([
    { path => '/c/starter', rst_ms => 300 },
    { path => '/c/wait1', start_ms => 50 },
    { path => '/c/wait2', start_ms => 100 },
]);
ok($res->[0]{reset}, 'failing: the starting stream was reset');
is($res->[1]{status}, 503, 'failing: a waiting stream gets 503');
like($res->[1]{headers}{'retry-after'} // '', qr/^[1-4]$/,
    'failing: with Retry-After (retry=3s, up to 10 % jitter)');
is($res->[2]{status}, 503, 'failing: the other one too');
is(tenant('c')->{exchanges}, 1, 'failing: one exchange, not one a stream');
my $sc = status_of('c');
is($sc->{failures}, 1, 'failing: the failure is counted');
is($sc->{consecutive_failures}, 1, 'failing: and backs off');
is(scalar $t->grep_error_log(qr/\[error\].*key "c".*exchange failed.*500/,
    since => $lmark), 1, 'failing: logged once, with its status');
($st, $h) = $t->curl_h2('/c/again');
is($st, 503, 'failing, HTTP/2: a request within retry= gets 503 at once');
like($h->{'retry-after'} // '', qr/^[1-4]$/, 'failing, HTTP/2: Retry-After');
is(tenant('c')->{exchanges}, 1, 'failing: and starts no exchange');

###############################################################################
# Scenario: a stream reset while it waits for the first token (1.5 s)

$res = $t->h2([
    { path => '/d/starter' },
    { path => '/d/leaves', start_ms => 100, rst_ms => 300 },
]);
is($res->[0]{status}, 200, 'waiting: the other stream is served');
ok($res->[1]{reset}, 'waiting: the leaving stream was reset');
sleep 0.3;
ok(!grep({ $_ eq '/d/leaves' } up_paths()),
    'waiting: the reset request never reached the API');
my @lines = grep { m{"GET /d/leaves HTTP/2.0" (\d+)} }
    $t->access_log(wait_for => 0);
like($lines[0] // '', qr{" 499 }, 'waiting: logged as 499 at once');

$t->stop;
done_testing;
