#!/usr/bin/perl

# The harness itself, with plain nginx (no module): start, requests, the
# stand-in upstream behind proxy_pass, load, reload, nginx -t, logs, stop.
# If this fails, the feature tests' failures mean nothing.

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use ImburseTest;
use JSON::PP;

my $t = ImburseTest->new(module => 0);
$t->start_standin;

$t->run(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;

        location /echo/ {
            proxy_pass %%UPSTREAM_URL%%/;
        }
        location /fast/ {
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location = /generation {
            return 200 "one";
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "$http_authorization"; }
    }
EOF

is(scalar $t->worker_pids, 2, 'two workers');

my ($status, $headers, $body) = $t->http_get('/echo/x?y=1',
    { Authorization => 'Basic one', 'X-Dup' => ['a', 'b'] });
is($status, 200, 'proxied to the stand-in upstream');
my $echo = decode_json($body);
is($echo->{uri}, '/x?y=1', 'upstream saw the uri');
is_deeply($echo->{authorization}, ['Basic one'],
    'plain proxy_pass forwards the client Authorization (what the module '
    . 'must prevent)');
is_deeply([map { $_->[1] } grep { $_->[0] eq 'X-Dup' } @{$echo->{headers}}],
    ['a', 'b'], 'upstream echoes every occurrence of a header');
is(scalar @{$t->upstream_requests}, 1, 'upstream request recorded');

is($t->http_get('/echo/', { Authorization => ['Basic one', 'Basic two'] })
    ->{status}, 400, 'nginx 1.22 itself rejects a duplicate Authorization');

my @lines = $t->access_log(wait_for => 2);
like($lines[0], qr{"GET /echo/x\?y=1 HTTP/1.1" 200 token=- pid=\d+ rt=},
    'access log line');

my $load = $t->load('/fast/', 200, 20, { Authorization => 'Bearer x' });
ok($load->{complete}, 'load: all 200 requests answered');
is($load->{by_status}{200}, 200, 'load: all 200');
is(scalar(grep { $_->{body} eq 'Bearer x' } @{$load->{results}}), 200,
    'load: bodies reported');
ok($load->{elapsed} < 20, "load: took $load->{elapsed} s");

is($t->http_get('/generation')->{body}, 'one', 'before reload');
my @old = $t->worker_pids;
ok($t->reload(<<'EOF'), 'reload');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /generation { return 200 "two"; }
    }
EOF
is($t->http_get('/generation')->{body}, 'two', 'after reload: new config');
my %old = map { $_ => 1 } @old;
is(scalar(grep { $old{$_} } $t->worker_pids(all => 1)), 0,
    'after reload: old workers gone');
is(scalar $t->worker_pids, 2, 'after reload: two new workers');

my $mark = $t->log_mark;
ok(!$t->reload("server { listen 127.0.0.1:%%PORT%%; bogus_directive; }"),
    'reload with a bad config reports failure');
ok(scalar $t->grep_error_log(qr/unknown directive "bogus_directive"/,
    since => $mark), 'grep_error_log since a mark');
is($t->http_get('/generation')->{body}, 'two', 'old config still serves');

my ($rc, $out) = $t->test_config("server { bogus_directive; }");
isnt($rc, 0, 'nginx -t fails on a bad config');
like($out, qr/unknown directive "bogus_directive"/, 'nginx -t output');

eval { $t->render('%%NO_SUCH%%') };
like($@, qr/unknown placeholder/, 'unknown placeholders die');
like($t->render('%%KEYFILE:abc%%'), qr{/keys/abc\.key$}, 'KEYFILE:name');

$t->stop(allow => qr/bogus_directive/);
ok(!kill(0, @old), 'nginx stopped');

done_testing;
