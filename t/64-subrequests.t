#!/usr/bin/perl

# Our token reaches only upstreams of imburse_auth locations.  Subrequests
# share their parent's header list: one that runs in a location without
# imburse_auth (mirror, SSI include, addition) gets the client's own
# Authorization, or none, never our token; one into an imburse_auth
# location gets the token (t/45, and a mirror here).  And $imburse_hmac, a signed value, is
# empty everywhere but in the exchange's own request: the client request's
# access log never records it, not even through a variable that the
# exchange location "set" from it (the exchange's variables are its own).

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use Time::HiRes qw(sleep);

my $PUBLIC  = 'pk-subrequests';
my $PRIVATE = 'c3VicmVxdWVzdHMtdGVzdC1rZXktMDEyMzQ1Njc4OWFi';
my $CLIENT  = 'Basic Y2xpZW50OnNlY3JldA==';

my $t = ImburseTest->new;
$t->write_key('main', $PRIVATE);
$t->start_standin(keys => { $PUBLIC => $PRIVATE },
    upstream => { body_by_path => {
        '/ssi/page' => "page <!--# include virtual=\"/plain/included\" --> end\n",
        '/added/x'  => "<p>the page</p>\n",
    } });

$t->run(<<'NGINX');
    imburse_api_key main public_key=pk-subrequests
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/main;
    imburse_api_key setsig public_key=pk-subrequests
                    private_key_file=%%KEYFILE:main%%
                    exchange=/_imburse/setsig;

    log_format hmac '"$request" hmac="$imburse_hmac" sig="$sig"';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%PREFIX%%/hmac.log hmac;

        location /mirrored/ {
            imburse_auth main;
            mirror /_shadow;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /_shadow {
            internal;
            imburse_auth off;
            proxy_pass %%UPSTREAM_URL%%/shadow;
        }

        location /ssi/ {
            imburse_auth main;
            ssi on;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /added/ {
            imburse_auth main;
            add_before_body /plain/before;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /plain/ {
            imburse_auth off;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location /plainmirror/ {
            imburse_auth off;
            mirror /_authshadow;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /_authshadow {
            internal;
            imburse_auth main;
            proxy_pass %%UPSTREAM_URL%%/authshadow;
        }

        location /setsig/ {
            imburse_auth setsig;
            proxy_pass %%UPSTREAM_URL%%;
        }

        location = /_imburse/setsig {
            internal;
            proxy_method               POST;
            proxy_pass_request_headers off;
            proxy_pass_request_body    off;
            proxy_set_header           Content-Length 0;
            set $sig $imburse_hmac;
            proxy_set_header           Authorization $sig;
            proxy_pass %%IDENTITY_URL%%;
        }

        %%EXCHANGE_LOCATION:/_imburse/main%%
    }
NGINX

# the first request waits for the exchange (its access log line below)
is($t->http_get('/mirrored/first')->{status}, 200, 'first request: 200');
my $TOKEN = $t->stats->{tokens}[-1]{token} // '';
sub token { $TOKEN }
sub seen {
    my ($path) = @_;
    for (1 .. 40) {
        my @r = grep { $_->{uri} eq $path } @{$t->upstream_requests};
        return $r[-1]{authorization} if @r;
        sleep 0.05;
    }
    return undef;
}
sub reset_upstream { $t->reset_stats }

for my $client ([$CLIENT], []) {
    my %h = @$client ? (Authorization => $CLIENT) : ();
    my $who = @$client ? 'the client\'s header' : 'no header (as the client)';

    reset_upstream();
    is($t->http_get('/mirrored/x', \%h)->{status}, 200, 'mirror: 200');
    is_deeply(seen('/mirrored/x'), ['Bearer ' . token()],
        'mirror: the API got our token');
    is_deeply(seen('/shadow'), $client, "mirror: the shadow got $who");

    reset_upstream();
    my $r = $t->http_get('/ssi/page', \%h);
    is($r->{status}, 200, 'ssi: 200');
    like($r->{body}, qr/^page .*"uri":"\/plain\/included".* end$/s,
        'ssi: the page includes the other location\'s answer');
    is_deeply(seen('/ssi/page'), ['Bearer ' . token()],
        'ssi: the API got our token');
    is_deeply(seen('/plain/included'), $client,
        "ssi: the included location got $who");

    reset_upstream();
    is($t->http_get('/added/x', \%h)->{status}, 200, 'addition: 200');
    is_deeply(seen('/added/x'), ['Bearer ' . token()],
        'addition: the API got our token');
    is_deeply(seen('/plain/before'), $client,
        "addition: the added location got $who");
}

###############################################################################
# The other way round: a subrequest into an imburse_auth location from one
# without it gets the token, added to a header list of its own (a client
# without Authorization: the token is a new header of that list)

for my $client ([$CLIENT], []) {
    my %h = @$client ? (Authorization => $CLIENT) : ();
    my $who = @$client ? 'the client\'s header' : 'no header (as the client)';
    for my $n (1 .. 3) {
        reset_upstream();
        is($t->http_get("/plainmirror/$n", \%h)->{status}, 200,
            "mirror into imburse_auth, $who ($n): 200");
        is_deeply(seen("/plainmirror/$n"), $client,
            "mirror into imburse_auth ($n): the page got $who");
        is_deeply(seen('/authshadow'), ['Bearer ' . token()],
            "mirror into imburse_auth ($n): the shadow got our token, once");
    }
}

###############################################################################
# $imburse_hmac in the client request's access log

is($t->http_get('/setsig/x')->{status}, 200,
    'an exchange location signing through "set $sig $imburse_hmac": 200');
sleep 0.2;
my @lines = split /\n/, ImburseTest::slurp($t->prefix . '/hmac.log');
ok(@lines >= 8, 'the access log has the client requests');
is_deeply([grep { !/hmac="" sig="-?"$/ } @lines], [],
    'neither $imburse_hmac nor what the exchange set from it is there, '
    . 'not even for the requests that waited for an exchange')
    or diag explain \@lines;

$t->stop;
$t->logs_lack(token => token());
done_testing;
