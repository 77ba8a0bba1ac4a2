#!/usr/bin/perl

# make demo: nginx with the module in front of a stand-in Imburse on
# loopback (or, with IMBURSE_PUBLIC_KEY and IMBURSE_PRIVATE_KEY_FILE set, in
# front of Imburse's sandbox), one proxied call, and what the module did.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);

my $root   = abs_path(dirname(__FILE__) . '/..');
my $module = "$root/build/ngx_http_imburse_auth_module.so";
my $prefix = "$root/build/demo";
my $nginx  = $ENV{NGINX_BIN} // '/usr/sbin/nginx';
my $json   = JSON::PP->new->canonical->pretty;

my $sandbox = $ENV{IMBURSE_PUBLIC_KEY} && $ENV{IMBURSE_PRIVATE_KEY_FILE};
my (@pids, $nginx_pid);

END { local $?; stop() }
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

-e $module or die "$module is missing: run make\n";
remove_tree($prefix);
make_path("$prefix/standin");

my $port = free_port();
my ($public_key, $key_file, $api_url, $identity_url, $path);

if ($sandbox) {
    $public_key = $ENV{IMBURSE_PUBLIC_KEY};
    $key_file   = abs_path($ENV{IMBURSE_PRIVATE_KEY_FILE});
    $api_url    = 'https://sandbox-api.imbursepayments.com';
    $identity_url = $api_url;
    $path       = $ENV{IMBURSE_DEMO_PATH} // '/v1/account';
    print "Imburse sandbox: $api_url (public key $public_key)\n";

} else {
    $public_key = '3f1c2b7e-5a44-4a0e-9a51-2d1f0c9e8b77';
    my $private = 'c2VjcmV0LWtleS1mb3ItdGVzdGluZy1vbmx5LTAxMjM0NTY3ODk=';
    $key_file   = "$prefix/management.key";
    spew($key_file, "$private\n");
    chmod 0600, $key_file;

    my ($identity, $upstream) = (free_port(), free_port());
    $identity_url = "http://127.0.0.1:$identity";
    $api_url      = "http://127.0.0.1:$upstream";
    $path    = '/v1/payments?page=1';

    # one stand-in serves both: identity (checks signatures like Imburse)
    # and a fake API that echoes the headers it got
    spew("$prefix/standin/config.json", encode_json({
        identity_port => $identity, upstream_port => $upstream,
        parent_pid => $$, lifetime => 120,
        keys => { $public_key => $private }, global => {}, tenants => {},
        upstream => {} }));
    push @pids, spawn("$prefix/standin/standin.log",
                      $^X, "$root/t/lib/standin.pl", "$prefix/standin");
    wait_for(sub { -e "$prefix/standin/ready" }, 'the stand-in');
    print "stand-in Imburse: identity on 127.0.0.1:$identity, "
        . "API on 127.0.0.1:$upstream\n";
}

my $conf = slurp("$root/demo/nginx.conf.in");
my %v = (MODULE => $module, PREFIX => $prefix, PORT => $port,
         PUBLIC_KEY => $public_key, KEY_FILE => $key_file, API_URL => $api_url,
         IDENTITY_URL => $identity_url);
$conf =~ s/\@(\w+)\@/$v{$1} \/\/ die "no value for $1\n"/ge;
spew("$prefix/nginx.conf", $conf);

$nginx_pid = spawn("$prefix/stderr.log",
                   $nginx, '-p', "$prefix/", '-c', "$prefix/nginx.conf");
wait_for(sub { IO::Socket::INET->new("127.0.0.1:$port") }, 'nginx');
print "nginx with the module on 127.0.0.1:$port (config: $prefix/nginx.conf)\n\n";

my $http = HTTP::Tiny->new(timeout => 15);

for my $n (1, 2) {
    my $url = "http://127.0.0.1:$port/imburse$path";
    print "request $n: GET $url (client sends Authorization: Basic c3B5OnNweQ==)\n";
    my $r = $http->get($url, { headers => {
        Authorization => 'Basic c3B5OnNweQ==' } });
    printf "  status %s, X-Imburse-Token-Status: %s, X-Imburse-Token-TTL: %s\n",
        $r->{status}, $r->{headers}{'x-imburse-token-status'} // '-',
        $r->{headers}{'x-imburse-token-ttl'} // '-';

    if (!$sandbox && $r->{status} == 200) {
        my $seen = eval { decode_json($r->{content}) } // {};
        my @auth = @{$seen->{authorization} // []};
        print "  the API received Authorization: ", join(' | ', @auth), "\n";
    } elsif ($sandbox) {
        print "  body: ", substr($r->{content} // '', 0, 300), "\n";
    }
}

print "\naccess log:\n", slurp("$prefix/access.log");
my @lines = grep { /imburse/ } split /\n/, slurp("$prefix/error.log");
print "\nerror log (imburse lines):\n", map { "  $_\n" } @lines;
exit 0;

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0')
        or die "no free port: $!\n";
    return $s->sockport;
}

sub spawn {
    my ($log, @cmd) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec @cmd or POSIX::_exit(127);
    }
    return $pid;
}

sub wait_for {
    my ($cond, $what) = @_;
    my $deadline = time + 10;
    while (time < $deadline) {
        return if $cond->();
        sleep 0.05;
    }
    die "$what did not start within 10s, see $prefix\n";
}

sub stop {
    for my $pid (grep { defined } $nginx_pid, @pids) {
        kill 'QUIT', $pid;
        my $deadline = time + 5;
        sleep 0.05 while time < $deadline
                         && waitpid($pid, POSIX::WNOHANG()) != $pid;
        kill 'KILL', -$pid;
        waitpid $pid, 0;
    }
    ($nginx_pid, @pids) = ();
}

sub slurp { local (@ARGV, $/) = @_; return -e $_[0] ? <> : '' }

sub spew {
    my ($file, $data) = @_;
    open my $fh, '>', $file or die "$file: $!\n";
    print $fh $data;
    close $fh;
}
