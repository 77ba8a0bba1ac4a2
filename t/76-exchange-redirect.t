#!/usr/bin/perl

# An identity answer that sends the exchange elsewhere: X-Accel-Redirect
# (which the documented exchange location does not ignore) to a body
# bigger than subrequest_output_buffer_size.  nginx's own buffer for the
# subrequest's body refuses it ("too big subrequest response") with an
# error that marks the connection, and the connection of an exchange is the
# module's: the exchange must fail, with its cause, and the worker live.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PRIVATE = 'ZXhjaGFuZ2UtcmVkaXJlY3QtdGVzdC1rZXktMDEyMzQ1Ng==';
my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { 'pk-main' => $PRIVATE });
my $big = $t->prefix . '/big.json';
ImburseTest::spew($big, '{"pad":"' . ('x' x 10_000) . '"}');

$t->run(<<"NGINX", workers => 1);
    imburse_api_key main public_key=pk-main private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main retry=1s timeout=3s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }
        location = /_imburse/main {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%PORT%%/_redirecting;
        }
        location = /_redirecting {
            add_header X-Accel-Redirect /_big;
            return 200 "{}";
        }
        location = /_big {
            internal;
            alias $big;
        }
    }
NGINX

my $r = $t->http_get('/api/x');
is($r->{status}, 503, 'the exchange fails: 503');
ok($r->{headers}{'retry-after'}, '... with Retry-After');
sleep 1.2;
$r = $t->http_get('/api/y');
is($r->{status}, 503, 'after retry=: the next exchange fails the same way');
ok($t->grep_error_log(qr/\[error\].*imburse key "main": token exchange failed/),
    'each failure logged with its cause');
ok(!$t->grep_error_log(qr/exited on signal/), 'no worker crashed');

$t->stop(allow => qr/too big subrequest response/);
done_testing;
