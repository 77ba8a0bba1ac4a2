#!/usr/bin/perl

# make test-deb, with the package installed: the system's nginx loads the
# module the way the package enables it, through its snippet in
# /etc/nginx/modules-enabled ("load_module modules/...so", relative to the
# prefix, whose modules/ is, as in Debian's /usr/share/nginx, the system's
# /usr/lib/nginx/modules), and serves one request with a stand-in Imburse:
# one exchange, and the upstream gets the bearer token.

use strict;
use warnings;

BEGIN { $ENV{NGINX_BIN} //= '/usr/sbin/nginx' }

use Test::More;
use FindBin;
use lib "$FindBin::Bin/../../t/lib";
use ImburseTest;

my $PUBLIC  = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
my $PRIVATE = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';
my $SO      = '/usr/lib/nginx/modules/ngx_http_imburse_auth_module.so';
my $ENABLED = '/etc/nginx/modules-enabled/50-mod-http-imburse-auth.conf';

my $t = ImburseTest->new(module => 0);
symlink '/usr/lib/nginx/modules', $t->prefix . '/modules'
    or BAIL_OUT("symlink: $!");
$t->write_key('management', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE });

$t->run(<<'EOF', main => "include $ENABLED;");
    imburse_api_key  management
                     public_key=3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77
                     private_key_file=%%KEYFILE:management%%
                     exchange=/_imburse/management;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /imburse/ {
            imburse_auth management;
            proxy_pass http://127.0.0.1:%%UPSTREAM_PORT%%/;
        }

        %%EXCHANGE_LOCATION:/_imburse/management%%
    }
EOF

my ($worker) = $t->worker_pids;
my $maps = ImburseTest::slurp("/proc/$worker/maps");
ok(index($maps, $SO) >= 0, "the worker has $SO mapped");

my $r = $t->http_get('/imburse/v1/payments', { Authorization => 'Basic eA==' });
is($r->{status}, 200, 'a request through the module: 200');

my $s = $t->stats;
is($s->{exchanges}, 1, 'one exchange at the stand-in identity service');
is($s->{rejected}, 0, 'its signature accepted');
my $token = $s->{tokens}[0]{token} // 'none';
is_deeply($t->upstream_requests->[-1]{authorization}, ["Bearer $token"],
    'the upstream got "Authorization: Bearer <token>", not the client\'s');

$t->stop;

done_testing;
