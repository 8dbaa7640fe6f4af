#!/usr/bin/env bash
# The gRPC ext_authz benchmark (issue 14 item 8, its gRPC part): Envoy's Authorization/Check over a Unix socket,
# driven by a closed-loop grpcio client built from Envoy's own API definitions (scripts/bench-grpc.py), two ways at
# each point:
#
#   tollgate    tollgated's gRPC socket: the CheckRequest translated, the route (a scope and a meter) matched, the
#               core's CHECK (journal fsync on), the CheckResponse with identity and RateLimit headers
#   empty       the same grpc-swift stack and transport with a Check that always answers OK (tollgate-grpc-empty):
#               the cost of gRPC itself, the limit Tollgate's path is measured against
#
# No Envoy binary exists here, so the client stands in for Envoy: C calls in flight on one HTTP/2 connection, as
# Envoy multiplexes its checks. The client is Python (one process, one core): where it, not the server, is the
# bottleneck, both systems read the same and the ratio says only that Tollgate is not slower than that.
#
#   bash scripts/bench-grpc.sh                 concurrency 1, 16, 64; 1 run of 5 s per point and system
#   bash scripts/bench-grpc.sh --smoke         concurrency 1, 16; 1 s
#   options: --duration S, --runs R (medians), --no-swift-build, TOLLGATED=/path TOLLGATE=/path GRPC_EMPTY=/path
#
# Output: a table with each system's calls/s, p50 and p99 and Tollgate's ratio to the empty handler, then one
# `BENCH {...}` line per point. The token's secret is handed to the client in a private file.
set -euo pipefail
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=5 RUNS=1 SWIFT_BUILD=1 CONNECTIONS=(1 16 64)
SWIFT=${SWIFT:-swift}
[ -x /opt/swift/usr/bin/swift ] && ! command -v "$SWIFT" >/dev/null 2>&1 && SWIFT=/opt/swift/usr/bin/swift
while (($#)); do
    case "$1" in
    --smoke) DURATION=1 CONNECTIONS=(1 16) ;;
    --duration) DURATION=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --no-swift-build) SWIFT_BUILD=0 ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bench-grpc: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
log() { printf 'bench-grpc: %s\n' "$*" >&2; }
python3 -c 'import grpc; from envoy.service.auth.v3 import external_auth_pb2_grpc' 2>/dev/null ||
    { log "grpcio and xds-protos are missing (scripts/setup.sh installs them)"; exit 1; }

if [ -z "${TOLLGATED:-}" ] || [ -z "${GRPC_EMPTY:-}" ]; then
    if ((SWIFT_BUILD)); then
        (cd "$ROOT" && for product in tollgated tollgate tollgate-grpc-empty; do "$SWIFT" build -c release --product "$product" >&2; done)
    fi
    bin=$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)
    TOLLGATED=${TOLLGATED:-$bin/tollgated} TOLLGATE=${TOLLGATE:-$bin/tollgate} GRPC_EMPTY=${GRPC_EMPTY:-$bin/tollgate-grpc-empty}
fi

. "$ROOT/Tests/lib/suite.sh"
suite_start tollgate-bench-grpc
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
grpc_socket="$dir/grpc.sock"
empty_socket="$dir/empty.sock"
cat >"$dir/tollgated.json" <<JSON
{
  "state_dir": "$dir/state",
  "journal": { "fsync": true },
  "plans": [ { "id": "bench", "entitlements": ["read"],
               "quotas": [ { "meter": "requests", "window": "month", "limit": 1000000000000 } ] } ],
  "http": { "socket": "$dir/http.sock", "default": "deny",
            "routes": [ { "method": "GET", "path": "/bench/*", "scopes": ["read"], "meter": "requests", "cost": 1 } ] },
  "grpc": { "socket": "$grpc_socket" }
}
JSON
"$TOLLGATED" --config "$dir/tollgated.json" --log-level warning >"$dir/tollgated.log" 2>&1 &
pids+=($!)
"$GRPC_EMPTY" "$empty_socket" >"$dir/empty.log" 2>&1 &
pids+=($!)
wait_for 30 test -S "$grpc_socket" || { log "tollgated did not start: $(tail -n 5 "$dir/tollgated.log")"; exit 1; }
wait_for 30 test -S "$empty_socket" || { log "tollgate-grpc-empty did not start: $(tail -n 5 "$dir/empty.log")"; exit 1; }
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
"$TOLLGATE" license set lic-bench --plan bench >/dev/null
(umask 077 && "$TOLLGATE" issue --license lic-bench --subject bench --scope read 2>/dev/null >"$dir/token")

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
declare -A RPS P50 P99
FAILURES=0
# `measure SYSTEM SOCKET C`: one client run, recorded for SYSTEM at C.
measure() {
    local system=$1 socket=$2 c=$3 out rps p50 p99 errors denied
    out=$(timeout 120 python3 "$ROOT/scripts/bench-grpc.py" --socket "$socket" --token-file "$dir/token" --path /bench/x \
        --concurrency "$c" --duration "$DURATION" 2>&1) || { log "$system at $c: the client failed: $out"; FAILURES=$((FAILURES + 1)); return; }
    read -r rps p50 p99 errors denied < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["rps"], r["p50_us"], r["p99_us"], r["errors"], r["denied"])' "$out")
    if [ "$errors" != 0 ] || [ "$denied" != 0 ]; then log "$system at $c: $errors errors, $denied denials"; FAILURES=$((FAILURES + 1)); fi
    record_point "$system" "$c" "$rps" "$p50" "$p99"
}
SYSTEMS=("tollgate|$grpc_socket" "empty|$empty_socket")

for c in "${CONNECTIONS[@]}"; do
    for ((run = 0; run < RUNS; run++)); do
        for entry in "${SYSTEMS[@]}"; do measure "${entry%%|*}" "${entry#*|}" "$c"; done
    done
done

echo
comparison_table "gRPC ext_authz benchmark" client empty empty calls "calls/s"
echo "(calls: Checks in flight on one HTTP/2 connection; rps/empty, p99/empty: over the always-OK handler at the same point)"
echo
bench_lines ext-authz-check grpc-
secret_in_logs "$dir/tollgated.log" "$dir/empty.log" && FAILURES=$((FAILURES + 1))
((FAILURES == 0)) || { log "$FAILURES measurement(s) failed"; exit 1; }
