#!/usr/bin/perl

# One exchange in flight per key per nginx instance, across all workers: a
# burst of 400 requests over 40 connections hitting a fresh instance (two
# workers, the identity service answering slowly) causes exactly one
# exchange; every request is served with that token.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PUBLIC  = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';

my $t = ImburseTest->new(workers => 2);
$t->write_key('management', $PRIVATE);
# a slow identity service: the whole burst arrives while the exchange runs
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
    global => { delay_ms => 300 });

# "reuseport" spreads the connections over both workers, so waiting
# requests sit in both workers while one exchange is in flight.
$t->run(<<'EOF');
    imburse_api_key  management
                     public_key=3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /imburse/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        # the same token, with a fast upstream for a bigger burst
        location /fast/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }

    # fast upstream: echoes the Authorization it received
    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "$http_authorization"; }
    }
EOF

###############################################################################
# Scenario: 400 requests, 40 connections, fresh instance

my $mark = $t->access_mark;
my $load = $t->load('/imburse/burst', 400, 40, {}, timeout => 60);
ok($load->{complete}, "burst: all 400 requests answered ($load->{count})");
is($load->{by_status}{200}, 400, 'burst: all 200')
    or diag explain $load->{by_status};

my $s = $t->stats;
is($s->{exchanges}, 1, 'burst: exactly one exchange');
is($s->{rejected}, 0, 'burst: no rejected signature');
is($s->{max_inflight}, 1, 'burst: never two exchanges in flight');
my $token = $s->{tokens}[0]{token};

my $up = $t->upstream_requests;
is(scalar @$up, 400, 'burst: 400 upstream requests');
is(scalar(grep { "@{$_->{authorization}}" eq "Bearer $token" } @$up), 400,
    'burst: each carried exactly one "Authorization: Bearer <the token>"');

my @log = $t->access_log(since => $mark, wait_for => 400);
my %pids = map { /pid=(\d+)/ ? ($1 => 1) : () } @log;
cmp_ok(scalar keys %pids, '>=', 2,
    'burst: both workers served requests (the test covers cross-worker '
    . 'waiting)');
my %st;
$st{$_}++ for map { /token=(\S*) pid=/ ? $1 : "?" } @log;
cmp_ok($st{MISS} // 0, '>=', 1, 'burst: requests that waited say MISS');
is(($st{MISS} // 0) + ($st{HIT} // 0), 400, 'burst: only MISS and HIT')
    or diag explain \%st;

###############################################################################
# Scenario: the cached token under load, fast upstream

$mark = $t->access_mark;
$load = $t->load('/fast/', 400, 40);
is($load->{by_status}{200}, 400, 'cached burst: all 200');
is(scalar(grep { $_->{body} eq "Bearer $token" } @{$load->{results}}), 400,
    'cached burst: every request carried the token');
is($t->stats->{exchanges}, 1, 'cached burst: no new exchange');
is_deeply([sort { $a cmp $b } keys %{{ map { $_ => 1 }
    $t->token_statuses(since => $mark, wait_for => 400) }}], ['HIT'],
    'cached burst: all HIT');

$t->stop;

done_testing;
