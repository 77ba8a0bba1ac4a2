#!/usr/bin/perl
# Unit tests of the pure C signing code (t/unit/hmac.c), built by `make unit`.
use strict;
use warnings;
use FindBin;

my $root = "$FindBin::Bin/..";
my $bin  = "$root/build/unit/hmac";

-x $bin or do { print "1..1\nnot ok 1 - $bin is built (run make unit)\n"; exit 1 };
exec $bin, "$root/t/data/hmac-vectors.json" or die "exec $bin: $!";
