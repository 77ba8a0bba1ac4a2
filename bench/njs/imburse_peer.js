// The njs peer of the benchmark: what a user of nginx's own scripting
// module would write instead of the module, with Debian's
// libnginx-mod-http-js (njs 0.7.9).  See docs/benchmarks.md.
//
// njs 0.7 runs every request in its own clone of the VM: a global
// variable set by one request is gone for the next, and njs's shared
// dictionary (js_shared_dict_zone) arrives only in 0.8.0.  The one state
// that requests (and workers) can share here is the file system, so the
// token lives in a file, "VALID_UNTIL_MS TOKEN", written under a temporary
// name and renamed (a reader sees the old file or the new one, whole), and
// js_set reads it on every request:
//
//   js_set $njs_bearer njs_peer.bearer;   # "Bearer <token>", or "" when
//                                          # there is none valid
//   location / {
//       if ($njs_bearer = "") { return 418; }
//       error_page 418 = @njs_fetch;
//       proxy_set_header Authorization $njs_bearer;
//       ...
//   }
//
// A js_set handler is synchronous: it cannot wait for an exchange.  A
// request that finds no valid token goes to @njs_fetch, whose js_content
// handler (async) exchanges through r.subrequest() to an exchange location
// like the module's (signed by js_set $njs_hmac there: Imburse's HMAC with
// njs's crypto module, the nonce from crypto.getRandomValues()), writes
// the file, puts the token in a js_var and redirects to @njs_proxy, which
// proxies as location / does.
//
// Single flight: a lock file created with the flag "wx" (it fails when the
// file exists); the others poll the token file every 10 ms, for at most
// 10 s, then answer 503.  A lock older than 10 s is taken for abandoned.
// There is no background refresh (js_set cannot start one, and njs 0.7
// has no timer outside a request): the token counts as valid until
// "refresh" before its expiry, never more than half its lifetime (the
// module's rule), and the request that finds it too old waits for the new
// one, like the Lua peer.
//
// The key and the settings come from a JSON file read at configuration
// time (js_preload_object, njs 0.7.8 and later), kept out of nginx.conf:
// {"public_key", "private_key" (base64), "dir" (the token file's
// directory, writable by the workers), "refresh" (seconds)}.

import fs from 'fs';
// njs's Node-like crypto module (HMAC); the global "crypto" is WebCrypto
// (getRandomValues)
import hashes from 'crypto';

const TOKEN_RE = /^[A-Za-z0-9._~+\/-]+=*$/;

function token_file() { return njs_peer_conf.dir + '/token'; }
function lock_file() { return njs_peer_conf.dir + '/lock'; }

// the token in the file if it is still valid, else null
function valid_token() {
    let s;
    try {
        s = fs.readFileSync(token_file(), 'utf8');
    } catch (e) {
        return null;
    }
    const sp = s.indexOf(' ');
    if (sp < 0 || Date.now() >= Number(s.slice(0, sp))) {
        return null;
    }
    return s.slice(sp + 1);
}

// js_set $njs_bearer: every request
function bearer(r) {
    const t = valid_token();
    return t === null ? '' : 'Bearer ' + t;
}

// js_set $njs_hmac: Authorization: Hmac {public_key}:{nonce}:{seconds}:{sig}
// (no body: the body hash is empty)
function hmac(r) {
    const c = njs_peer_conf;
    const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(16)))
                  .toString('hex');
    const ts = String(Math.floor(Date.now() / 1000));
    const sts = c.public_key + ':' + nonce + ':' + ts + ':';
    const sig = hashes.createHmac('sha256',
                                  Buffer.from(c.private_key, 'base64'))
                .update(sts).digest('base64');
    return 'Hmac ' + c.public_key + ':' + nonce + ':' + ts + ':' + sig;
}

function lock() {
    for (let i = 0; i < 2; i++) {
        try {
            fs.writeFileSync(lock_file(), String(Date.now()), {flag: 'wx'});
            return true;
        } catch (e) {
            if (e.code !== 'EEXIST') {
                return false;
            }
        }
        // abandoned (its request died before unlocking)?
        try {
            const at = Number(fs.readFileSync(lock_file(), 'utf8'));
            if (Date.now() - at < 10000) {
                return false;
            }
            fs.unlinkSync(lock_file());
        } catch (e) {
            // gone meanwhile: try again
        }
    }
    return false;
}

function unlock() {
    try {
        fs.unlinkSync(lock_file());
    } catch (e) {
        // already gone
    }
}

async function exchange(r) {
    const reply = await r.subrequest('/_njs/exchange');
    if (reply.status !== 200) {
        r.error('token exchange failed: status ' + reply.status);
        return null;
    }

    let data;
    try {
        data = JSON.parse(reply.responseText);
    } catch (e) {
        r.error('token exchange failed: not JSON');
        return null;
    }

    const token = data && data.accessToken;
    const expires = data && Number(data.expires);
    if (typeof token !== 'string' || !TOKEN_RE.test(token) || !expires) {
        r.error('token exchange failed: bad response');
        return null;
    }

    const now = Date.now();
    const lifetime = (expires - now) / 1000;
    if (lifetime <= 0) {
        r.error('token exchange failed: token already expired');
        return null;
    }

    // valid until "refresh" before expiry, never more than half the lifetime
    const ttl = lifetime - Math.min(njs_peer_conf.refresh, lifetime / 2);
    const tmp = token_file() + '.' + process.pid;
    fs.writeFileSync(tmp, String(Math.floor(now + ttl * 1000)) + ' ' + token);
    fs.renameSync(tmp, token_file());

    return token;
}

function sleep(ms) {
    return new Promise(resolve => setTimeout(resolve, ms));
}

// js_content of @njs_fetch: a request that found no valid token
async function fetch(r) {
    let token = valid_token();

    if (token === null) {
        if (lock()) {
            try {
                // fetched by another request while we were getting here?
                token = valid_token();
                if (token === null) {
                    token = await exchange(r);
                }
            } finally {
                unlock();
            }

        } else {
            for (let i = 0; i < 1000 && token === null; i++) {
                await sleep(10);
                token = valid_token();
            }
        }
    }

    if (token === null) {
        r.headersOut['Retry-After'] = '5';
        r.return(503);
        return;
    }

    r.variables.njs_token = token;
    r.internalRedirect('@njs_proxy');
}

export default {bearer, hmac, fetch};
