#!/usr/bin/perl

# Stale-on-error: when a refresh fails while the current token is still
# valid, requests go on with it (STALE), each failed attempt is logged once,
# and attempts are spaced by `retry`, doubling after each failure.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseLoad qw(load_for);
use JSON::PP;
use Time::HiRes qw(sleep time);

my $PUBLIC  = 'pk-stale';
my $PRIVATE = 'c3RhbGUtb24tZXJyb3ItdGVzdC1rZXktMDEyMzQ1Njc4OWFi';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
                  global => { ttl_ms => 10000 });

# 10 s tokens, refresh=6s is capped at half the lifetime: the refresh
# window opens 5 s (less up to 5 % jitter) before expiry
$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-stale
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main refresh=6s retry=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location = /status {
            imburse_status;
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
# Scenario: a valid token, then the identity service starts failing

my $r = $t->http_get('/api/warmup');
is($r->{status}, 200, 'warm-up: 200');
my $issued = time;
my $token = $t->stats->{tokens}[-1]{token};

$t->standin_set(global => { ttl_ms => 10000, status => 500 });
$t->reset_stats;

# wait until the refresh window is open (the refresh starts then, without
# a request), then load for 4 s, still before the token expires
sleep($issued + 4.5 - time);
my $mark = $t->access_mark;
my $lmark = $t->log_mark;
sleep($issued + 5.4 - time);    # after the latest refresh point (5 % jitter)

my $load = load_for($t->url('/api/x'), 4, 4,
    check => sub { ($_[0]{content} // '') eq "Bearer $token" });

is_deeply($load->{by_status}, { 200 => $load->{count} },
    "load inside the window: all $load->{count} responses 200");
is($load->{bad}, 0, 'load: every request carried the still-valid token');

my %st;
$st{$_}++ for $t->token_statuses(since => $mark);
cmp_ok($st{STALE} // 0, '>', 0, 'access log: STALE after a failed refresh');
ok(!$st{MISS} && !$st{ERROR}, 'access log: no request waited or failed')
    or diag explain \%st;

###############################################################################
# Attempts: spaced by retry=1s, then doubling (2 s), each logged once

my @attempts = map { $_->{time} } @{$t->identity_requests};
cmp_ok(scalar @attempts, '>=', 2, scalar(@attempts) . ' attempts in 4 s');
cmp_ok(scalar @attempts, '<=', 3, 'no more than 3 attempts in 4 s '
    . '(1 s, then 2 s apart)');
cmp_ok($attempts[1] - $attempts[0], '>=', 0.85,
    'second attempt at least ~retry after the first') if @attempts > 1;
cmp_ok($attempts[2] - $attempts[1], '>=', 1.75,
    'third attempt at least ~2 retry after the second') if @attempts > 2;

my @lines = $t->grep_error_log(qr/exchange failed/, since => $lmark);
is(scalar @lines, scalar @attempts, 'one error line per attempt');
like($lines[0] // '', qr/\[error\].*status 500/, 'the line names status 500');
my @quiet = $t->grep_error_log(qr/refreshing the token without a request/,
    since => $lmark);
cmp_ok(scalar @quiet, '>=', 1, 'the first attempt came at the window, '
    . 'before any request');
is(($st{REFRESH} // 0) + @quiet, scalar @attempts,
    'each attempt was started by one request (REFRESH) or by the key\'s '
    . 'timer');

###############################################################################
# The status page reports the failures without any secret

my $s = decode_json($t->http_get('/status')->{body});
my $k = $s->{keys}{main};
ok($k->{valid}, 'status: token still valid');
is($k->{consecutive_failures}, scalar @attempts,
    'status: consecutive_failures counts the attempts');
is($k->{last_error}, 'identity service error', 'status: last_error');

$t->stop;
$t->logs_lack(token => $token, 'private key' => $PRIVATE);
done_testing;
