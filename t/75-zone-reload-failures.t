#!/usr/bin/perl

# The zone frees the entries of keys a reload removed only once no worker
# of an older configuration can use them, and goes on doing so whatever
# happens to later reloads.
# - A reload that also changes "user": the old worker, still serving a
#   request of the removed key, runs as another user than the new ones, so
#   a signal probe gets EPERM from it.  It is alive all the same: its
#   entry stays until it has gone.
# - A reload that fails after the zone's initialisation (a port in use:
#   nginx gives up on it after the zones are set up) leaves the running
#   configuration in charge: its workers still free what the reload before
#   removed.

use strict;
use warnings;

use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep time);
use POSIX ();
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $PRIVATE = 'em9uZS1yZWxvYWQtZmFpbHVyZXMtdGVzdC1rZXktMDE=';
my $SLOW_MS = 5000;

my $t = ImburseTest->new(workers => 1);
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { map { ("pk-$_" => $PRIVATE) } qw(a b c) },
    upstream => { delay_by_path => { '/b/slow' => $SLOW_MS } });

sub conf {
    my (@names) = @_;
    my $keys = join '', map { <<"EOF" } @names;
    imburse_api_key $_ public_key=pk-$_ private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/x;
EOF
    my $locations = join '', map { <<"EOF" } @names;
        location /$_/ { imburse_auth $_; proxy_pass %%UPSTREAM_URL%%; }
EOF
    return $keys . <<"NGINX";
    server {
        listen 127.0.0.1:%%PORT%%;
$locations
        location = /status { imburse_status; }
        %%EXCHANGE_LOCATION:/_imburse/x%%
    }
NGINX
}

sub entries {
    my $r = $t->http_get('/status');
    my $s = eval { decode_json($r->{body}) } // {};
    return $s->{zone}{entries} // -1;
}

# until COND or SECONDS have passed
sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time + $secs;
    until ($cond->()) {
        return 0 if time > $end;
        sleep 0.1;
    }
    return 1;
}

sub hup_with {
    my ($conf, $edit) = @_;
    $t->write_config($conf);
    if ($edit) {
        my $path = $t->prefix . '/nginx.conf';
        ImburseTest::spew($path, $edit->(ImburseTest::slurp($path)));
    }
    kill 'HUP', $t->{pid};
}

$t->run(conf(qw(a b)));
is($t->http_get('/b/x')->{status}, 200, 'b: served');
is(entries(), 2, 'two entries');

###############################################################################
# A reload that changes "user", while an old worker still serves b

SKIP: {
    skip 'changing "user" needs root', 4 unless $> == 0;

    my $client = fork // die "fork: $!";
    if ($client == 0) {
        $t->http_get('/b/slow', undef, timeout => 20);
        POSIX::_exit(0);
    }
    sleep 0.5;
    my ($old) = $t->worker_pids;

    hup_with(conf('a'), sub { $_[0] =~ s/^user nobody nogroup;$/user daemon daemon;/mr });

    # the new worker's reclamation looks every second
    sleep 2.5;
    ok(kill(0, $old), 'the old worker still serves the slow request');
    is(entries(), 2, "b's entry stays while the old worker can use it");

    waitpid $client, 0;
    ok(wait_for(sub { !kill(0, $old) }, 5), 'the old worker has gone');
    ok(wait_for(sub { entries() == 1 }, 5), "then b's entry is freed")
        or diag 'entries: ' . entries();
}

###############################################################################
# A reload that fails after the zone's initialisation

$t->reload(conf(qw(a c))) or BAIL_OUT('reload');
is($t->http_get('/c/x')->{status}, 200, 'c: served');
my $before = entries();

my $mark = $t->log_mark;
hup_with(conf('a'));
sleep 0.3;
# the new configuration's workers are up; the next one cannot listen
my $busy = $t->identity_port;
hup_with(conf('a'),
    sub { $_[0] =~ s/(listen 127\.0\.0\.1:\d+;)/$1\n        listen 127.0.0.1:$busy;/r });

ok(wait_for(sub { $t->error_log(since => $mark) =~ /bind\(\) to 127\.0\.0\.1:$busy failed/ }, 10),
    'the second reload fails: its port is in use');
ok(wait_for(sub { entries() == $before - 1 }, 6),
    "c's entry is freed all the same (the running configuration is still in charge)")
    or diag 'entries: ' . entries() . ", before: $before";
is($t->http_get('/a/x')->{status}, 200, 'a: served');

$t->stop(allow => qr/bind\(\) to 127\.0\.0\.1:$busy failed|still could not bind/);
done_testing;
