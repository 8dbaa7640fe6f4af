#!/usr/bin/env bash
# The HTTP forward-auth front end behind the real proxies from Debian's packages (nginx, Caddy), each started here
# (and HAProxy, through examples/haproxy/tollgate-auth.lua) on loopback ports and private sockets in a temporary
# directory, in front of a live tollgated. Through each proxy:
# a valid token reaches the upstream with its identity headers; a revoked one gets 401; a missing scope 403; the
# quota's end 429 with Retry-After; a metered route counts each proxied request once (usage export = the 200s);
# a client's own X-Tollgate-* headers never reach the upstream. The configurations are examples/ files.
#
#   bash Tests/proxy/proxies.sh BIN_DIR      (BIN_DIR holds tollgated and tollgate)
#
# Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed. Secrets stay off
# command lines: curl reads the Authorization header from a file in the private directory.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:?usage: proxies.sh BIN_DIR}
. "$here/../lib/suite.sh"
require nginx caddy haproxy curl python3
suite_start tollgate-proxies
read -r tcp_port nginx_port echo_port caddy_port caddy_echo_port haproxy_port haproxy_echo_port haproxy_closed_port haproxy_closed_echo_port < <(free_ports 9)
http_socket="$dir/http.sock"

# --- tollgated with an http section: routes for the tests (examples/tollgated-http.json shows the same shape). ---
cat >"$dir/tollgated.json" <<JSON
{
  "state_dir": "$dir/state",
  "journal": { "fsync": false },
  "usage_flush_interval_ms": 20,
  "plans": [ { "id": "gw", "entitlements": ["read", "admin"],
               "quotas": [ { "meter": "requests", "window": "month", "limit": 5 } ] } ],
  "http": {
    "socket": "$http_socket", "socket_mode": "0666", "tcp": "127.0.0.1:$tcp_port",
    "default": "deny",
    "routes": [
      { "method": "GET", "path": "/api/items/{id}", "scopes": ["read"], "meter": "requests", "cost": 1 },
      { "method": "*", "path": "/api/admin/*", "scopes": ["admin"] },
      { "method": "GET", "path": "/static-auth/*" },
      { "method": "GET", "path": "/bench/*", "scopes": ["read"] }
    ]
  }
}
JSON
"$bin/tollgated" --config "$dir/tollgated.json" >"$dir/tollgated.log" 2>&1 &
pids+=($!)
if wait_for 30 test -S "$http_socket"; then
    pass "tollgated serves the http socket and the loopback port"
else
    fail "tollgated serves the http socket" "$(tail -n 20 "$dir/tollgated.log")"
    finish
fi
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
tg() { "$bin/tollgate" "$@"; }

# `issue NAME LICENSE SCOPE`: issues a token; its Authorization header goes to $dir/NAME.h, its id to $dir/NAME.id.
issue() {
    local secret err
    secret=$(tg issue --license "$2" --subject "svc-$1" --scope "$3" 2>"$dir/$1.err") || { cat "$dir/$1.err"; return 1; }
    printf 'Authorization: Bearer %s\n' "$secret" >"$dir/$1.h"
    sed -nE 's/^issued (tok_[A-Za-z0-9]+) .*/\1/p' "$dir/$1.err" >"$dir/$1.id"
    [ "$1" != "${1%-revoked}" ] && { tg revoke --secret - --reason "proxy test" <<<"$secret" >/dev/null || return 1; }
    return 0
}

# `request URL [CURL ARGS...]`: sets $code, $headers and $body.
request() {
    local url=$1
    shift
    code=$(curl -s -o "$dir/body" -D "$dir/headers" -w '%{http_code}' "$@" "$url")
    body=$(cat "$dir/body")
    headers=$(tr -d '\r' <"$dir/headers")
}
header() { sed -nE "s/^$1: (.*)$/\\1/Ip" <<<"$headers" | head -n 1; }

# `usage_of LICENSE`: the quantity of meter `requests` exported for LICENSE.
usage_of() {
    local year from to
    year=$(date -u +%Y)
    from="$((year - 1))-01-01T00:00:00Z"
    to="$((year + 2))-01-01T00:00:00Z"
    tg usage export --from "$from" --to "$to" --license "$1" --format jsonl |
        grep -oE '"meter":"requests","quantity":[0-9]+' | grep -oE '[0-9]+$' | awk '{ n += $1 } END { print n + 0 }'
}

# `through_proxy NAME BASE_URL`: every check of the header through one proxy.
through_proxy() {
    local name=$1 base=$2 license="lic-$1" ok=0 i
    tg license set "$license" --plan gw >/dev/null || { fail "$name: provisioning"; return; }
    issue "$name-ok" "$license" read && issue "$name-revoked" "$license" read || { fail "$name: issuing tokens"; return; }
    local token_id
    token_id=$(cat "$dir/$name-ok.id")

    request "$base/api/items/1" -H "@$dir/$name-ok.h"
    if [ "$code" = 200 ] && grep -q "upstream token=$token_id license=$license subject=svc-$name-ok plan=gw" <<<"$body"; then
        pass "$name: a valid token reaches the upstream with X-Tollgate-Token-Id, -License, -Subject and -Plan"
        ok=$((ok + 1))
    else
        fail "$name: a valid token reaches the upstream with its identity headers" "status $code, body: $body"
    fi

    request "$base/api/items/2" -H "@$dir/$name-ok.h" -H "X-Tollgate-Token-Id: tok_forged" -H "X-Tollgate-Subject: root" -H "X-Tollgate-License: lic-other" -H "X-Tollgate-Plan: forged-plan"
    [ "$code" = 200 ] && ok=$((ok + 1))
    if [ "$code" = 200 ] && grep -q "upstream token=$token_id license=$license subject=svc-$name-ok plan=gw" <<<"$body" && ! grep -qE "tok_forged|root|lic-other|forged-plan" <<<"$body"; then
        pass "$name: a client's own X-Tollgate-* headers do not reach the upstream (Tollgate's replace them)"
    else
        fail "$name: a client's own X-Tollgate-* headers do not reach the upstream" "status $code, body: $body"
    fi

    request "$base/api/public" -H "X-Tollgate-Token-Id: tok_forged"
    if [ "$code" = 403 ] && ! grep -q "upstream" <<<"$body"; then
        pass "$name: a request no route matches is denied (403, default deny) and never reaches the upstream"
    else
        fail "$name: a request no route matches is denied 403" "status $code, body: $body"
    fi

    request "$base/api/items/3" -H "X-Tollgate-Token-Id: tok_forged"
    if [ "$code" = 401 ] && ! grep -q "upstream" <<<"$body"; then
        pass "$name: no token: 401, and the forged header goes nowhere"
    else
        fail "$name: no token: 401" "status $code, body: $body"
    fi

    request "$base/api/items/4" -H "@$dir/$name-revoked.h"
    if [ "$code" = 401 ] && grep -q '"reason":"revoked"' <<<"$body" && [ "$(header Cache-Control)" = no-store ]; then
        pass "$name: a revoked token gets 401 {\"reason\":\"revoked\"} with Cache-Control: no-store"
    else
        fail "$name: a revoked token gets 401" "status $code, body: $body, headers: $headers"
    fi

    request "$base/api/admin/users" -H "@$dir/$name-ok.h"
    if [ "$code" = 403 ] && grep -q '"reason":"insufficient_scope"' <<<"$body"; then
        pass "$name: a token without the route's scope gets 403 insufficient_scope"
    else
        fail "$name: a token without the route's scope gets 403" "status $code, body: $body"
    fi

    # The plan allows 5 requests a month on the metered route: the rest of them, then 429.
    for i in 1 2 3 4; do
        request "$base/api/items/1$i" -H "@$dir/$name-ok.h"
        [ "$code" = 200 ] && ok=$((ok + 1))
        [ "$code" = 200 ] || break
    done
    local retry_after
    retry_after=$(header Retry-After)
    if [ "$code" = 429 ] && [ "$ok" = 5 ] && [ "${retry_after:-0}" -ge 1 ] 2>/dev/null && grep -q '"reason":"quota_exceeded"' <<<"$body" &&
        [ "$(header RateLimit-Remaining)" = 0 ] && [ "$(header RateLimit-Limit)" = 5 ]; then
        pass "$name: past the quota: 429 quota_exceeded with Retry-After: $retry_after and RateLimit-Limit/Remaining"
    else
        fail "$name: past the quota: 429 with Retry-After" "after $ok allowed: status $code, body: $body, headers: $headers"
    fi

    local usage
    wait_for 10 test "$(usage_of "$license")" = "$ok"
    usage=$(usage_of "$license")
    if [ "$usage" = "$ok" ]; then
        pass "$name: the metered route counted each proxied request once (usage export $usage = $ok answers 200)"
    else
        fail "$name: the metered route counts each proxied request once" "usage export: $usage, 200s: $ok"
    fi
}

# `tollgate_connections`: the connections open on tollgated's HTTP socket (the inodes of its accepted ends).
tollgate_connections() { ss -xH state established 2>/dev/null | awk -v p="$http_socket" '$4 == p { print $5 }' | sort | tr '\n' ' '; }

# `keeps_connections NAME BASE_URL`: the proxy asks Tollgate on a connection it keeps: ten more requests through it
# leave the same connection open on tollgated's socket, none opened or closed (the shipped upstream's keepalive).
keeps_connections() {
    local name=$1 base=$2 before after i
    request "$base/api/public"
    before=$(tollgate_connections)
    for i in 1 2 3 4 5 6 7 8 9 10; do request "$base/api/public"; done
    after=$(tollgate_connections)
    if [ "$code" = 403 ] && [ -n "$before" ] && [ "$before" = "$after" ]; then
        pass "$name: keeps its connection to Tollgate open and reuses it (connection $after)"
    else
        fail "$name: keeps its connection to Tollgate open and reuses it" "status $code; open before: '$before', after: '$after'"
    fi
}

# --- The loopback TCP port answers like the socket. ---
tg license set lic-tcp --plan gw >/dev/null && issue tcp-ok lic-tcp read || fail "provisioning for the TCP check"
request "http://127.0.0.1:$tcp_port/v1/forward-auth" -H "@$dir/tcp-ok.h" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /api/admin/x"
if [ "$code" = 403 ] && [ "$(header X-Tollgate-Reason)" = insufficient_scope ]; then
    pass "the loopback TCP port answers forward auth (Traefik's X-Forwarded-* shape)"
else
    fail "the loopback TCP port answers forward auth" "status $code, body: $body"
fi

# --- nginx: auth_request to the Unix socket, error_page carrying 429 through. ---
nginx_conf "$dir/nginx" "$http_socket" "$nginx_port" "$echo_port" || fail "examples/nginx/tollgate-upstream.conf names the socket the tests replace"
if nginx -t -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" >"$dir/nginx/test.log" 2>&1; then
    nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" -g 'daemon off;' >"$dir/nginx/out.log" 2>&1 &
    pids+=($!)
    if wait_for 15 curl -sf "http://127.0.0.1:$echo_port/"; then
        pass "nginx starts with examples/nginx/tollgate-auth.conf and tollgate-protected.conf"
        through_proxy nginx "http://127.0.0.1:$nginx_port"
        keeps_connections nginx "http://127.0.0.1:$nginx_port"
    else
        fail "nginx starts" "$(cat "$dir/nginx/out.log" "$dir/nginx/error.log" 2>/dev/null | tail -n 20)"
    fi
else
    fail "nginx accepts the configuration (nginx -t)" "$(cat "$dir/nginx/test.log")"
fi

# --- Caddy: forward_auth to the Unix socket. ---
mkdir -p "$dir/caddy"
cp "$repo/examples/caddy/Caddyfile" "$dir/caddy/Caddyfile"
HOME="$dir/caddy" XDG_DATA_HOME="$dir/caddy" XDG_CONFIG_HOME="$dir/caddy" CADDY_PORT=$caddy_port ECHO_PORT=$caddy_echo_port \
    TOLLGATE_HTTP_SOCKET=$http_socket caddy run --config "$dir/caddy/Caddyfile" --adapter caddyfile >"$dir/caddy/out.log" 2>&1 &
pids+=($!)
if wait_for 20 curl -sf "http://127.0.0.1:$caddy_echo_port/"; then
    pass "caddy starts with examples/caddy/Caddyfile"
    through_proxy caddy "http://127.0.0.1:$caddy_port"
else
    fail "caddy starts" "$(tail -n 20 "$dir/caddy/out.log")"
fi

# --- HAProxy: its built-in Lua asks Tollgate (examples/haproxy/tollgate-auth.lua, examples/haproxy/haproxy.cfg). ---
# `start_haproxy NAME PORT ECHO_PORT SOCKET`: runs examples/haproxy/haproxy.cfg as it is, in the foreground.
start_haproxy() {
    mkdir -p "$dir/$1"
    TOLLGATE_EXAMPLES="$repo/examples" HAPROXY_PORT=$2 ECHO_PORT=$3 TOLLGATE_HTTP_SOCKET=$4 \
        haproxy -db -f "$repo/examples/haproxy/haproxy.cfg" >"$dir/$1/out.log" 2>&1 &
    pids+=($!)
    wait_for 15 curl -sf "http://127.0.0.1:$3/"
}
if start_haproxy haproxy "$haproxy_port" "$haproxy_echo_port" "$http_socket"; then
    pass "haproxy starts with examples/haproxy/haproxy.cfg and tollgate-auth.lua"
    through_proxy haproxy "http://127.0.0.1:$haproxy_port"
    tg license set lic-haproxy-rl --plan gw >/dev/null && issue haproxy-rl lic-haproxy-rl read || fail "haproxy: provisioning"
    # HAProxy passes underscores in header names on, and CGI-style backends read X_Tollgate_Subject as X-Tollgate-Subject.
    request "http://127.0.0.1:$haproxy_port/api/items/9" -H "@$dir/haproxy-rl.h" -H "X_Tollgate_Subject: forged-underscore"
    if [ "$code" = 200 ] && grep -q "underscored=" <<<"$body" && ! grep -q "forged-underscore" <<<"$body"; then
        pass "haproxy: a client's X_Tollgate_* (underscore) headers do not reach the backend either"
    else
        fail "haproxy: a client's X_Tollgate_* headers do not reach the backend" "status $code, body: $body"
    fi
    request "http://127.0.0.1:$haproxy_port/api/items/1" -H "@$dir/haproxy-rl.h"
    if [ "$code" = 200 ] && [ "$(header RateLimit-Limit)" = 5 ] && [ "$(header RateLimit-Remaining)" = 3 ] && [ -n "$(header RateLimit-Reset)" ]; then
        pass "haproxy: an allowed response carries Tollgate's RateLimit-Limit, -Remaining and -Reset to the client"
    else
        fail "haproxy: an allowed response carries RateLimit-*" "status $code, headers: $headers"
    fi
else
    fail "haproxy starts" "$(tail -n 20 "$dir/haproxy/out.log")"
fi
# With Tollgate unreachable the action fails closed: 503, and the backend is never reached.
if start_haproxy haproxy-closed "$haproxy_closed_port" "$haproxy_closed_echo_port" "$dir/no-tollgate.sock"; then
    request "http://127.0.0.1:$haproxy_closed_port/api/items/1" -H "@$dir/haproxy-ok.h"
    if [ "$code" = 503 ] && grep -q '"reason":"auth_unavailable"' <<<"$body" && ! grep -q upstream <<<"$body"; then
        pass "haproxy: with Tollgate unreachable it fails closed (503 auth_unavailable, backend not reached)"
    else
        fail "haproxy: with Tollgate unreachable it fails closed" "status $code, body: $body"
    fi
else
    fail "haproxy (Tollgate unreachable) starts" "$(tail -n 20 "$dir/haproxy-closed/out.log")"
fi

# --- The daemon took all of it without an error, and logged no secret. ---
if grep -qE "tg_(live|test)_[A-Za-z0-9]{20,}" "$dir/tollgated.log" "$dir/nginx/error.log" "$dir"/haproxy*/out.log 2>/dev/null; then
    fail "no token secret in tollgated's, nginx's or haproxy's log"
else
    pass "no token secret in tollgated's, nginx's or haproxy's log"
fi

finish
