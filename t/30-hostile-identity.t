#!/usr/bin/perl

# Hostile identity responses.  Each gets a clear error (503 + Retry-After,
# one [error] "exchange failed" line naming the cause), never a crash, never a
# secret or a forged header upstream; nginx keeps serving the other keys.
#
# One key (tenant) per scenario, all in one nginx, like t/14-failures.t (which
# covers plain statuses, non-JSON, missing fields, CR/LF/space/quote tokens).
# Scenarios the Perl stand-in cannot script (a chunked or gzip body, a drip,
# a redirect with Location) are served by a tiny raw HTTP server in this file
# on %%PORT2%%; it does not check the HMAC signature.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use MIME::Base64 qw(encode_base64 decode_base64);
use IO::Socket::INET ();
use IO::Compress::Gzip qw(gzip $GzipError);
use POSIX ();
use Time::HiRes qw(time sleep);

my $LATER = sub { int(time * 1000) + 3_600_000 };   # expires in an hour
my $OK_EXP = '"expires":"' . $LATER->() . '"';        # (fixed at start)

# Scenarios: [name, behaviour, cause]
#   behaviour: a stand-in behaviour hash, or { raw => PATH } for the raw
#   server; cause: what the [error] line must say.
my @scenarios = (
    # over the module's 32 KB body buffer (the module captures the body
    # itself, nginx's subrequest buffer is not involved)
    [ 'huge100k', { body => '{"pad":"' . ('x' x 100_000)
                      . '","accessToken":"abc",' . $OK_EXP . '}' },
      qr/response too big/ ],
    [ 'huge33k',  { body => '{"pad":"' . ('x' x 33_000)
                      . '","accessToken":"abc",' . $OK_EXP . '}' },
      qr/response too big/ ],
    [ 'toolongtoken', { token => 'a' x 16_385 }, qr/accessToken too long/ ],
    # 100000 '[' is 100 KB: over the body buffer before any parsing
    [ 'nested100k', { body => '[' x 100_000 }, qr/response too big/ ],
    # cJSON's nesting limit is 1000
    [ 'nested30k', { body => '[' x 30_000 }, qr/invalid JSON/ ],
    [ 'nested2000', { body => ('[' x 2000) . (']' x 2000) },
      qr/invalid JSON/ ],
    [ 'nestedobj', { body => ('{"a":' x 5000) . '1' . ('}' x 5000) },
      qr/invalid JSON/ ],
    [ 'notobject', { body => '"accessToken"' }, qr/JSON is not an object/ ],
    [ 'array',     { body => '[{"accessToken":"abc",' . $OK_EXP . '}]' },
      qr/JSON is not an object/ ],
    # not UTF-8: a raw 0xff before the JSON, and inside the token
    [ 'notutf8body', { body => "\xff\xfe" . '{"accessToken":"abc",'
                         . $OK_EXP . '}' }, qr/invalid JSON/ ],
    [ 'notutf8token', { body => qq({"accessToken":"tok\xff\xfe\xc0",)
                          . $OK_EXP . '}' },
      qr/accessToken has characters outside b64token/ ],
    # wrong types
    [ 'tokennumber', { body => '{"accessToken":12345,' . $OK_EXP . '}' },
      qr/no accessToken string/ ],
    [ 'tokenarray',  { body => '{"accessToken":["abc"],' . $OK_EXP . '}' },
      qr/no accessToken string/ ],
    [ 'tokennull',   { body => '{"accessToken":null,' . $OK_EXP . '}' },
      qr/no accessToken string/ ],
    [ 'tokenobject', { body => '{"accessToken":{"a":"b"},' . $OK_EXP . '}' },
      qr/no accessToken string/ ],
    [ 'expobject',   { body => '{"accessToken":"abc","expires":{"ms":1}}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'exparray',    { body => '{"accessToken":"abc","expires":[1,2]}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'exptrue',     { body => '{"accessToken":"abc","expires":true}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expnull',     { body => '{"accessToken":"abc","expires":null}' },
      qr/no usable expires and no JWT exp/ ],
    # negative / zero / overflowing / fractional expires
    [ 'expnegnum',   { body => '{"accessToken":"abc","expires":-5}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expnegstr',   { body => '{"accessToken":"abc","expires":"-5"}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expzeronum',  { body => '{"accessToken":"abc","expires":0}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expzerostr',  { body => '{"accessToken":"abc","expires":"0"}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expoverstr',  { body => '{"accessToken":"abc",'
                         . '"expires":"99999999999999999999999"}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expovernum',  { body => '{"accessToken":"abc",'
                         . '"expires":99999999999999999999999}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'exphuge',     { body => '{"accessToken":"abc","expires":1e400}' },
      qr/no usable expires and no JWT exp|invalid JSON/ ],
    [ 'expfraction', { body => '{"accessToken":"abc","expires":'
                         . $LATER->() . '.5}' },
      qr/no usable expires and no JWT exp/ ],
    [ 'expsmall',    { body => '{"accessToken":"abc","expires":1}' },
      qr/token expired or expiring within a second/ ],
    # tokens with NUL, tab, comma, non-ASCII
    [ 'tokennul',    { body => '{"accessToken":"tok\u0000X-Injected",'
                         . $OK_EXP . '}' },
      qr/accessToken has characters outside b64token/ ],
    [ 'tokennulfirst', { body => '{"accessToken":"\u0000tok",'
                           . $OK_EXP . '}' },
      qr/no accessToken string|outside b64token/ ],
    [ 'tokentab',    { token => "tok\tx" },
      qr/accessToken has characters outside b64token/ ],
    [ 'tokencomma',  { token => 'tok,Bearer-x' },
      qr/accessToken has characters outside b64token/ ],
    [ 'tokenutf8',   { body => qq({"accessToken":"tok\xc3\xa9\xe2\x80\xa8x",)
                         . $OK_EXP . '}' },
      qr/accessToken has characters outside b64token/ ],
    [ 'tokenescapedlf', { body => '{"accessToken":"tok\u000d\u000aX-Injected: 1",'
                            . $OK_EXP . '}' },
      qr/accessToken has characters outside b64token/ ],
    # empty body with 200
    [ 'emptybody',   { body => '' }, qr/empty body/ ],
    # gzip: the module does not decompress (and nginx's proxy does not
    # either): the gzip bytes are not JSON
    [ 'gzip',        { raw => '/gzip' }, qr/invalid JSON/ ],
    # a drip: the status line comes, then nothing for longer than
    # proxy_read_timeout (1s): nginx answers 504
    [ 'driphead',    { raw => '/driphead' },
      qr/identity service error \(status 504\)/ ],
    # headers and part of the body, then silence: nginx's read timeout cuts
    # the body short of its Content-Length
    [ 'dripbody',    { raw => '/dripbody' },
      qr/response cut short \(status 200\)/ ],
    # nginx's proxy does not follow redirects
    [ 'redirect',    { raw => '/redirect' },
      qr/identity service error \(status 302, body ".*moved.*"\)/ ],
    [ 'redirect301', { status => 301 },
      qr/identity service error \(status 301, body "\{"error":"scripted failure"[^)]*"\)/ ],
);

# Successes: [name, behaviour]
my @successes = (
    [ 'chunked',   { raw => '/chunked' } ],
    [ 'farfuture', {
                     body => '{"accessToken":"tok-far-future",'
                         . '"expires":"221845392000000"}' } ],   # year 9000
    [ 'farfuturenum', { body => '{"accessToken":"tok-far-future-num",'
                         . '"expires":221845392000000}' } ],
);

my %extra = (
    driphead => 'proxy_read_timeout 1s;',
    dripbody => 'proxy_read_timeout 1s;',
);

my $t = ImburseTest->new;
my (%keys, %private);
my @all = ('healthy', map { $_->[0] } @scenarios, @successes);
for my $name (@all) {
    $private{$name} = encode_base64("secret-of-$name-for-tests-only", '');
    $t->write_key($name, $private{$name});
    $keys{"pk-$name"} = $private{$name};
}
my %behaviour = map { ("pk-$_->[0]" => $_->[1]) }
    grep { !$_->[1]{raw} } @scenarios, @successes;
$t->start_standin(keys => \%keys, tenants => \%behaviour);

###############################################################################
# The raw server: fork per connection, canned answers by path

my $CHUNKED_TOKEN = 'tok-chunked-' . int(rand 1e9);
my $raw_pid = start_raw_server($t->port2);

sub start_raw_server {
    my ($port) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Listen => 64, ReuseAddr => 1, Proto => 'tcp')
        or die "raw server: listen: $!";
    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid) { close $l; return $pid }
    $SIG{CHLD} = 'IGNORE';
    $SIG{PIPE} = 'IGNORE';
    $l->blocking(1);
    while (getppid() == $parent) {
        my $rin = '';
        vec($rin, fileno $l, 1) = 1;
        next unless select(my $rout = $rin, undef, undef, 0.5);
        my $c = $l->accept or next;
        my $k = fork;
        if (defined $k && $k == 0) {
            alarm 20;
            raw_answer($c);
            close $c;
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}

sub raw_write { my ($c, $s) = @_; syswrite $c, $s }

sub raw_answer {
    my ($c) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        sysread($c, $req, 4096, length $req) or return;
    }
    my ($path) = $req =~ m{^\S+ (\S+)};
    my $exp = int(time * 1000) + 3_600_000;
    my $json = qq({"accessToken":"$CHUNKED_TOKEN","expires":"$exp"});
    if ($path eq '/chunked') {
        my $h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        raw_write($c, $h);
        for my $part (substr($json, 0, 10), substr($json, 10, 7),
                      substr($json, 17)) {
            raw_write($c, sprintf("%x\r\n%s\r\n", length $part, $part));
            sleep 0.05;
        }
        raw_write($c, "0\r\n\r\n");
    } elsif ($path eq '/gzip') {
        gzip(\$json => \my $z) or die $GzipError;
        raw_write($c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Content-Encoding: gzip\r\nContent-Length: " . length($z)
            . "\r\nConnection: close\r\n\r\n$z");
    } elsif ($path eq '/driphead') {
        raw_write($c, "HTTP/1.1 2");
        sleep 0.5;
        raw_write($c, "00 O");
        sleep 3;
        raw_write($c, "K\r\nContent-Length: " . length($json)
            . "\r\n\r\n$json");
    } elsif ($path eq '/dripbody') {
        raw_write($c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($json) . "\r\n\r\n");
        for my $ch (split //, substr($json, 0, 5)) {
            raw_write($c, $ch);
            sleep 0.3;
        }
        sleep 3;
        raw_write($c, substr($json, 5));
    } elsif ($path eq '/redirect') {
        # (no token in the body: non-2xx bodies are logged at info level)
        my $html = '<a href="/chunked">moved</a>';
        raw_write($c, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:"
            . $t->port2 . "/chunked\r\nContent-Type: text/html\r\n"
            . "Content-Length: " . length($html) . "\r\n"
            . "Connection: close\r\n\r\n$html");
    } else {
        raw_write($c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
}

END { kill 'TERM', $raw_pid if $raw_pid && $$ != ($raw_pid // 0) }

###############################################################################
# Configuration

my ($keys_conf, $locations) = ('', '');
for my $s (['healthy', {}], @scenarios, @successes) {
    my ($name, $b) = @$s;
    my $extra = $extra{$name} // '';
    my $target = $b->{raw}
        ? "http://127.0.0.1:%%PORT2%%$b->{raw}"
        : 'http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management';
    $keys_conf .= <<"EOF";
    imburse_api_key $name public_key=pk-$name
                    private_key_file=%%KEYFILE:$name%%
                    exchange=/_imburse/$name retry=1s;
EOF
    $locations .= <<"EOF";
        location /$name/ {
            imburse_auth $name;
            add_header X-Token-TTL \$imburse_token_ttl always;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }
        location = /_imburse/$name {
            %%EXCHANGE_SIGNING%%
            $extra
            proxy_pass $target;
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

my @workers = sort $t->worker_pids;

sub get {
    my ($name) = @_;
    my $amark = $t->access_mark;
    my $before = scalar @{$t->upstream_requests};
    my $r = $t->http_request('GET', "/$name/x", {}, undef, timeout => 10);
    my $up = $t->upstream_requests;
    my ($st) = $t->token_statuses(since => $amark, wait_for => 1);
    return { status => $r->{status}, st => $st // '-', body => $r->{body},
             retry_after => $r->{headers}{'retry-after'},
             ttl => $r->{headers}{'x-token-ttl'},
             upstream => [ @$up[$before .. $#$up] ] };
}

my $r = get('healthy');
is($r->{status}, 200, 'healthy key: 200 before the scenarios');

###############################################################################
# Each hostile response: 503 + Retry-After, one [error] line with the cause,
# nothing upstream, the healthy key still serves

for my $s (@scenarios) {
    my ($name, $behaviour, $cause) = @$s;
    my $mark = $t->log_mark;

    $r = get($name);
    is($r->{status}, 503, "$name: 503");
    like($r->{retry_after} // '', qr/^[1-9]\d*$/,
        "$name: Retry-After is a number of seconds >= 1");
    is(scalar @{$r->{upstream}}, 0, "$name: nothing reached the upstream");

    my @lines = $t->grep_error_log(qr/imburse.*exchange failed/i,
        since => $mark);
    is(scalar @lines, 1, "$name: one 'exchange failed' line") or diag @lines;
    like($lines[0] // '', qr/\[error\].*imburse key "\Q$name\E": token exchange failed: /,
        "$name: [error] line for the key");
    like($lines[0] // '', $cause, "$name: log names the cause $cause")
        or diag $lines[0];
    like($lines[0] // '', qr{from "/_imburse/\Q$name\E"},
        "$name: log names the exchange URI");

    if ($name =~ /^drip/) {
        ok(scalar $t->grep_error_log(qr/upstream timed out/, since => $mark),
            "$name: nginx logged the read timeout");
    }

    $r = get('healthy');
    is($r->{status}, 200, "$name: the healthy key still serves 200");
}

###############################################################################
# Bodies that must work: chunked transfer encoding, a far-future expiry
# (accepted, kept at most a day)

for my $s (@successes) {
    my ($name) = @$s;
    $r = get($name);
    is($r->{status}, 200, "$name: 200");
    is($r->{st}, 'MISS', "$name: MISS");
    my $auth = join ' | ', map { @{$_->{authorization}} } @{$r->{upstream}};
    like($auth, qr/^Bearer tok-/, "$name: the token is used upstream");
}
$r = get('chunked');
is(join('', map { @{$_->{authorization}} } @{$r->{upstream}}),
    "Bearer $CHUNKED_TOKEN", 'chunked: the whole token, de-chunked');
for my $name (qw(farfuture farfuturenum)) {
    $r = get($name);
    is($r->{status}, 200, "$name: 200 again");
    ok(defined $r->{ttl} && $r->{ttl} =~ /^\d+$/ && $r->{ttl} <= 86400
        && $r->{ttl} > 86000, "$name: ttl capped to a day")
        or diag "ttl: " . ($r->{ttl} // 'undef');
}

###############################################################################
# nginx kept serving: no crash, no worker replaced

$r = get('healthy');
is($r->{status}, 200, 'healthy key: 200 after the scenarios');
is($r->{st}, 'HIT', 'healthy key: HIT');
is_deeply([sort $t->worker_pids], \@workers, 'no worker was replaced');

my $st = $t->stats;
is($st->{rejected}, 0, 'every exchange was correctly signed')
    or diag explain $st->{reasons};

$t->stop;
kill 'TERM', $raw_pid;
waitpid $raw_pid, 0;
undef $raw_pid;

$t->logs_lack(map { ("private key of $_" => $private{$_},
    "decoded private key of $_" => decode_base64($private{$_})) }
    qw(healthy huge100k tokennul chunked));
$t->logs_lack('chunked token' => $CHUNKED_TOKEN,
    'far-future token' => 'tok-far-future',
    'token with a comma' => 'tok,Bearer-x',
    'token with a tab' => "tok\tx");
ok(!grep({ grep { lc $_->[0] eq 'x-injected' } @{$_->{headers}} }
    @{$t->upstream_requests}), 'no injected header ever reached the upstream');
ok(!grep({ grep { /X-Injected|tok,|[^\x20-\x7e]/ } @{$_->{authorization}} }
    @{$t->upstream_requests}), 'no hostile token ever reached the upstream');

done_testing;
