#!/usr/bin/perl
# Unit tests of the pure C token-response parser (t/unit/token.c), built by
# `make unit`.
use strict;
use warnings;
use FindBin;

my $bin = "$FindBin::Bin/../build/unit/token";

-x $bin or do { print "1..1\nnot ok 1 - $bin is built (run make unit)\n"; exit 1 };
exec $bin or die "exec $bin: $!";
