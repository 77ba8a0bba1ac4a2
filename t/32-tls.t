#!/usr/bin/perl

# The identity service over HTTPS.  The test makes two CAs and server
# certificates with the openssl command line; an extra nginx server block in
# the same configuration terminates TLS and passes on to the stand-in (which
# still checks the signatures).  With the documented settings in the
# exchange location
#
#     proxy_ssl_verify              on;
#     proxy_ssl_server_name         on;
#     proxy_ssl_name                localhost;
#     proxy_ssl_trusted_certificate <the CA>;
#     proxy_ssl_verify_depth        2;
#
# the exchange succeeds; a certificate from another CA, or a certificate for
# another name, is refused: 503, nginx's verification error and the
# module's "exchange failed" line in the error log.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseTLS;
use MIME::Base64 qw(encode_base64 decode_base64);

my $t = ImburseTest->new;
my $tls = ImburseTLS->new($t->prefix . '/tls');
my $dir = $tls->path('');
$dir =~ s{/$}{};

$tls->ca('ca');
$tls->ca('otherca');
$tls->cert('server', 'ca');
$tls->cert('rogue', 'otherca');

# good: the right CA and name; othername: the right certificate, another
# expected name; otherca: a certificate for localhost from another CA;
# noverify-less: the default (proxy_ssl_verify off) is not tested here.
my %case = (
    good      => { port => '%%PORT2%%', name => 'localhost' },
    othername => { port => '%%PORT2%%', name => 'other.example' },
    otherca   => { port => '%%PORT3%%', name => 'localhost' },
);

my (%keys, %private);
for my $name (sort keys %case) {
    $private{$name} = encode_base64("secret-of-$name-for-tests-only", '');
    $t->write_key($name, $private{$name});
    $keys{"pk-$name"} = $private{$name};
}
$t->start_standin(keys => \%keys);

my ($kc, $loc) = ('', '');
for my $name (sort keys %case) {
    my $c = $case{$name};
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
            proxy_ssl_verify              on;
            proxy_ssl_server_name         on;
            proxy_ssl_name                $c->{name};
            proxy_ssl_trusted_certificate $dir/ca.crt;
            proxy_ssl_verify_depth        2;
            proxy_pass https://127.0.0.1:$c->{port}/identity/v1/hmac/management;
        }
EOF
}

$t->run(<<"EOF");
$kc
    server {
        listen 127.0.0.1:%%PORT%%;
$loc
    }

    # the identity service over HTTPS, with a certificate from the test CA
    server {
        listen 127.0.0.1:%%PORT2%% ssl;
        server_name localhost;
        ssl_certificate     $dir/server.crt;
        ssl_certificate_key $dir/server.key;
        access_log off;
        location / {
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%;
        }
    }

    # ... and with a certificate for localhost from another CA
    server {
        listen 127.0.0.1:%%PORT3%% ssl;
        server_name localhost;
        ssl_certificate     $dir/rogue.crt;
        ssl_certificate_key $dir/rogue.key;
        access_log off;
        location / {
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%;
        }
    }
EOF

sub get {
    my ($name) = @_;
    my $before = scalar @{$t->upstream_requests};
    my $r = $t->http_get("/$name/x");
    my $up = $t->upstream_requests;
    $r->{upstream} = [ @$up[$before .. $#$up] ];
    return $r;
}

###############################################################################
# The right CA and name: the exchange succeeds over TLS

my $r = get('good');
is($r->{status}, 200, 'good: 200 over HTTPS');
my @tokens = @{$t->stats->{by_tenant}{'pk-good'}{tokens} // []};
is(scalar @tokens, 1, 'good: one token issued');
is(join(' | ', map { @{$_->{authorization}} } @{$r->{upstream}}),
    "Bearer " . ($tokens[0] // '?'), 'good: the token is injected');

###############################################################################
# Refused: another name, another CA

my %nginx_says = (
    othername => qr/upstream SSL certificate does not match "other\.example"/,
    otherca   => qr/upstream SSL certificate verify error: \(\d+:[^)]*\)/,
);

for my $name (qw(othername otherca)) {
    my $mark = $t->log_mark;
    $r = get($name);
    is($r->{status}, 503, "$name: 503");
    like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
        "$name: Retry-After");
    is(scalar @{$r->{upstream}}, 0, "$name: nothing reached the upstream");
    is($t->stats->{by_tenant}{"pk-$name"}{exchanges} // 0, 0,
        "$name: the request never reached the identity service");
    my $log = $t->error_log(since => $mark);
    like($log, $nginx_says{$name}, "$name: nginx logged the certificate "
        . 'verification error');
    my @lines = grep { /exchange failed/ } split /\n/, $log;
    is(scalar @lines, 1, "$name: one 'exchange failed' line") or diag @lines;
    like($lines[0] // '', qr/\[error\].*imburse key "\Q$name\E": token exchange failed: identity service error \(status 502\) from "\/_imburse\/\Q$name\E"/,
        "$name: the module logged the failed exchange");
}

###############################################################################
# nginx kept serving

$r = get('good');
is($r->{status}, 200, 'good: still 200 (cached)');
is(scalar @{$t->stats->{by_tenant}{'pk-good'}{tokens} // []}, 1,
    'good: no new exchange');

$t->stop;
$t->logs_lack('good token' => $tokens[0] // 'no-token',
    map { ("private key of $_" => $private{$_}) } sort keys %private);

done_testing;
