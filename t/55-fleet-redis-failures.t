#!/usr/bin/perl

# A fleet's Redis that cannot be used: wrong password, no password where one
# is required, nothing listening, a server that never answers, and servers
# that answer garbage.  For each: one clear error line naming the key and
# the cause, the instance exchanges on its own (every request 200), it
# tries Redis again after retry= without logging again, nginx does not
# crash, and no secret (Redis password, private key, token) reaches a log.
#
# One instance, one key per case (each with its own fleet location), 2 s
# tokens so that the keys refresh every second during the run.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseRedis;
use Time::HiRes qw(time);

my $PRIVATE  = 'ZmxlZXQtcmVkaXMtZmFpbHVyZXMta2V5LTAxMjM0NTY3ODk=';
my $PASSWORD = 'redis-pass-7f3a9c2e4b1d';
my $WRONG    = 'not-the-redis-pass-0000';

my $redis = ImburseRedis->new(password => $PASSWORD);
my ($nothing) = ImburseTest::free_ports(1);    # nothing listens there
# a read-only replica (of a master that does not exist): GET works, SET not
my $replica = ImburseRedis->new(args => ['--replicaof', '127.0.0.1', $nothing]);

my %fake = (
    silent    => ImburseRedis::Fake->new(reply => undef),
    http      => ImburseRedis::Fake->new(reply => "HTTP/1.0 200 OK\r\n\r\nhello"),
    truncated => ImburseRedis::Fake->new(reply => "\$5\r\nab"),
    integer   => ImburseRedis::Fake->new(reply => ":1\r\n"),
    toobig    => ImburseRedis::Fake->new(
                     reply => "\$100000\r\n" . ('x' x 100000) . "\r\n"),
    notours   => ImburseRedis::Fake->new(reply => "\$5\r\nhello\r\n"),
);

# key => [Redis address, lines for its fleet location, cause logged]
my %CASE = (
    rightpw   => [$redis->address,
                  'imburse_redis_password_file %%PREFIX%%/redis.pass;', undef],
    wrongpw   => [$redis->address,
                  'imburse_redis_password_file %%PREFIX%%/wrong.pass;',
                  'AUTH refused'],
    nopw      => [$redis->address, '', 'command refused'],
    replica   => [$replica->address, '', 'command refused'],
    nowhere   => ["127.0.0.1:$nothing", '', 'Redis unreachable'],
    silent    => [$fake{silent}->address, 'imburse_redis_timeout 300ms;',
                  'Redis timed out'],
    http      => [$fake{http}->address, '', 'not a Redis reply'],
    # Redis was reached: the cause must not say it was not
    truncated => [$fake{truncated}->address, '',
                  qr/(?!Redis unreachable)[^,]+/],
    integer   => [$fake{integer}->address, '', 'unexpected reply to GET'],
    # a well-formed reply, bigger than any sealed token (64 KiB at most)
    toobig    => [$fake{toobig}->address, '', 'reply too big'],
    # a bulk string that is no sealed token of ours, then SET NX answered
    # the same way
    notours   => [$fake{notours}->address, '', 'unexpected reply to SET NX'],
);
my @KEYS = sort keys %CASE;

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->write_file('redis.pass', "$PASSWORD\n");
$t->write_file('wrong.pass', "$WRONG\n");
$t->start_standin(keys => { map { ("pk-$_" => $PRIVATE) } @KEYS },
                  global => { ttl_ms => 2000 });

my $conf = '';
for my $k (@KEYS) {
    my ($address, $lines) = @{$CASE{$k}};
    $conf .= <<"NGINX";
    imburse_api_key $k public_key=pk-$k private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/exchange fleet=/_imburse/fleet/$k
                    timeout=2s retry=1s;
NGINX
}
$conf .= <<'NGINX';
    server {
        listen 127.0.0.1:%%PORT%%;

        location ~ ^/k/(?<k>[a-z]+)/ {
            imburse_auth $k;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location = /status {
            imburse_status;
        }

        %%EXCHANGE_LOCATION:/_imburse/exchange%%
NGINX
for my $k (@KEYS) {
    my ($address, $lines) = @{$CASE{$k}};
    $conf .= <<"NGINX";

        location = /_imburse/fleet/$k {
            internal;
            imburse_redis_pass $address;
            $lines
        }
NGINX
}
$conf .= <<'NGINX';
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "$http_authorization"; }
    }
NGINX
$t->run($conf);

###############################################################################
# Scenario: 3 s of requests on every key, each refreshing every second

my (%by, %bearer);
my $end = time + 3;
while (time < $end) {
    for my $k (@KEYS) {
        my $r = $t->http_get("/k/$k/x");
        $by{$k}{$r->{status}}++;
        $bearer{$k}++ if $r->{body} =~ /^Bearer tok-\S+$/;
    }
}

my $s = $t->stats;
for my $k (@KEYS) {
    my $cause = $CASE{$k}[2];
    my $n = $by{$k}{200} // 0;
    my $st = ImburseRedis::status($t, $k);
    my @failed = $t->grep_error_log(qr/imburse key "\Q$k\E": fleet Redis failed/);

    is_deeply($by{$k}, { 200 => $n }, "$k: $n requests, every response 200");
    is($bearer{$k} // 0, $n, "$k: each with a bearer token");
    cmp_ok($s->{by_tenant}{"pk-$k"}{exchanges} // 0, '>=', 2,
        "$k: the instance refreshed its token (exchanges: "
        . ($s->{by_tenant}{"pk-$k"}{exchanges} // 0) . ')');

    if (!defined $cause) {
        is(scalar @failed, 0, "$k: the right password works: no error");
        is($st->{fleet}{redis_errors}, 0, "$k: status: no Redis error");
        cmp_ok($st->{fleet}{locks_taken}, '>=', 2,
            "$k: status: it exchanged under the fleet lock");
        next;
    }

    is(scalar @failed, 1, "$k: one error line for the whole run")
        or diag join "\n", @failed;
    my $re = ref $cause ? $cause : qr/\Q$cause\E/;
    like($failed[0] // '', qr/\[error\] .*imburse key "\Q$k\E": fleet Redis failed: $re, exchanging without the fleet/,
        ref $cause ? "$k: it names the cause" : "$k: it says \"$cause\"");
    cmp_ok($st->{fleet}{redis_errors}, '>=', 2, "$k: status: Redis tried "
        . "again after retry= ($st->{fleet}{redis_errors} errors)");
    ok($st->{fleet}{redis_down}, "$k: status: Redis down");
    is($st->{fleet}{locks_taken}, 0, "$k: status: no fleet lock taken");
    is($st->{failures}, 0, "$k: status: no exchange failed");
}

my @open = $t->grep_error_log(qr/the fleet's copy does not open/);
like($open[0] // '', qr/imburse key "notours": the fleet's copy does not open with this key/,
    'notours: a copy that does not open is reported');

###############################################################################

$t->stop;
$t->logs_lack('Redis password' => $PASSWORD, 'wrong Redis password' => $WRONG,
              'private key' => $PRIVATE);
my @tokens = map { $_->{token} } @{$t->stats->{tokens}};
my $logs = $t->error_log . $t->stderr_log
    . ImburseTest::read_from($t->prefix . '/access.log', 0);
my @leaked = grep { index($logs, $_) >= 0 } @tokens;
ok(@tokens && !@leaked, 'logs contain none of the ' . scalar(@tokens)
    . ' tokens') or diag "leaked: @leaked";
done_testing;
