#!/usr/bin/perl

# An operator's first day: the mistakes people make, and what they see.
# - nginx -t finds a missing, misspelled or non-internal exchange location,
#   and names what to change; key files in quotes or in the URL-safe
#   alphabet get a message saying what to change.
# - A 401 is judged by the request as sent: with "proxy_set_header
#   Authorization" or "proxy_pass_request_headers off" in the imburse_auth
#   location the token never left, so a 401 revokes nothing (one warning
#   per location naming the cause).
# - An exchange location that does not send $imburse_hmac fails with its
#   own cause, not as an identity error; a rejected signature's error line
#   names Imburse's errorCode.
# - The status page never inherits imburse_auth: with imburse_auth at
#   server level and the identity service down, it answers and starts no
#   exchange; a scraper's Accept header gets the Prometheus text.
# - $imburse_key and $imburse_token_fp for access logs.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep);
use Digest::SHA ();

my $PUBLIC  = 'pk-operator';
my $PRIVATE = encode_base64("operator-test-key-0123456789abcdef\xfb\xff", '');

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->write_key('wrong', encode_base64('not-the-key-imburse-has-0123456', ''));

###############################################################################
# nginx -t: the exchange location

my $key = <<'NGINX';
    imburse_api_key main public_key=pk-operator
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main;
NGINX

my @bad = (
    [ 'missing', "server { listen 127.0.0.1:%%PORT%%; }",
      qr{\[emerg\].*"exchange=/_imburse/main" of imburse_api_key "main" matches no location, add "location = /_imburse/main \{ internal; \.\.\. \}"} ],
    [ 'misspelled', "server { listen 127.0.0.1:%%PORT%%;\n"
      . "%%EXCHANGE_LOCATION:/_imburse/mian%%\n}",
      qr{"exchange=/_imburse/main" of imburse_api_key "main" matches no location} ],
    [ 'not internal', "server { listen 127.0.0.1:%%PORT%%;\n"
      . "location = /_imburse/main { proxy_pass %%IDENTITY_URL%%; }\n}",
      qr{"exchange=/_imburse/main" of imburse_api_key "main" matches location "/_imburse/main", which is not internal: add "internal;" to it} ],
    [ 'caught by location /', "server { listen 127.0.0.1:%%PORT%%;\n"
      . "location / { proxy_pass %%UPSTREAM_URL%%; }\n}",
      qr{matches location "/", which is not internal} ],
);
for my $c (@bad) {
    my ($name, $server, $re) = @$c;
    my ($rc, $out) = $t->test_config("$key\n$server\n");
    isnt($rc, 0, "nginx -t, exchange location $name: fails");
    like($out, $re, "nginx -t, exchange location $name: says what to change");
}

my ($rc, $out) = $t->test_config("$key\nserver { listen 127.0.0.1:%%PORT%%; }\n"
    . "server { listen 127.0.0.1:%%PORT2%%;\n"
    . "location / { proxy_pass %%UPSTREAM_URL%%; }\n"
    . "%%EXCHANGE_LOCATION:/_imburse/main%%\n}\n");
is($rc, 0, 'nginx -t: the exchange location in another server is found')
    or diag $out;

###############################################################################
# nginx -t: key files

my @files = (
    [ 'quotes', qq("$PRIVATE"), qr/the key is wrapped in quotes: write it without them/ ],
    [ 'url-safe', ($PRIVATE =~ tr{+/}{-_}r) =~ s/=+$//r,
      qr/URL-safe base64 alphabet.*tr -- '-_' '\+\/'.*pad it with "="/ ],
    [ 'short', substr($PRIVATE, 0, 10), qr/10 characters: base64 comes in groups of 4/ ],
    [ 'bad character', substr($PRIVATE, 0, 4) . '*' . substr($PRIVATE, 5),
      qr/"\*" at byte 5 is not a base64 character/ ],
);
for my $c (@files) {
    my ($name, $content, $re) = @$c;
    $t->write_key('odd', $content);
    ($rc, $out) = $t->test_config(<<'NGINX');
    imburse_api_key odd public_key=pk-odd private_key_file=%%KEYFILE:odd%%
                    exchange=/_imburse/odd;
    server { listen 127.0.0.1:%%PORT%%; %%EXCHANGE_LOCATION:/_imburse/odd%% }
NGINX
    isnt($rc, 0, "key file with $name: nginx -t fails");
    like($out, qr/invalid base64 in private_key_file "[^"]+odd\.key" of imburse_api_key "odd": /,
        "key file with $name: names the file and the key");
    like($out, $re, "key file with $name: says what to change");
}

###############################################################################
# A running gateway with the mistakes

$t->start_standin(keys => { $PUBLIC => $PRIVATE, 'pk-wrong' => $PRIVATE,
                            'pk-nohmac' => $PRIVATE },
    upstream => { status_by_bearer => { 'legacy-static-token' => 401 },
                  status_by_path => { '/noheaders/x' => 401 } });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-operator
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main retry=1s;
    imburse_api_key wrong public_key=pk-wrong
                    private_key_file=%%KEYFILE:wrong%%
                    exchange=/_imburse/main retry=1s;
    imburse_api_key nohmac public_key=pk-nohmac
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/nohmac retry=1s;

    log_format keys '"$request" $status key=$imburse_key fp=$imburse_token_fp';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%PREFIX%%/keys.log keys;

        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /legacy/ {
            imburse_auth main;
            proxy_set_header Authorization "Bearer legacy-static-token";
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /noheaders/ {
            imburse_auth main;
            proxy_pass_request_headers off;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /wrong/ {
            imburse_auth wrong;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /nohmac/ {
            imburse_auth nohmac;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%

        location = /_imburse/nohmac {
            internal;
            proxy_method               POST;
            proxy_pass_request_headers off;
            proxy_pass_request_body    off;
            proxy_set_header           Content-Length 0;
            proxy_pass %%IDENTITY_URL%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        imburse_auth main;

        location /api/ {
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /imburse-status {
            imburse_status;
        }
    }
NGINX

is($t->http_get('/api/first')->{status}, 200, 'first request: 200');
my $token = $t->stats->{tokens}[-1]{token};
sleep 1.1;    # older than retry=1s: a 401 for it would revoke it

###############################################################################
# 401s for requests that did not carry the token

my $mark = $t->log_mark;
for my $path (qw(/legacy/a /legacy/b /noheaders/x /noheaders/x)) {
    is($t->http_get($path)->{status}, 401, "$path: the upstream's 401");
}
is($t->stats->{exchanges}, 1, 'no exchange: nothing was revoked');
my @w = $t->grep_error_log(qr/\[warn\].*did not carry the token/,
    since => $mark);
my %n;
$n{/at (\S+:\d+)\)/ ? $1 : '?'}++ for @w;
is(scalar keys %n, 2, 'warnings for the two locations');
ok(!grep({ $_ > 2 } values %n), 'at most one a location and worker')
    or diag explain \%n;
@w = ((grep { /replaces it/ } @w)[0], (grep { /drops it/ } @w)[0]);
like($w[0] // '', qr/"proxy_set_header Authorization" replaces it in the location \(imburse_auth at \S+:\d+\)/,
    'proxy_set_header: named as the cause');
like($w[1] // '', qr/"proxy_pass_request_headers off" .* drops it/,
    'proxy_pass_request_headers off: named as the cause');
ok(!$t->grep_error_log(qr/token \w+ revoked/, since => $mark), 'no revocation');
is($t->http_get('/api/after')->{status}, 200, 'the token still serves');
is($t->upstream_requests->[-1]{authorization}[0], "Bearer $token",
    'the same token');

###############################################################################
# Causes in the error line

$mark = $t->log_mark;
is($t->http_get('/wrong/x')->{status}, 503, 'a rotated key: 503');
my ($line) = $t->grep_error_log(qr/\[error\].*key "wrong".*exchange failed/,
    since => $mark);
like($line // '', qr/identity service error \(status 401, errorCode HMAC_SIGNATURE_INVALID\)/,
    'the error line names the errorCode');

is($t->http_get('/nohmac/x')->{status}, 503, 'no $imburse_hmac: 503');
($line) = $t->grep_error_log(qr/\[error\].*key "nohmac".*exchange failed/,
    since => $mark);
like($line // '', qr/the exchange location does not send \$imburse_hmac \(proxy_set_header Authorization \$imburse_hmac\)/,
    'the exchange location without $imburse_hmac: its own cause');
unlike($line // '', qr/identity service error/, 'not an identity error');

###############################################################################
# The status page, with imburse_auth at server level, the identity down

$t->standin_set(global => { status => 503 });
my $before = $t->stats->{exchanges};
my $r = $t->http_get('/imburse-status', {}, port => $t->port2);
is($r->{status}, 200, 'status page: 200 while the identity service is down');
my $s = eval { decode_json($r->{body}) } // {};
ok(exists $s->{keys}{main}, 'status page: JSON');
is($t->stats->{exchanges}, $before, 'status page: no exchange started');

$r = $t->http_get('/imburse-status', { Accept =>
    'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;'
    . 'q=0.5,*/*;q=0.1' }, port => $t->port2);
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
    'a Prometheus scraper\'s Accept: the text format');
like($r->{body}, qr/^imburse_token_valid\{key="main"\} 1$/m,
    'with the metrics');
$r = $t->http_get('/imburse-status', { Accept => 'application/json' },
    port => $t->port2);
like($r->{headers}{'content-type'}, qr{^application/json},
    'Accept: application/json: JSON');
$r = $t->http_get('/imburse-status',
    { Accept => 'application/json, text/plain;q=0.9' }, port => $t->port2);
like($r->{headers}{'content-type'}, qr{^application/json},
    'JSON preferred to text/plain: JSON');
# parameter names are case-insensitive, white space may be a tab, and
# several Accept lines are one list
for my $case (
    [ 'text/plain;Q=0.1, application/json;q=0.5', 'application/json' ],
    [ "text/plain;\tq=0.1, application/json;q=0.5", 'application/json' ],
    [ ['text/plain', 'application/json;q=0.2'], 'text/plain' ],
    [ ['text/plain;q=0.2', 'application/json'], 'application/json' ],
) {
    my ($accept, $type) = @$case;
    $r = $t->http_get('/imburse-status', { Accept => $accept },
        port => $t->port2);
    my $shown = ref $accept ? join(' + ', @$accept) : $accept;
    $shown =~ s/\t/\\t/g;
    like($r->{headers}{'content-type'}, qr{^\Q$type\E},
        "Accept: $shown: $type");
}
$r = $t->http_get('/imburse-status?format=json', { Accept => 'text/plain' },
    port => $t->port2);
like($r->{headers}{'content-type'}, qr{^application/json},
    '?format=json wins over Accept');

###############################################################################
# $imburse_key and $imburse_token_fp

sleep 0.2;
my @keys = grep { m{"GET /api/after } }
    split /\n/, ImburseTest::slurp($t->prefix . '/keys.log');
my $fp = substr(Digest::SHA::sha256_hex($token), 0, 12);
like($keys[0] // '', qr/ 200 key=main fp=$fp$/,
    '$imburse_key and $imburse_token_fp in the access log');

$t->stop;
$t->logs_lack(token => $token, 'private key' => $PRIVATE);
done_testing;
