#!/usr/bin/perl

# limit_req and limit_conn at server level are inherited by the exchange
# locations.  An exchange runs on the module's own request (its address is
# "unix:", the same for every exchange); it is the module's traffic, capped
# by imburse_exchange_concurrency, and passes those limits as a client
# request's subrequest always did.  Were it delayed, nginx would arm a timer
# on the module's connection, which no client holds.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PRIVATE = 'ZXhjaGFuZ2UtbGltaXRzLXRlc3Qta2V5LTAxMjM0NTY=';
my @NAMES = map { "t$_" } 1 .. 4;

my $t = ImburseTest->new(workers => 1);
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { map { ("pk-$_" => $PRIVATE) } @NAMES });

my $keys = join '', map { <<"EOF" } @NAMES;
    imburse_api_key $_ public_key=pk-$_
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/x;
EOF

$t->run($keys . <<'NGINX');
    # the exchanges' address is limited, the test client's is not
    map $remote_addr $limited {
        "unix:"  exchanges;
        default  "";
    }
    limit_req_zone  $limited zone=rate:1m rate=1r/m;
    limit_conn_zone $limited zone=conn:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        limit_req  zone=rate burst=10;
        limit_conn conn 1;

        location /t/ {
            imburse_auth $arg_k;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/x%%
    }
NGINX

for my $name (@NAMES) {
    my $r = $t->http_get("/t/?k=$name");
    is($r->{status}, 200, "$name: its first request, 200");
}
is($t->stats->{exchanges}, scalar @NAMES, 'one exchange a tenant');

ok(!$t->grep_error_log(qr/delaying request|limiting (requests|connections)/),
    'no exchange delayed or refused by limit_req or limit_conn')
    or diag join "\n", $t->grep_error_log(qr/limit|delaying/);
ok(!$t->grep_error_log(qr/exited on signal/), 'no worker crashed');

$t->stop;
done_testing;
