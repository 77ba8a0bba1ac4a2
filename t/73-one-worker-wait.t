#!/usr/bin/perl

# With one worker there is no other worker to hear from: requests waiting
# for the exchange of their own worker are resumed when it ends, and no
# timer looks at the zone meanwhile.  A 1 ms timer would wake the worker
# about a thousand times a second for as long as the exchange lasts; the
# worker's voluntary context switches (each return from epoll_wait) show
# it, whatever the error log level.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PRIVATE = 'b25lLXdvcmtlci13YWl0LXRlc3Qta2V5LTAxMjM0NTY3ODk=';
my $DELAY_MS = 2000;

my $t = ImburseTest->new(workers => 1);
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { 'pk-main' => $PRIVATE },
    global => { delay_ms => $DELAY_MS });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-main private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }
        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

my ($worker) = $t->worker_pids;
ok($worker, 'one worker');

sub switches {
    my $status = eval { ImburseTest::slurp("/proc/$_[0]/status") } // '';
    return $status =~ /^voluntary_ctxt_switches:\s+(\d+)/m ? $1 : undef;
}

my $before = switches($worker);
ok(defined $before, 'the worker\'s context switches can be read');

# four clients wait for the one exchange, which lasts $DELAY_MS
my $res = $t->load('/api/x', 4, 4);
my $after = switches($worker);

is($res->{by_status}{200} // 0, 4, 'every waiting request served');
is($t->stats->{exchanges}, 1, 'one exchange');
cmp_ok($res->{max_ms}, '>=', $DELAY_MS * 0.9,
    'the requests waited for the exchange');

# A few dozen are the connections' own events (accept, read, the exchange's
# connect and answer, the upstream); a 1 ms timer would add about
# $DELAY_MS.  The bound leaves room for a loaded machine without coming
# near what a timer costs.
my $woken = $after - $before;
cmp_ok($woken, '<', $DELAY_MS / 5,
    "the worker woke $woken times during a $DELAY_MS ms wait: no timer polls "
    . 'the zone');

$t->stop;
done_testing;
