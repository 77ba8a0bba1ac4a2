#!/usr/bin/perl

# Worker shutdown and reload end an exchange cleanly: the exchange is the
# module's, and a worker that shuts down finishes it (within timeout=)
# before it exits.
# - A reload while an exchange runs (1.5 s): the old worker stores the
#   token, the request that waited for it is served, the new workers use
#   it; one exchange.
# - nginx -s quit while an exchange runs: the waiting request is served,
#   nginx exits, nothing left behind (no alert, no open socket).
# - nginx -s stop (fast shutdown) while an exchange runs: nginx exits at
#   once, nothing left behind.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(sleep time);

my $PUBLIC  = 'pk-shutdown';
my $PRIVATE = 'c2h1dGRvd24tdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2Q=';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
                  global => { delay_ms => 1500 });

my $conf = <<'NGINX';
    imburse_api_key main public_key=pk-shutdown
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main timeout=5s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

# a request in a child process; its status in a file
sub request_in_background {
    my ($path) = @_;
    my $file = $t->prefix . '/bg-status';
    unlink $file;
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = HTTP::Tiny->new(timeout => 10)->get($t->url($path));
        ImburseTest::spew($file, $r->{status});
        POSIX::_exit(0);
    }
    return sub { waitpid $pid, 0; ImburseTest::slurp($file) };
}
sub wait_inflight {
    for (1 .. 40) {
        return 1 if $t->stats->{inflight};
        sleep 0.05;
    }
    return 0;
}

###############################################################################
# Scenario: a reload while the exchange runs

$t->run($conf);
my $done = request_in_background('/api/during-reload');
ok(wait_inflight(), 'reload: the exchange is under way');
ok($t->reload, 'reload: done');
is($done->(), 200, 'reload: the request that waited for it: 200');
is($t->http_get('/api/after-reload')->{status}, 200,
    'reload: the new workers: 200');
is($t->stats->{exchanges}, 1, 'reload: one exchange in all');
is($t->upstream_requests->[-1]{authorization}[0],
    'Bearer ' . $t->stats->{tokens}[0]{token},
    'reload: the new workers use the token the old worker stored');
$t->stop;

###############################################################################
# Scenario: nginx -s quit while the exchange runs

$t->reset_stats;
$t->run($conf);
$done = request_in_background('/api/during-quit');
ok(wait_inflight(), 'quit: the exchange is under way');
my $t0 = time;
kill 'QUIT', $t->{pid};
is($done->(), 200, 'quit: the waiting request is served');
for (1 .. 100) {
    last if waitpid($t->{pid}, POSIX::WNOHANG()) == $t->{pid};
    sleep 0.05;
}
ok(!kill(0, $t->{pid}), sprintf('quit: nginx exited (%.1f s)', time - $t0));
$t->{pid} = undef;
$t->check_error_log;

###############################################################################
# Scenario: nginx -s stop while the exchange runs

$t->reset_stats;
$t->run($conf);
$done = request_in_background('/api/during-stop');
ok(wait_inflight(), 'stop: the exchange is under way');
$t0 = time;
kill 'TERM', $t->{pid};
for (1 .. 100) {
    last if waitpid($t->{pid}, POSIX::WNOHANG()) == $t->{pid};
    sleep 0.05;
}
ok(time - $t0 < 1, sprintf('stop: nginx exited at once (%.1f s)',
    time - $t0));
$t->{pid} = undef;
$done->();
$t->check_error_log;

done_testing;
