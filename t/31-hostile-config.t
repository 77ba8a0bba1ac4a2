#!/usr/bin/perl

# Hostile configuration: key files that are huge, empty, only whitespace or
# followed by garbage, public keys with ":" or a space fail `nginx -t` with a
# precise message and no key material in it (t/15-config-errors.t covers
# missing, unreadable and non-base64 key files).  A zone too small for a
# token: the exchange fails with "does not fit in the imburse zone", the
# client gets 503, nginx keeps serving.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use MIME::Base64 qw(encode_base64 decode_base64);

my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';

my $t = ImburseTest->new;
my $p = $t->prefix;
$t->write_key('management', $PRIVATE);
# 4097 bytes of valid base64 (and 8 KB): over the 4096-byte limit
$t->write_key('huge', 'A' x 4097, raw => 1);
$t->write_key('huge8k', encode_base64('k' x 6000, ''), raw => 1);
$t->write_key('empty', '', raw => 1);
$t->write_key('whitespace', " \n\t\r\n   \n", raw => 1);
$t->write_key('trailing', "$PRIVATE\n#garbage\n", raw => 1);
$t->write_key('trailing2', "$PRIVATE junk", raw => 1);
$t->write_key('nul', "$PRIVATE\0", raw => 1);
$t->write_key('inner', substr($PRIVATE, 0, 8) . '!' . substr($PRIVATE, 8),
    raw => 1);

sub conf {
    my ($keyline) = @_;
    return <<"EOF";
    $keyline

    server {
        listen 127.0.0.1:%%PORT%%;
        location /imburse/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }
        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF
}

sub key_with_file {
    my ($file) = @_;
    return conf('imburse_api_key management public_key=pk-1 '
        . "private_key_file=%%KEYFILE:$file%% exchange=/_imburse/management;");
}

sub key_with_public {
    my ($public) = @_;
    # nginx quotes whole words: "public_key=pk 1"
    my $param = $public =~ /\s/ ? qq("public_key=$public") : "public_key=$public";
    return conf("imburse_api_key management $param "
        . 'private_key_file=%%KEYFILE:management%% '
        . 'exchange=/_imburse/management;');
}

my ($rc, $out) = $t->test_config(key_with_file('management'));
is($rc, 0, 'the base configuration is valid') or diag $out;

my @invalid = (
    [ 'key file of 4097 bytes', key_with_file('huge'),
      qr/private_key_file "[^"]*huge\.key" of imburse_api_key "management" is larger than 4096 bytes/ ],
    [ 'key file of 8 KB', key_with_file('huge8k'),
      qr/huge8k\.key" of imburse_api_key "management" is larger than 4096 bytes/ ],
    [ 'empty key file', key_with_file('empty'),
      qr/invalid base64 in private_key_file "[^"]*empty\.key" of imburse_api_key "management": the file is empty/ ],
    [ 'key file of only whitespace', key_with_file('whitespace'),
      qr/invalid base64 in private_key_file "[^"]*whitespace\.key" of imburse_api_key "management"/ ],
    [ 'key file with a trailing comment line', key_with_file('trailing'),
      qr/invalid base64 in private_key_file "[^"]*trailing\.key"/ ],
    [ 'key file with trailing garbage on the line', key_with_file('trailing2'),
      qr/invalid base64 in private_key_file "[^"]*trailing2\.key"/ ],
    [ 'key file with a trailing NUL', key_with_file('nul'),
      qr/invalid base64 in private_key_file "[^"]*nul\.key"/ ],
    [ 'key file with a character outside base64 inside', key_with_file('inner'),
      qr/invalid base64 in private_key_file "[^"]*inner\.key"/ ],
    [ 'public key with ":"', key_with_public('pk:1'),
      qr/invalid "public_key=" in imburse_api_key "management": no spaces, control characters or ":" allowed/ ],
    [ 'public key ending with ":"', key_with_public('pk-1:'),
      qr/invalid "public_key=" in imburse_api_key "management"/ ],
    [ 'public key with a space', key_with_public('pk 1'),
      qr/invalid "public_key=" in imburse_api_key "management": no spaces/ ],
    [ 'public key with a tab', key_with_public("pk\t1"),
      qr/invalid "public_key=" in imburse_api_key "management"/ ],
    [ 'public key with CR/LF', key_with_public("pk\r\nX-Injected: 1"),
      qr/invalid "public_key=" in imburse_api_key "management"/ ],
    [ 'zone below the minimum', conf('imburse_zone 16k; imburse_api_key '
        . 'management public_key=pk-1 private_key_file=%%KEYFILE:management%% '
        . 'exchange=/_imburse/management;'),
      qr/invalid imburse_zone size "16k", it must be at least \d+k/ ],
);

for my $case (@invalid) {
    my ($name, $conf, @expect) = @$case;
    ($rc, $out) = $t->test_config($conf);
    isnt($rc, 0, "invalid: $name: nginx -t fails");
    like($out, qr/\[emerg\]/, "invalid: $name: [emerg]");
    like($out, $_, "invalid: $name: says $_") or diag $out for @expect;
    unlike($out, qr/\Q$PRIVATE\E|AAAAAAAAAAAAAAAA/,
        "invalid: $name: no key material in the message");
}

###############################################################################
# A zone too small for the tokens: 32k is the minimum (8 pages); the keys'
# entries fit, a 16000-byte token does not fit for long.  The small key's
# token is stored first and keeps being served.

my @big = map { "big$_" } 1 .. 4;
my %keys;
for my $name ('small', @big) {
    my $b64 = encode_base64("secret-of-$name-for-tests-only", '');
    $t->write_key($name, $b64);
    $keys{"pk-$name"} = $b64;
}
$t->start_standin(keys => \%keys,
    tenants => { map { ("pk-$_" => { token => "T$_" . ('z' x 15_995) }) }
                 @big });

my ($kc, $loc) = ('', '');
for my $name ('small', @big) {
    $kc .= "    imburse_api_key $name public_key=pk-$name "
        . "private_key_file=%%KEYFILE:$name%% exchange=/_imburse/$name "
        . "retry=1s;\n";
    $loc .= <<"EOF";
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
    imburse_zone 76k;    # what five keys need, not what four 16 KB tokens do
$kc
    large_client_header_buffers 4 32k;
    server {
        listen 127.0.0.1:%%PORT%%;
$loc
    }
EOF

my $r = $t->http_get('/small/x');
is($r->{status}, 200, 'small token in a 76k zone: 200');

my ($ok, $failed, $failed_name) = (0, 0, undef);
for my $name (@big) {
    my $mark = $t->log_mark;
    $r = $t->http_get("/$name/x");
    if ($r->{status} == 200) {
        $ok++;
        next;
    }
    $failed++;
    $failed_name //= $name;
    is($r->{status}, 503, "$name: a token that does not fit: 503");
    like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
        "$name: Retry-After");
    my @l = $t->grep_error_log(qr/imburse key "\Q$name\E"/, since => $mark);
    ok((grep { /\[error\].*imburse key "\Q$name\E": token of 16000 bytes does not fit in the imburse zone, increase imburse_zone/ } @l),
        "$name: logged: token of 16000 bytes does not fit in the imburse zone")
        or diag @l;
}
ok($failed >= 1, "at least one 16000-byte token did not fit in 76k "
    . "($ok fitted, $failed did not)");

if ($failed_name) {
    # the error is not cached as a token: after retry=1s it fails again,
    # cleanly
    sleep 1.2;
    $r = $t->http_get("/$failed_name/x");
    is($r->{status}, 503, "$failed_name: again after retry: 503");
}

$r = $t->http_get('/small/x');
is($r->{status}, 200, 'small key: still 200 afterwards');
my @up = @{$t->upstream_requests};
ok(!grep({ grep { /^Bearer T(?:big)/ && length($_) != 7 + 16_000 }
    @{$_->{authorization}} } @up), 'no truncated big token upstream');

$t->stop;
$t->logs_lack(map { ("token of $_" => "T$_" . ('z' x 15_995)) } @big);
$t->logs_lack('private key' => $PRIVATE,
    'decoded private key' => decode_base64($PRIVATE));

done_testing;
