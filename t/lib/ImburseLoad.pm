package ImburseLoad;

# Time-bounded load for the resilience tests: CONC keep-alive clients
# request a URL until SECONDS have passed, each reporting its count, its
# slowest request and the statuses it got.

use strict;
use warnings;

use Exporter qw(import);
use HTTP::Tiny;
use POSIX ();
use Time::HiRes ();

our @EXPORT_OK = qw(load_for);

# load_for(URL, SECONDS, CONC, check => sub { $response } -> bool)
# Returns { count, by_status => {status => n}, max_ms, bad } where bad
# counts responses for which check returned false.
sub load_for {
    my ($url, $seconds, $conc, %o) = @_;
    my $check = $o{check} // sub { 1 };
    pipe my $rd, my $wr or die "pipe: $!";
    my @pids;
    for (1 .. $conc) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 1);
            my $end = Time::HiRes::time() + $seconds;
            my ($n, $max, $bad, %by) = (0, 0, 0);
            while (Time::HiRes::time() < $end) {
                my $t0 = Time::HiRes::time();
                my $res = $http->get($url);
                my $ms = (Time::HiRes::time() - $t0) * 1000;
                $max = $ms if $ms > $max;
                $by{$res->{status}}++;
                $bad++ unless $check->($res);
                $n++;
            }
            syswrite $wr, join(' ', $n, sprintf('%.1f', $max), $bad,
                map { "$_=$by{$_}" } sort keys %by) . "\n";
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    close $wr;

    my %res = (count => 0, max_ms => 0, bad => 0, by_status => {});
    while (my $line = <$rd>) {
        my ($n, $max, $bad, @by) = split ' ', $line;
        $res{count} += $n;
        $res{bad} += $bad;
        $res{max_ms} = $max if $max > $res{max_ms};
        for (@by) {
            my ($s, $c) = split /=/;
            $res{by_status}{$s} += $c;
        }
    }
    close $rd;
    waitpid $_, 0 for @pids;
    return \%res;
}

1;
