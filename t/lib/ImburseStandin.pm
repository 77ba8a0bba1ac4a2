package ImburseStandin;

# A stand-in for Imburse, for the tests: the HMAC scheme (pure functions), and
# a small fork-per-connection HTTP server with two roles:
#
#   identity  POST /identity/v1/hmac/management verifies the Hmac header the
#             way Imburse does and answers with a token, or with whatever the
#             test scripted (status, delay, body, expires format, token...);
#             /_standin/* is the control API used by the harness.
#   upstream  any request: answers 200 with a JSON list of every request
#             header it received (every occurrence) and records the request;
#             the status can be scripted: {status, status_by_path => {path =>
#             status}, status_by_bearer => {token => status}}, and so can a
#             delay (delay_ms, delay_by_path => {path => ms}) and an HTML
#             body instead (body_by_path => {path => html}).
#
# State shared by the per-connection processes lives in JSON files in a state
# directory, read and written under flock.  Start it with t/lib/standin.pl;
# ImburseTest::start_standin does that for you.

use strict;
use warnings;

use Digest::SHA qw(sha256 hmac_sha256);
use MIME::Base64 qw(encode_base64 decode_base64);
use JSON::PP ();
use Fcntl qw(:flock O_RDWR O_CREAT O_WRONLY O_APPEND);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use Time::HiRes ();

our $JSON = JSON::PP->new->canonical->utf8;

our $IDENTITY_PATH = '/identity/v1/hmac/management';

# A rejected signature is answered in the shape of Imburse's error bodies,
# {"errors":[{"errorCode":...,"message":...}]}; the codes are the
# stand-in's own.
our %ERROR_CODE = (
    malformed       => 'HMAC_HEADER_INVALID',
    unknown_key     => 'API_KEY_NOT_FOUND',
    stale_timestamp => 'HMAC_TIMESTAMP_OUT_OF_RANGE',
    bad_signature   => 'HMAC_SIGNATURE_INVALID',
    replayed_nonce  => 'HMAC_NONCE_REUSED',
);

###############################################################################
# The Imburse HMAC scheme.  All strings are byte strings (UTF-8 encoded).

sub body_hash {
    my ($body) = @_;
    return '' if !defined $body || $body eq '';
    return encode_base64(sha256($body), '');
}

sub string_to_sign {
    my ($public_key, $nonce, $timestamp, $body) = @_;
    return join ':', $public_key, $nonce, $timestamp, body_hash($body);
}

sub signature {
    my ($private_key_b64, $string_to_sign) = @_;
    return encode_base64(
        hmac_sha256($string_to_sign, decode_base64($private_key_b64)), '');
}

# authorization(public_key => .., private_key => b64, nonce => .., timestamp
# => .., body => ..) -> "Hmac pk:nonce:ts:signature"
sub authorization {
    my (%a) = @_;
    my $sts = string_to_sign(@a{qw(public_key nonce timestamp)}, $a{body});
    return "Hmac $a{public_key}:$a{nonce}:$a{timestamp}:"
        . signature($a{private_key}, $sts);
}

sub parse_authorization {
    my ($header) = @_;
    return undef unless defined $header
        && $header =~ m{^Hmac (.+):([^:]+):(\d+):([A-Za-z0-9+/=]+)$};
    return { public_key => $1, nonce => $2, timestamp => $3,
             signature => $4 };
}

# verify(authorization => .., body => .., keys => {pk => b64}, now => epoch,
#        seen => {nonce => 1}, max_skew => 300)
# -> (1, 'ok', $parsed) or (0, $reason, $parsed)
# reason: malformed, unknown_key, stale_timestamp, bad_signature,
# replayed_nonce.  A nonce is recorded in %seen only when all else is valid.
sub verify {
    my (%a) = @_;
    my $p = parse_authorization($a{authorization})
        or return (0, 'malformed', undef);
    my $private = $a{keys}{$p->{public_key}};
    return (0, 'unknown_key', $p) unless defined $private;
    my $skew = $a{max_skew} // 300;
    return (0, 'stale_timestamp', $p)
        if abs(($a{now} // time) - $p->{timestamp}) > $skew;
    my $expected = signature($private,
        string_to_sign(@$p{qw(public_key nonce timestamp)}, $a{body}));
    return (0, 'bad_signature', $p) unless $expected eq $p->{signature};
    if ($a{seen}) {
        return (0, 'replayed_nonce', $p) if $a{seen}{$p->{nonce}};
        $a{seen}{$p->{nonce}} = 1;
    }
    return (1, 'ok', $p);
}

###############################################################################
# Tokens

sub random_alnum {
    my ($n) = @_;
    my @c = ('a' .. 'z', 'A' .. 'Z', '0' .. '9');
    my $bytes = '';
    if (open my $fh, '<:raw', '/dev/urandom') {
        read $fh, $bytes, $n;
        close $fh;
    }
    $bytes .= chr(int rand 256) while length $bytes < $n;
    return join '', map { $c[ord($_) % @c] } split //, $bytes;
}

sub b64url {
    my ($s) = @_;
    (my $e = encode_base64($s, '')) =~ tr{+/}{-_};
    $e =~ s/=+$//;
    return $e;
}

# A JWT (unsigned for our purpose: the module only reads the exp claim).
sub jwt {
    my (%claims) = @_;
    return join '.', b64url('{"alg":"HS256","typ":"JWT"}'),
        b64url($JSON->encode(\%claims)), b64url(random_alnum(32));
}

# The identity answer for an accepted request, following behaviour $b:
#   status        HTTP status (default 200); non-200 answers a JSON error
#   body          raw body, sent as is (with status), overrides everything
#   content_type  default application/json
#   ttl_ms        token lifetime (default 3600000)
#   expires       string (default) | number | none | garbage | past
#   token_kind    plain (default, "tok-N-random") | jwt (exp claim = expiry)
#   token         a literal token (e.g. with a space or CR/LF)
#   omit_token    1: no accessToken field
# Returns (status, content_type, body, issued) with issued = {token,
# expires_ms} when a token was handed out.
sub identity_response {
    my ($b, $n, $now) = @_;
    my $status = $b->{status} // 200;
    my $ct = $b->{content_type} // 'application/json';
    return ($status, $ct, $b->{body}, undef) if defined $b->{body};
    return ($status, $ct,
        $JSON->encode({ error => 'scripted failure', status => $status + 0 }),
        undef)
        if $status != 200;

    my $ttl_ms = $b->{ttl_ms} // 3_600_000;
    my $expires_ms = int($now * 1000) + $ttl_ms;
    my $token = $b->{token};
    if (!defined $token) {
        $token = ($b->{token_kind} // 'plain') eq 'jwt'
            ? jwt(sub => 'standin', n => $n,
                  exp => int($now + $ttl_ms / 1000))
            : "tok-$n-" . random_alnum(24);
    }

    my %r;
    $r{accessToken} = $token unless $b->{omit_token};
    my $f = $b->{expires} // 'string';
    if    ($f eq 'string')  { $r{expires} = "$expires_ms" }
    elsif ($f eq 'number')  { $r{expires} = $expires_ms + 0 }
    elsif ($f eq 'garbage') { $r{expires} = 'soon' }
    elsif ($f eq 'past')    { $r{expires} = '' . (int($now * 1000) - 60_000) }
    elsif ($f ne 'none')    { die "unknown expires format $f\n" }

    return (200, $ct, $JSON->encode(\%r),
        { token => $token, expires_ms => $expires_ms });
}

###############################################################################
# Shared state (JSON in $dir/state.json under flock on $dir/state.lock)

sub new_state {
    my (%cfg) = @_;
    return {
        keys     => $cfg{keys} // {},
        global   => $cfg{global} // {},
        tenants  => $cfg{tenants} // {},
        upstream => $cfg{upstream} // {},
        nonces   => {},
        counter  => 0,
        stats    => empty_stats(),
    };
}

sub empty_stats {
    return {
        exchanges => 0, ok => 0, rejected => 0, reasons => {},
        inflight => 0, max_inflight => 0, by_tenant => {}, tokens => [],
        upstream_requests => 0, other_requests => 0,
    };
}

sub with_state {
    my ($dir, $mode, $code) = @_;
    sysopen my $lock, "$dir/state.lock", O_RDWR | O_CREAT
        or die "state.lock: $!";
    flock $lock, $mode eq 'w' ? LOCK_EX : LOCK_SH or die "flock: $!";
    my $s = $JSON->decode(slurp("$dir/state.json"));
    my @r = $code->($s);
    if ($mode eq 'w') {
        spew("$dir/state.json.tmp", $JSON->encode($s));
        rename "$dir/state.json.tmp", "$dir/state.json" or die "rename: $!";
    }
    close $lock;
    return wantarray ? @r : $r[0];
}

sub append_record {
    my ($dir, $name, $rec) = @_;
    sysopen my $fh, "$dir/$name", O_WRONLY | O_APPEND | O_CREAT
        or die "$name: $!";
    flock $fh, LOCK_EX;
    syswrite $fh, $JSON->encode($rec) . "\n";
    close $fh;
}

sub read_records {
    my ($dir, $name) = @_;
    return [] unless -e "$dir/$name";
    open my $fh, '<', "$dir/$name" or die "$name: $!";
    flock $fh, LOCK_SH;
    my @r = map { $JSON->decode($_) } grep { /\S/ } <$fh>;
    close $fh;
    return \@r;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $data) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $data;
    close $fh or die "$f: $!";
}

###############################################################################
# HTTP

sub read_request {
    my ($sock) = @_;
    my $buf = '';
    while ($buf !~ /\r?\n\r?\n/) {
        my $n = sysread $sock, $buf, 8192, length $buf;
        return undef unless $n;
        return undef if length $buf > 65536;
    }
    my ($head, $rest) = split /\r?\n\r?\n/, $buf, 2;
    my ($line, @lines) = split /\r?\n/, $head;
    my ($method, $uri, $version) = split / /, $line // '';
    return undef unless defined $version;
    my @headers;
    for (@lines) {
        push @headers, [$1, $2] if /^([^:]+):[ \t]*(.*?)[ \t]*$/;
    }
    my ($cl) = map { $_->[1] } grep { lc $_->[0] eq 'content-length' }
        @headers;
    $cl //= 0;
    while (length $rest < $cl) {
        my $n = sysread $sock, $rest, $cl - length $rest, length $rest;
        return undef unless $n;
    }
    return { method => $method, uri => $uri, version => $version,
             headers => \@headers, body => substr($rest, 0, $cl) };
}

sub header_values {
    my ($req, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{$req->{headers}};
}

my %REASON = (200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized',
    403 => 'Forbidden', 404 => 'Not Found', 500 => 'Internal Server Error',
    429 => 'Too Many Requests', 502 => 'Bad Gateway',
    503 => 'Service Unavailable');

sub respond {
    my ($sock, $status, $ct, $body, @headers) = @_;
    $body //= '';
    my $msg = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n"
        . join('', map { "$_\r\n" } @headers)
        . "Content-Type: $ct\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Connection: close\r\n\r\n" . $body;
    while (length $msg) {
        my $n = syswrite $sock, $msg;
        last unless $n;
        substr $msg, 0, $n, '';
    }
}

sub json_respond {
    my ($sock, $status, $data) = @_;
    respond($sock, $status, 'application/json', $JSON->encode($data));
}

###############################################################################
# Roles

sub handle_identity {
    my ($dir, $sock, $req) = @_;
    my $now = Time::HiRes::time();
    my ($authz) = header_values($req, 'Authorization');

    my ($ok, $reason, $p, $b, $n) = with_state($dir, 'w', sub {
        my ($s) = @_;
        my $st = $s->{stats};
        $st->{exchanges}++;
        $st->{inflight}++;
        $st->{max_inflight} = $st->{inflight}
            if $st->{inflight} > $st->{max_inflight};
        # the tenant's behaviour, for its clock, is known from the header
        my $claimed = parse_authorization($authz);
        my $cpk = $claimed ? $claimed->{public_key} : '-';
        my $offset = ($s->{tenants}{$cpk} // {})->{clock_offset_s}
            // $s->{global}{clock_offset_s} // 0;
        my ($ok, $reason, $p) = verify(authorization => $authz,
            body => $req->{body}, keys => $s->{keys},
            now => int($now + $offset),
            seen => $s->{nonces}, max_skew => $s->{global}{max_skew});
        my $pk = $p ? $p->{public_key} : '-';
        my $t = $st->{by_tenant}{$pk} //= { exchanges => 0, ok => 0,
            rejected => 0, tokens => [] };
        $t->{exchanges}++;
        if ($ok) { $st->{ok}++; $t->{ok}++ }
        else { $st->{rejected}++; $t->{rejected}++; $st->{reasons}{$reason}++ }
        my %b = (%{$s->{global}}, %{$s->{tenants}{$pk} // {}});
        return ($ok, $reason, $p, \%b, ++$s->{counter});
    });

    # the delay comes first: a token's lifetime starts when it is sent
    my $delay = ($b->{delay_ms} // 0) / 1000;
    alarm(15 + $delay);
    Time::HiRes::sleep($delay) if $delay > 0;
    $now = Time::HiRes::time();
    my $clock = $now + ($b->{clock_offset_s} // 0);

    my ($status, $ct, $body, $issued) = $ok
        ? identity_response($b, $n, $clock)
        : (401, 'application/json', $JSON->encode({
               errors => [{ errorCode => $ERROR_CODE{$reason} // 'UNKNOWN',
                            message => 'invalid signature' }],
               error => 'invalid signature', reason => $reason }));

    append_record($dir, 'identity.jsonl', {
        time => $now, method => $req->{method}, uri => $req->{uri},
        headers => $req->{headers}, body_length => length $req->{body},
        verdict => $reason, status => $status + 0,
        public_key => $p ? $p->{public_key} : undef,
        token => $issued ? $issued->{token} : undef });

    # recorded before answering: once the client has the answer, the stats
    # show the token and the exchange is no longer in flight
    with_state($dir, 'w', sub {
        my ($s) = @_;
        $s->{stats}{inflight}--;
        return unless $issued;
        push @{$s->{stats}{tokens}},
            { %$issued, public_key => $p->{public_key}, time => $now };
        push @{$s->{stats}{by_tenant}{$p->{public_key}}{tokens}},
            $issued->{token};
    });

    respond($sock, $status, $ct, $body, identity_headers($b, $clock));
}

my @DAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

sub http_date {
    my @t = gmtime int $_[0];
    return sprintf '%s, %02d %s %04d %02d:%02d:%02d GMT', $DAY[$t[6]], $t[3],
        $MON[$t[4]], $t[5] + 1900, $t[2], $t[1], $t[0];
}

# The headers of an identity answer, on the stand-in's clock: Date
# (date => none | garbage | "literal"), Age (age => N) and Retry-After
# (retry_after => N seconds, or "date:+N" for an HTTP-date N s ahead).
sub identity_headers {
    my ($b, $clock) = @_;
    my @h;
    my $date = $b->{date} // '';
    if ($date eq 'garbage') { push @h, 'Date: yesterday-ish' }
    elsif ($date ne 'none') { push @h, 'Date: ' . ($date || http_date($clock)) }
    push @h, "Age: $b->{age}" if defined $b->{age};
    if (defined(my $ra = $b->{retry_after})) {
        push @h, 'Retry-After: '
            . ($ra =~ /^date:\+(\d+)$/ ? http_date($clock + $1) : $ra);
    }
    return @h;
}

sub handle_control {
    my ($dir, $sock, $req) = @_;
    my $path = $req->{uri};
    if ($req->{method} eq 'GET' && $path eq '/_standin/stats') {
        return json_respond($sock, 200,
            with_state($dir, 'r', sub { $_[0]{stats} }));
    }
    if ($req->{method} eq 'GET' && $path eq '/_standin/upstream') {
        return json_respond($sock, 200, read_records($dir, 'upstream.jsonl'));
    }
    if ($req->{method} eq 'GET' && $path eq '/_standin/identity') {
        return json_respond($sock, 200, read_records($dir, 'identity.jsonl'));
    }
    if ($req->{method} eq 'POST' && $path eq '/_standin/control') {
        my $c = eval { $JSON->decode($req->{body}) };
        return json_respond($sock, 400, { error => "bad json: $@" })
            unless ref $c eq 'HASH';
        my $s = with_state($dir, 'w', sub {
            my ($s) = @_;
            for my $pk (keys %{$c->{keys} // {}}) {
                if (defined $c->{keys}{$pk}) { $s->{keys}{$pk} = $c->{keys}{$pk} }
                else { delete $s->{keys}{$pk} }
            }
            for my $pk (keys %{$c->{tenants} // {}}) {
                $s->{tenants}{$pk} = $c->{tenants}{$pk} // {};
            }
            $s->{global} = $c->{global} if $c->{global};
            $s->{upstream} = $c->{upstream} if $c->{upstream};
            if ($c->{reset_stats}) {
                my $inflight = $s->{stats}{inflight};
                $s->{stats} = empty_stats();
                $s->{stats}{inflight} = $inflight;
            }
            return { map { $_ => $s->{$_} } qw(keys global tenants upstream) };
        });
        if ($c->{reset_stats}) {
            unlink "$dir/upstream.jsonl", "$dir/identity.jsonl";
        }
        return json_respond($sock, 200, $s);
    }
    return json_respond($sock, 404, { error => "no such control $path" });
}

sub handle_upstream {
    my ($dir, $sock, $req) = @_;
    my @authz = header_values($req, 'Authorization');
    my ($u, $n) = with_state($dir, 'w', sub {
        my ($s) = @_;
        return ($s->{upstream}, ++$s->{stats}{upstream_requests});
    });
    my $rec = { n => $n, time => Time::HiRes::time(),
        method => $req->{method}, uri => $req->{uri},
        headers => $req->{headers}, authorization => \@authz,
        body => $req->{body} };
    append_record($dir, 'upstream.jsonl', $rec);

    my ($path) = split /\?/, $req->{uri};
    my $status = $u->{status_by_path}{$path} // $u->{status} // 200;
    for my $a (@authz) {
        next unless $a =~ /^Bearer (.*)$/;
        $status = $u->{status_by_bearer}{$1} // $status;
    }
    my $delay = ($u->{delay_by_path}{$path} // $u->{delay_ms} // 0) / 1000;
    Time::HiRes::sleep($delay) if $delay > 0;
    if (defined(my $html = $u->{body_by_path}{$path})) {
        return respond($sock, $status, 'text/html', $html);
    }
    json_respond($sock, $status, $rec);
}

sub handle_connection {
    my ($dir, $role, $sock) = @_;
    $SIG{PIPE} = 'IGNORE';
    local $SIG{ALRM} = sub { die "standin: connection timeout\n" };
    alarm 15;
    eval {
        my $req = read_request($sock);
        if (!$req) {
            # nothing (or garbage) received: just close
        } elsif ($role eq 'upstream') {
            handle_upstream($dir, $sock, $req);
        } elsif ($req->{uri} =~ m{^/_standin/}) {
            handle_control($dir, $sock, $req);
        } elsif ($req->{method} eq 'POST' && $req->{uri} eq $IDENTITY_PATH) {
            handle_identity($dir, $sock, $req);
        } else {
            with_state($dir, 'w', sub { $_[0]{stats}{other_requests}++ });
            json_respond($sock, 404, { error => 'not found' });
        }
        1;
    } or do {
        my $e = $@ || 'unknown error';
        print STDERR "standin: $e" unless $e =~ /connection timeout/;
    };
    alarm 0;
    close $sock;
}

###############################################################################
# Server: $dir/config.json holds identity_port, upstream_port, parent_pid,
# lifetime (seconds), keys, global, tenants, upstream.

sub serve {
    my ($dir) = @_;
    my $cfg = $JSON->decode(slurp("$dir/config.json"));
    spew("$dir/state.json", $JSON->encode(new_state(%$cfg)));

    my %role;
    my $sel = IO::Select->new;
    for my $r (qw(identity upstream)) {
        my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $cfg->{"${r}_port"}, Listen => 128, ReuseAddr => 1,
            Proto => 'tcp') or die "standin: listen $r: $!\n";
        $role{fileno $l} = [$r, $l];
        $sel->add($l);
    }
    spew("$dir/ready", "$$\n");

    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };
    local $SIG{INT} = sub { $stop = 1 };
    my %kids;
    my $deadline = time + ($cfg->{lifetime} // 900);

    while (!$stop && time < $deadline) {
        while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
            delete $kids{$pid};
        }
        last if $cfg->{parent_pid} && getppid() != $cfg->{parent_pid};
        for my $l ($sel->can_read(0.5)) {
            my $c = $l->accept or next;
            my $r = $role{fileno $l}[0];
            if (keys %kids >= 300) { close $c; next }
            my $pid = fork;
            if (!defined $pid) { close $c; next }
            if ($pid == 0) {
                $SIG{TERM} = 'DEFAULT';
                $_->[1]->close for values %role;
                handle_connection($dir, $r, $c);
                POSIX::_exit(0);
            }
            $kids{$pid} = 1;
            close $c;
        }
    }
    kill 'TERM', keys %kids;
    unlink "$dir/ready";
    return 0;
}

1;
