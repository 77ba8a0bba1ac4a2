#!/usr/bin/perl

# Internal redirects and subrequests: the token goes where imburse_auth is,
# and nowhere else.
#
# - A request redirected (error_page) from an imburse_auth location to one
#   without it gets the client's own Authorization back: our token does not
#   travel to the other location's upstream.
# - An intercepted upstream 401 revokes the token once, whatever location
#   serves the error page; a 401 page of nginx's own revokes nothing.
# - A subrequest into an imburse_auth location (mirror) carries the token,
#   never the client's credentials; the main request is not touched.
# - A variable whose value is "off" names no key: 500, not a pass-through.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep);

my $PRIVATE = 'cmVkaXJlY3RzLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWYw';
my $CLIENT  = 'Basic Y2xpZW50OnNlY3JldA==';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { 'pk-redirects' => $PRIVATE });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-redirects
                    private_key_file=%%KEYFILE:main%% exchange=/_imburse/main
                    retry=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        # a failing API call is retried at a third party, without our token
        location /imburse/ {
            imburse_auth main;
            proxy_intercept_errors on;
            error_page 503 = @third_party;
            error_page 401 /401.html;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location @third_party {
            rewrite ^ /third-party break;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /401.html {
            return 401 "denied\n";
        }

        # an error page inside an imburse_auth location
        location /inherit/ {
            imburse_auth main;
            proxy_intercept_errors on;
            error_page 401 /inherit/401;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /inherit/401 {
            imburse_auth main;
            return 401 "denied\n";
        }

        # the client's traffic is mirrored to the API, with our token
        location /mirrored/ {
            mirror /_mirror;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /_mirror {
            internal;
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%/mirror-copy;
        }

        location /tenant/ {
            imburse_auth $http_x_tenant;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

sub token { $t->stats->{tokens}[-1]{token} }
sub seen { my ($path) = @_;
    my @r = grep { $_->{uri} eq $path } @{$t->upstream_requests};
    return $r[-1] ? $r[-1]{authorization} : undef }

###############################################################################
# Scenario: error_page into a location without imburse_auth

$t->standin_set(upstream => { status_by_path => { '/imburse/down' => 503 } });
my $r = $t->http_get('/imburse/down', { Authorization => $CLIENT });
is($r->{status}, 200, 'redirected to the third party: 200');
is_deeply(seen('/imburse/down'), ['Bearer ' . token()],
    'the API got our token');
is_deeply(seen('/third-party'), [$CLIENT],
    'the third party got the client\'s header back, not our token');

$r = $t->http_get('/imburse/down');
is_deeply(seen('/third-party'), [],
    'without a client header, the third party gets none');

###############################################################################
# Scenario: an intercepted 401 served by a plain error page

# a 401 revokes only a token older than retry=1s
sleep 1.1;
my $t1 = token();
$t->standin_set(upstream => { status_by_bearer => { $t1 => 401 } });
my $before = $t->stats->{exchanges};
my $mark = $t->log_mark;

$r = $t->http_get('/imburse/a');
is($r->{status}, 401, 'intercepted 401: the error page');
is($t->http_get('/imburse/b')->{status}, 200,
    'the next request gets a new token');
is($t->stats->{exchanges} - $before, 1, 'after one exchange');
is(scalar $t->grep_error_log(qr/token \w+ revoked/, since => $mark), 1,
    'one revocation');

###############################################################################
# Scenario: the error page is in an imburse_auth location itself

sleep 1.1;
my $t2 = token();
$t->standin_set(upstream => { status_by_bearer => { $t1 => 401, $t2 => 401 } });
$before = $t->stats->{exchanges};
$mark = $t->log_mark;

$r = $t->http_get('/inherit/a');
is($r->{status}, 401, 'inherited error page: 401');
is($t->http_get('/imburse/c')->{status}, 200, 'the next request: 200');
is($t->stats->{exchanges} - $before, 1,
    'one exchange: the error page\'s own 401 revoked nothing');
is(scalar $t->grep_error_log(qr/token \w+ revoked/, since => $mark), 1,
    'one revocation');

###############################################################################
# Scenario: a mirror subrequest into an imburse_auth location

$r = $t->http_get('/mirrored/x', { Authorization => $CLIENT });
is($r->{status}, 200, 'mirrored request: 200');
my $copy;
for (1 .. 50) {
    last if $copy = seen('/mirror-copy');
    select undef, undef, undef, 0.05;
}
is_deeply($copy, ['Bearer ' . token()], 'the mirror copy carried our token');
is_deeply(seen('/mirrored/x'), [$CLIENT],
    'the main request kept the client\'s header');

###############################################################################
# Scenario: a variable that says "off"

$mark = $t->log_mark;
$r = $t->http_get('/tenant/x', { 'X-Tenant' => 'off', Authorization => $CLIENT });
is($r->{status}, 500, 'imburse_auth $var = "off": 500');
ok(!seen('/tenant/x'), 'nothing was proxied');
is(scalar $t->grep_error_log(qr/unknown imburse key "off"/, since => $mark), 1,
    'logged as an unknown key');
is($t->http_get('/tenant/x', { 'X-Tenant' => 'main' })->{status}, 200,
    'imburse_auth $var = "main": 200');

$t->stop;
done_testing;
