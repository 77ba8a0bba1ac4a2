#!/usr/bin/perl

# The Imburse stand-in server (see ImburseStandin.pm).
# Usage: standin.pl STATE_DIR   (STATE_DIR/config.json holds the ports, keys
# and initial behaviour; the server writes STATE_DIR/ready once listening).

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__);
use ImburseStandin;

my $dir = shift or die "usage: $0 STATE_DIR\n";
exit ImburseStandin::serve($dir);
