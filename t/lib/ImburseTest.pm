package ImburseTest;

# Test harness for ngx_http_imburse_auth_module, in the spirit of nginx-tests'
# lib/Test/Nginx.pm: core Perl only.  See the POD at the end.

use strict;
use warnings;

use Test::More ();
use File::Temp qw(tempdir);
use File::Basename qw(dirname basename);
use File::Copy ();
use Cwd qw(abs_path);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use Time::HiRes qw(time sleep);
use HTTP::Tiny ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);

use Exporter 'import';
our @EXPORT_OK = qw(slurp spew);

our $LIB  = dirname(abs_path(__FILE__));
our $ROOT = abs_path("$LIB/../..");
our $NGINX  = $ENV{NGINX_BIN} // '/usr/sbin/nginx';
our $MODULE = $ENV{IMBURSE_MODULE}
    // "$ROOT/build/ngx_http_imburse_auth_module.so";

my $JSON = JSON::PP->new->canonical->utf8;

# The harness's own waits (start, reload, stop, HTTP client timeouts) are
# stretched by IMBURSE_TIME_FACTOR for slow nginx builds (valgrind: about
# 20-50x slower).  The tests' assertions about time are not.
our $TF = ($ENV{IMBURSE_TIME_FACTOR} // '') =~ /^\d+(\.\d+)?$/
    && $ENV{IMBURSE_TIME_FACTOR} >= 1 ? $ENV{IMBURSE_TIME_FACTOR} : 1;
my %LIVE;    # instances still running, killed at END if a test died

###############################################################################
# Construction

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        module  => $o{module} // 1,
        workers => $o{workers} // 2,
        pid     => undef,
        standin_pid => undef,
    }, $class;

    Test::More::BAIL_OUT("nginx binary $NGINX not found (set NGINX_BIN)")
        unless -x $NGINX;
    # IMBURSE_MODULE=static: the module is compiled into NGINX_BIN
    $self->{static} = ($MODULE eq 'static');

    Test::More::BAIL_OUT("module $MODULE not found (run make, or set "
        . "IMBURSE_MODULE)")
        if $self->{module} && !$self->{static} && !-f $MODULE;

    $self->{prefix} = tempdir('imburse-test-XXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{IMBURSE_TEST_KEEP});
    Test::More::diag("prefix kept: $self->{prefix}") if $ENV{IMBURSE_TEST_KEEP};
    # workers run as nobody when we are root: let them traverse the prefix
    chmod 0755, $self->{prefix};
    mkdir "$self->{prefix}/$_", 0700 for qw(keys standin);

    # a private copy: a rebuild of the module while nginx runs (make
    # overwriting the .so in place) must not crash the workers under test
    if ($self->{module} && !$self->{static}) {
        mkdir "$self->{prefix}/modules", 0755;
        $self->{so} = "$self->{prefix}/modules/" . basename($MODULE);
        File::Copy::copy($MODULE, $self->{so})
            or Test::More::BAIL_OUT("cannot copy $MODULE: $!");
    }

    my @ports = free_ports(5);
    @{$self}{qw(port port2 port3 identity_port upstream_port)} = @ports;

    $LIVE{"$self"} = $self;
    return $self;
}

sub prefix        { $_[0]{prefix} }
sub port          { $_[0]{port} }
sub port2         { $_[0]{port2} }
sub port3         { $_[0]{port3} }
sub identity_port { $_[0]{identity_port} }
sub upstream_port { $_[0]{upstream_port} }

# Free loopback ports below the ephemeral range (32768+ on Linux), so that
# outgoing connections of a busy machine cannot take them between our check
# and nginx's bind.  A port is handed out once per test process: several
# instances are configured before any of them binds its ports.  Bounded: at
# most 200 tries.
my %HANDED_OUT;
sub free_ports {
    my ($n) = @_;
    my (@socks, %seen);
    for (1 .. 200) {
        last if @socks == $n;
        my $port = 10000 + int rand 22000;
        next if $seen{$port}++ || $HANDED_OUT{$port};
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        push @socks, $s;
    }
    die "cannot find $n free ports\n" unless @socks == $n;
    my @ports = map { $_->sockport } @socks;
    close $_ for @socks;
    $HANDED_OUT{$_} = 1 for @ports;
    return @ports;
}

###############################################################################
# Files: keys and configuration

sub keyfile {
    my ($self, $name) = @_;
    return "$self->{prefix}/keys/$name.key";
}

# write_key(NAME, BASE64) writes the private key file keys/NAME.key
# (0600, with a trailing newline) and returns its path.
sub write_key {
    my ($self, $name, $b64, %o) = @_;
    my $path = $self->keyfile($name);
    spew($path, $o{raw} ? $b64 : "$b64\n");
    chmod 0600, $path;
    return $path;
}

sub write_file {
    my ($self, $name, $content) = @_;
    my $path = "$self->{prefix}/$name";
    spew($path, $content);
    return $path;
}

# The nginx under test as a number, 1.22.1 -> 1022001 (as nginx_version).
my $NGINX_VERSION;
sub nginx_version {
    return $NGINX_VERSION //= do {
        my $v = `$NGINX -v 2>&1`;
        $v =~ m{nginx/(\d+)\.(\d+)\.(\d+)} ? $1 * 1000000 + $2 * 1000 + $3
                                             : 0;
    };
}

# "listen ADDR http2;" up to 1.25.0, "listen ADDR; http2 on;" from 1.25.1.
sub listen_h2 {
    my ($addr) = @_;
    return nginx_version() >= 1025001 ? "listen $addr; http2 on;"
                                      : "listen $addr http2;";
}

sub placeholders {
    my ($self) = @_;
    return (
        PORT          => $self->{port},
        PORT2         => $self->{port2},
        PORT3         => $self->{port3},
        IDENTITY_PORT => $self->{identity_port},
        UPSTREAM_PORT => $self->{upstream_port},
        IDENTITY_URL  => "http://127.0.0.1:$self->{identity_port}"
                         . "/identity/v1/hmac/management",
        UPSTREAM_URL  => "http://127.0.0.1:$self->{upstream_port}",
        PREFIX        => $self->{prefix},
        KEYFILE       => $self->keyfile('default'),
    );
}

# The lines that make a location the documented exchange location: an
# internal POST without the client's headers or body, signed by
# $imburse_hmac.
my @EXCHANGE_SIGNING = (
    'internal;',
    'proxy_method               POST;',
    'proxy_pass_request_headers off;',
    'proxy_pass_request_body    off;',
    'proxy_set_header           Content-Length 0;',
    'proxy_set_header           Authorization $imburse_hmac;',
);

# The whole exchange location at URI, in front of the stand-in.
sub exchange_location {
    my ($uri) = @_;
    return "        location = $uri {\n"
        . join('', map { "            $_\n" } @EXCHANGE_SIGNING)
        . "            proxy_pass %%IDENTITY_URL%%;\n        }\n";
}

# Substitutes %%EXCHANGE_LOCATION:uri%% (the block above), a line of
# %%EXCHANGE_SIGNING%% (the lines above, at its indentation), %%NAME%% and
# %%KEYFILE:name%%; dies on an unknown placeholder.
sub render {
    my ($self, $text) = @_;
    my %p = $self->placeholders;
    $text =~ s{^[ \t]*%%EXCHANGE_LOCATION:(/[^%\s]+)%%[ \t]*\n?}
              {exchange_location($1)}gem;
    $text =~ s{^([ \t]*)%%EXCHANGE_SIGNING%%[ \t]*\n?}
              {join '', map { "$1$_\n" } @EXCHANGE_SIGNING}gem;
    $text =~ s/%%KEYFILE:([A-Za-z0-9_.-]+)%%/$self->keyfile($1)/ge;
    $text =~ s{%%LISTEN_H2:([A-Z0-9_]+)%%}{
        listen_h2('127.0.0.1:' . ($p{$1} // die "unknown port %%$1%%\n"))
    }ge;
    $text =~ s{%%([A-Z0-9_]+)%%}{
        exists $p{$1} ? $p{$1} : die "unknown placeholder %%$1%%\n"
    }ge;
    return $text;
}

# write_config(HTTP_SNIPPET, workers => 2, main => '', events => '')
sub write_config {
    my ($self, $http, %o) = @_;
    my $p = $self->{prefix};
    $self->{workers} = $o{workers} if defined $o{workers};

    my $status = $self->{module} ? '$imburse_token_status' : '-';
    my $user = $> == 0 ? "user nobody nogroup;\n" : '';
    my $load = $self->{module} && !$self->{static}
             ? "load_module $self->{so};\n" : '';
    my $main = $o{main} // '';
    # IMBURSE_CORE_DIR=DIR: workers that crash leave a core there
    $main .= "\nworker_rlimit_core 1g;\nworking_directory $ENV{IMBURSE_CORE_DIR};"
        if $ENV{IMBURSE_CORE_DIR};
    my $events = $o{events} // '';

    my $conf = <<"EOF" . $self->render($http) . "\n}\n";
${load}
daemon off;
master_process on;
worker_processes $self->{workers};
${user}pid $p/nginx.pid;
error_log $p/error.log info;
$main

events {
    worker_connections 1024;
    $events
}

http {
    client_body_temp_path $p/client_body_temp;
    proxy_temp_path       $p/proxy_temp;
    fastcgi_temp_path     $p/fastcgi_temp;
    uwsgi_temp_path       $p/uwsgi_temp;
    scgi_temp_path        $p/scgi_temp;

    log_format imburse_test '\$remote_addr "\$request" \$status '
                            'token=$status pid=\$pid rt=\$request_time';
    access_log $p/access.log imburse_test;

EOF
    spew("$p/nginx.conf", $conf);
    return "$p/nginx.conf";
}

sub config_text { slurp("$_[0]{prefix}/nginx.conf") }

###############################################################################
# nginx processes

# Before it reads the configuration, nginx logs to the error log compiled
# in (--error-log-path, default <prefix>/logs/error.log): "-e stderr" (nginx
# 1.19.5 and later) sends that to stderr, whatever the binary was built
# with, as Debian's nginx does.
my @NGINX_OPTIONS = ('-e', 'stderr');

# test_config([HTTP_SNIPPET, %o]) -> (exit code, output of nginx -t)
sub test_config {
    my ($self, $http, %o) = @_;
    $self->write_config($http, %o) if defined $http;
    my $p = $self->{prefix};
    my $out = `$NGINX @NGINX_OPTIONS -t -p $p/ -c $p/nginx.conf 2>&1`;
    return ($? >> 8, $out);
}

# run(HTTP_SNIPPET, %o): write_config and start; returns $self.
sub run {
    my ($self, $http, %o) = @_;
    $self->write_config($http, %o);
    return $self->start(%o);
}

sub start {
    my ($self, %o) = @_;
    die "nginx already running\n" if $self->{pid};
    my $p = $self->{prefix};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$p/stderr.log";
        open STDERR, '>>', "$p/stderr.log";
        { exec $NGINX, @NGINX_OPTIONS, '-p', "$p/", '-c', "$p/nginx.conf" }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{watchdog} = watchdog($pid);

    my $port = $o{wait_port} // $self->{port};
    my $wait = ($o{timeout} // 5) * $TF;
    my $deadline = time + $wait;
    while (time < $deadline) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $self->{pid} = undef;
            die "nginx exited at start (status $?):\n" . $self->log_tail;
        }
        if (port_open($port) && $self->worker_pids >= $self->{workers}) {
            return $self;
        }
        sleep 0.05;
    }
    $self->kill_nginx;
    die "nginx did not accept on port $port within ${wait}s:\n" . $self->log_tail;
}

# A process that stops nginx if the test process dies without cleaning up
# (killed by a timeout, say), so no nginx outlives its test.  It gives up
# after 10 minutes or when nginx is gone.
sub watchdog {
    my ($nginx) = @_;
    my $test = $$;
    my $pid = fork;
    return undef unless defined $pid;
    return $pid if $pid;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    for (1 .. 1200) {
        sleep 0.5;
        POSIX::_exit(0) unless kill 0, $nginx;
        last if getppid() != $test;
    }
    if (getppid() != $test) {
        kill 'QUIT', $nginx;
        sleep 3;
        kill 'KILL', $nginx;
    }
    POSIX::_exit(0);
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# Pids of the master's children that are active worker processes (not the
# ones shutting down after a reload).
sub worker_pids {
    my ($self, %o) = @_;
    my $master = $self->{pid} or return ();
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        close $fh;
        next unless $line =~ /^(\d+) \(.*\) \S (\d+)/ && $2 == $master;
        my $pid = $1;
        my $cmd = eval { slurp("/proc/$pid/cmdline") } // '';
        # under valgrind a worker's title cannot be seen (nginx rewrites
        # the guest's argv, /proc shows valgrind's): every child counts
        next if !$o{all} && $cmd !~ /worker process\0*$/
            && $cmd !~ m{^[^\0]*valgrind};
        push @pids, $pid;
    }
    return @pids;
}

# reload([HTTP_SNIPPET, %o]): optionally rewrite the configuration, send HUP,
# wait until a new generation of workers is up and the old one is gone.
# Returns true on success, false if nginx refused the new configuration or
# the workers did not turn over within 10s.
sub reload {
    my ($self, $http, %o) = @_;
    die "nginx not running\n" unless $self->{pid};
    $self->write_config($http, %o) if defined $http;
    my %old = map { $_ => 1 } $self->worker_pids(all => 1);
    my $mark = $self->log_mark;
    kill 'HUP', $self->{pid};
    my $deadline = time + ($o{timeout} // 10) * $TF;
    while (time < $deadline) {
        my $log = $self->error_log(since => $mark);
        return 0 if $log =~ /\[emerg\]/;
        if ($log =~ /reconfiguring/) {
            my @all = $self->worker_pids(all => 1);
            my @new = grep { !$old{$_} } $self->worker_pids;
            return 1 if @new >= $self->{workers} && !grep { $old{$_} } @all;
        }
        sleep 0.05;
    }
    return 0;
}

# stop(allow => qr/expected alert/): QUIT, then TERM, then KILL (bounded), and
# one test: the error log has no alert/crit/emerg/sanitizer lines.
sub stop {
    my ($self, %o) = @_;
    return unless $self->{pid};
    $self->kill_nginx;
    $self->check_error_log(%o) unless $o{no_check};
    if (!Test::More->builder->is_passing) {
        Test::More::diag("error.log tail:\n" . $self->log_tail(40));
    }
}

sub kill_nginx {
    my ($self) = @_;
    if (my $wd = delete $self->{watchdog}) {
        kill 'TERM', $wd;
        waitpid $wd, 0;
    }
    my $pid = $self->{pid} or return;
    for my $step (['QUIT', 5], ['TERM', 3], ['KILL', 2]) {
        kill $step->[0], $pid;
        my $deadline = time + $step->[1] * $TF;
        while (time < $deadline) {
            if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
                $self->{pid} = undef;
                return;
            }
            sleep 0.02;
        }
    }
    $self->{pid} = undef;
}

sub check_error_log {
    my ($self, %o) = @_;
    my @bad = grep {
        /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error:|LeakSanitizer/
            && !($o{allow} && $_ =~ $o{allow})
    } split /\n/, $self->error_log . $self->stderr_log;
    Test::More::ok(!@bad, 'error log has no alert, crit, emerg or sanitizer '
        . 'lines') or Test::More::diag(join "\n", @bad);
}

###############################################################################
# Logs

sub log_mark { -s "$_[0]{prefix}/error.log" // 0 }
sub access_mark { -s "$_[0]{prefix}/access.log" // 0 }

sub read_from {
    my ($file, $offset) = @_;
    open my $fh, '<:raw', $file or return '';
    seek $fh, $offset // 0, 0;
    local $/;
    return scalar(<$fh>) // '';
}

# error_log(since => MARK) -> text
sub error_log {
    my ($self, %o) = @_;
    return read_from("$self->{prefix}/error.log", $o{since});
}

sub stderr_log { read_from("$_[0]{prefix}/stderr.log", 0) }

# grep_error_log(qr/.../, since => MARK) -> matching lines
sub grep_error_log {
    my ($self, $re, %o) = @_;
    return grep { $_ =~ $re } split /\n/, $self->error_log(%o);
}

# access_log(since => MARK, wait_for => N) -> lines; waits (up to 5s) until
# at least N lines are there (nginx writes the line after the response, and
# after any background subrequest of the request has finished).
sub access_log {
    my ($self, %o) = @_;
    my $deadline = time + 5 * $TF;
    while (1) {
        my @l = split /\n/,
            read_from("$self->{prefix}/access.log", $o{since});
        return @l if @l >= ($o{wait_for} // 0) || time > $deadline;
        sleep 0.05;
    }
}

# The $imburse_token_status values of the access log lines since MARK
# ("-" when empty or not found).
sub token_statuses {
    my ($self, %o) = @_;
    return map { /token=(\S*) pid=/ ? ($1 eq '' ? '-' : $1) : '?' }
        $self->access_log(%o);
}

sub log_tail {
    my ($self, $n) = @_;
    my @l = grep { !/\[notice\]/ } split /\n/,
        $self->error_log . $self->stderr_log;
    $n //= 30;
    splice @l, 0, @l - $n if @l > $n;
    return join("\n", @l) . "\n";
}

# logs_lack(NAME => STRING, ...): one test per string: no log contains it.
sub logs_lack {
    my ($self, %secrets) = @_;
    my $logs = $self->error_log . $self->stderr_log
        . read_from("$self->{prefix}/access.log", 0);
    for my $name (sort keys %secrets) {
        my $s = $secrets{$name};
        Test::More::ok(defined $s && length $s && index($logs, $s) < 0,
            "logs do not contain the $name");
    }
}

###############################################################################
# HTTP clients

sub url {
    my ($self, $path, $port) = @_;
    return $path if $path =~ m{^http://};
    return "http://127.0.0.1:" . ($port // $self->{port}) . $path;
}

# http_get(PATH, {Header => value | [values]}) ->
#   list context:   (status, {lowercase header => value}, body)
#   scalar context: {status, headers, body, reason}
sub http_get {
    my ($self, $path, $headers, %o) = @_;
    return $self->http_request('GET', $path, $headers, undef, %o);
}

sub http_request {
    my ($self, $method, $path, $headers, $body, %o) = @_;
    my $http = HTTP::Tiny->new(timeout => ($o{timeout} // 5) * $TF,
        keep_alive => 0);
    my $r = $http->request($method, $self->url($path, $o{port}), {
        headers => $headers // {}, defined $body ? (content => $body) : () });
    my $res = { status => $r->{status}, headers => $r->{headers},
                body => $r->{content} // '', reason => $r->{reason} };
    return wantarray ? @$res{qw(status headers body)} : $res;
}

# load(PATH, TOTAL, CONCURRENCY, {headers}, timeout => 60, body_max => 1500)
# Forks CONCURRENCY clients (one keep-alive connection each), all starting at
# the same moment, sharing TOTAL requests.  Returns
#   { results => [{status, ms, body}], by_status => {200 => n, ...},
#     count, max_ms, elapsed, complete }
sub load {
    my ($self, $path, $total, $conc, $headers, %o) = @_;
    my $url = $self->url($path, $o{port});
    my $body_max = $o{body_max} // 1500;
    pipe my $rd, my $wr or die "pipe: $!";
    my $start_at = time + 0.3;
    my @pids;
    for my $i (0 .. $conc - 1) {
        my $share = int($total / $conc) + ($i < $total % $conc ? 1 : 0);
        next unless $share;
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $http = HTTP::Tiny->new(timeout => 10 * $TF, keep_alive => 1);
            my $wait = $start_at - time;
            sleep $wait if $wait > 0;
            for (1 .. $share) {
                my $t0 = time;
                my $r = $http->get($url, { headers => $headers // {} });
                my $ms = (time - $t0) * 1000;
                my $b = substr($r->{content} // '', 0, $body_max);
                syswrite $wr, sprintf("%d\t%.1f\t%s\n", $r->{status}, $ms,
                    encode_base64($b, ''));
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    close $wr;

    my (@results, $buf);
    my $deadline = time + ($o{timeout} // 60) * $TF;
    my $sel = IO::Select->new($rd);
    $buf = '';
    while (time < $deadline) {
        next unless $sel->can_read(0.5);
        my $n = sysread $rd, $buf, 65536, length $buf;
        last unless $n;
    }
    close $rd;
    for my $pid (@pids) {
        kill 'KILL', $pid if waitpid($pid, POSIX::WNOHANG()) == 0;
        waitpid $pid, 0;
    }
    for my $line (split /\n/, $buf) {
        my ($st, $ms, $b) = split /\t/, $line, 3;
        push @results, { status => $st, ms => $ms,
                         body => decode_base64($b // '') };
    }
    my %by;
    $by{$_->{status}}++ for @results;
    my ($max) = sort { $b <=> $a } map { $_->{ms} } @results;
    return { results => \@results, by_status => \%by,
             count => scalar @results, complete => @results == $total,
             max_ms => $max // 0, elapsed => time - $start_at };
}

# HTTP/2 (cleartext, prior knowledge) with Debian's python3-h2:
# h2([{path, headers, start_ms, rst_ms}, ...], port => PORT, timeout => 10)
# sends the streams on one connection, resetting (CANCEL) those with rst_ms
# that long after they were sent; returns [{status, headers, body, reset}].
sub h2 {
    my ($self, $streams, %o) = @_;
    my $port = $o{port} // $self->{port};
    my $spec = JSON::PP->new->canonical->encode($streams);
    my $timeout = ($o{timeout} // 10) * $TF;
    open my $fh, '-|', '/usr/bin/python3', "$LIB/h2client.py", $port, $spec,
        $timeout or die "h2client: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    return eval { $JSON->decode($out) }
        // die "h2client: no answer (" . ($out // '') . ")\n";
}

# curl --http2-prior-knowledge: (status, {lowercase header => value}, body)
sub curl_h2 {
    my ($self, $path, %o) = @_;
    my $url = $self->url($path, $o{port});
    my @h = map { ('-H', "$_: $o{headers}{$_}") } sort keys %{$o{headers}};
    open my $fh, '-|', 'curl', '-s', '--http2-prior-knowledge', '-m',
        5 * $TF, '-D', '-', @h, $url or die "curl: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    my ($status) = ($head // '') =~ m{^HTTP/2 (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () }
        split /\r\n/, $head // '';
    return ($status // 0, \%h, $body // '');
}

# hangup(PATH, MS, headers => {}): an HTTP/1.1 request whose client closes
# the connection MS milliseconds after sending it, without reading.
sub hangup {
    my ($self, $path, $ms, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $o{port} // $self->{port}, Proto => 'tcp', Timeout => 2)
        or die "hangup: connect: $!";
    my $h = join '', map { "$_: $o{headers}{$_}\r\n" }
        sort keys %{$o{headers} // {}};
    print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n${h}\r\n";
    sleep $ms / 1000;
    close $s;
}

###############################################################################
# The Imburse stand-in (t/lib/standin.pl)

# start_standin(keys => {public_key => private_b64}, global => {...},
#               tenants => {public_key => {...}}, upstream => {...})
sub start_standin {
    my ($self, %o) = @_;
    die "standin already running\n" if $self->{standin_pid};
    my $dir = "$self->{prefix}/standin";
    unlink "$dir/ready";
    spew("$dir/config.json", $JSON->encode({
        identity_port => $self->{identity_port},
        upstream_port => $self->{upstream_port},
        parent_pid => $$, lifetime => $o{lifetime} // 600,
        keys => $o{keys} // {}, global => $o{global} // {},
        tenants => $o{tenants} // {}, upstream => $o{upstream} // {} }));
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/standin.log";
        open STDERR, '>>', "$dir/standin.log";
        { exec $^X, "$LIB/standin.pl", $dir }
        POSIX::_exit(127);
    }
    $self->{standin_pid} = $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        return $self if -e "$dir/ready";
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $self->{standin_pid} = undef;
            die "standin exited at start:\n"
                . read_from("$dir/standin.log", 0);
        }
        sleep 0.02;
    }
    die "standin not ready within 5s:\n" . read_from("$dir/standin.log", 0);
}

sub stop_standin {
    my ($self) = @_;
    my $pid = $self->{standin_pid} or return;
    kill 'TERM', -$pid;
    my $deadline = time + 3;
    while (time < $deadline) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.02;
    }
    kill 'KILL', -$pid;
    waitpid $pid, 0;
    $self->{standin_pid} = undef;
}

sub standin_log { read_from("$_[0]{prefix}/standin/standin.log", 0) }

sub standin_call {
    my ($self, $method, $path, $data) = @_;
    my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
    my $r = $http->request($method,
        "http://127.0.0.1:$self->{identity_port}/_standin/$path",
        defined $data ? { content => $JSON->encode($data),
            headers => { 'Content-Type' => 'application/json' } } : {});
    die "standin $path: $r->{status} $r->{content}\n" unless $r->{success};
    return $JSON->decode($r->{content});
}

# standin_set(keys => {pk => b64 | undef}, global => {...},
#             tenants => {pk => {...}}, upstream => {...}, reset_stats => 1)
# "global", each named tenant and "upstream" are replaced, not merged; a
# tenant's behaviour is global overlaid with its own.
sub standin_set {
    my ($self, %c) = @_;
    return $self->standin_call('POST', 'control', \%c);
}

sub reset_stats { $_[0]->standin_call('POST', 'control', { reset_stats => 1 }) }
sub stats { $_[0]->standin_call('GET', 'stats') }
sub upstream_requests { $_[0]->standin_call('GET', 'upstream') }
sub identity_requests { $_[0]->standin_call('GET', 'identity') }

# Exchanges of one tenant (public key) so far.
sub exchanges_of {
    my ($self, $public_key) = @_;
    my $t = $self->stats->{by_tenant}{$public_key};
    return $t ? $t->{exchanges} : 0;
}

###############################################################################
# Helpers

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $data) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $data;
    close $fh or die "$f: $!";
}

sub DESTROY {
    my ($self) = @_;
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT' && !$self->{pid}
        && !$self->{standin_pid};
    $self->cleanup;
}

sub cleanup {
    my ($self) = @_;
    local ($?, $@);
    $self->kill_nginx if $self->{pid};
    $self->stop_standin if $self->{standin_pid};
    delete $LIVE{"$self"};
}

END {
    $_->cleanup for values %LIVE;
}

1;

__END__

=head1 NAME

ImburseTest - start nginx with the imburse module and a stand-in Imburse

=head1 SYNOPSIS

    use lib 't/lib';
    use ImburseTest;

    my $t = ImburseTest->new;                      # BAIL_OUT if no nginx/.so
    $t->write_key('management', $PRIVATE_B64);     # keys/management.key
    $t->start_standin(keys => { $PUBLIC => $PRIVATE_B64 });
    $t->run(<<'EOF');                              # the http{} body
        imburse_api_key management public_key=... \
            private_key_file=%%KEYFILE:management%% exchange=/_imburse/m;
        server {
            listen 127.0.0.1:%%PORT%%;
            ...
        }
    EOF
    my $r = $t->http_get('/imburse/x', { Authorization => 'Basic eA==' });
    is($r->{status}, 200);
    is($t->stats->{exchanges}, 1);
    $t->stop;                                      # + one "log is clean" test

=head1 CONFIGURATION

The snippet given to C<run>, C<write_config>, C<test_config> or C<reload> is
the body of the C<http> block.  The harness prepends C<load_module> (unless
C<< new(module => 0) >>), C<daemon off>, C<master_process on>,
C<worker_processes 2> (C<< workers => N >>), C<pid>, C<error_log ... info>,
all C<*_temp_path> inside the prefix, and C<access_log access.log> with the
format

    $remote_addr "$request" $status token=$imburse_token_status pid=$pid rt=$request_time

C<< main => 'text' >> adds main-context lines, C<< events => 'text' >> adds
lines to the events block.  As root, workers run as C<nobody>: key files
(0600 in a 0700 directory) are readable by the master only.

nginx runs with C<-p> (the prefix), C<-c> and C<-e stderr> (nginx 1.19.5
and later): none of the paths compiled into the binary is used, so any
nginx build will do.

Placeholders: C<%%PORT%%> (nginx's main port, the one C<start> waits for),
C<%%PORT2%%>, C<%%PORT3%%> (spare ports for extra server blocks),
C<%%IDENTITY_PORT%%>, C<%%IDENTITY_URL%%> (full exchange URL of the
stand-in), C<%%UPSTREAM_PORT%%>, C<%%UPSTREAM_URL%%> (the stand-in's echoing
upstream), C<%%PREFIX%%>, C<%%KEYFILE%%> (keys/default.key) and
C<%%KEYFILE:name%%> (keys/name.key, see C<write_key>).  A line holding only
C<%%EXCHANGE_LOCATION:/uri%%> becomes the documented exchange location at
that URI, in front of the stand-in (C<exchange_location>);
C<%%LISTEN_H2:PORT2%%> an HTTP/2 listener on that port, in the syntax of the
nginx under test (C<listen ... http2;> before 1.25.1, C<http2 on;> from
it); a line holding
only C<%%EXCHANGE_SIGNING%%> becomes that location's six signing lines
(C<internal> to C<proxy_set_header Authorization $imburse_hmac>), for
exchange locations with other lines too.  An unknown placeholder dies.

For load tests a plain nginx server block in the same configuration is a
faster upstream than the Perl stand-in:

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;    # keep access.log to the requests under test
        location / { return 200 "$http_authorization"; }
    }
    # ... and in the protected location:
    #   proxy_pass http://127.0.0.1:%%PORT2%%;

=head1 METHODS

=over

=item new(module => 1, workers => 2)

Temp prefix (removed at exit unless C<IMBURSE_TEST_KEEP=1>), five free
loopback ports, a private copy of the module in the prefix (so a rebuild
during the test does not touch the running nginx).  C<NGINX_BIN> (default /usr/sbin/nginx) and
C<IMBURSE_MODULE> (default build/ngx_http_imburse_auth_module.so, or
C<static> for an nginx with the module compiled in) select
the binaries; a missing one is a BAIL_OUT.

=item write_key(NAME, B64, raw => 0), keyfile(NAME), write_file(NAME, TEXT)

=item write_config(HTTP, %o), render(TEXT), config_text

=item test_config([HTTP, %o]) -> (exit code, output of C<nginx -t>)

=item run(HTTP, %o), start(wait_port => PORT, timeout => 5)

Starts nginx and waits until the port accepts and all workers are up; dies
with the error log if that does not happen.

=item reload([HTTP, %o]) -> true/false

Sends HUP and waits for "reconfiguring" and a complete turnover of workers;
false if nginx logged C<[emerg]> (configuration refused) or on timeout.

=item stop(allow => qr//), worker_pids

QUIT, TERM, KILL (bounded), then one test that error.log (and stderr) has
no C<[alert]>, C<[crit]>, C<[emerg]>, AddressSanitizer, "runtime error:" or
LeakSanitizer line (lines matching C<allow> excepted).

=item log_mark, error_log(since => MARK), grep_error_log(RE, since => MARK)

=item access_mark, access_log(since => MARK, wait_for => N), token_statuses(...)

=item logs_lack(name => SECRET, ...)

One test per secret: it appears in no log.

=item http_get(PATH, HEADERS), http_request(METHOD, PATH, HEADERS, BODY)

A header value may be an array reference (the header is sent once per
element).  List context: (status, headers, body); scalar: a hash.

=item load(PATH, TOTAL, CONCURRENCY, HEADERS, timeout => 60)

Forked clients, one keep-alive connection each; returns C<results> (status,
ms, body), C<by_status>, C<count>, C<complete>, C<max_ms>, C<elapsed>.

=item h2([{path, headers, start_ms, rst_ms}, ...], port => PORT)

HTTP/2 streams on one connection (t/lib/h2client.py, Debian's python3-h2);
a stream with C<rst_ms> is reset (CANCEL) that long after it was sent.
Returns C<[{status, headers, body, reset}]>.

=item curl_h2(PATH, headers => {}, port => PORT)

C<curl --http2-prior-knowledge>: (status, headers, body).

=item hangup(PATH, MS, headers => {}, port => PORT)

An HTTP/1.1 request whose client closes the connection after MS ms.

=item start_standin(keys => {}, global => {}, tenants => {}, upstream => {})

=item standin_set(...), stats, reset_stats, upstream_requests,
identity_requests, exchanges_of(PUBLIC_KEY), stop_standin, standin_log

The stand-in: see F<t/lib/ImburseStandin.pm> for the behaviour keys
(C<status>, C<delay_ms>, C<ttl_ms>, C<expires> string|number|none|garbage|past,
C<token_kind> plain|jwt, C<token>, C<omit_token>, C<body>, C<content_type>)
and the upstream keys (C<status>, C<status_by_path>, C<status_by_bearer>).  C<stats> returns
C<exchanges>, C<ok>, C<rejected>, C<reasons>, C<max_inflight>,
C<tokens> ([{token, public_key, expires_ms}]), C<by_tenant>
({pk => {exchanges, ok, rejected, tokens}}), C<upstream_requests>.
Each upstream request record has C<uri>, C<headers> ([[name, value]]) and
C<authorization> (every Authorization value received).

=back

=cut
