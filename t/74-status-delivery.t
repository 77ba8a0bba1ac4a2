#!/usr/bin/perl

# The status page is written a batch of keys at a time into two buffers;
# when the client has not taken them yet, the page goes on once it has.
# That path runs for a page bigger than the two buffers sent to a client
# that reads slowly or through limit_rate, and for the page as a
# subrequest whose output nginx holds back (two SSI includes of it on one
# page).  Each must deliver the whole page, and the worker must live.

use strict;
use warnings;

use Test::More;
use JSON::PP qw(decode_json);
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $N = 2000;
my $t = ImburseTest->new;
$t->write_key('main', 'c3RhdHVzLWRlbGl2ZXJ5LXRlc3Qta2V5LTAxMjM0NTY=');
$t->start_standin(keys => {});

my $keys = join '', map { <<"EOF" } 1 .. $N;
    imburse_api_key k$_ public_key=pk-$_ private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/x;
EOF

$t->run($keys . <<'NGINX');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { imburse_status; }
        location = /slow   { imburse_status; limit_rate 1m; }
        location = /twice {
            ssi on;
            ssi_types text/plain;
            return 200 'A<!--# include virtual="/status?key=k1" -->B<!--# include virtual="/status?key=k2" -->C';
        }
        %%EXCHANGE_LOCATION:/_imburse/x%%
    }
NGINX

sub crashed { scalar $t->grep_error_log(qr/exited on signal/) }

my $full = $t->http_get('/status');
is($full->{status}, 200, 'the page');
my $page = eval { decode_json($full->{body}) } // {};
is(scalar keys %{ $page->{keys} // {} }, $N, "all $N keys");
cmp_ok(length $full->{body}, '>', 2 * 65536,
    'bigger than the two buffers it is written into');

my $slow = $t->http_get('/slow');
is($slow->{status}, 200, 'limit_rate: 200');
my $slow_page = eval { decode_json($slow->{body}) } // {};
is(scalar keys %{ $slow_page->{keys} // {} }, $N,
    'limit_rate: the whole page arrives');
is(crashed(), 0, 'limit_rate: no worker crashed');

my $twice = $t->http_get('/twice');
is($twice->{status}, 200, 'two SSI includes: 200');
like($twice->{body}, qr/^A\{.*"k1".*\}\n?B\{.*"k2".*\}\n?C$/s,
    'two SSI includes: both pages, in their places')
    or diag(substr($twice->{body}, 0, 400));
is(crashed(), 0, 'two SSI includes: no worker crashed');

$t->stop;
done_testing;
