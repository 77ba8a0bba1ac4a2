#!/usr/bin/perl

# Clients that hang up (HTTP/1.1).
# - A request starts the refresh (in the window, after a reload: the new
#   workers have no refresh timer yet) and its client hangs up while the
#   API answers (1.5 s): nginx ends the request (499), the exchange (2 s)
#   goes on, since it belongs to the module: exactly one exchange, and the
#   next request is a HIT on the new token.
# - A client that hangs up while its request waits for the first token:
#   the request ends at once (499) and never reaches the API.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep time);

my $PK_R = 'pk-hangup-refresh';
my $PK_W = 'pk-hangup-wait';
my %PRIVATE = ($PK_R => 'aGFuZ3VwLXJlZnJlc2gta2V5LTAxMjM0NTY3ODlhYmNk',
               $PK_W => 'aGFuZ3VwLXdhaXQta2V5LTAxMjM0NTY3ODlhYmNkZWY=');

my $t = ImburseTest->new;
$t->write_key('refresh', $PRIVATE{$PK_R});
$t->write_key('wait', $PRIVATE{$PK_W});
$t->start_standin(keys => \%PRIVATE,
    tenants => { $PK_R => { ttl_ms => 8000 },
                 $PK_W => { delay_ms => 1500 } },
    upstream => { delay_by_path => { '/r/slow' => 1500 } });

my $conf = <<'NGINX';
    imburse_api_key refresh public_key=pk-hangup-refresh
                    private_key_file=%%KEYFILE:refresh%%
                    exchange=/_imburse/refresh refresh=4s;
    imburse_api_key wait public_key=pk-hangup-wait
                    private_key_file=%%KEYFILE:wait%%
                    exchange=/_imburse/wait;

    log_format hangup '"$request" $status token=$imburse_token_status';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%PREFIX%%/hangup.log hangup;

        location /r/ {
            imburse_auth refresh;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /w/ {
            imburse_auth wait;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/refresh%%
        %%EXCHANGE_LOCATION:/_imburse/wait%%
    }
NGINX
$t->run($conf);

sub tenant { $t->stats->{by_tenant}{$_[0]} // { tokens => [] } }
sub up_paths { map { $_->{uri} } @{$t->upstream_requests} }
sub logged {
    my ($path, $tries) = @_;
    for (1 .. $tries // 40) {
        my ($l) = grep { /"GET \Q$path\E / }
            split /\n/, ImburseTest::slurp($t->prefix . '/hangup.log');
        return $l if $l;
        sleep 0.05;
    }
    return '';
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    sleep 0.05 until $cond->() || time > $deadline;
    return $cond->();
}

###############################################################################
# Scenario: the request that starts the refresh hangs up

is($t->http_get('/r/warmup')->{status}, 200, 'warm-up: 200');
my ($t1) = @{tenant($PK_R)->{tokens}};
my $issued = $t->stats->{tokens}[-1]{time};

# new workers, the token kept in the zone: the first request in the window
# finds no refresh under way and starts it
ok($t->reload, 'reload');
$t->standin_set(tenants => { $PK_R => { ttl_ms => 8000, delay_ms => 2000 } });
my $before = tenant($PK_R)->{exchanges};

sleep $issued + 4.3 - time;    # the window opens 4 s (+ up to 5 %) early
$t->hangup('/r/slow', 300);
like(logged('/r/slow'), qr/ 499 token=REFRESH$/,
    'the request started the refresh, its client hung up: 499');

ok(wait_for(4, sub { @{tenant($PK_R)->{tokens}} == 2 }),
    'the exchange went on and got a new token');
my (undef, $t2) = @{tenant($PK_R)->{tokens}};
sleep 0.2;
my $r = $t->http_get('/r/after');
is($r->{status}, 200, 'the next request: 200');
like(logged('/r/after'), qr/ 200 token=HIT$/, 'the next request: HIT');
is_deeply($t->upstream_requests->[-1]{authorization}, ['Bearer ' . ($t2 // '')],
    'with the new token');
is(tenant($PK_R)->{exchanges} - $before, 1, 'exactly one exchange');

###############################################################################
# Scenario: a client hangs up while its request waits for the first token

$t->hangup('/w/gone', 300);
like(logged('/w/gone', 8), qr/ 499 token=MISS$/,
    'the waiting request ended as soon as its client left: 499');
is(scalar @{tenant($PK_W)->{tokens}}, 0,
    'while the exchange (1.5 s) is still under way');
ok(wait_for(3, sub { @{tenant($PK_W)->{tokens}} == 1 }),
    'the exchange it started went on');
sleep 0.3;
ok(!grep({ $_ eq '/w/gone' } up_paths()),
    'the request never reached the API');
$r = $t->http_get('/w/next');
is($r->{status}, 200, 'the next request: 200');
like(logged('/w/next'), qr/ 200 token=HIT$/, 'a HIT on that token');
is(tenant($PK_W)->{exchanges}, 1, 'one exchange');

$t->stop;
done_testing;
