#!/usr/bin/perl

# The stand-in Imburse itself: its HMAC scheme matches the published test
# vectors, its verifier rejects what Imburse rejects, and its scripted
# behaviours produce the bodies the feature tests rely on.  No nginx here.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseStandin;
use JSON::PP;
use Encode qw(encode_utf8);
use MIME::Base64 qw(decode_base64);
use HTTP::Tiny;
use Time::HiRes qw(time);

binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);

my $json = JSON::PP->new->utf8->canonical;
my $vectors = $json->decode(ImburseTest::slurp(
    dirname(__FILE__) . '/data/hmac-vectors.json'))->{vectors};
is(scalar @$vectors, 4, 'four HMAC test vectors');

###############################################################################
# The scheme, against the vectors (strings are signed as UTF-8 bytes)

for my $v (@$vectors) {
    my %a = (public_key => encode_utf8($v->{public_key}),
             private_key => $v->{private_key_base64}, nonce => $v->{nonce},
             timestamp => $v->{timestamp}, body => encode_utf8($v->{body_utf8}));
    my $name = "vector $v->{public_key}";
    is(ImburseStandin::string_to_sign(@a{qw(public_key nonce timestamp body)}),
        encode_utf8($v->{string_to_sign}), "$name: string to sign");
    is(ImburseStandin::authorization(%a), encode_utf8($v->{authorization}),
        "$name: authorization header");

    my %keys = ($a{public_key} => $a{private_key});
    my @ok = ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => \%keys, now => $v->{timestamp} + 299);
    is($ok[1], 'ok', "$name: verifier accepts it (299 s later)");

    (my $tampered = encode_utf8($v->{authorization})) =~ s/(.)(=?)$/
        ($1 eq 'A' ? 'B' : 'A') . $2/e;
    is((ImburseStandin::verify(authorization => $tampered, body => $a{body},
        keys => \%keys, now => $v->{timestamp}))[1], 'bad_signature',
        "$name: tampered signature rejected");
    is((ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body} . 'x', keys => \%keys, now => $v->{timestamp}))[1],
        'bad_signature', "$name: tampered body rejected");
    is((ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => \%keys, now => $v->{timestamp} + 301))[1],
        'stale_timestamp', "$name: 301 s old timestamp rejected");
    is((ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => \%keys, now => $v->{timestamp} - 301))[1],
        'stale_timestamp', "$name: timestamp 301 s ahead rejected");
    is((ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => {}, now => $v->{timestamp}))[1],
        'unknown_key', "$name: unknown public key rejected");

    my %seen;
    my @first = ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => \%keys, now => $v->{timestamp}, seen => \%seen);
    my @again = ImburseStandin::verify(authorization => encode_utf8($v->{authorization}),
        body => $a{body}, keys => \%keys, now => $v->{timestamp}, seen => \%seen);
    is("$first[1] $again[1]", 'ok replayed_nonce', "$name: replayed nonce rejected");
}

is((ImburseStandin::verify(authorization => 'Bearer abc', keys => {}))[1],
    'malformed', 'a non-Hmac Authorization is malformed');
is(ImburseStandin::body_hash(''), '', 'empty body hashes to the empty string');

###############################################################################
# The server

my $t = ImburseTest->new(module => 0);
my ($PK, $SK) = ('pk-one', 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=');
my ($PK2, $SK2) = ('pk-two', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=');
$t->start_standin(keys => { $PK => $SK, $PK2 => $SK2 });

my $IDENTITY = "http://127.0.0.1:" . $t->identity_port
    . "/identity/v1/hmac/management";
my $n = 0;

# A signed exchange as the module would send it; %o overrides parts.
sub exchange {
    my (%o) = @_;
    my %a = (public_key => $PK, private_key => $SK,
        nonce => 'nonce' . ++$n . ImburseStandin::random_alnum(16),
        timestamp => int(time), body => '', %o);
    my $authz = $o{authorization} // ImburseStandin::authorization(%a);
    my $r = HTTP::Tiny->new(keep_alive => 0, timeout => 10)->post($IDENTITY,
        { headers => { Authorization => $authz }, content => $a{body} });
    my $body = eval { $json->decode($r->{content}) };
    return { status => $r->{status}, raw => $r->{content}, json => $body,
             authorization => $authz };
}

my $r = exchange();
is($r->{status}, 200, 'server: correctly signed exchange accepted');
like($r->{json}{accessToken}, qr/^tok-\d+-[A-Za-z0-9]{24}$/,
    'server: token is b64token characters');
like($r->{json}{expires}, qr/^\d{13}$/, 'server: expires is a string of ms');
ok(abs($r->{json}{expires} / 1000 - time - 3600) < 5,
    'server: default lifetime one hour');
unlike($r->{raw}, qr/"expires":\d/, 'server: expires is a JSON string');

my $replay = exchange(authorization => $r->{authorization});
is($replay->{status}, 401, 'server: replayed nonce rejected with 401');
is($replay->{json}{reason}, 'replayed_nonce', 'server: ... reason given');

(my $bad = exchange()->{authorization}) =~ s/:([^:]+)$/:AAAA$1/;
is(exchange(authorization => $bad)->{json}{reason}, 'bad_signature',
    'server: tampered signature rejected');
is(exchange(timestamp => int(time) - 301)->{json}{reason}, 'stale_timestamp',
    'server: stale timestamp rejected');
is(exchange(public_key => 'nobody')->{json}{reason}, 'unknown_key',
    'server: unknown public key rejected');
is(exchange(private_key => $SK2)->{json}{reason}, 'bad_signature',
    'server: signature made with another tenant\'s key rejected');
is(exchange(public_key => $PK2, private_key => $SK2)->{status}, 200,
    'server: second tenant accepted');
is(exchange(body => '{"a":1}')->{status}, 200,
    'server: a signed body is accepted');

my $s = $t->stats;
is($s->{exchanges}, 9, 'stats: nine exchanges');
is($s->{ok}, 4, 'stats: four verified');
is($s->{rejected}, 5, 'stats: five rejected');
is_deeply($s->{reasons}, { replayed_nonce => 1, bad_signature => 2,
    stale_timestamp => 1, unknown_key => 1 }, 'stats: rejection reasons');
is($s->{by_tenant}{$PK2}{ok}, 1, 'stats: per tenant');
is(scalar @{$s->{tokens}}, 4, 'stats: four tokens issued');
is($s->{tokens}[0]{token}, $r->{json}{accessToken}, 'stats: token recorded');
is($s->{max_inflight}, 1, 'stats: sequential exchanges, one in flight');

my $ids = $t->identity_requests;
is(scalar @$ids, 9, 'identity requests recorded');
is($ids->[0]{verdict}, 'ok', '... with their verdict');

###############################################################################
# Scripted behaviours

my @behaviours = (
    [ 'number expires', { expires => 'number' },
      sub { $_[0]{raw} =~ /"expires":\d{13}[,}]/ } ],
    [ 'no expires', { expires => 'none' },
      sub { !exists $_[0]{json}{expires} && $_[0]{json}{accessToken} } ],
    [ 'garbage expires', { expires => 'garbage' },
      sub { $_[0]{json}{expires} eq 'soon' } ],
    [ 'expires in the past', { expires => 'past' },
      sub { $_[0]{json}{expires} / 1000 < time - 30 } ],
    [ 'ttl', { ttl_ms => 2000 },
      sub { abs($_[0]{json}{expires} / 1000 - time - 2) < 1 } ],
    [ 'JWT token', { token_kind => 'jwt', expires => 'none', ttl_ms => 60000 },
      sub {
          my ($h, $p) = split /\./, $_[0]{json}{accessToken};
          $p =~ tr{-_}{+/};
          my $claims = $json->decode(decode_base64($p));
          $_[0]{json}{accessToken} =~ /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
              && abs($claims->{exp} - time - 60) < 2;
      } ],
    [ 'literal token with CR/LF', { token => "abc\r\nX-Evil: 1" },
      sub { $_[0]{json}{accessToken} eq "abc\r\nX-Evil: 1" } ],
    [ 'no accessToken', { omit_token => 1 },
      sub { !exists $_[0]{json}{accessToken} && $_[0]{json}{expires} } ],
    [ 'status 500', { status => 500 },
      sub { $_[0]{status} == 500 && !$_[0]{json}{accessToken} } ],
    [ 'raw body', { body => '<html>oops</html>', content_type => 'text/html' },
      sub { $_[0]{status} == 200 && $_[0]{raw} eq '<html>oops</html>' } ],
);

for my $b (@behaviours) {
    my ($name, $behaviour, $check) = @$b;
    $t->standin_set(global => $behaviour);
    my $res = exchange();
    ok($check->($res), "behaviour: $name") or diag($res->{raw});
}

$t->standin_set(global => {}, tenants => { $PK2 => { status => 503 } });
is(exchange()->{status}, 200, 'behaviour: per tenant, other tenant unaffected');
is(exchange(public_key => $PK2, private_key => $SK2)->{status}, 503,
    'behaviour: per tenant override');
$t->standin_set(tenants => { $PK2 => {} });
is(exchange(public_key => $PK2, private_key => $SK2)->{status}, 200,
    'behaviour: per tenant override removed');

$t->standin_set(keys => { $PK => $SK2 });
is(exchange(private_key => $SK2)->{status}, 200, 'control: key replaced');
is(exchange()->{json}{reason}, 'bad_signature', 'control: old key rejected');
$t->standin_set(keys => { $PK => $SK });

# delay and concurrency: three exchanges at once, each delayed 400ms
$t->reset_stats;
$t->standin_set(global => { delay_ms => 400 });
my $t0 = time;
my @kids = map {
    my $pid = fork // die;
    if (!$pid) { exchange(); POSIX::_exit(0) }
    $pid;
} 1 .. 3;
waitpid $_, 0 for @kids;
my $elapsed = time - $t0;
$s = $t->stats;
ok($elapsed >= 0.4 && $elapsed < 3, "behaviour: delay ($elapsed s)");
is($s->{exchanges}, 3, 'stats reset, then three exchanges');
is($s->{max_inflight}, 3, 'stats: three in flight at once');
is($s->{inflight}, 0, 'stats: none in flight at the end');
$t->standin_set(global => {});

###############################################################################
# Upstream role: echoes and records every header, every occurrence

my $up = "http://127.0.0.1:" . $t->upstream_port;
my $res = HTTP::Tiny->new(keep_alive => 0)->get("$up/some/path?q=1",
    { headers => { Authorization => ['Basic one', 'Basic two'],
                   'X-Other' => 'x' } });
is($res->{status}, 200, 'upstream: 200');
my $echo = $json->decode($res->{content});
is_deeply($echo->{authorization}, ['Basic one', 'Basic two'],
    'upstream: both Authorization lines echoed');
is($echo->{uri}, '/some/path?q=1', 'upstream: uri');
ok((grep { $_->[0] =~ /^x-other$/i && $_->[1] eq 'x' } @{$echo->{headers}}),
    'upstream: all headers echoed');
my $rec = $t->upstream_requests;
is(scalar @$rec, 1, 'upstream: request recorded');
is_deeply($rec->[0]{authorization}, ['Basic one', 'Basic two'],
    'upstream: recorded Authorization lines');

$t->standin_set(upstream => { status_by_bearer => { 'tok-bad' => 401 } });
is(HTTP::Tiny->new->get("$up/", { headers => {
    Authorization => 'Bearer tok-bad' } })->{status}, 401,
    'upstream: scripted 401 for a bearer');
is(HTTP::Tiny->new->get("$up/", { headers => {
    Authorization => 'Bearer tok-good' } })->{status}, 200,
    'upstream: other bearers get 200');
is($t->stats->{upstream_requests}, 3, 'stats: upstream requests counted');

is(HTTP::Tiny->new->get("$IDENTITY")->{status}, 404,
    'identity: GET is not the exchange');

$t->stop_standin;
is($t->standin_log, '', 'stand-in logged no errors');

done_testing;
