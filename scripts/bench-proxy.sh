#!/usr/bin/env bash
# The forward-auth benchmark (issue 14 item 8), driven by wrk from Debian through nginx, three ways at each point:
#
#   nginx+tollgate   nginx -> auth_request -> Tollgate's HTTP socket (a route with a scope and a meter) -> upstream
#   nginx+static204  nginx -> auth_request -> a location that always answers 204 -> upstream: the cost of
#                    auth_request itself, the limit Tollgate's forward auth is measured against
#   nginx-alone      nginx -> upstream, no auth
#
# The upstream is an nginx server block answering a few bytes, so neither the load generator's target nor the
# upstream is the bottleneck. nginx runs one worker (--nginx-workers), tollgated one event loop; wrk uses up to 2
# threads.
#
#   bash scripts/bench-proxy.sh                 connections 1, 16, 64; 1 run of 5 s per point and system
#   bash scripts/bench-proxy.sh --smoke         connections 1, 16; 1 s
#   options: --duration S, --runs R (medians), --no-swift-build, --nginx-workers N (1; `auto`: one per CPU),
#            TOLLGATED=/path TOLLGATE=/path
#
# Output: a table with each system's req/s, p50 and p99 (wrk --latency) and Tollgate's ratio to the static-204
# limit, then one `BENCH {...}` line per point. The token's secret is given to wrk in a Lua file in a private
# directory, never on the command line.
set -euo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=5 RUNS=1 SWIFT_BUILD=1 CONNECTIONS=(1 16 64) NGINX_WORKERS=1
SWIFT=${SWIFT:-swift}
[ -x /opt/swift/usr/bin/swift ] && ! command -v "$SWIFT" >/dev/null 2>&1 && SWIFT=/opt/swift/usr/bin/swift
while (($#)); do
    case "$1" in
    --smoke) DURATION=1 CONNECTIONS=(1 16) ;;
    --duration) DURATION=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --no-swift-build) SWIFT_BUILD=0 ;;
    --nginx-workers) NGINX_WORKERS=$2; shift ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bench-proxy: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
log() { printf 'bench-proxy: %s\n' "$*" >&2; }
for tool in nginx wrk curl python3; do command -v "$tool" >/dev/null || { log "$tool is missing (scripts/setup.sh installs it)"; exit 1; }; done

if [ -z "${TOLLGATED:-}" ]; then
    ((SWIFT_BUILD)) && (cd "$ROOT" && "$SWIFT" build -c release --product tollgated >&2 && "$SWIFT" build -c release --product tollgate >&2)
    bin=$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)
    TOLLGATED=$bin/tollgated TOLLGATE=$bin/tollgate
fi

. "$ROOT/Tests/lib/suite.sh"
suite_start tollgate-bench-proxy
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -r nginx_port echo_port < <(free_ports 2)
http_socket="$dir/http.sock"
cat >"$dir/tollgated.json" <<JSON
{
  "state_dir": "$dir/state",
  "journal": { "fsync": true },
  "plans": [ { "id": "bench", "entitlements": ["read"],
               "quotas": [ { "meter": "requests", "window": "month", "limit": 1000000000000 } ] } ],
  "http": { "socket": "$http_socket", "socket_mode": "0666", "default": "deny",
            "routes": [ { "method": "GET", "path": "/bench/*", "scopes": ["read"], "meter": "requests", "cost": 1 } ] }
}
JSON
"$TOLLGATED" --config "$dir/tollgated.json" --log-level warning >"$dir/tollgated.log" 2>&1 &
pids+=($!)
wait_for 30 test -S "$http_socket" || { log "tollgated did not start: $(tail -n 5 "$dir/tollgated.log")"; exit 1; }
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
"$TOLLGATE" license set lic-bench --plan bench >/dev/null
secret=$("$TOLLGATE" issue --license lic-bench --subject bench --scope read 2>/dev/null)
printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$secret" >"$dir/auth.lua"
chmod 0600 "$dir/auth.lua"
unset secret

nginx_conf "$dir/nginx" "$http_socket" "$nginx_port" "$echo_port" "$NGINX_WORKERS" || { log "examples/nginx/tollgate-upstream.conf lost its socket path"; exit 1; }
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" -g 'daemon off;' >"$dir/nginx/out.log" 2>&1 &
pids+=($!)
wait_for 15 curl -sf "http://127.0.0.1:$echo_port/" || { log "nginx did not start: $(tail -n 5 "$dir/nginx/error.log")"; exit 1; }
base="http://127.0.0.1:$nginx_port"

# `to_us VALUE`: wrk's latency (1.23ms, 456.00us, 1.02s) in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; else m = 1; printf "%.0f", n * m }'; }

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
declare -A RPS P50 P99
FAILURES=0
# `measure SYSTEM PATH C`: one wrk run, recorded for SYSTEM at C.
measure() {
    local system=$1 path=$2 c=$3 threads out bad
    threads=$((c < 2 ? 1 : 2))
    out=$(wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s "$dir/auth.lua" "$base$path" 2>&1) || { log "wrk failed: $out"; FAILURES=$((FAILURES + 1)); return; }
    bad=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+).*/\1/p' <<<"$out")
    if [ -n "$bad" ]; then log "$system at $c connections: $bad answers were not 2xx"; FAILURES=$((FAILURES + 1)); fi
    record_point "$system" "$c" "$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$out")" \
        "$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" "$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}
SYSTEMS=("nginx+tollgate|/bench/x" "nginx+static204|/static-auth/x" "nginx-alone|/no-auth/x")

# Warm-up: connections to tollgated and the upstream opened, the code paths paged in.
wrk -t1 -c4 -d1s -s "$dir/auth.lua" "$base/bench/x" >/dev/null 2>&1 || true
for c in "${CONNECTIONS[@]}"; do
    for ((run = 0; run < RUNS; run++)); do
        for entry in "${SYSTEMS[@]}"; do measure "${entry%%|*}" "${entry#*|}" "$c"; done
    done
done

echo
comparison_table "Forward-auth benchmark" wrk nginx+static204 static conns "req/s"
echo "(rps/static, p99/static: over nginx -> auth_request -> 204 at the same point; goal for nginx+tollgate: >= 0.8 and <= 1.5)"
echo
bench_lines forward-auth ""
secret_in_logs "$dir/tollgated.log" "$dir/nginx/error.log" && FAILURES=$((FAILURES + 1))
((FAILURES == 0)) || { log "$FAILURES measurement(s) failed"; exit 1; }
