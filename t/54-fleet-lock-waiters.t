#!/usr/bin/perl

# Instances with no token while another instance holds the fleet lock: they
# do not exchange, they read the fleet's copy every 50 ms and go on as soon
# as it appears.  If it never does (the lock's holder died), they wait about
# as long as a lock lives (timeout=; docs/fleet.md says at most 1.5 x
# timeout=) and then exchange on their own: requests are late, never
# failed, and each instance makes one exchange, not one per request.
#
# The lock of a dead instance is played by redis-cli: SET with a nonce no
# instance owns.  timeout=2s: the wait is bounded by 3 s.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use Time::HiRes qw(time sleep);

my $PUBLIC  = 'pk-fleet-waiters';
my $PRIVATE = 'ZmxlZXQtbG9jay13YWl0ZXJzLWtleS0wMTIzNDU2Nzg5YWI=';

my $redis = ImburseRedis->new;
my @fleet = ImburseRedis::start_fleet(
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    key_params  => 'timeout=2s retry=1s',
);
my ($first, @cold) = @fleet;
my $imburse = $first;
my $TOKEN_KEY = ImburseRedis::token_key($PUBLIC);
my $LOCK_KEY  = ImburseRedis::lock_key($PUBLIC);

sub dead_lock {
    $redis->cli('SET', $LOCK_KEY, 'nonce-of-an-instance-that-died',
                'PX', 30000);
}

###############################################################################
# Scenario: the copy appears while they wait

is($first->http_get('/api/first')->{status}, 200, 'first instance: 200');
my $copy = $redis->get($TOKEN_KEY);
ok(defined $copy, 'its token is in Redis');

# as if another instance were exchanging right now
$redis->cli('DEL', $TOKEN_KEY);
dead_lock();

my $burst = ImburseRedis::in_background(sub {
    { results => [ImburseRedis::burst('/api/wait', 20, 5, \@cold)] } });
sleep 1.3;    # the requests start 0.3 s after the burst is called
$redis->set($TOKEN_KEY, $copy, 3_000_000);
my @res = @{ $burst->()->{results} };

my $token = $imburse->stats->{tokens}[0]{token};
for my $i (0, 1) {
    my $r = $res[$i];
    my $n = $i + 1;
    is_deeply($r->{by_status}, { 200 => 20 }, "instance $n: 20 requests, "
        . 'all 200') or diag explain $r;
    is_deeply($r->{bodies}, { "Bearer $token" => 20 },
        "instance $n: all with the fleet's token");
    cmp_ok($r->{max_ms}, '<', 2000, sprintf("instance $n: served once the "
        . 'copy appeared (slowest %.0f ms, copy after 1 s)', $r->{max_ms}));
    cmp_ok($r->{max_ms}, '>', 700, "instance $n: not before");
    is(ImburseRedis::status($cold[$i])->{fleet}{hits}, 1,
        "instance $n: one token taken from the fleet");
}
is($imburse->stats->{exchanges}, 1, 'identity: no exchange while waiting');

###############################################################################
# Scenario: the lock's holder died, no copy will come

# the two instances start again with no token
for my $t (@cold) {
    $t->stop;
    $t->start;
}
$redis->cli('DEL', $TOKEN_KEY);
dead_lock();

@res = ImburseRedis::burst('/api/alone', 20, 5, \@cold);

for my $i (0, 1) {
    my $r = $res[$i];
    my $n = $i + 1;
    is_deeply($r->{by_status}, { 200 => 20 }, "instance $n: 20 requests, "
        . 'all 200') or diag explain $r;
    cmp_ok($r->{max_ms}, '>', 1800, sprintf("instance $n: waited for the "
        . 'copy as long as a lock lives (slowest %.0f ms, timeout=2s)',
        $r->{max_ms}));
    cmp_ok($r->{max_ms}, '<', 3500, "instance $n: at most 1.5 x timeout, "
        . 'then exchanged alone');
    my $st = ImburseRedis::status($cold[$i]);
    is($st->{exchanges}, 1, "instance $n: one exchange for its 20 requests");
    cmp_ok($st->{fleet}{locks_lost}, '>=', 1,
        "instance $n: it found the lock taken");
}
is($imburse->stats->{exchanges}, 3,
    'identity: one exchange per instance that gave up waiting');
is($redis->get($LOCK_KEY), 'nonce-of-an-instance-that-died',
    'the dead instance\'s lock was left alone (it expires by itself)');

###############################################################################

$_->stop for @fleet;
done_testing;
