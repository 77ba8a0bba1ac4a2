#!/usr/bin/perl

# The fleet tier: nginx instances with fleet= share one token per key
# through Redis.  A cold burst across three instances (two workers each,
# 300 requests over 30 connections on each, all at once, an identity
# service that takes 0.3 s) makes ONE exchange for the whole fleet: the
# instance that takes the fleet's lock (SET NX PX) exchanges and stores the
# token in Redis, the others read it from there.
#
# What Redis holds is sealed (AES-256-GCM, key derived from the tenant's
# private key): redis-cli GET does not show the token, and the key names
# carry a fingerprint of the public key, not the key itself.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use MIME::Base64 qw(encode_base64);

my $PUBLIC  = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE = 'ZmxlZXQtY29sZC1idXJzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg==';

my $redis = ImburseRedis->new;
my @fleet = ImburseRedis::start_fleet(
    public_key  => $PUBLIC,
    private_key => $PRIVATE,
    redis       => $redis->address,
    key_params  => 'timeout=2s retry=1s',
    standin     => { global => { delay_ms => 300 } },
);
my $imburse = $fleet[0];    # runs the stand-in

###############################################################################
# Scenario: 900 requests, 300 on each instance, none with a token yet

my @res = ImburseRedis::burst('/api/cold', 300, 30, \@fleet);
my $stats = $imburse->stats;
my $token = $stats->{tokens}[0]{token} // '';

for my $i (0 .. $#fleet) {
    my $r = $res[$i];
    is_deeply($r->{by_status}, { 200 => 300 },
        "instance $i: 300 requests, all 200") or diag explain $r;
    is_deeply($r->{bodies}, { "Bearer $token" => 300 },
        "instance $i: every request carried the fleet's one token");
}
is($stats->{exchanges}, 1, 'identity: one exchange for the whole fleet')
    or diag explain [map { ImburseRedis::status($_) } @fleet];
is($stats->{rejected}, 0, 'identity: no signature rejected');
is($stats->{max_inflight}, 1, 'identity: never two exchanges at once');

my @st = map { ImburseRedis::status($_)->{fleet} } @fleet;
# a late instance may get the lock just after it was let go: its second
# read then finds the copy and it lets go unused
cmp_ok(sum(map { $_->{locks_taken} } @st), '>=', 1,
    'status: an instance took the fleet lock');
cmp_ok(sum(map { $_->{locks_lost} } @st), '>=', 2,
    'status: the others found the lock taken (the bursts did collide)');
is(sum(map { $_->{hits} } @st), 2,
    'status: and took the token from the fleet once it was there');
is(sum(map { $_->{redis_errors} } @st), 0, 'status: no Redis error');
is(sum(map { ImburseRedis::status($_)->{exchanges} } @fleet), 1,
    'status: one exchange counted across the fleet');

###############################################################################
# What Redis holds, read with redis-cli

my @keys = $redis->scan('imburse:*');
is_deeply(\@keys, [ImburseRedis::token_key($PUBLIC)],
    'redis: one key, the token\'s (the lock was released)');
my $name = $keys[0] // '';
like($name, qr/^imburse:[0-9a-f]{16}:token$/,
    "redis: the key is namespaced by a fingerprint ($name)");
unlike($name, qr/\Q$PUBLIC\E/, 'redis: the key does not name the public key');

my $blob = $redis->get($name) // '';
ok(length $token > 20, 'the stand-in issued a token');
cmp_ok(length $blob, '>', length $token, 'redis: the copy is there');
ok(index($blob, $token) < 0, 'redis: the copy does not hold the token');
my ($random) = $token =~ /^tok-\d+-(.+)$/;
ok(index($blob, $random // $token) < 0,
    'redis: nor its random part');
ok(index($blob, encode_base64($token, '')) < 0, 'redis: nor its base64');
unlike($blob, qr/tok-|\Q$PUBLIC\E/, 'redis: nothing readable in the copy');
cmp_ok(length $blob, '==', length($token) + 45,
    'redis: the copy is the token sealed (version, nonce, times, tag)');
my $pttl = $redis->pttl($name);
cmp_ok($pttl, '>', 3_590_000, "redis: the copy expires with the token "
    . "(PTTL $pttl ms, token 3600 s)");
cmp_ok($pttl, '<=', 3_600_000, 'redis: not after it');

###############################################################################

for my $t (@fleet) {
    $t->stop;
    $t->logs_lack(token => $token, 'private key' => $PRIVATE);
}
done_testing;

sub sum { my $n = 0; $n += $_ // 0 for @_; $n }
