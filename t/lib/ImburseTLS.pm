package ImburseTLS;

# Test certificates made with the openssl command line, in a directory of
# the test's prefix: a CA, and certificates it signs for a server
# (localhost, 127.0.0.1) or a client.
#
#   my $tls = ImburseTLS->new("$prefix/tls");
#   $tls->ca('ca');                      # ca.key, ca.crt
#   $tls->cert('server', 'ca');          # server.key, server.crt
#   $tls->cert('client', 'ca', 'client');
#   $tls->path('server.crt');

use strict;
use warnings;

sub new {
    my ($class, $dir) = @_;
    -d $dir or mkdir $dir or die "mkdir $dir: $!";
    return bless { dir => $dir }, $class;
}

sub path { "$_[0]{dir}/$_[1]" }

sub openssl {
    my ($self, @args) = @_;
    my $out = qx{@{[ join ' ', map { "'$_'" } 'openssl', @args ]} 2>&1};
    die "openssl @args failed:\n$out" if $?;
}

sub ca {
    my ($self, $name) = @_;
    my $d = $self->{dir};
    $self->openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt',
        'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', "/CN=imburse test $name", '-keyout', "$d/$name.key",
        '-out', "$d/$name.crt",
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

# cert(NAME, CA, 'server' | 'client')
sub cert {
    my ($self, $name, $ca, $kind) = @_;
    my $d = $self->{dir};
    my $client = ($kind // 'server') eq 'client';
    $self->openssl('req', '-new', '-newkey', 'ec', '-pkeyopt',
        'ec_paramgen_curve:P-256', '-nodes',
        '-subj', $client ? "/CN=$name" : '/CN=localhost',
        '-keyout', "$d/$name.key", '-out', "$d/$name.csr");
    open my $fh, '>', "$d/$name.ext" or die "$d/$name.ext: $!";
    print $fh $client
        ? "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
          . "extendedKeyUsage=clientAuth\n"
        : "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
          . "basicConstraints=CA:FALSE\n"
          . "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
    close $fh;
    $self->openssl('x509', '-req', '-in', "$d/$name.csr", '-CA',
        "$d/$ca.crt", '-CAkey', "$d/$ca.key", '-CAcreateserial', '-days', '2',
        '-extfile', "$d/$name.ext", '-out', "$d/$name.crt");
}

1;
