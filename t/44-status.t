#!/usr/bin/perl

# imburse_status: every key's token state and counters, as JSON and with
# ?format=prometheus as Prometheus text; never a token or a secret.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP;
use MIME::Base64 qw(decode_base64);

my %PRIVATE = (
    'pk-good' => 'c3RhdHVzLWdvb2Qta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIz',
    'pk-bad'  => 'c3RhdHVzLWJhZC1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0',
);

my $t = ImburseTest->new;
$t->write_key('good', $PRIVATE{'pk-good'});
$t->write_key('bad', $PRIVATE{'pk-bad'});
$t->start_standin(keys => \%PRIVATE,
                  tenants => { 'pk-bad' => { status => 503 } });

$t->run(<<'NGINX');
    imburse_api_key good public_key=pk-good
                    private_key_file=%%KEYFILE:good%% exchange=/_imburse/good;
    imburse_api_key bad public_key=pk-bad
                    private_key_file=%%KEYFILE:bad%% exchange=/_imburse/bad;
    imburse_api_key idle public_key=pk-idle
                    private_key_file=%%KEYFILE:good%% exchange=/_imburse/good;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /good/ { imburse_auth good; proxy_pass %%UPSTREAM_URL%%; }
        location /bad/  { imburse_auth bad;  proxy_pass %%UPSTREAM_URL%%; }

        location = /imburse-status {
            imburse_status;
        }

        %%EXCHANGE_LOCATION:/_imburse/good%%

        %%EXCHANGE_LOCATION:/_imburse/bad%%
    }
NGINX

is($t->http_get('/good/x')->{status}, 200, 'good key: 200');
is($t->http_get('/bad/x')->{status}, 503, 'bad key: 503');
my $token = $t->stats->{tokens}[-1]{token};

###############################################################################
# JSON

my $r = $t->http_get('/imburse-status');
is($r->{status}, 200, 'json: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, 'json: type');
my $s = eval { decode_json($r->{body}) };
ok($s, 'json: parses') or diag $r->{body};

is_deeply([sort keys %{$s->{keys}}], [qw(bad good idle)], 'json: every key');

my @fields = qw(valid expires_in exchanges failures consecutive_failures
                last_error last_exchange_at token_fingerprint);
for my $name (qw(good bad idle)) {
    my $k = $s->{keys}{$name};
    ok(!grep({ !exists $k->{$_} } @fields), "json: $name has every field");
}

my $g = $s->{keys}{good};
ok($g->{valid}, 'good: valid');
cmp_ok($g->{expires_in}, '>', 3500, 'good: expires_in in seconds');
is($g->{exchanges}, 1, 'good: one exchange');
is($g->{failures}, 0, 'good: no failure');
is($g->{last_error}, undef, 'good: no last_error');
cmp_ok(abs($g->{last_exchange_at} - time), '<', 60,
    'good: last_exchange_at is a Unix time');
like($g->{token_fingerprint}, qr/^[0-9a-f]{12}$/,
    'good: a 12-hex fingerprint');

my $b = $s->{keys}{bad};
ok(!$b->{valid}, 'bad: not valid');
is($b->{failures}, 1, 'bad: one failure');
is($b->{consecutive_failures}, 1, 'bad: one consecutive failure');
is($b->{last_error}, 'identity service error', 'bad: last_error class');
is($b->{token_fingerprint}, undef, 'bad: no fingerprint without a token');

is($s->{keys}{idle}{exchanges}, 0, 'idle: no exchange yet');
cmp_ok($s->{zone}{size}, '>', 0, 'zone: size');
cmp_ok($s->{zone}{free}, '<', $s->{zone}{size}, 'zone: free below size');

###############################################################################
# Prometheus

$r = $t->http_get('/imburse-status?format=prometheus');
is($r->{status}, 200, 'prometheus: 200');
like($r->{headers}{'content-type'}, qr{^text/plain}, 'prometheus: type');
my $p = $r->{body};
like($p, qr/^imburse_token_expires_in_seconds\{key="good"\} (\d+)$/m,
    'prometheus: expires_in of good');
like($p, qr/^imburse_token_valid\{key="bad"\} 0$/m, 'prometheus: bad invalid');
like($p, qr/^imburse_exchanges_total\{key="good"\} 1$/m,
    'prometheus: exchanges counter');
like($p, qr/^imburse_exchange_failures_total\{key="bad"\} 1$/m,
    'prometheus: failures counter');
like($p, qr/^# TYPE imburse_exchanges_total counter$/m,
    'prometheus: counters are typed');
unlike($p, qr/^(# \S+ )?imburse_fleet_/m,
    'prometheus: no fleet metric when no key has fleet=');
my @bad = grep { !/^#/ && !/^imburse_[a-z0-9_]+(\{key="[a-z]+"\})? -?\d+$/ }
          split /\n/, $p;
is_deeply(\@bad, [], 'prometheus: every line is a comment or a sample');

###############################################################################
# No secret anywhere

for my $body ($t->http_get('/imburse-status')->{body}, $p) {
    unlike($body, qr/\Q$token\E/, 'status: no token');
    for my $priv (values %PRIVATE) {
        unlike($body, qr/\Q$priv\E/, 'status: no private key');
    }
}

is($t->http_request('POST', '/imburse-status')->{status}, 405,
    'POST: 405');

$t->stop;
done_testing;
