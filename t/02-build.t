#!/usr/bin/perl

# `make` is incremental: after the suite's build (make test), the module
# is up to date for make, against the same nginx source (NGINX_SRC, passed
# down by make test), so a second `make` rebuilds nothing.  And make does
# see a change: with ./config taken as changed (make -W), the module is out
# of date, so the first check is not true of any Makefile.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

plan skip_all => 'the module is compiled into the nginx under test'
    if $ImburseTest::MODULE eq 'static';

my $root = $ImburseTest::ROOT;
my $target = 'build/ngx_http_imburse_auth_module.so';

# a make of our own, not a part of the make that runs the suite
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};

# make -q FLAGS... -> its exit status: 0 up to date, 1 out of date
sub make_q {
    system('make', '-q', '--no-print-directory', '-C', $root, @_, $target);
    return $? >> 8;
}

my $src = $ENV{NGINX_SRC} ? "NGINX_SRC=$ENV{NGINX_SRC}" : "Debian's nginx-dev";

is(make_q(), 0, "second make: nothing to do ($src)")
    or diag "make -n would run:\n"
        . `make -n --no-print-directory -C $root $target 2>&1`;

is(make_q('-W', 'config'), 1, './config changed: the module is out of date');

done_testing;
