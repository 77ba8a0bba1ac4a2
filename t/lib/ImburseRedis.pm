package ImburseRedis;

# Redis for the fleet tests: a real redis-server (Debian's) on a free
# loopback port in a temp dir, that a test can kill (SIGKILL) and restart on
# the same port, and redis-cli to look at what it holds.  Also the helpers of
# the fleet tests: a fleet of nginx instances sharing one stand-in Imburse
# and one Redis, loads run on all of them at once, fake Redis servers that
# answer garbage or nothing.  Core Perl only.  See the POD at the end.

use strict;
use warnings;

use Test::More ();
use File::Temp qw(tempdir);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use Time::HiRes qw(time sleep);
use JSON::PP ();
use Digest::SHA qw(sha256_hex);

use ImburseTest;
use ImburseLoad ();

our $REDIS_SERVER = $ENV{REDIS_SERVER} // '/usr/bin/redis-server';
our $REDIS_CLI    = $ENV{REDIS_CLI} // '/usr/bin/redis-cli';

my $JSON = JSON::PP->new->canonical->utf8;
my %LIVE;    # redis servers and fake servers still running, killed at END

###############################################################################
# A real Redis

# new(password => undef, args => [more redis-server arguments]): starts
# redis-server and waits until it answers.
sub new {
    my ($class, %o) = @_;
    Test::More::BAIL_OUT("$REDIS_SERVER not found (scripts/install-deps "
        . "installs redis-server)") unless -x $REDIS_SERVER;
    Test::More::BAIL_OUT("$REDIS_CLI not found (redis-tools)")
        unless -x $REDIS_CLI;

    my $self = bless {
        password => $o{password},
        args     => $o{args} // [],
        owner    => $$,
        dir      => tempdir('imburse-redis-XXXXXX', TMPDIR => 1,
                            CLEANUP => !$ENV{IMBURSE_TEST_KEEP}),
    }, $class;
    ($self->{port}) = ImburseTest::free_ports(1);
    $LIVE{"$self"} = $self;
    return $self->start;
}

sub port     { $_[0]{port} }
sub pid      { $_[0]{pid} }
sub password { $_[0]{password} }
sub address  { "127.0.0.1:$_[0]{port}" }
sub server_log { ImburseTest::read_from("$_[0]{dir}/redis.log", 0) }

# start(): on the same port as before (after kill or stop); no persistence,
# so a restarted Redis is empty, like one that lost its memory.
sub start {
    my ($self) = @_;
    die "redis already running\n" if $self->{pid};
    my @args = ('--port', $self->{port}, '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        '--dir', $self->{dir}, '--logfile', '');
    push @args, '--requirepass', $self->{password}
        if defined $self->{password};
    push @args, @{$self->{args}};

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/redis.log";
        open STDERR, '>>', "$self->{dir}/redis.log";
        { exec $REDIS_SERVER, @args }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{watchdog} = ImburseTest::watchdog($pid);

    my $deadline = time + 5;
    while (time < $deadline) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $self->{pid} = undef;
            die "redis-server exited at start (status $?):\n" . $self->server_log;
        }
        return $self if $self->answers;
        sleep 0.02;
    }
    $self->stop;
    die "redis-server did not answer PING within 5s:\n" . $self->server_log;
}

# true when something on the port answers a PING with a Redis reply (a
# "-NOAUTH" error counts: that is Redis too)
sub answers {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $self->{port}, Proto => 'tcp', Timeout => 1) or return 0;
    syswrite $s, "PING\r\n";
    my $buf = '';
    my $sel = IO::Select->new($s);
    sysread $s, $buf, 256 if $sel->can_read(1);
    close $s;
    return $buf =~ /^[+-]/ ? 1 : 0;
}

# crash(): SIGKILL, as a crash would; the port is free again at once.
sub crash {
    my ($self) = @_;
    $self->_end('KILL', 0);
}

# stop(): SIGTERM, then SIGKILL after 3 s.
sub stop {
    my ($self) = @_;
    $self->_end('TERM', 3);
}

sub restart {
    my ($self) = @_;
    $self->crash if $self->{pid};
    return $self->start;
}

sub _end {
    my ($self, $sig, $grace) = @_;
    if (my $wd = delete $self->{watchdog}) {
        kill 'TERM', $wd;
        waitpid $wd, 0;
    }
    my $pid = delete $self->{pid} or return;
    kill $sig, $pid;
    my $deadline = time + $grace;
    while (time < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# cli(ARGS...) -> output of redis-cli (not a terminal, so raw: a bulk
# string as is, then a newline); at most 5 s.  The password goes through
# the environment, not the command line.
sub cli {
    my ($self, @args) = @_;
    local $ENV{REDISCLI_AUTH} = $self->{password}
        if defined $self->{password};
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/timeout', '5', $REDIS_CLI, '-h', '127.0.0.1',
            '-p', $self->{port}, @args }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# set(KEY, BYTES, PX_MS): binary-safe (the value goes through redis-cli's
# stdin, -x), with an expiry
sub set {
    my ($self, $key, $value, $px) = @_;
    local $ENV{REDISCLI_AUTH} = $self->{password}
        if defined $self->{password};
    my $pid = open(my $fh, '|-') // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        { exec '/usr/bin/timeout', '5', $REDIS_CLI, '-h', '127.0.0.1',
            '-p', $self->{port}, '-x', 'SET', $key }
        POSIX::_exit(127);
    }
    binmode $fh;
    print $fh $value;
    close $fh;
    $self->cli('PEXPIRE', $key, $px) if $px;
}

# get(KEY) -> the value's bytes, or undef when the key does not exist
sub get {
    my ($self, $key) = @_;
    return undef unless $self->cli('EXISTS', $key) =~ /^1/;
    my $v = $self->cli('GET', $key);
    $v =~ s/\n\z//;
    return $v;
}

# scan(PATTERN) -> sorted key names (SCAN, not KEYS: what an operator should
# use on a shared Redis)
sub scan {
    my ($self, $pattern) = @_;
    my %k = map { $_ => 1 } grep { length }
        split /\n/, $self->cli('--scan', '--pattern', $pattern);
    return sort keys %k;
}

# pttl(KEY) -> milliseconds left (-2: no such key, -1: no expiry)
sub pttl {
    my ($self, $key) = @_;
    my ($n) = $self->cli('PTTL', $key) =~ /(-?\d+)/;
    return $n;
}

# The fleet's Redis key names for a public key: imburse:{ns}:token and
# imburse:{ns}:lock, ns being 16 hex digits of SHA-256(public key).
sub namespace  { substr sha256_hex($_[0]), 0, 16 }
sub token_key  { 'imburse:' . namespace($_[0]) . ':token' }
sub lock_key   { 'imburse:' . namespace($_[0]) . ':lock' }

sub DESTROY {
    my ($self) = @_;
    $self->cleanup;
}

sub cleanup {
    my ($self) = @_;
    return unless ($self->{owner} // 0) == $$;
    local ($?, $@);
    $self->crash if $self->{pid};
    delete $LIVE{"$self"};
}

###############################################################################
# A fake Redis: answers every connection with fixed bytes (then closes), or
# with nothing at all (a Redis that hangs)

package ImburseRedis::Fake;

use POSIX ();
use IO::Socket::INET ();
use IO::Select ();

# new(reply => BYTES | undef, close => 1): reply undef: read, never answer,
# keep the connection open until the client gives up.
sub new {
    my ($class, %o) = @_;
    my ($port) = ImburseTest::free_ports(1);
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port, Listen => 64, ReuseAddr => 1, Proto => 'tcp')
        or die "fake redis: listen: $!\n";
    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        my $deadline = time + 600;
        my $sel = IO::Select->new($l);
        while (time < $deadline && getppid() == $parent) {
            next unless $sel->can_read(0.5);
            my $c = $l->accept or next;
            my $server = $$;
            my $kid = fork;
            if (defined $kid && $kid == 0) {
                close $l;
                serve($c, \%o, $server);
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    my $self = bless { port => $port, pid => $pid, owner => $$,
                       reply => $o{reply} }, $class;
    $LIVE{"$self"} = $self;
    return $self;
}

sub serve {
    my ($c, $o, $server) = @_;
    my $sel = IO::Select->new($c);
    my $buf = '';
    # whatever the client sends first (a RESP command or two, pipelined)
    sysread $c, $buf, 65536 if $sel->can_read(5);
    if (defined $o->{reply}) {
        syswrite $c, $o->{reply};
        close $c;
        return;
    }
    # silent: hold the connection until the client closes it (or the
    # server is stopped)
    for (1 .. 60) {
        last if getppid() != $server;
        if ($sel->can_read(0.5)) {
            my $n = sysread $c, $buf, 65536;
            last unless $n;
        }
    }
    close $c;
}

sub port    { $_[0]{port} }
sub address { "127.0.0.1:$_[0]{port}" }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'KILL', $pid;
    waitpid $pid, 0;
    delete $LIVE{"$self"};
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    $self->stop if ($self->{owner} // 0) == $$;
}

package ImburseRedis;

END {
    local $?;    # waitpid below must not change the test's exit status
    $_->cleanup for grep { $_->isa('ImburseRedis') } values %LIVE;
    $_->stop for grep { $_->isa('ImburseRedis::Fake') } values %LIVE;
}

###############################################################################
# A fleet: nginx instances sharing one stand-in Imburse and one Redis

# start_fleet(size => 3, public_key => PK, private_key => B64,
#             redis => ADDRESS (host:port of a Redis, real or fake),
#             key_params => 'timeout=2s retry=1s',
#             redis_conf => 'extra lines for the fleet location',
#             extra => 'more http-level configuration',
#             before_run => sub { $t = shift; ... write files ... },
#             standin => { global => {...} }, workers => 2)
# -> instances (ImburseTest objects).  The first one runs the stand-in.
sub start_fleet {
    my (%o) = @_;
    my $size = $o{size} // 3;
    my @fleet;
    for my $i (1 .. $size) {
        my $t = ImburseTest->new(workers => $o{workers} // 2);
        $t->write_key('main', $o{private_key});
        if ($i == 1) {
            $t->start_standin(keys => { $o{public_key} => $o{private_key} },
                %{$o{standin} // {}});
        }
        push @fleet, $t;
    }
    my $identity_url = $fleet[0]->render('%%IDENTITY_URL%%');
    for my $t (@fleet) {
        $o{before_run}->($t) if $o{before_run};
        $t->run(fleet_config(%o, identity_url => $identity_url));
    }
    return @fleet;
}

# The configuration of one instance of the fleet: the protected location
# /api/ (its upstream answers with the Authorization it got), the exchange
# location, the fleet location that talks to Redis, and /status.
sub fleet_config {
    my (%o) = @_;
    my $params = $o{key_params} // '';
    my $redis_conf = $o{redis_conf} // '';
    my $extra = $o{extra} // '';
    return <<"NGINX";
$extra
    upstream imburse_redis {
        server $o{redis};
        keepalive 8;
    }

    upstream backend {
        server 127.0.0.1:%%PORT2%%;
        keepalive 16;
    }

    imburse_api_key main public_key=$o{public_key}
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main
                    fleet=/_imburse/fleet $params;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /api/ {
            imburse_auth main;
            proxy_http_version 1.1;
            proxy_set_header   Connection "";
            proxy_pass http://backend;
        }

        location = /status {
            imburse_status;
        }

        location = /_imburse/main {
            %%EXCHANGE_SIGNING%%
            proxy_read_timeout         10s;
            proxy_pass $o{identity_url};
        }

        location = /_imburse/fleet {
            internal;
            imburse_redis_pass imburse_redis;
            $redis_conf
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "\$http_authorization"; }
    }
NGINX
}

# status(T, KEY) -> the key's part of T's imburse_status JSON
sub status {
    my ($t, $key) = @_;
    my $r = $t->http_get('/status');
    die "status: $r->{status}\n" unless $r->{status} == 200;
    return $JSON->decode($r->{body})->{keys}{$key // 'main'};
}

# fleet_sum(FIELD, INSTANCES...) -> sum of the "fleet" FIELD of key main
sub fleet_sum {
    my ($field, @fleet) = @_;
    my $n = 0;
    $n += status($_)->{fleet}{$field} for @fleet;
    return $n;
}

# in_parallel(CODE, INSTANCES...) -> results: CODE->($t) in one process per
# instance, all at once; each result (a hash) comes back as JSON.  The
# children leave with _exit: they must not stop the parent's nginx.
sub in_parallel {
    my ($code, @fleet) = @_;
    my @wait = map { my $t = $_; in_background(sub { $code->($t) }) } @fleet;
    return map { $_->() } @wait;
}

# in_background(CODE) -> a function that waits for CODE's result: CODE (a
# hash-returning sub, e.g. a load) runs in a child process meanwhile.
sub in_background {
    my ($code) = @_;
    pipe my $rd, my $wr or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my $res = eval { $code->() } // { error => "$@" };
        syswrite $wr, $JSON->encode($res);
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    return sub {
        local $/;
        my $text = <$rd>;
        close $rd;
        waitpid $pid, 0;
        return eval { $JSON->decode($text // '') } // { error => 'no result' };
    };
}

# burst(PATH, TOTAL, CONC, [INSTANCES]) -> results of ImburseTest::load on
# every instance at once: count, by_status, complete, max_ms, elapsed, and
# bodies ({body => n}) instead of the per-request results
sub burst {
    my ($path, $total, $conc, $fleet) = @_;
    return in_parallel(sub {
        my $r = $_[0]->load($path, $total, $conc);
        $r->{bodies}{$_->{body}}++ for @{delete $r->{results}};
        $r->{complete} = $r->{complete} ? 1 : 0;
        return $r;
    }, @$fleet);
}

# load_for(PATH, SECONDS, CONC, [INSTANCES], check => CODE) -> results of
# ImburseLoad::load_for on every instance at once
sub load_for {
    my ($path, $seconds, $conc, $fleet, %o) = @_;
    return in_parallel(sub {
        ImburseLoad::load_for($_[0]->url($path), $seconds, $conc, %o);
    }, @$fleet);
}

# lock_holder(TIMEOUT, [INSTANCES], [LOCKS_TAKEN_BEFORE]) -> the index of
# the instance whose status shows one more fleet lock taken than before,
# within TIMEOUT seconds, or undef.  (Redis's lock holds a nonce, not the
# name of an instance.)
sub lock_holder {
    my ($timeout, $fleet, $before) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        for my $i (0 .. $#$fleet) {
            return $i if status($fleet->[$i])->{fleet}{locks_taken}
                > $before->[$i];
        }
        sleep 0.02;
    }
    return undef;
}

# crash_nginx(T): SIGKILL to T's master and workers, as a machine that
# dies would.
sub crash_nginx {
    my ($t) = @_;
    # the master first: it must not see a worker die and start another
    my @pids = ($t->{pid}, $t->worker_pids(all => 1));
    kill 'KILL', $pids[0];
    kill 'KILL', @pids;
    # the master is our child: reap it; the workers are init's now
    waitpid $t->{pid}, 0;
    $t->{pid} = undef;
    $t->kill_nginx;    # ends its watchdog
    for (1 .. 100) {
        last unless grep { alive($_) } @pids;
        sleep 0.02;
    }
}

# a process that is there and not a zombie
sub alive {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /^\d+ \(.*\) ([A-Za-z])/ && $1 ne 'Z' ? 1 : 0;
}

1;

__END__

=head1 NAME

ImburseRedis - a real redis-server for the fleet tests, fake ones, and a
fleet of nginx instances

=head1 SYNOPSIS

    use ImburseRedis;

    my $redis = ImburseRedis->new(password => 'secret');  # free port
    my @fleet = ImburseRedis::start_fleet(
        public_key => $PK, private_key => $B64, redis => $redis->address,
        key_params => 'timeout=2s retry=1s',
        redis_conf => "imburse_redis_password_file $file;",
        standin => { global => { delay_ms => 300 } });
    my @res = ImburseRedis::burst('/api/x', 300, 30, \@fleet);
    my $blob = $redis->get(ImburseRedis::token_key($PK));
    $redis->crash;  $redis->start;                         # same port
    my $fake = ImburseRedis::Fake->new(reply => "HTTP/1.0 200 OK\r\n\r\n");

=head1 A REAL REDIS

C<new(password =E<gt> undef, args =E<gt> [])> starts
C</usr/bin/redis-server> (C<REDIS_SERVER>) on a free loopback port in a
temp dir, without persistence, with C<--requirepass> when a password is
given and C<args> (e.g. C<--replicaof HOST PORT>) at the end, and waits
(5 s at most) until it answers PING; dies otherwise.  C<crash> (SIGKILL),
C<stop> (TERM, then KILL), C<start> (again, same port, empty),
C<restart>.  A watchdog stops it if the test process dies; it is killed at
exit.

C<cli(ARGS)> runs C<redis-cli -p PORT ARGS> (5 s at most; the password goes
through C<REDISCLI_AUTH>); C<get(KEY)> (bytes or undef),
C<set(KEY, BYTES, PX_MS)> (binary-safe, through stdin),
C<scan(PATTERN)> (key names, with SCAN), C<pttl(KEY)>.  C<token_key(PK)>,
C<lock_key(PK)>, C<namespace(PK)>: the names the module uses, C<imburse:{16 hex of SHA-256(PK)}:token|lock>.

=head1 A FAKE REDIS

C<< ImburseRedis::Fake->new(reply => BYTES) >> listens on a free port and
answers every connection with BYTES after reading what the client sent,
then closes; with C<reply =E<gt> undef> it never answers (a hung Redis).
C<port>, C<address>, C<stop>.

=head1 A FLEET

C<start_fleet(%o)> starts C<size> (3) instances of C<workers> (2) workers
each; the first runs the stand-in (C<standin> options), the others use its
identity URL.  Each serves C</api/> (the upstream answers with the
C<Authorization> it received), C</status> (imburse_status) and has the key
C<main> with C<fleet=/_imburse/fleet> and C<key_params>, the fleet location
passing to C<redis> (host:port) with C<redis_conf> lines; C<extra> is
added to the http block; C<before_run> is called with each instance
before it starts (to write a password file, say).

C<status(T)> (key C<main> of C</status>), C<fleet_sum(FIELD, @fleet)>,
C<in_parallel(CODE, @fleet)> (CODE-E<gt>(T) for every instance at once, in
child processes), C<in_background(CODE)> (returns a function that waits
for the result), C<burst(PATH, TOTAL, CONC, \@fleet)> and
C<load_for(PATH, SECONDS, CONC, \@fleet, check =E<gt> CODE)> run
ImburseTest::load or ImburseLoad::load_for on every instance at once.
C<lock_holder(TIMEOUT, \@fleet, \@locks_taken_before)>: the index of the
instance that took the fleet lock (from the status figures).  C<crash_nginx(T)>: SIGKILL to
T's master and workers.

=cut
