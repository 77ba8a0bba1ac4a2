#!/usr/bin/perl

# Configuration errors fail `nginx -t` with a precise message; valid
# variations pass.  Each case: the lines that differ from a valid
# configuration, and what `nginx -t` must say.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';
my $NOT_B64 = 'this-is-not*base64!';

my $t = ImburseTest->new;
my $p = $t->prefix;
$t->write_key('management', $PRIVATE);
$t->write_key('spaced', "\n  $PRIVATE  \t\n\n", raw => 1);
$t->write_key('notbase64', $NOT_B64);
$t->write_key('empty', '', raw => 1);
mkdir "$p/keys/adirectory";

my $KEY = 'imburse_api_key management public_key=pk-1 '
    . 'private_key_file=%%KEYFILE:management%% exchange=/_imburse/management';

# A valid configuration; %o replaces its parts:
#   http  => lines at http level (default: the key declaration)
#   auth  => the imburse_auth argument (default: management)
#   server => extra lines in the server block
sub conf {
    my (%o) = @_;
    my $http = $o{http} // "$KEY;";
    my $auth = $o{auth} // 'management';
    my $server = $o{server} // '';
    return <<"EOF";
    $http

    map \$http_x_tenant \$tenant { default management; }

    server {
        listen 127.0.0.1:%%PORT%%;
        $server

        location /imburse/ {
            imburse_auth $auth;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        location = /_imburse/management {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%/identity/v1/hmac/management;
        }
    }
EOF
}

###############################################################################
# Valid: [name, configuration]

my @valid = (
    [ 'the contract configuration', conf() ],
    [ 'key file with surrounding whitespace',
      conf(http => 'imburse_api_key management public_key=pk-1 '
          . 'private_key_file=%%KEYFILE:spaced%% '
          . 'exchange=/_imburse/management;') ],
    [ 'refresh and retry', conf(http => "$KEY refresh=30s retry=2s;") ],
    [ 'imburse_zone', conf(http => "$KEY; imburse_zone 1m;") ],
    [ 'imburse_auth with a variable', conf(auth => '$tenant') ],
    [ 'imburse_auth off', conf(auth => 'off') ],
    [ 'imburse_auth at server level',
      conf(server => 'imburse_auth management;') ],
    [ 'two keys',
      conf(http => "$KEY; imburse_api_key other public_key=pk-2 "
          . 'private_key_file=%%KEYFILE:management%% '
          . 'exchange=/_imburse/management;') ],
);

for my $case (@valid) {
    my ($name, $conf) = @$case;
    my ($rc, $out) = $t->test_config($conf);
    is($rc, 0, "valid: $name") or diag $out;
    like($out, qr/test is successful/, "valid: $name: nginx -t successful");
}

###############################################################################
# Invalid: [name, configuration, what nginx -t must say (all of them)]

my @invalid = (
    [ 'imburse_auth names an undeclared key',
      conf(auth => 'nosuch'),
      qr/unknown imburse key "nosuch"/ ],
    [ 'missing key file',
      conf(http => "imburse_api_key management public_key=pk-1 "
          . "private_key_file=$p/keys/missing.key "
          . "exchange=/_imburse/management;"),
      qr/private_key_file/, qr{\Q$p/keys/missing.key\E} ],
    [ 'unreadable key file (a directory)',
      conf(http => "imburse_api_key management public_key=pk-1 "
          . "private_key_file=$p/keys/adirectory "
          . "exchange=/_imburse/management;"),
      qr/private_key_file/, qr{\Q$p/keys/adirectory\E} ],
    [ 'private key not base64',
      conf(http => 'imburse_api_key management public_key=pk-1 '
          . 'private_key_file=%%KEYFILE:notbase64%% '
          . 'exchange=/_imburse/management;'),
      qr/invalid base64/ ],
    [ 'empty key file',
      conf(http => 'imburse_api_key management public_key=pk-1 '
          . 'private_key_file=%%KEYFILE:empty%% '
          . 'exchange=/_imburse/management;'),
      qr/empty|invalid base64|private_key_file/ ],
    [ 'missing exchange=',
      conf(http => 'imburse_api_key management public_key=pk-1 '
          . 'private_key_file=%%KEYFILE:management%%;'),
      qr/missing "exchange="/ ],
    [ 'missing public_key=',
      conf(http => 'imburse_api_key management '
          . 'private_key_file=%%KEYFILE:management%% '
          . 'exchange=/_imburse/management;'),
      qr/missing "public_key="/ ],
    [ 'missing private_key_file=',
      conf(http => 'imburse_api_key management public_key=pk-1 '
          . 'exchange=/_imburse/management;'),
      qr/missing "private_key_file="/ ],
    [ 'duplicate key name',
      conf(http => "$KEY; $KEY;"),
      qr/duplicate imburse_api_key "management"/ ],
    [ 'invalid refresh', conf(http => "$KEY refresh=abc;"),
      qr/invalid refresh/ ],
    [ 'negative refresh', conf(http => "$KEY refresh=-5s;"),
      qr/invalid refresh/ ],
    [ 'invalid retry', conf(http => "$KEY retry=soon;"),
      qr/invalid retry/ ],
    [ 'invalid zone size', conf(http => "$KEY; imburse_zone abc;"),
      qr/invalid imburse_zone size/ ],
    [ 'negative zone size', conf(http => "$KEY; imburse_zone -1m;"),
      qr/invalid imburse_zone size/ ],
    [ 'unknown parameter', conf(http => "$KEY foo=bar;"),
      qr/foo/ ],
    [ 'imburse_api_key in a server block',
      conf(server => "$KEY;"),
      qr/"imburse_api_key" directive is not allowed here/ ],
    [ 'imburse_auth without argument', conf(auth => ''),
      qr/invalid number of arguments in "imburse_auth"/ ],
);

if ($> != 0) {
    $t->write_key('noperm', $PRIVATE);
    chmod 0000, $t->keyfile('noperm');
    push @invalid, [ 'unreadable key file (mode 000)',
        conf(http => 'imburse_api_key management public_key=pk-1 '
            . 'private_key_file=%%KEYFILE:noperm%% '
            . 'exchange=/_imburse/management;'),
        qr/private_key_file/, qr/noperm\.key/ ];
}

for my $case (@invalid) {
    my ($name, $conf, @expect) = @$case;
    my ($rc, $out) = $t->test_config($conf);
    isnt($rc, 0, "invalid: $name: nginx -t fails");
    like($out, qr/\[emerg\]/, "invalid: $name: [emerg]");
    like($out, $_, "invalid: $name: says $_") for @expect;
    unlike($out, qr/\Q$PRIVATE\E|\Q$NOT_B64\E/,
        "invalid: $name: no key material in the message");
}

done_testing;
