#!/usr/bin/perl

# "nginx -s reload" keeps valid tokens (no new exchange), but a key whose
# secret or public key changed does not reuse the old key's token.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PUBLIC   = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE  = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';
my $PRIVATE2 = 'cm90YXRlZC1zZWNyZXQta2V5LWZvci10ZXN0aW5nLTAx';
my $PUBLIC2  = '9b2d5e1a-0c3f-4e8b-8d7a-6f5e4d3c2b1a';
my $BILLING  = 'YmlsbGluZy1rZXktZm9yLXRlc3Rpbmctb25seS0wMDA=';

my $t = ImburseTest->new;
$t->write_key('management', $PRIVATE);
$t->write_key('billing', $BILLING);
$t->start_standin(keys => { $PUBLIC => $PRIVATE, 'billing-pk' => $BILLING });

# The configuration, with the public key and an extra block as parameters.
sub config {
    my ($public, $extra) = @_;
    return <<"EOF";
    imburse_api_key  management
                     public_key=$public
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management;
    $extra
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

        location = /_imburse/billing {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF
}

# GET through the module: (status, bearer the upstream saw, token status)
sub get {
    my $mark = $t->access_mark;
    my $r = $t->http_get('/imburse/x');
    my $up = $t->upstream_requests->[-1];
    my ($st) = $t->token_statuses(since => $mark, wait_for => 1);
    return ($r->{status}, "@{$up->{authorization} // []}", $st);
}

$t->run(config($PUBLIC, ''));

my ($status, $bearer, $st) = get();
is($status, 200, 'before reload: 200');
my $token1 = $t->stats->{tokens}[0]{token};
is($bearer, "Bearer $token1", 'before reload: bearer');
is($st, 'MISS', 'before reload: MISS');

###############################################################################
# Scenario: reload with the same configuration keeps the token

ok($t->reload, 'reload (unchanged configuration)');
($status, $bearer, $st) = get();
is($status, 200, 'after reload: 200');
is($bearer, "Bearer $token1", 'after reload: same token');
is($st, 'HIT', 'after reload: HIT');
is($t->stats->{exchanges}, 1, 'after reload: no new exchange');

###############################################################################
# Scenario: reload adding another key keeps the first key's token

ok($t->reload(config($PUBLIC, <<'EOF')), 'reload (a key added)');
    imburse_api_key  billing
                     public_key=billing-pk
                     private_key_file=%%KEYFILE:billing%%
                     exchange=/_imburse/billing;
EOF
($status, $bearer, $st) = get();
is($bearer, "Bearer $token1", 'key added: same token for the unchanged key');
is($t->stats->{exchanges}, 1, 'key added: no new exchange');

###############################################################################
# Scenario: the private key rotated (key file and identity service): the old
# token belongs to the old secret and is not reused

$t->write_key('management', $PRIVATE2);
$t->standin_set(keys => { $PUBLIC => $PRIVATE2 });
ok($t->reload, 'reload (private key file changed)');
($status, $bearer, $st) = get();
my $s = $t->stats;
is($status, 200, 'rotated secret: 200');
is($s->{exchanges}, 2, 'rotated secret: a new exchange');
is($s->{rejected}, 0, 'rotated secret: signed with the new secret')
    or diag explain $s->{reasons};
my $token2 = $s->{tokens}[1]{token};
isnt($token2, $token1, 'rotated secret: a new token');
is($bearer, "Bearer $token2", 'rotated secret: upstream got the new token');
is($st, 'MISS', 'rotated secret: MISS');

###############################################################################
# Scenario: the public key changed: a new exchange under the new public key

$t->standin_set(keys => { $PUBLIC2 => $PRIVATE2 });
ok($t->reload(config($PUBLIC2, '')), 'reload (public key changed)');
($status, $bearer, $st) = get();
$s = $t->stats;
is($status, 200, 'new public key: 200');
is($s->{by_tenant}{$PUBLIC2}{ok}, 1, 'new public key: exchange under it');
is($s->{exchanges}, 3, 'new public key: one new exchange');
my $token3 = $s->{tokens}[2]{token};
is($bearer, "Bearer $token3", 'new public key: upstream got its token');

###############################################################################
# Scenario: and that token, in turn, survives a reload

ok($t->reload, 'reload (unchanged again)');
($status, $bearer, $st) = get();
is($bearer, "Bearer $token3", 'unchanged again: token kept');
is($t->stats->{exchanges}, 3, 'unchanged again: no new exchange');

my @nonces = map { /^Hmac [^:]+:([^:]+):/ ? $1 : () }
    map { map { $_->[1] } grep { lc $_->[0] eq 'authorization' }
          @{$_->{headers}} } @{$t->identity_requests};
is(scalar @nonces, 3, 'three signed exchanges');
is(scalar keys %{{ map { $_ => 1 } @nonces }}, 3, 'all nonces distinct');

$t->stop;

$t->logs_lack('old private key' => $PRIVATE, 'new private key' => $PRIVATE2,
    'first token' => $token1, 'last token' => $token3);

done_testing;
