#!/usr/bin/perl

# Requests waiting in a worker that does not run the exchange are resumed
# by a wake-up from the worker that ends it (a pipe per worker), not by a
# timer: the debug log says who woke them.  Also after a reload (new
# pipes for the new workers), and nginx stops without a socket left open.
#
# The safety-net timer (100 ms) may still win now and then: it can fire
# between the exchanging worker storing the token and its wake-up write
# (a preempted process makes that window milliseconds long).  So three keys
# burst per configuration: all but one (of those that waited in both
# workers) must be woken through the pipe, the timer in one at most; if the
# pipes did not work, the timer would wake them all.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my %PRIVATE;
for my $n (1 .. 3) {
    $PRIVATE{"first$n"} = 'Zmlyc3Qta2V5LWZvci10aGUtd2FrZS11cC10ZXN0cw==';
    $PRIVATE{"second$n"} = 'c2Vjb25kLWtleS1mb3ItdGhlLXdha2UtdXAtdGVzdHM=';
}
my @FIRST = map { "first$_" } 1 .. 3;
my @SECOND = map { "second$_" } 1 .. 3;

my $t = ImburseTest->new(workers => 2);
$t->write_key($_, $PRIVATE{$_}) for keys %PRIVATE;
# slow enough that the whole burst waits, in both workers
$t->start_standin(keys => { map { ("pk-$_" => $PRIVATE{$_}) } keys %PRIVATE },
    global => { delay_ms => 400 });

my $debug_log = "$t->{prefix}/debug.log";

sub config {
    my (@names) = @_;
    my $conf = '';
    for my $name (@names) {
        $conf .= <<"EOF";
    imburse_api_key $name public_key=pk-$name
                    private_key_file=%%KEYFILE:$name%%
                    exchange=/_imburse/$name;
EOF
    }
    $conf .= <<'EOF';
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
EOF
    for my $name (@names) {
        $conf .= <<"EOF";
        location /$name/ {
            imburse_auth $name;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        %%EXCHANGE_LOCATION:/_imburse/$name%%
EOF
    }
    $conf .= <<'EOF';
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log off;
        location / { return 200 "$http_authorization"; }
    }
EOF
    return $conf;
}

my $main = "error_log $debug_log debug;";
$t->run(config(@FIRST), main => $main);

# burst(NAME): a cold burst on key NAME; returns the wake-up lines of the
# debug log it caused, by "who woke them"
sub burst {
    my ($name) = @_;
    my $dmark = -s $debug_log // 0;
    my $amark = $t->access_mark;
    my $before = $t->exchanges_of("pk-$name");
    my $load = $t->load("/$name/x", 80, 20, {}, timeout => 30);
    is($load->{by_status}{200} // 0, 80, "$name: a cold burst, all 200")
        or diag explain $load->{by_status};
    is($t->exchanges_of("pk-$name") - $before, 1, "$name: one exchange");

    my @log = $t->access_log(since => $amark, wait_for => 80);
    my %miss_pids = map { /token=MISS pid=(\d+)/ ? ($1 => 1) : () } @log;

    open my $fh, '<', $debug_log or die "$debug_log: $!";
    seek $fh, $dmark, 0;
    my %by;
    while (my $l = <$fh>) {
        next unless $l =~ /imburse key "\Q$name\E": waiting requests woken by (.+?)(?:, client|$)/;
        $by{$1}++;
    }
    close $fh;
    return (scalar keys %miss_pids, \%by);
}

# bursts(NAME...): how many of the keys' bursts (each waiting in both
# workers) were woken through the pipe, and how many by the timer
sub bursts {
    my ($pipe, $timer, $both) = (0, 0, 0);
    for my $name (@_) {
        my ($workers, $by) = burst($name);
        next if $workers < 2;
        $both++;
        $pipe++ if ($by->{'another worker'} // 0) >= 1;
        $timer++ if $by->{'the zone timer'};
        diag("$name: " . join(', ', map { "$_ $by->{$_}" } sort keys %$by))
            if $by->{'the zone timer'};
    }
    return ($pipe, $timer, $both);
}

my ($pipe, $timer, $both) = bursts(@FIRST);
SKIP: {
    skip 'the bursts waited in one worker only', 2 if $both < 2;
    cmp_ok($pipe, '>=', $both - 1, "the other worker's requests were woken "
        . "by the worker that exchanged ($pipe bursts of $both)");
    cmp_ok($timer, '<=', 1, "the safety-net timer woke them in $timer burst(s) "
        . 'at most 1');
}

ok($t->reload(config(@FIRST, @SECOND), main => $main), 'reload');
($pipe, $timer, $both) = bursts(@SECOND);
SKIP: {
    skip 'the bursts waited in one worker only', 2 if $both < 2;
    cmp_ok($pipe, '>=', $both - 1, "after a reload: woken by the other worker "
        . "($pipe bursts of $both)");
    cmp_ok($timer, '<=', 1, "after a reload: the safety-net timer in $timer "
        . 'burst(s), at most 1');
}

$t->stop;
ok(!grep(/open socket .* left in connection/, $t->error_log),
    'no socket left open at exit');

done_testing;
