#!/usr/bin/perl

# Refresh without traffic.  A key that served a request during its token's
# life is refreshed in the window by the key's timer, so the first request
# after a quiet period is a HIT on a fresh token, not a wait.  A token that
# served no request is not refreshed: a key idle for a whole lifetime costs
# no exchange, and a key never used costs none at all.
#
# 4 s tokens: the window is the last half of the life (refresh= is capped
# at half the lifetime), up to 5 % later.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep time);
use MIME::Base64 qw(encode_base64);

my @KEYS = qw(busy idle never);
my %PRIVATE = map { ("pk-quiet-$_" => encode_base64("quiet-$_-key-0123456789ab", ''))
    } @KEYS;

my $t = ImburseTest->new;
$t->write_key($_, $PRIVATE{"pk-quiet-$_"}) for @KEYS;
$t->start_standin(keys => \%PRIVATE, global => { ttl_ms => 4000 });

my $keys = join '', map { <<"CONF" } @KEYS;
    imburse_api_key $_ public_key=pk-quiet-$_ private_key_file=%%KEYFILE:$_%%
                    exchange=/_imburse/$_;
CONF
my $locations = join '', map { <<"CONF" } @KEYS;
        location /$_/ {
            imburse_auth $_;
            proxy_pass %%UPSTREAM_URL%%;
        }
        %%EXCHANGE_LOCATION:/_imburse/$_%%
CONF
$t->run(<<"NGINX");
$keys
    server {
        listen 127.0.0.1:%%PORT%%;
$locations
    }
NGINX

sub tenant { $t->stats->{by_tenant}{"pk-quiet-$_[0]"} // { exchanges => 0,
    tokens => [] } }
sub expiry { my ($k) = @_; (map { $_->{expires_ms} / 1000 }
    grep { $_->{public_key} eq "pk-quiet-$k" } @{$t->stats->{tokens}})[-1] }
sub sleep_until { my $d = $_[0] - time; sleep $d if $d > 0 }
sub status_of {
    my ($path) = @_;
    my $mark = $t->access_mark;
    my $r = $t->http_get($path);
    my ($st) = $t->token_statuses(since => $mark, wait_for => 1);
    return ($r, $st // '-');
}

###############################################################################
# Scenario: "busy" and "idle" serve one request each, then nothing

for my $k (qw(busy idle)) {
    my ($r, $st) = status_of("/$k/first");
    is($st, 'MISS', "$k: the first request waits for a token");
}
my %first = map { ($_ => tenant($_)->{tokens}[0]) } qw(busy idle);
my $expiry1 = expiry('busy');

# quiet until 0.5 s before the first token expires: the window has opened
sleep_until($expiry1 - 0.5);
is(tenant('busy')->{exchanges}, 2, 'busy: refreshed in the window without '
    . 'a request');
my ($r, $st) = status_of('/busy/after-quiet');
is($r->{status}, 200, 'busy: the first request after the quiet period: 200');
is($st, 'HIT', 'busy: a HIT, no wait');
my $second = tenant('busy')->{tokens}[1] // '';
isnt($second, $first{busy}, 'busy: on the refreshed token');
like($r->{body}, qr/"Bearer \Q$second\E"/, 'busy: which went upstream');

for (1 .. 20) {
    last if tenant('idle')->{exchanges} >= 2;
    sleep 0.05;
}
is(tenant('idle')->{exchanges}, 2, 'idle: its token (used) was refreshed once, '
    . 'before it expired');

###############################################################################
# Scenario: "idle" serves nothing during its second token's whole life

my $expiry2 = expiry('idle');
sleep_until($expiry2 + 0.5);
is(tenant('idle')->{exchanges}, 2,
    'idle: a token that served no request is not refreshed');
($r, $st) = status_of('/idle/back');
is($st, 'MISS', 'idle: the request after its expiry waits for a new token');
is(tenant('idle')->{exchanges}, 3, 'idle: one exchange for it');

is(tenant('never')->{exchanges}, 0, 'never: a key never used, no exchange');

$t->stop;
done_testing;
