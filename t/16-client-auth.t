#!/usr/bin/perl

# The client's own Authorization never reaches the upstream through
# imburse_auth: the module replaces it, so the upstream sees exactly one
# Authorization header, ours -- also across an internal redirect, and with
# `satisfy any` (the token is injected after access control, which cannot
# skip it).

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PUBLIC  = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';

my $t = ImburseTest->new;
$t->write_key('management', $PRIVATE);
$t->write_file('htpasswd', "user:{PLAIN}secret\n");
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
    upstream => { status_by_path => { '/notfound/x' => 404 } });

$t->run(<<'EOF');
    imburse_api_key  management
                     public_key=3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /imburse/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        # the upstream answers 404 here; nginx retries /imburse/fallback
        location /redirect/ {
            imburse_auth management;
            proxy_intercept_errors on;
            error_page 404 = /imburse/fallback;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/notfound/;
        }

        # the client passes access control with its address alone
        location /satisfy/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_basic "imburse";
            auth_basic_user_file %%PREFIX%%/htpasswd;
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF

# GET PATH with HEADERS -> (status, [Authorization values of each upstream
# request it caused])
sub get {
    my ($path, $headers) = @_;
    my $before = scalar @{$t->upstream_requests};
    my $r = $t->http_get($path, $headers);
    my $up = $t->upstream_requests;
    return ($r->{status}, [ map { $_->{authorization} } @$up[$before .. $#$up] ]);
}

my ($status, $seen) = get('/imburse/warmup');
is($status, 200, 'warm-up: 200');
my $token = $t->stats->{tokens}[0]{token};
my $ours = ["Bearer $token"];

# name, request headers
my @cases = (
    [ 'no client Authorization',          {} ],
    [ 'client Basic credentials',         { Authorization => 'Basic dXNlcjpzZWNyZXQ=' } ],
    [ 'client bearer token',              { Authorization => 'Bearer client-own-token' } ],
    [ 'lower-case header name',           { authorization => 'Bearer sneaky' } ],
    [ 'empty Authorization',              { Authorization => '' } ],
    [ 'client Hmac header',               { Authorization => 'Hmac a:b:1:c' } ],
);

for my $case (@cases) {
    my ($name, $headers) = @$case;
    ($status, $seen) = get('/imburse/x', $headers);
    is($status, 200, "$name: 200");
    is_deeply($seen, [$ours],
        "$name: upstream saw exactly one Authorization, our bearer");
}

###############################################################################
# Scenario: Authorization sent twice.  nginx 1.22 itself rejects a duplicate
# Authorization line (400) before any module runs; either way the client's
# credentials must not reach the upstream.

($status, $seen) = get('/imburse/x',
    { Authorization => ['Basic dXNlcjpzZWNyZXQ=', 'Bearer second'] });
ok($status == 400 || ($status == 200 && @$seen == 1),
    "Authorization twice: rejected by nginx or replaced ($status)");
is_deeply([grep { "@$_" ne "@$ours" } @$seen], [],
    'Authorization twice: nothing but our bearer reached the upstream');

###############################################################################
# Scenario: internal redirect (error_page) -- two upstream requests, each
# with exactly one Authorization: ours

($status, $seen) = get('/redirect/x', { Authorization => 'Basic eDp5' });
is($status, 200, 'internal redirect: 200 from the fallback');
is_deeply($seen, [$ours, $ours],
    'internal redirect: both upstream requests carried only our bearer');
is($t->upstream_requests->[-1]{uri}, '/fallback',
    'internal redirect: the second one was the fallback');

###############################################################################
# Scenario: satisfy any -- access granted by address; the client's Basic
# credentials are still replaced by our bearer

($status, $seen) = get('/satisfy/x', { Authorization => 'Basic dXNlcjpzZWNyZXQ=' });
is($status, 200, 'satisfy any: 200');
is_deeply($seen, [$ours], 'satisfy any: upstream saw only our bearer');

is($t->stats->{exchanges}, 1, 'one exchange for all of it');

$t->stop;

done_testing;
