#!/usr/bin/perl

# imburse_status with a fleet: each key with fleet= has a "fleet" object in
# the JSON (hits, locks_taken, locks_lost, redis_errors, redis_down), a key
# without it has "fleet": null, and ?format=prometheus has the counters
# imburse_fleet_hits_total, imburse_fleet_locks_taken_total,
# imburse_fleet_locks_lost_total and imburse_fleet_redis_errors_total and
# the gauge imburse_fleet_redis_down; a request served with the fleet's
# copy logs $imburse_token_status FLEET.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $PUBLIC   = 'pk-fleet-status';
my $PRIVATE  = 'ZmxlZXQtc3RhdHVzLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=';
my $PASSWORD = 'status-redis-pass-5e8d1c';

my $redis = ImburseRedis->new(password => $PASSWORD);
my @fleet = ImburseRedis::start_fleet(
    size        => 2,
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    redis_conf  => 'imburse_redis_password_file redis.pass;',
    key_params  => 'timeout=2s retry=1s',
    standin     => { global => { ttl_ms => 4000 } },
    extra       => "imburse_api_key solo public_key=pk-solo\n"
                 . "    private_key_file=%%KEYFILE:main%% exchange=/_imburse/main;",
    before_run  => sub { $_[0]->write_file('redis.pass', "$PASSWORD\n") },
);
my ($first, $second) = @fleet;

# the first instance exchanges for the fleet, the second takes its copy
is($first->http_get('/api/one')->{status}, 200, 'first instance: 200');
is($second->http_get('/api/two')->{status}, 200, 'second instance: 200');
is($first->stats->{exchanges}, 1, 'one exchange for both');
is_deeply([$first->token_statuses(wait_for => 1)], ['MISS'],
    'access log: the first instance waited for its exchange (MISS)');
is_deeply([$second->token_statuses(wait_for => 1)], ['FLEET'],
    'access log: the second one for the fleet\'s copy (FLEET)');

###############################################################################
# JSON

my $sa = json($first);
my $sb = json($second);
is_deeply($sa->{keys}{main}{fleet}, { hits => 0, locks_taken => 1,
    locks_lost => 0, redis_errors => 0, redis_down => JSON::PP::false },
    'json: the first instance took the fleet lock');
is_deeply($sb->{keys}{main}{fleet}, { hits => 1, locks_taken => 0,
    locks_lost => 0, redis_errors => 0, redis_down => JSON::PP::false },
    'json: the second one took the token from the fleet');
is($sb->{keys}{main}{exchanges}, 0, 'json: the second one did not exchange');
ok($sb->{keys}{main}{valid}, 'json: and has a valid token');
ok(exists $sa->{keys}{solo} && !defined $sa->{keys}{solo}{fleet},
    'json: a key without fleet= has "fleet": null');

###############################################################################
# Prometheus

for my $i (0, 1) {
    my $t = $fleet[$i];
    my $s = json($t)->{keys}{main}{fleet};
    my $text = $t->http_get('/status?format=prometheus')->{body};
    for my $m (qw(hits locks_taken locks_lost redis_errors)) {
        my $name = $m eq 'redis_errors' ? 'imburse_fleet_redis_errors_total'
                                        : "imburse_fleet_${m}_total";
        like($text, qr/^# TYPE \Q$name\E counter$/m,
            "prometheus $i: $name is a counter");
        my ($v) = $text =~ /^\Q$name\E\{key="main"\} (\d+)$/m;
        is($v, $s->{$m}, "prometheus $i: $name matches the JSON ($s->{$m})");
    }
}

###############################################################################
# Redis fails: the figures say so

$redis->crash;
my $token = $first->stats->{tokens}[0];
# 4 s token, refreshed 2 s ahead by the key's timer (in its window): the
# refresh finds Redis down and exchanges on its own
my $window = $token->{time} + 2.3;
sleep $window - time if $window > time;
is($first->http_get('/api/refresh')->{status}, 200, 'Redis down: still 200');
my $s;
my $deadline = time + 3;
while (time < $deadline) {
    $s = json($first)->{keys}{main};
    last if $s->{exchanges} >= 2 && !$s->{exchange_in_flight};
    sleep 0.05;
}
# a slow machine may see the next refresh (2 s on) too: one Redis error an
# exchange after the first
cmp_ok($s->{exchanges}, '>=', 2, 'Redis down: the instance refreshed on its '
    . 'own');
is($s->{fleet}{redis_errors}, $s->{exchanges} - 1,
    'json: a Redis error a refresh');
ok($s->{fleet}{redis_down}, 'json: Redis down');
my $text = $first->http_get('/status?format=prometheus')->{body};
my ($errors) = $text =~ /^imburse_fleet_redis_errors_total\{key="main"\} (\d+)$/m;
cmp_ok($errors // 0, '>=', $s->{fleet}{redis_errors},
    'prometheus: the Redis errors');
like($text, qr/^# TYPE imburse_fleet_redis_down gauge\nimburse_fleet_redis_down\{key="main"\} 1$/m,
    'prometheus: the gauge imburse_fleet_redis_down says so');
like($text, qr/^imburse_exchanges_total\{key="solo"\} \d+$/m,
    'prometheus: the key without fleet= has its exchange figures');
unlike($text, qr/^imburse_fleet_[a-z_]+\{key="solo"\}/m,
    'prometheus: and no fleet figures (as "fleet": null in the JSON)');

###############################################################################
# No secret in the status pages

my $pages = join '', map { $_->http_get('/status')->{body}
    . $_->http_get('/status?format=prometheus')->{body} } @fleet;
my @tokens = map { $_->{token} } @{$first->stats->{tokens}};
ok(!grep({ index($pages, $_) >= 0 } @tokens, $PASSWORD, $PRIVATE),
    'status pages hold no token, password or key');

$_->stop for @fleet;
done_testing;

sub json {
    my ($t) = @_;
    my $r = $t->http_get('/status');
    return eval { decode_json($r->{body}) } // do {
        diag "status: $r->{status} $r->{body}"; {} };
}
