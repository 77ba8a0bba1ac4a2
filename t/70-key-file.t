#!/usr/bin/perl

# The tenant key file's hygiene.  Whoever can write the key file can make
# the gateway sign with a key of theirs: a file writable by its group or by
# everyone, or owned by someone else than the user who starts nginx (or
# root), fails nginx -t with the reason.  Group or world read is a warning.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;

my $t = ImburseTest->new;
my $path = $t->write_key('main', 'a2V5LWZpbGUtaHlnaWVuZS0wMTIzNDU2Nzg5YWI=');
my $conf = <<'NGINX';
    imburse_api_key main public_key=pk-main private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main;
    server {
        listen 127.0.0.1:%%PORT%%;
        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

my $euid = $>;
my @cases = (
    [ 0600, undef, 0, undef ],
    [ 0400, undef, 0, undef ],
    [ 0640, undef, 0, qr/\[warn\].*is readable by its group \(mode 0640\), restrict it to the user that starts nginx: chmod 600 it/ ],
    [ 0644, undef, 0, qr/\[warn\].*is readable by everyone \(mode 0644\)/ ],
    [ 0660, undef, 1, qr/\[emerg\].*private_key_file "[^"]+main\.key" of imburse_api_key "main" is writable by its group \(mode 0660\): chmod 600 it/ ],
    [ 0602, undef, 1, qr/\[emerg\].*is writable by everyone \(mode 0602\)/ ],
);
push @cases, [ 0600, 'nobody', 1, qr/\[emerg\].*private_key_file "[^"]+main\.key" of imburse_api_key "main" is owned by uid \d+: it must belong to the user that starts nginx \(uid $euid\) or to root/ ]
    if $euid == 0 && defined getpwnam('nobody');

for my $c (@cases) {
    my ($mode, $owner, $fails, $re) = @$c;
    chmod $mode, $path;
    chown scalar(getpwnam($owner // 'root')) // 0, -1, $path if $euid == 0;
    my $what = sprintf('mode %04o%s', $mode, $owner ? ", owner $owner" : '');
    my ($rc, $out) = $t->test_config($conf);
    if ($fails) {
        isnt($rc, 0, "$what: nginx -t fails");
    } else {
        is($rc, 0, "$what: nginx -t passes") or diag $out;
    }
    if ($re) {
        like($out, $re, "$what: says why");
    } else {
        unlike($out, qr/private_key_file/, "$what: nothing to say");
    }
}

done_testing;
