#!/usr/bin/perl

# An upstream 401 to a request that carried our token revokes that token,
# only if it is still the current one and older than retry=: the next
# request gets a new token after exactly one exchange, and a burst of 401s
# causes one exchange.
# With proxy_intercept_errors and error_page 401 an operator can resend a
# request once with the new token.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep);

my $PUBLIC  = 'pk-revoke';
my $PRIVATE = 'cmV2b2tlLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIz';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-revoke
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main retry=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        # resend once with a fresh token (for idempotent requests)
        location /retry/ {
            imburse_auth main;
            proxy_intercept_errors on;
            error_page 401 = @retry;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location @retry {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

sub current_token { $t->stats->{tokens}[-1]{token} }
sub revoke { $t->standin_set(upstream => {
    status_by_bearer => { map { $_ => 401 } @_ } }) }

###############################################################################
# Scenario: the upstream revokes the token

is($t->http_get('/api/a')->{status}, 200, 'first request: 200');
my $t1 = current_token();
sleep 1.1;    # older than retry=1s
revoke($t1);

my $mark = $t->log_mark;
is($t->http_get('/api/b')->{status}, 401,
    'the request that carried the revoked token gets the 401');
is($t->stats->{exchanges}, 1, 'the 401 itself starts no exchange');

my $r = $t->http_get('/api/c');
is($r->{status}, 200, 'the next request: 200');
is($t->stats->{exchanges}, 2, 'after exactly one new exchange');
my $t2 = current_token();
isnt($t2, $t1, 'with a new token');
is_deeply($t->upstream_requests->[-1]{authorization}, ["Bearer $t2"],
    'the upstream got the new token');
my @lines = $t->grep_error_log(qr/upstream answered 401/, since => $mark);
is(scalar @lines, 1, 'one log line for the revocation');
unlike($lines[0] // '', qr/\Q$t1\E/, 'it names the token by fingerprint only');

###############################################################################
# Scenario: 50 concurrent requests get 401 for the same token

sleep 1.1;
revoke($t1, $t2);
my $before = $t->stats->{exchanges};
my $load = $t->load('/api/burst', 50, 50);
my %by = %{$load->{by_status}};
cmp_ok($by{401} // 0, '>', 1, "burst: several 401s ($by{401})");
is(($by{401} // 0) + ($by{200} // 0), 50, 'burst: only 401 and 200');
cmp_ok($t->stats->{exchanges} - $before, '<=', 1,
    'burst: at most one exchange during the burst');
is($t->http_get('/api/after')->{status}, 200, 'after the burst: 200');
is($t->stats->{exchanges} - $before, 1,
    'burst and the request after it: one exchange for all 401s');

###############################################################################
# Scenario: error_page 401 resends the request once with a fresh token

sleep 1.1;
revoke($t1, $t2, current_token());
$before = $t->stats->{exchanges};
$r = $t->http_get('/retry/x');
is($r->{status}, 200, 'error_page 401: the resent request succeeds');
is($t->stats->{exchanges} - $before, 1, 'error_page 401: one exchange');
my @up = @{$t->upstream_requests};
is_deeply($up[-1]{authorization}, ['Bearer ' . current_token()],
    'error_page 401: the resent request carried the new token');

$t->stop;
$t->logs_lack(token => $t1);
done_testing;
