#!/usr/bin/perl

# Refresh-ahead: inside the refresh window one request starts the exchange
# in the background and every request goes on at once with the current
# token.  With 6 s tokens, refresh=3s and an identity that takes 0.8 s, 20 s
# of load over 16 connections never waits for an exchange.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseLoad qw(load_for);

my $PUBLIC  = 'pk-refresh';
my $PRIVATE = 'cmVmcmVzaC1haGVhZC10ZXN0LWtleS0wMTIzNDU2Nzg5YWI=';
my $SECONDS = 20;

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
                  global => { ttl_ms => 6000, delay_ms => 800 });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-refresh
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main refresh=3s retry=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "$http_authorization"; }
    }
NGINX

###############################################################################
# Scenario: a first request fetches the token (it waits 0.8 s, once)

my $r = $t->http_get('/api/warmup');
is($r->{status}, 200, 'warm-up: 200');
$t->reset_stats;
my $mark = $t->access_mark;
my $lmark = $t->log_mark;

###############################################################################
# Scenario: 20 s of load over 16 keep-alive connections

my $load = load_for($t->url('/api/x'), $SECONDS, 16,
    check => sub { ($_[0]{content} // '') =~ /^Bearer tok-\S+$/ });

# A refresh started near the end of the load is still running (0.8 s): let
# it end, so its exchange and its REFRESH line (written when the request's
# background exchange is over) are both counted.
my $stats = $t->stats;
for (1 .. 60) {
    last unless $stats->{inflight};
    sleep 0.05;
    $stats = $t->stats;
}

cmp_ok($load->{count}, '>', 16 * $SECONDS, "load: $load->{count} requests");
is_deeply($load->{by_status}, { 200 => $load->{count} },
    'load: every response 200');
cmp_ok($load->{max_ms}, '<', 600,
    'load: no request slower than 0.6 s (an exchange takes 0.8 s)');
is($load->{bad}, 0, 'load: every request carried a bearer token');
is($stats->{max_inflight}, 1, 'identity: one exchange in flight at a time');
cmp_ok($stats->{exchanges}, '>=', 5,
    "identity: $stats->{exchanges} exchanges, at least 5");
cmp_ok($stats->{exchanges}, '<=', 9, 'identity: at most 9 exchanges');
is($stats->{rejected}, 0, 'identity: no signature rejected');

# Under load a request meets the refresh point first; the key's timer may
# now and then be first (it starts the refresh without a request).
my (%st, $quiet);
for (1 .. 60) {
    %st = ();
    $st{$_}++ for $t->token_statuses(since => $mark);
    $quiet = () = $t->grep_error_log(
        qr/refreshing the token without a request/, since => $lmark);
    last if ($st{REFRESH} // 0) + $quiet >= $stats->{exchanges};
    sleep 0.05;
}
is(($st{REFRESH} // 0) + $quiet, $stats->{exchanges},
    'one REFRESH request (or the key\'s timer) started each exchange');
ok(!$st{MISS} && !$st{ERROR}, 'access log: no request waited or failed')
    or diag explain \%st;

$t->stop;
done_testing;
