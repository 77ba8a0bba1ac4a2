#!/usr/bin/perl

# The basic flow, with the configuration of the product contract: the first
# request signs POST /identity/v1/hmac/management in a subrequest, receives a
# token, and the upstream request carries "Authorization: Bearer <token>";
# later requests reuse the cached token without a new exchange.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP;
use MIME::Base64 qw(decode_base64);

my $PUBLIC  = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';

my $t = ImburseTest->new;
$t->write_key('management', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE });

$t->run(<<'EOF');
    imburse_api_key  management
                     public_key=3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management
                     refresh=60s;

    imburse_zone 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /imburse/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF

###############################################################################
# Scenario: the first request triggers one signed exchange (MISS)

my $mark = $t->access_mark;
my $r = $t->http_get('/imburse/v1/payments?page=2', { 'X-Client' => 'c' });
is($r->{status}, 200, 'first request: 200');

my $s = $t->stats;
is($s->{exchanges}, 1, 'first request: one exchange at the identity service');
is($s->{rejected}, 0, 'first request: signature accepted')
    or diag explain $s->{reasons};
my $token = $s->{tokens}[0]{token};
ok($token, 'first request: a token was issued');

my $up = $t->upstream_requests;
is(scalar @$up, 1, 'first request: one upstream request');
is($up->[-1]{uri}, '/v1/payments?page=2', 'first request: uri passed on');
is_deeply($up->[-1]{authorization}, ["Bearer $token"],
    'first request: upstream got exactly "Authorization: Bearer <token>"');
is_deeply([$t->token_statuses(since => $mark, wait_for => 1)], ['MISS'],
    'first request: access log says MISS');

# what the identity service received
my ($ex) = @{$t->identity_requests};
is($ex->{method}, 'POST', 'exchange: POST');
is($ex->{uri}, '/identity/v1/hmac/management', 'exchange: uri');
is($ex->{body_length}, 0, 'exchange: empty body');
my @hmac = map { $_->[1] } grep { lc $_->[0] eq 'authorization' }
    @{$ex->{headers}};
is(scalar @hmac, 1, 'exchange: one Authorization header');
like($hmac[0], qr/^Hmac \Q$PUBLIC\E:[A-Za-z0-9]{16,}:\d+:[A-Za-z0-9+\/]{43}=$/,
    'exchange: "Hmac public_key:nonce:timestamp:signature"');
my ($ts) = $hmac[0] =~ /:(\d+):[^:]+$/;
ok(abs($ts - time) < 10, 'exchange: timestamp is now (UTC seconds)');
ok(!grep({ lc $_->[0] eq 'x-client' } @{$ex->{headers}}),
    'exchange: client headers not passed to the identity service');

###############################################################################
# Scenario: later requests reuse the cached token (HIT), no new exchange

$mark = $t->access_mark;
for my $i (1 .. 5) {
    $r = $t->http_get("/imburse/v1/payments/$i", { 'X-Client' => 'c' });
    is($r->{status}, 200, "cached request $i: 200");
}
is($t->stats->{exchanges}, 1, 'cached requests: still one exchange');
$up = $t->upstream_requests;
is(scalar(grep { "@{$_->{authorization}}" eq "Bearer $token" } @$up), 6,
    'cached requests: every upstream request carried the same bearer');
is_deeply([$t->token_statuses(since => $mark, wait_for => 5)],
    [('HIT') x 5], 'cached requests: access log says HIT');

###############################################################################
# Scenario: a request body is proxied untouched next to the bearer

$r = $t->http_request('POST', '/imburse/v1/orders',
    { 'Content-Type' => 'application/json' }, '{"orderRef":"1"}');
is($r->{status}, 200, 'POST with body: 200');
my $last = $t->upstream_requests->[-1];
is($last->{body}, '{"orderRef":"1"}', 'POST with body: body passed on');
is_deeply($last->{authorization}, ["Bearer $token"], 'POST with body: bearer');

###############################################################################
# Scenario: the exchange location is internal

is($t->http_get('/_imburse/management')->{status}, 404,
    'exchange location cannot be requested by clients');
is($t->stats->{exchanges}, 1, 'still one exchange');

$t->stop;

$t->logs_lack('private key' => $PRIVATE,
    'decoded private key' => decode_base64($PRIVATE), 'token' => $token);

done_testing;
