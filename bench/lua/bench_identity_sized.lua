-- The benchmark's identity service with tokens of a chosen size: the
-- exchange of lua/bench_identity.lua, whose tokens are about 140 bytes,
-- padded to "token_bytes" when that is set (the thousands-of-tenants
-- figure measures with 900-byte tokens, as issue 10 did).  The counters and
-- settings are bench_identity's, in the same shared dict.
--
--   GET /_control?token_bytes=N   (0: bench_identity's own tokens)
--   and every other setting of bench_identity.control()

local cjson = require "cjson.safe"
local base = require "bench_identity"

local M = {}

local CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

local function b64url(s)
    return (ngx.encode_base64(s):gsub("%+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

local function random_alnum(n)
    local t = {}
    for i = 1, n do
        local k = math.random(1, #CHARS)
        t[i] = CHARS:sub(k, k)
    end
    return table.concat(t)
end

function M.exchange()
    local d = ngx.shared.identity
    local size = d:get("token_bytes") or 0

    if size <= 0 then
        return base.exchange()
    end

    if ngx.req.get_method() ~= "POST"
       or not (ngx.var.http_authorization or ""):find("^Hmac ")
    then
        return ngx.exit(401)
    end

    local n = d:incr("exchanges", 1, 0)
    local inflight = d:incr("inflight", 1, 0)
    if inflight > (d:get("max_inflight") or 0) then
        d:set("max_inflight", inflight)
    end

    local delay = d:get("delay_ms") or 0
    if delay > 0 then
        ngx.sleep(delay / 1000)
    end

    ngx.update_time()
    local ttl = d:get("ttl_ms") or 3600000
    local expires = math.floor(ngx.now() * 1000) + ttl

    local head = b64url('{"alg":"HS256","typ":"JWT"}') .. "."
        .. b64url(cjson.encode({sub = "bench", n = n,
                                exp = math.floor(expires / 1000)})) .. "."
    local token = head .. random_alnum(math.max(32, size - #head))

    d:incr("inflight", -1, 0)

    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode({accessToken = token, expires = tostring(expires)}))
end

function M.control()
    local args = ngx.req.get_uri_args()
    if args.token_bytes then
        ngx.shared.identity:set("token_bytes", tonumber(args.token_bytes))
    end
    base.control()
end

return M
