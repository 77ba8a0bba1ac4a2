#!/usr/bin/perl
# Unit tests of the fleet tier's pure C parts (t/unit/fleet.c): the Redis
# reply parser and the sealing of tokens at rest, built by `make unit`.
use strict;
use warnings;
use FindBin;

my $bin = "$FindBin::Bin/../build/unit/fleet";

-x $bin or do { print "1..1\nnot ok 1 - $bin is built (run make unit)\n"; exit 1 };
exec $bin or die "exec $bin: $!";
