-- Tollgate forward auth for HAProxy 2.6 and later, in HAProxy's built-in Lua (no other module needed: the
-- HTTP client is core.httpclient, HAProxy 2.5+; replies are txn:reply, 2.2+). Tested by Tests/proxy/proxies.sh
-- with examples/haproxy/haproxy.cfg.
--
--   global
--       lua-load /etc/haproxy/tollgate-auth.lua
--   frontend api
--       http-request lua.tollgate-auth unix@/run/tollgate/tollgate-http.sock
--       http-response lua.tollgate-ratelimit
--
-- The argument is where Tollgate's HTTP listener is: `unix@PATH` (its socket) or `ADDRESS:PORT` (its loopback
-- port). For every request the action
--   1. removes the client's own X-Tollgate-* headers (and X_Tollgate_* ones), so the backend sees Tollgate's values
--      or none;
--   2. asks Tollgate's forward-auth endpoint with the request's method, path and query, and host
--      (X-Forwarded-Method/-Uri/-Host, the shape Traefik and Caddy send) and its Authorization header;
--   3. on a 2xx, copies the identity headers (X-Tollgate-Token-Id, -License, -Subject, -Plan) onto the request
--      and keeps the RateLimit-* values for the response (`lua.tollgate-ratelimit`);
--   4. on any other answer (401, 403, 429), replies to the client with Tollgate's status, headers (Retry-After,
--      RateLimit-*, Cache-Control: no-store) and JSON body; the backend is never reached;
--   5. when Tollgate cannot be asked (not running, timeout), replies 503 {"reason":"auth_unavailable"}: it fails
--      closed.
-- Nothing here logs a header: the Authorization header goes to Tollgate only.

local identity_headers = { "x-tollgate-token-id", "x-tollgate-license", "x-tollgate-subject", "x-tollgate-plan" }
local ratelimit_headers = { "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset" }
-- Headers of Tollgate's answer that describe its own connection or body framing: never copied into a reply.
local hop_headers = { ["content-length"] = true, ["connection"] = true, ["transfer-encoding"] = true, ["keep-alive"] = true }
-- How long to wait for Tollgate's answer, in milliseconds. Tollgate answers from memory in microseconds.
local timeout_ms = 1000

local function first(values)
    if values == nil then return nil end
    return values[0] or values[1]
end

local function fail_closed(txn)
    txn:done(txn:reply({
        status = 503,
        headers = { ["content-type"] = { "application/json" }, ["cache-control"] = { "no-store" } },
        body = '{"decision":"deny","reason":"auth_unavailable"}\n',
    }))
end

core.register_action("tollgate-auth", { "http-req" }, function(txn, destination)
    -- Every header a backend could read as one of Tollgate's: CGI, WSGI and PHP map X_Tollgate_Subject and
    -- X-Tollgate-Subject to the same variable, and HAProxy passes underscores in names on.
    for name, _ in pairs(txn.http:req_get_headers()) do
        if name:lower():match("^x[-_]tollgate[-_]") then txn.http:req_del_header(name) end
    end

    local request_headers = {
        ["x-forwarded-method"] = { txn.sf:method() },
        ["x-forwarded-uri"] = { txn.sf:pathq() },
    }
    local host = txn.sf:req_hdr("host")
    if host ~= nil and host ~= "" then request_headers["x-forwarded-host"] = { host } end
    local authorization = txn.sf:req_fhdr("authorization")
    if authorization ~= nil and authorization ~= "" then request_headers["authorization"] = { authorization } end

    local client = core.httpclient()
    local ok, response = pcall(client.get, client, {
        url = "http://tollgate/v1/forward-auth",
        dst = destination,
        headers = request_headers,
        timeout = timeout_ms,
    })
    if not ok or response == nil or response.status == nil or response.status == 0 then
        return fail_closed(txn)
    end
    local answer = response.headers or {}

    if response.status >= 200 and response.status < 300 then
        for _, name in ipairs(identity_headers) do
            local value = first(answer[name])
            if value ~= nil then txn.http:req_set_header(name, value) end
        end
        for _, name in ipairs(ratelimit_headers) do
            local value = first(answer[name])
            if value ~= nil then txn:set_var("txn.tollgate_" .. name:gsub("-", "_"), value) end
        end
        return
    end

    if response.status >= 500 or response.status < 400 then
        return fail_closed(txn)
    end
    local reply_headers = {}
    for name, values in pairs(answer) do
        if not hop_headers[name] then
            reply_headers[name] = {}
            for _, value in pairs(values) do table.insert(reply_headers[name], value) end
        end
    end
    txn:done(txn:reply({ status = response.status, headers = reply_headers, body = response.body or "" }))
end, 1)

-- On the response to an allowed request: the client sees how much of its tightest limit is left.
core.register_action("tollgate-ratelimit", { "http-res" }, function(txn)
    for _, name in ipairs(ratelimit_headers) do
        local value = txn:get_var("txn.tollgate_" .. name:gsub("-", "_"))
        if value ~= nil then txn.http:res_set_header(name, value) end
    end
end, 0)
