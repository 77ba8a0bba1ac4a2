-- The Lua peer of the benchmark: what an OpenResty user would write instead
-- of the module, with Debian's libnginx-mod-http-lua, lua-resty-core and
-- lua-cjson.
--
--   access_by_lua_block { peer.access("lock") }   -- or "nolock"
--
-- The token lives in a lua_shared_dict (shared by the workers) and counts as
-- valid until "refresh" before its expiry (at most half its lifetime), the
-- same rule as the module's.  On a miss the request fetches a new one with
-- ngx.location.capture() to the same kind of exchange location as the
-- module's; that location signs the exchange with peer.authorization()
-- (set_by_lua_block), Imburse's HMAC computed here through LuaJIT's FFI to
-- OpenSSL.  ngx.location.capture() needs a request, so it cannot run in an
-- ngx.timer: there is no background refresh, the request that finds the
-- token too old waits for the new one.
--
-- "lock": single flight the way lua-resty-lock does it (Debian does not
-- package it; this is its algorithm): a key added to the dict is the lock,
-- waiters poll it with ngx.sleep() from 1 ms doubling up to 0.5 s, and the
-- one that gets the lock looks at the cache again before fetching.
-- "nolock": every request that misses fetches a token of its own.

local ffi = require "ffi"
local cjson = require "cjson.safe"

local C = ffi.C
local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local min = math.min

local M = {}

pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
int RAND_bytes(unsigned char *buf, int num);
]])

-- nginx is linked with libcrypto: its symbols are already in the process
local crypto = C
if not pcall(function() return C.HMAC end) then
    crypto = ffi.load("crypto.so.3")
end

local md_buf = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")
local nonce_buf = ffi.new("unsigned char[16]")

local peers = {}

-- init{name = ..., dict = ..., exchange = ..., public_key = ...,
--      private_key_file = ..., refresh = seconds, lock = true|false}
-- (init_by_lua, in the master: the key file is read once, as root)
function M.init(conf)
    local f = assert(io.open(conf.private_key_file, "r"))
    local b64 = f:read("*a"):gsub("^%s+", ""):gsub("%s+$", "")
    f:close()
    local key = assert(ngx.decode_base64(b64), "private key is not base64")

    peers[conf.name] = {
        dict_name = conf.dict,
        exchange = conf.exchange,
        public_key = conf.public_key,
        key = key,
        refresh = conf.refresh or 60,
        lock = conf.lock,
    }
end

local function hex(buf, n)
    local t = {}
    for i = 0, n - 1 do
        t[i + 1] = string.format("%02x", buf[i])
    end
    return table.concat(t)
end

-- Authorization: Hmac {public_key}:{nonce}:{unix_seconds}:{signature}
-- (no body: the body hash is empty)
function M.authorization(name)
    local p = peers[name]

    if crypto.RAND_bytes(nonce_buf, 16) ~= 1 then
        return ""
    end

    local nonce = hex(nonce_buf, 16)
    local ts = tostring(ngx.time())
    local sts = p.public_key .. ":" .. nonce .. ":" .. ts .. ":"

    if crypto.HMAC(crypto.EVP_sha256(), p.key, #p.key, sts, #sts,
                   md_buf, md_len) == nil
    then
        return ""
    end

    return "Hmac " .. p.public_key .. ":" .. nonce .. ":" .. ts .. ":"
           .. ngx.encode_base64(ffi.string(md_buf, md_len[0]))
end

local function fetch(p, dict)
    local res = ngx.location.capture(p.exchange)

    if res.status ~= 200 then
        ngx.log(ngx.ERR, "token exchange failed: status ", res.status)
        return nil
    end

    local data = cjson.decode(res.body)
    local token = type(data) == "table" and data.accessToken
    local expires = type(data) == "table" and tonumber(data.expires)

    if type(token) ~= "string" or not expires
       or not ngx.re.find(token, [[^[A-Za-z0-9._~+/-]+=*$]], "jo")
    then
        ngx.log(ngx.ERR, "token exchange failed: bad response")
        return nil
    end

    local lifetime = expires / 1000 - ngx_now()
    if lifetime <= 0 then
        ngx.log(ngx.ERR, "token exchange failed: token already expired")
        return nil
    end

    -- valid until "refresh" before expiry, never more than half the lifetime
    local ttl = lifetime - min(p.refresh, lifetime / 2)
    dict:set("token", token, ttl)

    return token
end

-- lua-resty-lock's lock() with its defaults: exptime 30 s, timeout 5 s,
-- step 1 ms, ratio 2, max_step 0.5 s
local function lock(dict, key)
    local exptime, timeout, step, ratio, max_step = 30, 5, 0.001, 2, 0.5

    local ok, err = dict:add(key, true, exptime)
    if ok then
        return 0
    end
    if err ~= "exists" then
        return nil, err
    end

    local elapsed = 0
    while timeout > 0 do
        if step > timeout then
            step = timeout
        end

        ngx_sleep(step)
        elapsed = elapsed + step
        timeout = timeout - step

        ok, err = dict:add(key, true, exptime)
        if ok then
            return elapsed
        end
        if err ~= "exists" then
            return nil, err
        end

        if timeout <= 0 then
            break
        end

        step = step * ratio
        if step <= 0 then
            step = 0.001
        end
        if step > max_step then
            step = max_step
        end
    end

    return nil, "timeout"
end

local function fetch_locked(p, dict)
    local ok, err = lock(dict, "lock")
    if not ok then
        ngx.log(ngx.ERR, "failed to lock: ", err)
        return nil
    end

    -- someone else may have fetched it while we waited
    local token = dict:get("token")
    if not token then
        token = fetch(p, dict)
    end

    dict:delete("lock")
    return token
end

function M.access(name)
    local p = peers[name]
    local dict = ngx.shared[p.dict_name]

    local token = dict:get("token")

    if not token then
        if p.lock then
            token = fetch_locked(p, dict)
        else
            token = fetch(p, dict)
        end

        if not token then
            ngx.header["Retry-After"] = "5"
            return ngx.exit(503)
        end
    end

    ngx.req.set_header("Authorization", "Bearer " .. token)
end

return M
