#!/usr/bin/perl

# Redis dies (SIGKILL) under load on the whole fleet: no client request
# fails.  Each instance finds out at its next Redis operation, logs it ONCE
# for the whole outage ("fleet Redis failed: Redis unreachable"), refreshes
# its token on its own and leaves Redis alone for retry= after each failed
# attempt.  When Redis is back (same port, empty) each instance says so
# once, and the fleet shares tokens again: a new copy appears in Redis and
# the instances take it from there.
#
# 4 s tokens (refresh 2 s ahead), retry=1s: an outage of 4 s sees every
# instance refresh at least once without Redis.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use Time::HiRes qw(time sleep);

my $PUBLIC  = 'pk-fleet-restart';
my $PRIVATE = 'ZmxlZXQtcmVkaXMtcmVzdGFydC1rZXktMDEyMzQ1Njc4OWE=';
my $LOAD    = 14;    # seconds of load, covering the whole scenario

my $redis = ImburseRedis->new;
my @fleet = ImburseRedis::start_fleet(
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    key_params  => 'timeout=2s retry=1s',
    standin     => { global => { ttl_ms => 4000, delay_ms => 50 } },
);
my $imburse = $fleet[0];
my $TOKEN_KEY = ImburseRedis::token_key($PUBLIC);

is($_->http_get('/api/warmup')->{status}, 200, 'warm-up: 200') for @fleet;
is($imburse->stats->{exchanges}, 1, 'warm-up: one exchange for the fleet');

###############################################################################
# Scenario: load on every instance; Redis is killed, then restarted

my $load_started = time;
my $load = ImburseRedis::in_background(sub {
    my @r = ImburseRedis::load_for('/api/x', $LOAD, 3, \@fleet,
        check => sub { ($_[0]{content} // '') =~ /^Bearer tok-\S+$/ });
    return { results => \@r };
});

sleep 2.5;
$redis->crash;
my $killed_at = time;
ok(!$redis->answers, 'Redis is down');

# every instance refreshes at least once during the outage
ok(wait_until(5, sub { !grep { !failed_lines($_) } @fleet }),
    'outage: every instance found out') or diag_logs();
sleep 4 - (time - $killed_at) if time - $killed_at < 4;
my $exchanges_down = $imburse->stats->{exchanges};

$redis->start;
my $restarted_at = time;
ok($redis->answers, sprintf('Redis restarted on the same port after '
    . '%.1f s', $restarted_at - $killed_at));
my @hits_at_restart = map { ImburseRedis::status($_)->{fleet}{hits} } @fleet;

ok(wait_until(6, sub { !grep { !back_lines($_) } @fleet }),
    'after the restart every instance uses Redis again') or diag_logs();
ok(wait_until(4, sub { defined $redis->get($TOKEN_KEY) }),
    'a new token was shared through the restarted Redis');
my $back_at = time;

my @res = @{ $load->()->{results} // [] };
cmp_ok($back_at, '<', $load_started + $LOAD,
    'all of it happened under load');

###############################################################################
# No request failed

for my $i (0 .. $#fleet) {
    my $r = $res[$i] // {};
    cmp_ok($r->{count} // 0, '>', 3 * $LOAD,
        "instance $i: " . ($r->{count} // 0) . ' requests');
    is_deeply($r->{by_status}, { 200 => $r->{count} },
        "instance $i: every response 200");
    is($r->{bad}, 0, "instance $i: every request carried a bearer token");
}

###############################################################################
# One log line per instance for the outage, one for the return

for my $i (0 .. $#fleet) {
    my $t = $fleet[$i];
    my @failed = failed_lines($t);
    my $st = ImburseRedis::status($t)->{fleet};
    is(scalar @failed, 1, "instance $i: one \"fleet Redis failed\" line "
        . "for the outage ($st->{redis_errors} failed Redis operations)")
        or diag join "\n", @failed;
    like($failed[0] // '', qr/\[error\].*imburse key "main": fleet Redis failed: Redis unreachable, exchanging without the fleet/,
        "instance $i: it says what happened and what the instance does");
    cmp_ok($st->{redis_errors}, '>=', 1, "instance $i: status counts the "
        . 'Redis errors');
    is(scalar back_lines($t), 1, "instance $i: one \"is back\" line");
    ok(!$st->{redis_down}, "instance $i: status: Redis not down");

    # nginx's own upstream error: once per failed attempt (spaced by
    # retry=), not once per request
    my @connect = $t->grep_error_log(qr/connect\(\) failed/);
    cmp_ok(scalar @connect, '<=', $st->{redis_errors},
        "instance $i: nginx's connect() errors: one per attempt at most ("
        . scalar(@connect) . ')');
}

my $down_exchanges = $exchanges_down - 1;
cmp_ok($down_exchanges, '>=', 3, "outage: the instances exchanged on their "
    . "own ($down_exchanges exchanges)");

my @hits_after = map { ImburseRedis::status($_)->{fleet}{hits} } @fleet;
my $new_hits = 0;
$new_hits += $hits_after[$_] - $hits_at_restart[$_] for 0 .. $#fleet;
cmp_ok($new_hits, '>=', 2, "after the restart: instances take tokens from "
    . "the fleet again ($new_hits fleet hits)");
my $pttl = $redis->pttl($TOKEN_KEY);
ok($pttl > 0 && $pttl <= 4000, "Redis holds a copy with the token's "
    . "lifetime (PTTL $pttl ms)");

###############################################################################

$_->stop for @fleet;
done_testing;

sub failed_lines { $_[0]->grep_error_log(qr/fleet Redis failed/) }
sub back_lines { $_[0]->grep_error_log(qr/fleet Redis is back/) }

sub wait_until {
    my ($seconds, $cond) = @_;
    my $deadline = time + $seconds;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return $cond->();
}

sub diag_logs {
    diag "instance $_:\n" . $fleet[$_]->log_tail(10) for 0 .. $#fleet;
}
