#!/usr/bin/perl

# The identity service's clock and limits.  A stand-in whose clock runs
# ahead of or behind ours: its Date header, its 5-minute timestamp window
# and its "expires" all follow its clock.
# - Offsets of +10 min, -10 min, +1 h, -1 h: the first signature is refused
#   (stale timestamp), its Date gives the offset, the module signs again at
#   once with the identity's time: served, one rejected exchange at most,
#   and the token's remaining life judged on the identity's clock.
# - An offset of 1 s: nothing applied.  The offset changing between
#   exchanges: it follows.  Date missing, garbage, or with Age: no offset
#   from it.  More than a day: logged, not applied.
# - Retry-After of a 429 (seconds, or an HTTP-date): no exchange before
#   then; waiting clients get 503 with that Retry-After.
# - Imburse's error bodies: the error line names the errorCode; a
#   token-shaped part written with JSON's "\/" stays masked.
# - A reload keeps the offset.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep time);

my %CASE = (
    ahead10m  => { clock_offset_s => 600 },
    behind10m => { clock_offset_s => -600 },
    ahead1h   => { clock_offset_s => 3600 },
    behind1h  => { clock_offset_s => -3600 },
    ahead1s   => { clock_offset_s => 1 },
    drift     => { clock_offset_s => 120, ttl_ms => 4000 },
    nodate    => { clock_offset_s => 0, date => 'none' },
    badate    => { clock_offset_s => 0, date => 'garbage' },
    aged      => { clock_offset_s => 600, age => 30 },
    twodays   => { clock_offset_s => 2 * 86400 },
    ra429     => { status => 429, retry_after => 6 },
    radate    => { status => 429, retry_after => 'date:+6' },
    rahuge    => { status => 503, retry_after => '99999999999999999999' },
    codes     => { status => 503, body => '{"errors":[{"errorCode":'
        . '"SERVICE_BUSY","message":"try later"}],"echo":"abcdefghij\/'
        . 'klmnopqrstuvwxyz0123"}' },
    echo      => { status => 500, body => '{"error":"no","echo":'
        . '"abcdefghij\/klmnopqrstuvwxyz0123"}' },
);
my @NAMES = sort keys %CASE;

my $t = ImburseTest->new;
my (%keys, $kc, $loc);
for my $n (@NAMES) {
    my $private = encode_base64("clock-$n-key-0123456789abcdef", '');
    $t->write_key($n, $private);
    $keys{"pk-$n"} = $private;
    $kc .= "    imburse_api_key $n public_key=pk-$n "
        . "private_key_file=%%KEYFILE:$n%% exchange=/_imburse/$n retry=1s;\n";
    $loc .= "        location /$n/ { imburse_auth $n; "
        . "proxy_pass %%UPSTREAM_URL%%; }\n"
        . "        %%EXCHANGE_LOCATION:/_imburse/$n%%\n";
}
$t->start_standin(keys => \%keys,
    tenants => { map { ("pk-$_" => $CASE{$_}) } @NAMES });

my $conf = <<"NGINX";
$kc
    server {
        listen 127.0.0.1:%%PORT%%;
$loc
        location = /status { imburse_status; }
    }
NGINX
$t->run($conf);

sub tenant { $t->stats->{by_tenant}{"pk-$_[0]"} // { exchanges => 0, ok => 0,
    rejected => 0, tokens => [] } }
sub status { decode_json($t->http_get('/status')->{body})->{keys}{$_[0]} }
sub clock_lines { $t->grep_error_log(qr/key "$_[0]": identity clock/) }

###############################################################################
# Offsets of 10 minutes and an hour, either way

for my $n (qw(ahead10m behind10m ahead1h behind1h)) {
    my $off = $CASE{$n}{clock_offset_s};
    my $r = $t->http_get("/$n/x");
    is($r->{status}, 200, "$n: served");
    my $tn = tenant($n);
    cmp_ok($tn->{rejected}, '<=', 1, "$n: at most one rejected exchange "
        . "($tn->{rejected})");
    is($tn->{ok}, 1, "$n: one accepted");
    my $s = status($n);
    cmp_ok(abs($s->{clock_offset} - $off), '<=', 1,
        "$n: status clock_offset $s->{clock_offset} (identity $off s)");
    cmp_ok(abs($s->{expires_in} - 3600), '<=', 3,
        "$n: the token's remaining life on the identity's clock "
        . "($s->{expires_in} s of 3600)");
    my @l = clock_lines($n);
    is(scalar @l, 1, "$n: logged once");
    like($l[0] // '', qr/\[warn\].*identity clock is \d+ s \Q@{[
        $off > 0 ? 'ahead of' : 'behind' ]}\E ours; signing and expiry follow it/,
        "$n: the warning says which way");
}

###############################################################################
# Small, missing, garbage, cached, huge

is($t->http_get('/ahead1s/x')->{status}, 200, 'ahead1s: served');
is(status('ahead1s')->{clock_offset}, 0, 'ahead1s: 1 s is not applied');
is(scalar clock_lines('ahead1s'), 0, 'ahead1s: nothing logged');

is($t->http_get('/nodate/x')->{status}, 200, 'nodate: served');
is(status('nodate')->{clock_offset}, 0, 'nodate: no offset');

is($t->http_get('/badate/x')->{status}, 200, 'badate: served');
is(status('badate')->{clock_offset}, 0, 'badate: no offset');
ok($t->grep_error_log(qr/\[warn\].*key "badate": the identity service's Date "yesterday-ish" is not an HTTP date/),
    'badate: logged');

is($t->http_get('/aged/x')->{status}, 503,
    'aged: a Date with Age is not the clock: no offset, refused');
is(status('aged')->{clock_offset}, 0, 'aged: no offset');
is(tenant('aged')->{exchanges}, 1, 'aged: no second signature');

is($t->http_get('/twodays/x')->{status}, 503, 'twodays: refused');
is(status('twodays')->{clock_offset}, 0, 'twodays: not applied');
ok($t->grep_error_log(qr/\[warn\].*key "twodays": identity clock is 172800 s ahead of ours, more than a day: not applied/),
    'twodays: logged');

###############################################################################
# The offset changes between exchanges (4 s tokens, refreshed at half life)

is($t->http_get('/drift/x')->{status}, 200, 'drift: served');
is(tenant('drift')->{rejected}, 0, 'drift: 120 s is inside the window');
cmp_ok(abs(status('drift')->{clock_offset} - 120), '<=', 1,
    'drift: the offset applied');
$t->standin_set(tenants => { 'pk-drift' => { clock_offset_s => 200,
    ttl_ms => 4000 } });
# The stand-in counts an exchange before its answer reaches the module, so
# wait for what the module made of it.
for (1 .. 100) {
    last if tenant('drift')->{ok} >= 2
        && abs(status('drift')->{clock_offset} - 200) <= 1;
    sleep 0.1;
}
cmp_ok(abs(status('drift')->{clock_offset} - 200), '<=', 1,
    'drift: the new offset applied after the next exchange');
is(scalar clock_lines('drift'), 2, 'drift: logged each time it moved');

###############################################################################
# Retry-After

for my $n (qw(ra429 radate)) {
    my $r = $t->http_get("/$n/x");
    is($r->{status}, 503, "$n: 503");
    cmp_ok($r->{headers}{'retry-after'} // 0, '>=', 5,
        "$n: Retry-After " . ($r->{headers}{'retry-after'} // '-')
        . ' (the identity\'s 6 s, not retry=1s)');
    cmp_ok(status($n)->{next_attempt_in}, '>=', 4,
        "$n: status next_attempt_in");
    sleep 2.5;
    $r = $t->http_get("/$n/y");
    is($r->{status}, 503, "$n: 2.5 s later: 503 at once");
    is(tenant($n)->{exchanges}, 1, "$n: no exchange before Retry-After");
}

# more seconds than an integer holds: the cap of an hour, not ignored
my $r = $t->http_get('/rahuge/x');
is($r->{status}, 503, 'rahuge: 503');
cmp_ok($r->{headers}{'retry-after'} // 0, '>=', 3590,
    'rahuge: Retry-After ' . ($r->{headers}{'retry-after'} // '-')
    . ' (capped at an hour)');
cmp_ok($r->{headers}{'retry-after'} // 0, '<=', 3600, 'rahuge: at most an hour');
is(scalar $t->grep_error_log(qr/key "rahuge": Retry-After/), 0,
    'rahuge: not taken for garbage');

###############################################################################
# Imburse's error body

is($t->http_get('/codes/x')->{status}, 503, 'codes: 503');
my ($line) = $t->grep_error_log(qr/key "codes".*exchange failed/);
like($line // '', qr/\(status 503, errorCode SERVICE_BUSY\)/,
    'codes: the error line names the errorCode');
unlike($line // '', qr/klmnop/, 'codes: no body beyond the code');

is($t->http_get('/echo/x')->{status}, 503, 'echo: 503');
($line) = $t->grep_error_log(qr/key "echo".*exchange failed/);
like($line // '', qr/\(status 500, body "\{"error":"no","echo":"\*{32}"\}"\)/,
    'echo: a body without a code: its excerpt, the token-shaped run '
    . '(with JSON\'s \\/) masked');

###############################################################################
# A reload keeps the offset

my $life = status('ahead10m')->{expires_in};
ok($t->reload($conf), 'reload');
cmp_ok(abs(status('ahead10m')->{clock_offset} - 600), '<=', 1,
    'after the reload: the offset is kept');
cmp_ok(abs(status('ahead10m')->{expires_in} - $life), '<=', 2,
    'after the reload: the remaining life on the identity\'s clock too');

$t->stop;
done_testing;
