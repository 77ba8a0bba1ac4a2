#!/usr/bin/perl

# The instance that holds the fleet lock dies (SIGKILL of its master and
# workers) in the middle of its exchange, which its refresh timer started.
# The lock it took (SET NX PX timeout=) expires by itself; meanwhile the
# other instances, in their refresh window, keep serving with their valid
# token and look again every half second; once the lock has expired one of
# them takes it, exchanges and shares the new token.  No request fails
# while a valid token exists.
#
# 12 s tokens (refresh 6 s ahead), timeout=3s (the lock's lifetime), an
# identity service that takes 5 s for the doomed exchange.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use ImburseLoad ();
use Time::HiRes qw(time sleep);

my $PUBLIC  = 'pk-fleet-holder';
my $PRIVATE = 'ZmxlZXQtbG9jay1ob2xkZXIta2lsbGVkLTAxMjM0NTY3ODk=';
my $TTL     = 12;

my $redis = ImburseRedis->new;
my @fleet = ImburseRedis::start_fleet(
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    key_params  => 'timeout=3s retry=1s',
    standin     => { global => { ttl_ms => $TTL * 1000 } },
);
my $imburse = $fleet[0];    # its stand-in runs on, whoever dies
my $TOKEN_KEY = ImburseRedis::token_key($PUBLIC);
my $LOCK_KEY  = ImburseRedis::lock_key($PUBLIC);

###############################################################################
# Warm-up: one token (T1) for the fleet

is($_->http_get('/api/warmup')->{status}, 200, 'warm-up: 200') for @fleet;
my $stats = $imburse->stats;
is($stats->{exchanges}, 1, 'warm-up: one exchange for the fleet');
my $t1 = $stats->{tokens}[0];
my $copy_before = $redis->get($TOKEN_KEY);

###############################################################################
# Scenario: in the refresh window (6 s after T1, up to 5 % later) the
# instance whose refresh timer fires first takes the lock and starts an
# exchange that takes 5 s; no request is needed for it

$imburse->standin_set(global => { ttl_ms => $TTL * 1000, delay_ms => 5000 });
my @taken = map { ImburseRedis::status($_)->{fleet}{locks_taken} } @fleet;
my %exchanges_before = map { ("$_" => ImburseRedis::status($_)->{exchanges}) }
    @fleet;
my $window = $t1->{time} + $TTL / 2;
sleep $window - 0.2 - time if $window - 0.2 > time;
is($imburse->stats->{exchanges}, 1, 'before the window: no refresh yet');

my $holder = ImburseRedis::lock_holder(2, \@fleet, \@taken);
ok(defined $holder, 'in the window, an instance took the fleet lock by '
    . 'itself');
$holder //= 0;
my $doomed = $fleet[$holder];
my @survivors = grep { $_ != $doomed } @fleet;

ok(ImburseRedis::status($doomed)->{exchange_in_flight},
    'and is exchanging');
my $r = $doomed->http_get('/api/refresh');
is($r->{status}, 200, 'a request meanwhile: 200 at once');
is($r->{body}, "Bearer $t1->{token}", 'with the current token');
my $nonce = $redis->get($LOCK_KEY) // '';
like($nonce, qr/^\S{16,}$/, 'it holds the fleet lock (a nonce in Redis)');
my $lock_pttl = $redis->pttl($LOCK_KEY);
ok($lock_pttl > 0 && $lock_pttl <= 3000,
    "the lock expires by itself (PTTL $lock_pttl ms, timeout=3s)");

# load on the two others until just before T1 expires
my $load_seconds = $t1->{expires_ms} / 1000 - 0.3 - time;
my @marks = map { $_->access_mark } @survivors;
my $load = ImburseRedis::in_background(sub {
    my @r = ImburseRedis::in_parallel(sub {
        ImburseLoad::load_for($_[0]->url('/api/x'), $load_seconds, 2,
            check => sub { ($_[0]{content} // '') =~ /^Bearer tok-\S+$/ });
    }, @survivors);
    return { results => \@r };
});

# the survivors find the lock taken and keep their token
sleep 0.5;
for my $i (0, 1) {
    cmp_ok(ImburseRedis::status($survivors[$i])->{fleet}{locks_lost}, '>=', 1,
        'survivor ' . ($i + 1) . ' found the lock taken');
}

###############################################################################
# The lock holder dies

# (the identity service is quick again for the next exchange)
$imburse->standin_set(global => { ttl_ms => $TTL * 1000, delay_ms => 300 });
ImburseRedis::crash_nginx($doomed);
my $killed_at = time;
ok(!ImburseTest::port_open($doomed->port), 'the first instance is dead');
ok(defined $redis->get($LOCK_KEY), 'its lock is still in Redis');

my $copy_after;
my $shared = wait_until(5, sub {
    $copy_after = $redis->get($TOKEN_KEY);
    defined $copy_after && $copy_after ne $copy_before;
});
ok($shared, sprintf('a new token is in Redis %.1f s after the kill',
    time - $killed_at));
ok(!defined $redis->get($LOCK_KEY), 'and the lock was released');

my @res = @{ $load->()->{results} // [] };

###############################################################################
# Who exchanged, when

my $t3 = $survivors[0]->http_get('/api/after')->{body} =~ s/^Bearer //r;

# the dead instance's exchange is recorded when the stand-in answers it, 5 s
# after it began, whoever is still there to read the answer
for (1 .. 100) {
    last unless $imburse->stats->{inflight};
    sleep 0.1;
}
my @ids = grep { $_->{status} == 200 } @{$imburse->identity_requests};
is(scalar @ids, 3, 'identity: three exchanges (warm-up, the dead one, the '
    . 'take-over)');
my ($takeover) = grep { ($_->{token} // '') eq $t3 } @ids;
my ($dead) = grep { $_->{token} ne $t3 && $_->{token} ne $t1->{token} } @ids;
ok($takeover && $dead, 'the survivors use the take-over\'s token');
# a record's time is when the answer was sent, after the scripted delay
my $dead_started = ($dead->{time} // 0) - 5;
my $takeover_started = ($takeover->{time} // 0) - 0.3;
cmp_ok($takeover_started - $dead_started, '>=', 2.9, sprintf(
    'the take-over started after the lock expired (%.1f s after the dead '
    . 'exchange, lock 3 s)', $takeover_started - $dead_started));
cmp_ok($takeover_started, '<', $t1->{expires_ms} / 1000 - 1,
    'and well before the old token expired');
cmp_ok($redis->pttl($TOKEN_KEY), '>', ($TTL - 3) * 1000,
    "Redis holds the new token's copy, with its lifetime");

# A survivor may take the lock just as the other one releases it with the
# new copy in Redis: it then finds the copy and lets the lock go unused.
my ($taken, $exchanged) = (0, 0);
for (@survivors) {
    my $s = ImburseRedis::status($_);
    $taken += $s->{fleet}{locks_taken};
    $exchanged += $s->{exchanges} - $exchanges_before{"$_"};
}
cmp_ok($taken, '>=', 1, 'a survivor took the lock after it expired');
is($exchanged, 1, 'and the survivors made one exchange between them');

###############################################################################
# No request of the survivors failed, none waited

for my $i (0 .. $#survivors) {
    my $t = $survivors[$i];
    my $n = $i + 1;
    my $rr = $res[$i] // {};
    cmp_ok($rr->{count} // 0, '>', 20, "instance $n: "
        . ($rr->{count} // 0) . ' requests during the take-over');
    is_deeply($rr->{by_status}, { 200 => $rr->{count} },
        "instance $n: every response 200");
    is($rr->{bad}, 0, "instance $n: every request carried a bearer token");
    my %st;
    $st{$_}++ for $t->token_statuses(since => $marks[$i]);
    ok(!$st{MISS} && !$st{ERROR}, "instance $n: no request waited or failed")
        or diag explain \%st;
    my $now = $t->http_get('/api/after');
    is($now->{body}, "Bearer $t3", "instance $n: now uses the new token");
}

###############################################################################

$doomed->check_error_log(allow => qr/exited on signal 9/);
$_->stop for @survivors;
done_testing;

sub wait_until {
    my ($seconds, $cond) = @_;
    my $deadline = time + $seconds;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}
