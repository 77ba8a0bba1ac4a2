#!/usr/bin/perl

# Token lifetime: `expires` (epoch milliseconds, as a JSON string or number,
# or else the JWT `exp` claim) bounds the reuse of a token; an expired token
# is exchanged again.  Within `refresh` of expiry a token that served a
# request is refreshed in the background, without a request, and nobody
# waits; a token that served none is not refreshed; if the refresh fails
# the old token keeps being used while valid (STALE), then the client gets
# 503.
#
# All scenarios share one nginx, one key (tenant) each; each step is timed
# from the real expiry of the token the stand-in issued.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time sleep);

# name => [ imburse_api_key extras, stand-in behaviour for the tenant ]
my %scenario = (
    str   => [ '',           { ttl_ms => 3000 } ],
    num   => [ '',           { ttl_ms => 3000, expires => 'number' } ],
    jwt   => [ '',           { ttl_ms => 3000, expires => 'none',
                               token_kind => 'jwt' } ],
    ahead => [ 'refresh=4s', { ttl_ms => 8000 } ],
    stale => [ 'refresh=4s retry=5s', { ttl_ms => 12000 } ],
);
my @names = qw(str num jwt ahead stale);

my $t = ImburseTest->new;
my (%keys, %tenants, $conf);
for my $name (@names) {
    my $private = encode_base64("secret-of-$name-for-tests-only", '');
    $t->write_key($name, $private);
    $keys{"pk-$name"} = $private;
    $tenants{"pk-$name"} = $scenario{$name}[1];
}
$t->start_standin(keys => \%keys, tenants => \%tenants);

# One key, one protected location and one exchange location per scenario:
#
#   imburse_api_key str public_key=pk-str private_key_file=.../str.key
#                   exchange=/_imburse/str;
#   location /str/ { imburse_auth str; proxy_pass <upstream>; }
#   location = /_imburse/str { internal; ...; proxy_pass <identity>; }
my ($keys_conf, $locations) = ('', '');
for my $name (@names) {
    $keys_conf .= <<"EOF";
    imburse_api_key $name public_key=pk-$name
                    private_key_file=%%KEYFILE:$name%%
                    exchange=/_imburse/$name $scenario{$name}[0];
EOF
    $locations .= <<"EOF";
        location /$name/ {
            imburse_auth $name;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }
        location = /_imburse/$name {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
EOF
}
$t->run(<<"EOF");
$keys_conf
    server {
        listen 127.0.0.1:%%PORT%%;
$locations
    }
EOF

# GET /NAME/ -> { status, bearer (as seen upstream), st ($imburse_token_status),
#                 ms, retry_after }
sub get {
    my ($name) = @_;
    my $amark = $t->access_mark;
    my $before = scalar @{$t->upstream_requests};
    my $t0 = time;
    my $r = $t->http_get("/$name/x");
    my $ms = (time - $t0) * 1000;
    my $up = $t->upstream_requests;
    my ($st) = $t->token_statuses(since => $amark, wait_for => 1);
    return { status => $r->{status}, ms => $ms, st => $st // '-',
             retry_after => $r->{headers}{'retry-after'},
             bearer => @$up > $before ? "@{$up->[-1]{authorization}}" : '' };
}

sub tokens_of { @{$t->stats->{by_tenant}{"pk-$_[0]"}{tokens} // []} }
sub exchanges_of { $t->exchanges_of("pk-$_[0]") }

# When (epoch seconds) the last token the stand-in issued for NAME expires.
# The timeline follows the real expiries, so a slow machine shifts it
# instead of breaking it.
sub expiry_of {
    my ($name) = @_;
    my ($last) = reverse grep { $_->{public_key} eq "pk-$name" }
        @{$t->stats->{tokens}};
    return $last->{expires_ms} / 1000;
}
sub sleep_until { my $d = $_[0] - time; sleep $d if $d > 0 }

# Poll (at most $secs) until $cond is true.
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    sleep 0.05 until $cond->() || time > $deadline;
    return $cond->();
}

###############################################################################
# Every key gets its first token (MISS), then reuses it (HIT)

my (%first, %expiry);
for my $name (@names) {
    my $r = get($name);
    is($r->{status}, 200, "$name: first request 200");
    is($r->{st}, 'MISS', "$name: first request MISS");
    ($first{$name}) = tokens_of($name);
    $expiry{$name} = expiry_of($name);
    is($r->{bearer}, "Bearer $first{$name}", "$name: first token used");
    $r = get($name);
    is($r->{st}, 'HIT', "$name: second request HIT");
    is($r->{bearer}, "Bearer $first{$name}", "$name: same token");
}
is($t->stats->{rejected}, 0, 'no signature rejected');

# from now on the identity service is slow for "ahead", failing for "stale"
$t->standin_set(tenants => {
    'pk-ahead' => { ttl_ms => 8000, delay_ms => 2000 },
    'pk-stale' => { status => 500 } });

###############################################################################
# The 3 s tokens: used at once, so refreshed in their window (the last half
# of their life) without a request; the new token, never used, is not
# refreshed: once it has expired, whatever the format, a request waits for
# a new exchange

for my $name (qw(str num jwt)) {
    ok(wait_for($expiry{$name} + 0.5 - time, sub { tokens_of($name) == 2 }),
        "$name: refreshed before it expired, without a request");
    my (undef, $second) = tokens_of($name);
    my $expiry2 = expiry_of($name);
    cmp_ok($expiry2, '>', $expiry{$name}, "$name: the new token outlives "
        . 'the first');

    sleep_until($expiry2 + 0.3);
    is(exchanges_of($name), 2, "$name: the unused new token expired, not "
        . 'refreshed');
    my $r = get($name);
    is($r->{status}, 200, "$name expired: 200");
    is($r->{st}, 'MISS', "$name expired: MISS (waited for a new token)");
    is(exchanges_of($name), 3, "$name expired: a new exchange");
    my (undef, undef, $third) = tokens_of($name);
    ok($third && $third ne $second, "$name expired: new token");
    is($r->{bearer}, "Bearer " . ($third // ''), "$name expired: new token used");
}

###############################################################################
# "ahead" (8 s token, refresh=4s): the refresh starts at the window (4 s
# before expiry) without a request; a request 3 s before expiry goes on
# with the current token while the (2 s slow) exchange runs

sleep_until($expiry{ahead} - 3);
SKIP: {
    skip 'too late for the refresh window', 9 if time > $expiry{ahead} - 2.2;
    is(exchanges_of('ahead'), 2, 'ahead, within refresh: the refresh began '
        . 'without a request');
    is(scalar(tokens_of('ahead')), 1, 'ahead: and is not over yet');
    my $r = get('ahead');
    is($r->{status}, 200, 'ahead, within refresh: 200');
    is($r->{st}, 'HIT', 'ahead, within refresh: HIT');
    is($r->{bearer}, "Bearer $first{ahead}",
        'ahead, within refresh: current token used meanwhile');
    cmp_ok($r->{ms}, '<', 1500, 'ahead, within refresh: the client did not '
        . 'wait for the (2 s) exchange');

    ok(wait_for(5, sub { tokens_of('ahead') == 2 }),
        'ahead: the background exchange got a new token');
    my (undef, $second) = tokens_of('ahead');
    sleep 0.3;
    $r = get('ahead');
    is($r->{st}, 'HIT', 'ahead, refreshed: HIT');
    is($r->{bearer}, 'Bearer ' . ($second // ''),
        'ahead, refreshed: the new token is used');
    is(exchanges_of('ahead'), 2, 'ahead: one refresh exchange in all');
}

###############################################################################
# "stale" (12 s token, refresh=4s, retry=5s): the refresh, started at the
# window without a request, fails; the old token is used until it expires
# (STALE), then the client gets 503

sleep_until($expiry{stale} - 3);
SKIP: {
    skip 'too late for the refresh window', 13 if time > $expiry{stale} - 2;
    ok(wait_for(1, sub { $t->grep_error_log(
        qr/\[error\].*imburse.*exchange failed.*status 500/) }),
        'stale: the failed refresh is logged with its status');
    my $r = get('stale');
    is($r->{status}, 200, 'stale, refresh failed: 200');
    is($r->{st}, 'STALE', 'stale, refresh failed: STALE');
    is($r->{bearer}, "Bearer $first{stale}",
        'stale, refresh failed: current token used');

    sleep_until($expiry{stale} - 1.5);
    skip 'too late for the stale check', 9 if time > $expiry{stale} - 0.7;
    $r = get('stale');
    is($r->{status}, 200, 'stale, still valid: 200');
    is($r->{st}, 'STALE', 'stale, still valid, within retry: STALE');
    is($r->{bearer}, "Bearer $first{stale}",
        'stale, still valid: old token used');
    is(exchanges_of('stale'), 2, 'stale: no new attempt within retry=5s');

    sleep_until($expiry{stale} + 0.5);
    $r = get('stale');
    is($r->{status}, 503, 'stale, expired: 503');
    like($r->{retry_after} // '', qr/^[1-9]\d*$/, 'stale, expired: Retry-After');
    is($r->{st}, 'ERROR', 'stale, expired: ERROR');
    is($r->{bearer}, '', 'stale, expired: nothing sent upstream');
}

$t->stop;

done_testing;
