#!/usr/bin/perl

# The fleet refreshes once per refresh period, not once per instance: 30 s
# of load across three instances with 6 s tokens.  refresh= (default 60s) is
# capped at half the token's lifetime, so each token is refreshed ~3 s after
# it was issued: about 10 refreshes in 30 s for the whole fleet, where three
# instances on their own would make about 30.  The instance that refreshes
# first takes the fleet lock and exchanges; the others, in their refresh
# window too, find the lock taken, keep their valid token and half a second
# later take the new one from Redis.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use Time::HiRes qw(time);

my $PUBLIC  = 'pk-fleet-refresh';
my $PRIVATE = 'ZmxlZXQtcmVmcmVzaC1sb2FkLWtleS0wMTIzNDU2Nzg5YWI=';
my $SECONDS = 30;
my $TTL     = 6;                 # token lifetime, seconds
my $PERIOD  = $TTL / 2;          # refresh= (default 60s) capped at half
my $DELAY   = 0.1;               # the identity service's answer time

my $redis = ImburseRedis->new;
my @fleet = ImburseRedis::start_fleet(
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    standin     => { global => { ttl_ms => $TTL * 1000,
                                 delay_ms => $DELAY * 1000 } },
);
my $imburse = $fleet[0];

###############################################################################
# Warm-up: the first instance exchanges, the others take the fleet's copy

is($_->http_get('/api/warmup')->{status}, 200, 'warm-up: 200') for @fleet;
is($imburse->stats->{exchanges}, 1, 'warm-up: one exchange for the fleet');
$imburse->reset_stats;
my @marks = map { $_->access_mark } @fleet;
my $locks_before = ImburseRedis::fleet_sum('locks_taken', @fleet);

###############################################################################
# Scenario: 30 s of load, 4 keep-alive connections on each instance

my $t0 = time;
my @res = ImburseRedis::load_for('/api/x', $SECONDS, 4, \@fleet,
    check => sub { ($_[0]{content} // '') =~ /^Bearer tok-\S+$/ });
my $elapsed = time - $t0;
my $stats = $imburse->stats;

for my $i (0 .. $#fleet) {
    my $r = $res[$i];
    cmp_ok($r->{count}, '>', 4 * $SECONDS, "instance $i: $r->{count} requests");
    is_deeply($r->{by_status}, { 200 => $r->{count} },
        "instance $i: every response 200");
    is($r->{bad}, 0, "instance $i: every request carried a bearer token");
    my %st;
    $st{$_}++ for $fleet[$i]->token_statuses(since => $marks[$i]);
    ok(!$st{MISS} && !$st{ERROR}, "instance $i: no request waited or failed")
        or diag explain \%st;
}

# A refresh period runs from a token's issue to its successor's: the
# token's life outside the window, then the exchange (0.1 s here).  The
# periods completed in the run, give or take one, is the right count: one
# per period for the whole fleet.
my $periods = int($elapsed / ($PERIOD + $DELAY));
my $exchanges = $stats->{exchanges};
cmp_ok(abs($exchanges - $periods), '<=', 1,
    "identity: $exchanges exchanges in ${\ sprintf '%.1f', $elapsed} s, "
    . "within one of the $periods refresh periods");

# and never two in one period: a token is replaced once, by one instance
# (the window starts up to 5% early at random, per instance)
my @issued = sort { $a <=> $b } map { $_->{time} }
    grep { $_->{status} == 200 && $_->{time} >= $t0 }
    @{$imburse->identity_requests};
my @gaps = map { $issued[$_] - $issued[$_ - 1] } 1 .. $#issued;
my ($shortest) = sort { $a <=> $b } @gaps;
cmp_ok($shortest // $PERIOD, '>=', 0.9 * $PERIOD, sprintf(
    'identity: tokens issued at least %.1f s apart (shortest gap %.2f s)',
    0.9 * $PERIOD, $shortest // 0));
cmp_ok($exchanges, '<', 2 * $periods,
    'identity: clearly not one per instance (that would be ~'
    . 3 * $periods . ')');
is($stats->{max_inflight}, 1, 'identity: one exchange in flight at a time');
is($stats->{rejected}, 0, 'identity: no signature rejected');

# a lock whose second read finds the new copy is released unused
cmp_ok(ImburseRedis::fleet_sum('locks_taken', @fleet) - $locks_before,
    '>=', $exchanges, 'status: each exchange made under the fleet lock');
cmp_ok(ImburseRedis::fleet_sum('hits', @fleet), '>=', 2 * ($exchanges - 1),
    'status: the other instances took the new tokens from the fleet');
is(ImburseRedis::fleet_sum('redis_errors', @fleet), 0, 'status: no Redis error');

###############################################################################

$_->stop for @fleet;
done_testing;
