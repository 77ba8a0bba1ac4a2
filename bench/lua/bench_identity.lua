-- The benchmark's identity service: answers POST
-- /identity/v1/hmac/management like Imburse, after a configurable delay,
-- without blocking (ngx.sleep), so that it keeps up with a stampede of
-- hundreds of concurrent exchanges.  (t/lib/standin.pl, the tests' stand-in,
-- forks per connection and keeps its state in JSON under a file lock: fine
-- for rare exchanges, not for the Lua peer's stampedes.)
--
-- It does not check signatures itself: its access log keeps every exchange's
-- Authorization header, and bench/run verifies them all afterwards with the
-- tests' independent Perl implementation (t/lib/ImburseStandin.pm), replays
-- included.
--
--   GET /_control?delay_ms=N&ttl_ms=N&reset=1   settings, counters reset
--   GET /_stats                                 {"exchanges":N,"max_inflight":N}

local cjson = require "cjson.safe"

local M = {}

local function b64url(s)
    return (ngx.encode_base64(s):gsub("%+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

local function random_alnum(n)
    local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    local t = {}
    for i = 1, n do
        local k = math.random(1, #chars)
        t[i] = chars:sub(k, k)
    end
    return table.concat(t)
end

function M.exchange()
    local d = ngx.shared.identity

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

    -- a token's lifetime starts when it is sent
    ngx.update_time()
    local ttl = d:get("ttl_ms") or 3600000
    local expires = math.floor(ngx.now() * 1000) + ttl

    local token = b64url('{"alg":"HS256","typ":"JWT"}') .. "."
        .. b64url(cjson.encode({sub = "bench", n = n,
                                exp = math.floor(expires / 1000)})) .. "."
        .. b64url(random_alnum(32))

    d:incr("inflight", -1, 0)

    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode({accessToken = token, expires = tostring(expires)}))
end

function M.control()
    local d = ngx.shared.identity
    local args = ngx.req.get_uri_args()

    for _, k in ipairs({"delay_ms", "ttl_ms"}) do
        if args[k] then
            d:set(k, tonumber(args[k]))
        end
    end

    if args.reset then
        d:set("exchanges", 0)
        d:set("max_inflight", d:get("inflight") or 0)
    end

    M.stats()
end

function M.stats()
    local d = ngx.shared.identity
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode({
        exchanges = d:get("exchanges") or 0,
        inflight = d:get("inflight") or 0,
        max_inflight = d:get("max_inflight") or 0,
        delay_ms = d:get("delay_ms") or 0,
        ttl_ms = d:get("ttl_ms") or 3600000,
    }))
end

return M
