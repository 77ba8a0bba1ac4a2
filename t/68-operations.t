#!/usr/bin/perl

# The procedures of docs/operations.md that can be tried here:
# - a JSON 503 body with error_page, which keeps the module's Retry-After;
# - a tenant tied to the client (by address, with geo): a header naming
#   another tenant changes nothing; Imburse's x-tenant-id from the same
#   variable;
# - a client certificate towards the identity service (mTLS): an identity
#   service behind "ssl_verify_client on" accepts the exchange with the
#   certificate, and refuses it without.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use ImburseTLS;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(encode_base64);

my %PRIVATE = map { ("pk-ops-$_" => encode_base64("ops-$_-key-0123456789abcdef", ''))
    } qw(local other down mtls nocert);

my $t = ImburseTest->new;
$t->write_key($_ =~ s/^pk-ops-//r, $PRIVATE{$_}) for keys %PRIVATE;

my $tls = ImburseTLS->new($t->prefix . '/tls');
$tls->ca('ca');
$tls->cert('server', 'ca');
$tls->cert('gateway', 'ca', 'client');
my $d = $tls->path('');

$t->start_standin(keys => \%PRIVATE,
    tenants => { 'pk-ops-down' => { status => 503 } });

my $keys = join '', map { my $k = $_ =~ s/^pk-ops-//r; <<"CONF" } sort keys %PRIVATE;
    imburse_api_key $k public_key=$_ private_key_file=%%KEYFILE:$k%%
                    exchange=/_imburse/$k retry=2s;
CONF

$t->run(<<"NGINX");
$keys
    # the tenant by client address: loopback is "local", nobody is "other"
    geo \$tenant {
        default        "";
        127.0.0.1/32   local;
    }
    map \$tenant \$tenant_id {
        default  "";
        local    "tenant-id-of-local";
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /tenant/ {
            imburse_auth \$tenant;
            proxy_set_header x-tenant-id \$tenant_id;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /down/ {
            imburse_auth down;
            error_page 503 = \@imburse_unavailable;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location \@imburse_unavailable {
            default_type application/json;
            return 503 '{"error":"imburse_unavailable"}\\n';
        }

        location /mtls/ {
            imburse_auth mtls;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /nocert/ {
            imburse_auth nocert;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/local%%
        %%EXCHANGE_LOCATION:/_imburse/other%%
        %%EXCHANGE_LOCATION:/_imburse/down%%

        location = /_imburse/mtls {
            %%EXCHANGE_SIGNING%%
            proxy_ssl_certificate         ${d}gateway.crt;
            proxy_ssl_certificate_key     ${d}gateway.key;
            proxy_ssl_verify              on;
            proxy_ssl_trusted_certificate ${d}ca.crt;
            proxy_ssl_name                localhost;
            proxy_pass https://127.0.0.1:%%PORT2%%/identity/v1/hmac/management;
        }

        location = /_imburse/nocert {
            %%EXCHANGE_SIGNING%%
            # not the session the certificate opened (the two share their
            # implicit upstream, and with it the saved TLS session)
            proxy_ssl_session_reuse       off;
            proxy_ssl_verify              on;
            proxy_ssl_trusted_certificate ${d}ca.crt;
            proxy_ssl_name                localhost;
            proxy_pass https://127.0.0.1:%%PORT2%%/identity/v1/hmac/management;
        }
    }

    # the identity service behind TLS that wants a client certificate
    server {
        listen 127.0.0.1:%%PORT2%% ssl;
        ssl_certificate        ${d}server.crt;
        ssl_certificate_key    ${d}server.key;
        ssl_verify_client      on;
        ssl_client_certificate ${d}ca.crt;
        access_log off;
        location / {
            proxy_pass http://127.0.0.1:%%IDENTITY_PORT%%;
        }
    }
NGINX

sub tenant { $t->stats->{by_tenant}{$_[0]} // { exchanges => 0, tokens => [] } }

###############################################################################
# A JSON 503 body

my $r = $t->http_get('/down/x');
is($r->{status}, 503, 'JSON 503: 503');
like($r->{headers}{'content-type'} // '', qr{^application/json},
    'JSON 503: application/json');
is_deeply(eval { decode_json($r->{body}) }, { error => 'imburse_unavailable' },
    'JSON 503: the body of error_page');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/,
    'JSON 503: the module\'s Retry-After kept');

###############################################################################
# The tenant tied to the client address

$r = $t->http_get('/tenant/x', { 'X-Tenant' => 'other' });
is($r->{status}, 200, 'tenant by address: 200');
my $up = $t->upstream_requests->[-1];
is($up->{authorization}[0], 'Bearer ' . (tenant('pk-ops-local')->{tokens}[0] // ''),
    'tenant by address: the token of the client\'s tenant, whatever '
    . 'X-Tenant says');
my %h = map { lc $_->[0] => $_->[1] } @{$up->{headers}};
is($h{'x-tenant-id'}, 'tenant-id-of-local', 'x-tenant-id from the same map');
is(tenant('pk-ops-other')->{exchanges}, 0, 'the other tenant was never used');

###############################################################################
# A client certificate towards the identity service

my $mark = $t->log_mark;
$r = $t->http_get('/nocert/x');
is($r->{status}, 503, 'mTLS: without a client certificate, 503');
is(tenant('pk-ops-nocert')->{exchanges}, 0,
    'mTLS: the identity service never saw it');
like(join("\n", $t->grep_error_log(qr/key "nocert".*exchange failed/,
    since => $mark)), qr/identity service error \(status 400/,
    'mTLS: the TLS front\'s 400 in the error line');


$r = $t->http_get('/mtls/x');
is($r->{status}, 200, 'mTLS: with the client certificate, 200');
is(scalar @{tenant('pk-ops-mtls')->{tokens}}, 1, 'mTLS: one token issued');

$t->stop;
done_testing;
