#!/usr/bin/perl

# A budget for upstream 401s.  An API that answers 401 on a path for reasons
# of its own (a tenant-scoped resource the key has no role for) must not
# cost an exchange a request: a token younger than retry= is not revoked by
# a 401, which is logged once per token at warn and counted (unrevoked_401,
# in JSON and Prometheus); an older token is revoked, once.  20 sequential
# 401s cost at most one exchange per retry=.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep time);

my $PUBLIC  = 'pk-budget';
my $PRIVATE = 'NDAxLWJ1ZGdldC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZA==';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
    upstream => { status_by_path => { '/api/forbidden' => 401 } });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-budget
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main retry=2s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /status {
            imburse_status;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

sub status { decode_json($t->http_get('/status')->{body})->{keys}{main} }

is($t->http_get('/api/first')->{status}, 200, 'first request: 200');
my $t1 = $t->stats->{tokens}[-1]{token};
my $lmark = $t->log_mark;

###############################################################################
# Scenario: 20 sequential 401s on one path, while the token is young

my %by;
$by{$t->http_get('/api/forbidden')->{status}}++ for 1 .. 20;
is_deeply(\%by, { 401 => 20 }, '20 requests to the path: 20 x 401');
is($t->stats->{exchanges}, 1, 'no exchange for them');
is($t->http_get('/api/other')->{status}, 200, 'other paths: 200');
is_deeply($t->upstream_requests->[-1]{authorization}, ["Bearer $t1"],
    'with the same token');

my $s = status();
is($s->{unrevoked_401}, 20, 'status: unrevoked_401 counts them');
is($s->{revocations}, 0, 'status: no revocation');
my @warn = $t->grep_error_log(qr/\[warn\].*401.*younger than retry/,
    since => $lmark);
is(scalar @warn, 1, 'one warning for the token, not one a 401');
unlike($warn[0] // '', qr/\Q$t1\E/, 'naming the token by fingerprint only');

my $prom = $t->http_get('/status?format=prometheus')->{body};
like($prom, qr/^imburse_unrevoked_401_total\{key="main"\} 20$/m,
    'Prometheus: imburse_unrevoked_401_total');

###############################################################################
# Scenario: once the token is older than retry=, a 401 revokes it, once;
# the new token is young again

sleep 2.1;
$by{$t->http_get('/api/forbidden')->{status}}++ for 1 .. 20;
is($t->stats->{exchanges}, 2, 'an old token: one 401 revokes it, one '
    . 'exchange for 20 more 401s');
$s = status();
is($s->{revocations}, 1, 'status: one revocation');
is($s->{unrevoked_401}, 39, 'status: the 19 others are counted');
my $t2 = $t->stats->{tokens}[-1]{token};
isnt($t2, $t1, 'a new token');
is($t->http_get('/api/other')->{status}, 200, 'other paths: 200');
is_deeply($t->upstream_requests->[-1]{authorization}, ["Bearer $t2"],
    'with the new token');

$t->stop;
$t->logs_lack(token => $t1);
done_testing;
