#!/usr/bin/perl

# Thousands of tenants on one gateway (imburse_auth $tenant).
# - A generated configuration of 10,000 keys passes nginx -t, with the zone
#   sized from the keys; an explicit imburse_zone that is too small fails it
#   with the size needed.  Its status page has every key, and ?key=NAME
#   exactly one, in JSON and Prometheus.
# - A cold start of 100 tenants never has more exchanges in flight than
#   imburse_exchange_concurrency (8 by default); every tenant is served.
# - Six reloads, each renaming 200 tenants (900-byte tokens, a 1 MB zone):
#   every tenant served each time, and the zone's free space steady (the
#   entries of renamed keys are freed once the old workers are gone).
# Times are measured in bench/, not here.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use HTTP::Tiny;
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(sleep time);

my $PRIVATE = 'bWFueS10ZW5hbnRzLXRlc3Qta2V5LTAxMjM0NTY3ODk=';

sub keys_conf {
    my ($prefix, $n, $extra) = @_;
    return join '', map { "    imburse_api_key $prefix$_ public_key=pk-$prefix$_ "
        . "private_key_file=%%KEYFILE:main%% exchange=/_imburse/x"
        . ($extra // '') . ";\n" } 0 .. $n - 1;
}

sub server_conf {
    return <<'NGINX';
    server {
        listen 127.0.0.1:%%PORT%%;
        location /t/ {
            imburse_auth $arg_k;
            proxy_pass %%UPSTREAM_URL%%;
        }
        location = /status { imburse_status; }
        %%EXCHANGE_LOCATION:/_imburse/x%%
    }
NGINX
}

# GET /t/?k=NAME for every name, over CONC connections at once; statuses
sub serve_all {
    my ($t, $names, $conc) = @_;
    my @pids;
    my $dir = $t->prefix . '/serve';
    mkdir $dir;
    for my $c (0 .. $conc - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 1);
            my $out = '';
            for (my $i = $c; $i < @$names; $i += $conc) {
                my $r = $http->get($t->url("/t/?k=$names->[$i]"));
                $out .= "$names->[$i] $r->{status}\n";
            }
            ImburseTest::spew("$dir/$c", $out);
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
    my %st;
    for my $c (0 .. $conc - 1) {
        for (split /\n/, eval { ImburseTest::slurp("$dir/$c") } // '') {
            my ($n, $s) = split;
            $st{$n} = $s;
        }
    }
    return \%st;
}

sub status { decode_json($_[0]->http_get($_[1] // '/status')->{body}) }

###############################################################################
# 10,000 keys

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
my $big = keys_conf('t', 10_000) . server_conf();

my $t0 = time;
my ($rc, $out) = $t->test_config($big);
is($rc, 0, '10,000 keys: nginx -t passes, the zone sized from them')
    or diag $out;
diag(sprintf '10,000 keys: nginx -t took %.2f s', time - $t0);
unlike($out, qr/imburse_keys_hash/, '... without a word of the keys\' hash');

# The keys' hash has no directives to size it: long names fit it too
my $prefix = 'tenant-' . ('n' x 32) . '-';
($rc, $out) = $t->test_config(keys_conf($prefix, 2_000)
    . keys_conf('x' x 252, 1) . server_conf());
is($rc, 0, '2,000 keys of 43 characters and one of 256: nginx -t passes')
    or diag $out;
unlike($out, qr/imburse_keys_hash/, '... without a word of the keys\' hash')
    or diag $out;

($rc, $out) = $t->test_config("    imburse_zone 1m;\n$big");
isnt($rc, 0, '10,000 keys in imburse_zone 1m: nginx -t fails');
like($out, qr/\[emerg\].*imburse_zone 1024k is too small for 10000 keys: they need at least (\d+)k/,
    '... naming imburse_zone and the size needed');
my ($need) = $out =~ /they need at least (\d+)k/;
diag("10,000 keys need imburse_zone ${need}k") if defined $need;

$t->start_standin(keys => { map { ("pk-t$_" => $PRIVATE) } 0 .. 9_999 });
$t->run($big);

my $r = $t->http_get('/t/?k=t1234');
is($r->{status}, 200, 'tenant t1234 (a variable picks it): 200');

my $s = status($t);
is(scalar keys %{$s->{keys}}, 10_000, 'status: all 10,000 keys');
ok($s->{keys}{t1234}{valid} && !$s->{keys}{t9999}{valid},
    'status: the one used has a token, the others none');
is($s->{exchanges}{concurrency}, 8, 'status: the exchange concurrency');

my $one = status($t, '/status?key=t1234');
is_deeply([keys %{$one->{keys}}], ['t1234'], '?key=t1234: that key only');
is($one->{keys}{t1234}{exchanges}, 1, '?key=t1234: its figures');
is($t->http_get('/status?key=nosuch')->{status}, 404, '?key=nosuch: 404');

my $prom = $t->http_get('/status?format=prometheus')->{body};
my @valid = $prom =~ /^imburse_token_valid\{key="t\d+"\} \d$/mg;
is(scalar @valid, 10_000, 'Prometheus: a sample a key');
$prom = $t->http_get('/status?format=prometheus&key=t1234')->{body};
is_deeply([$prom =~ /^imburse_token_valid\{key="([^"]+)"\} 1$/mg], ['t1234'],
    'Prometheus ?key=t1234: that key only');
$t->stop;

###############################################################################
# A cold start of 100 tenants over 25 connections

$t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { map { ("pk-c$_" => $PRIVATE) } 0 .. 99 },
    global => { delay_ms => 200 });
$t->run(keys_conf('c', 100) . server_conf());

my $st = serve_all($t, [map { "c$_" } 0 .. 99], 25);
is(scalar(grep { $_ == 200 } values %$st), 100, 'cold start: all 100 '
    . 'tenants served');
my $stats = $t->stats;
is($stats->{exchanges}, 100, 'cold start: one exchange a tenant');
cmp_ok($stats->{max_inflight}, '<=', 8, 'cold start: at most 8 exchanges '
    . "in flight ($stats->{max_inflight})");
$t->stop;

###############################################################################
# Six reloads, each renaming 200 tenants, in a 1 MB zone.  The identity
# service here is nginx's own "return" (signatures unchecked): 1,400
# exchanges in a few seconds.

$t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
my $identity = <<'NGINX';
    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location = /ok {
            return 200 "$http_authorization";
        }
        location / {
            return 200 '{"accessToken":"TOKEN","expires":"4102444800000"}';
        }
    }
NGINX
$identity =~ s/TOKEN/'T' x 900/e;
(my $reload_server = server_conf()) =~ s{%%EXCHANGE_LOCATION:/_imburse/x%%}
    {location = /_imburse/x {
            %%EXCHANGE_SIGNING%%
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }};
$reload_server =~ s{proxy_pass %%UPSTREAM_URL%%;}{proxy_pass http://127.0.0.1:%%PORT2%%/ok;};

my @free;
for my $g (0 .. 6) {
    my @names = map { "g${g}_$_" } 0 .. 199;
    my $conf = "    imburse_zone 1m;\n" . keys_conf("g${g}_", 200)
        . $reload_server . $identity;
    if ($g == 0) {
        $t->run($conf);
    } else {
        ok($t->reload($conf), "generation $g: reload");
    }
    # the renamed keys' entries go once the old workers are gone
    my $entries;
    for (1 .. 100) {
        $entries = status($t)->{zone}{entries};
        last if $entries <= 200;
        sleep 0.05;
    }
    is($entries, 200, "generation $g: the zone holds this generation's "
        . '200 entries only');
    $st = serve_all($t, \@names, 10);
    is(scalar(grep { $_ == 200 } values %$st), 200,
        "generation $g: all 200 tenants served");
    $s = status($t);
    push @free, $s->{zone}{free};
}
diag("zone free space by generation: @free");
my ($min, $max) = (sort { $a <=> $b } @free)[0, -1];
cmp_ok($max - $min, '<=', 65536, "the free space is steady (from $min to "
    . "$max bytes over seven generations)");

$t->stop;
done_testing;
