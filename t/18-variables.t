#!/usr/bin/perl

# The variables: $imburse_token (the injected token, e.g. for another
# header), $imburse_token_ttl (seconds until it expires),
# $imburse_token_status (MISS/HIT/...), and $imburse_hmac (a signed value
# only inside the exchange; empty anywhere else).

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
$t->write_key('short', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE, 'pk-short' => $PRIVATE },
    tenants => {
        $PUBLIC    => { ttl_ms => 3_600_000 },                      # 1 hour
        'pk-short' => { ttl_ms => 600_000, expires => 'number' },   # 10 min
    });

$t->run(<<'EOF');
    imburse_api_key  management
                     public_key=3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management;
    imburse_api_key  short
                     public_key=pk-short
                     private_key_file=%%KEYFILE:short%%
                     exchange=/_imburse/short;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /imburse/ {
            imburse_auth management;
            proxy_set_header X-Token $imburse_token;
            add_header X-TTL    $imburse_token_ttl;
            add_header X-Status $imburse_token_status;
            add_header X-Hmac   "[$imburse_hmac]";
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location /short/ {
            imburse_auth short;
            add_header X-TTL $imburse_token_ttl;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location /plain/ {
            proxy_set_header X-Token $imburse_token;
            add_header X-Values "[$imburse_token][$imburse_token_ttl][$imburse_hmac]";
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }

        location = /_imburse/short {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF

sub upstream_header {
    my ($name) = @_;
    my $last = $t->upstream_requests->[-1];
    return [ map { $_->[1] } grep { lc $_->[0] eq lc $name } @{$last->{headers}} ];
}

###############################################################################
# Scenario: first request (MISS), then cached (HIT)

my $r = $t->http_get('/imburse/x');
is($r->{status}, 200, 'first: 200');
my $token = $t->stats->{tokens}[0]{token};
is($r->{headers}{'x-status'}, 'MISS', 'first: $imburse_token_status MISS');
like($r->{headers}{'x-ttl'} // '', qr/^\d+$/, 'first: $imburse_token_ttl is '
    . 'a number of seconds');
my $ttl1 = $r->{headers}{'x-ttl'} // 0;
ok($ttl1 > 3590 && $ttl1 <= 3600, "first: ttl $ttl1 within a 1 h token");
is_deeply(upstream_header('X-Token'), [$token],
    'first: $imburse_token placed in another header');
is_deeply(upstream_header('Authorization'), ["Bearer $token"],
    'first: and the bearer as usual');
is($r->{headers}{'x-hmac'}, '[]', 'first: $imburse_hmac empty outside the '
    . 'exchange');

sleep 1.1;
$r = $t->http_get('/imburse/x');
is($r->{headers}{'x-status'}, 'HIT', 'second: HIT');
my $ttl2 = $r->{headers}{'x-ttl'} // 0;
ok($ttl2 < $ttl1 && $ttl2 > 3585, "second: ttl went down ($ttl1 -> $ttl2)");
is_deeply(upstream_header('X-Token'), [$token], 'second: same token');

###############################################################################
# Scenario: a numeric `expires`, ten minutes ahead

$r = $t->http_get('/short/x');
is($r->{status}, 200, 'numeric expires: 200');
my $ttl = $r->{headers}{'x-ttl'} // 0;
ok($ttl > 590 && $ttl <= 600, "numeric expires: ttl $ttl within 10 min");

###############################################################################
# Scenario: no imburse_auth: the variables are empty

$r = $t->http_get('/plain/x');
is($r->{status}, 200, 'no imburse_auth: 200');
is($r->{headers}{'x-values'}, '[][][]', 'no imburse_auth: variables empty');
is_deeply(upstream_header('X-Token'), [],
    'no imburse_auth: no X-Token header (empty value)');
is_deeply(upstream_header('Authorization'), [],
    'no imburse_auth: no Authorization');

###############################################################################
# The access log carries $imburse_token_status

my @st = $t->token_statuses(wait_for => 4);
is_deeply(\@st, ['MISS', 'HIT', 'MISS', '-'],
    'access log: MISS, HIT, MISS (other key), - (no imburse_auth)');

$t->stop;
$t->logs_lack('token' => $token, 'private key' => $PRIVATE);

done_testing;
