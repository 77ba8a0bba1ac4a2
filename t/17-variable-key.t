#!/usr/bin/perl

# `imburse_auth $variable` picks the key at run time: two declared keys, two
# tenants at the identity service, each request gets its own tenant's token.
# A value naming no declared key is an error for that request (500, logged),
# never a silent pass-through.  `imburse_auth off` in a nested location
# injects nothing; `imburse_auth` at server level is inherited.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my %PRIVATE = (
    alpha => 'YWxwaGEtc2VjcmV0LWtleS1mb3ItdGVzdHMtMDAwMQ==',
    beta  => 'YmV0YS1zZWNyZXQta2V5LWZvci10ZXN0cy0wMDAwMg==',
);

my $t = ImburseTest->new;
$t->write_key($_, $PRIVATE{$_}) for keys %PRIVATE;
$t->start_standin(keys => { 'pk-alpha' => $PRIVATE{alpha},
                            'pk-beta'  => $PRIVATE{beta} });

my $exchange_locations = <<'EOF';
        location = /_imburse/alpha {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
        location = /_imburse/beta {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
EOF

$t->run(<<"EOF");
    imburse_api_key alpha public_key=pk-alpha
                    private_key_file=%%KEYFILE:alpha%%
                    exchange=/_imburse/alpha;
    imburse_api_key beta  public_key=pk-beta
                    private_key_file=%%KEYFILE:beta%%
                    exchange=/_imburse/beta;

    map \$http_x_tenant \$tenant {
        default  nosuch;
        alpha    alpha;
        beta     beta;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /imburse/ {
            imburse_auth \$tenant;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;

            location /imburse/public/ {
                imburse_auth off;
                proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
            }
        }

        location /beta-only/ {
            set \$which beta;
            imburse_auth \$which;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

$exchange_locations
    }

    # imburse_auth at server level, inherited by the locations
    server {
        listen 127.0.0.1:%%PORT2%%;
        imburse_auth alpha;

        location / {
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location /open/ {
            imburse_auth off;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

$exchange_locations
    }
EOF

# GET -> (status, Authorization values the upstream saw, or undef if the
# request did not reach it)
sub get {
    my ($path, $headers, %o) = @_;
    my $before = scalar @{$t->upstream_requests};
    my $r = $t->http_get($path, $headers, %o);
    my $up = $t->upstream_requests;
    return ($r->{status}, @$up > $before ? $up->[-1]{authorization} : undef);
}
sub token_of {
    my ($tenant) = @_;
    my $tokens = $t->stats->{by_tenant}{"pk-$tenant"}{tokens} // [];
    return $tokens->[-1] // 'none';
}

###############################################################################
# Scenario: the tenant header picks the key

for my $round (1, 2) {
    for my $tenant (qw(alpha beta)) {
        my ($status, $auth) = get('/imburse/x', { 'X-Tenant' => $tenant });
        is($status, 200, "$tenant (round $round): 200");
        is_deeply($auth, ['Bearer ' . token_of($tenant)],
            "$tenant (round $round): upstream got $tenant\'s token");
    }
}
isnt(token_of('alpha'), token_of('beta'), 'two tenants, two tokens');
my $s = $t->stats;
is($s->{by_tenant}{'pk-alpha'}{exchanges}, 1, 'alpha: one exchange');
is($s->{by_tenant}{'pk-beta'}{exchanges}, 1, 'beta: one exchange');
is($s->{rejected}, 0, 'each key signed with its own secret');

###############################################################################
# Scenario: `set` works as well

my ($status, $auth) = get('/beta-only/x', { 'X-Tenant' => 'alpha' });
is($status, 200, 'set $which beta: 200');
is_deeply($auth, ['Bearer ' . token_of('beta')], 'set $which beta: beta\'s token');

###############################################################################
# Scenario: a value naming no declared key: 500, logged, nothing proxied

my $mark = $t->log_mark;
($status, $auth) = get('/imburse/x', { 'X-Tenant' => 'gamma',
    Authorization => 'Basic dXNlcjpzZWNyZXQ=' });
is($status, 500, 'undeclared key: 500');
is($auth, undef, 'undeclared key: nothing reached the upstream');
my @lines = $t->grep_error_log(qr/\[error\].*imburse.*nosuch/, since => $mark);
is(scalar @lines, 1, 'undeclared key: one [error] line naming it')
    or diag $t->error_log(since => $mark);
is($t->stats->{exchanges}, 2, 'undeclared key: no exchange');

###############################################################################
# Scenario: imburse_auth off in a nested location

($status, $auth) = get('/imburse/public/x', { 'X-Tenant' => 'alpha' });
is($status, 200, 'nested off: 200');
is_deeply($auth, [], 'nested off: no Authorization at all');
($status, $auth) = get('/imburse/public/x',
    { 'X-Tenant' => 'nosuch', Authorization => 'Basic eDp5' });
is($status, 200, 'nested off: the tenant variable is not even looked at');
is_deeply($auth, ['Basic eDp5'],
    'nested off: the client\'s own header passes as without the module');

###############################################################################
# Scenario: server-level imburse_auth, inherited; off overrides it

($status, $auth) = get('/x', {}, port => $t->port2);
is($status, 200, 'server level: 200');
is_deeply($auth, ['Bearer ' . token_of('alpha')], 'server level: inherited');
($status, $auth) = get('/open/x', {}, port => $t->port2);
is_deeply($auth, [], 'server level, location off: no token');

is($t->stats->{exchanges}, 2, 'the server-level use shares alpha\'s token');

$t->stop;

done_testing;
