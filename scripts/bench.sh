#!/usr/bin/env bash
# The side-by-side benchmark (issue 6): the raw AF_UNIX echo limit, Redis running the equivalent check as a Lua
# script, and Tollgate, driven by the same C load generator (Benchmarks/loadgen.c) with the same load shape.
#
#   bash scripts/bench.sh            full run: N=10000 tokens over L=1000 licenses, C in {1,8,64} x D in {1,16},
#                                    C=1 D=1 pinned to CPU 0, 5 runs of 3 s per point, medians; < 15 min
#   bash scripts/bench.sh --smoke    tiny: N=100, L=10, 1 run of 0.5 s, C in {1,8} x D in {1,16}
#
# Options (or environment): --runs R (BENCH_RUNS), --duration S (BENCH_DURATION), --tokens N (BENCH_TOKENS),
# --licenses L (BENCH_LICENSES), --no-swift-build (use the release binaries already built), --echo-threads T
# (BENCH_ECHO_THREADS, default nproc:
# one epoll loop per core measured fastest), TOLLGATED=path (a tollgated binary to use instead of building one),
# BENCH_EVENT_LOOP_THREADS (tollgated's event_loop_threads, default 1), BENCH_API_IO (tollgated's api_io: epoll, the
# default, or nio) and BENCH_API_IO_THREADS (api_io_threads, default 0: one per CPU).
#
# The systems are run alternately (echo, redis, tollgate, echo, ...) R times per point and the medians reported.
# Output: a table, then one line per measured point: `BENCH {"system":...,"op":...,"connections":...,"depth":...,
# "pinned":...,"rps":...,"p50_us":...,"p99_us":...,"p999_us":...,"runs":...}`.
# Exit status: 0 when every point ran without a protocol error; 1 otherwise. Servers started here are always
# stopped (trap EXIT); every wait is bounded.
set -euo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=0
SWIFT_BUILD=1
RUNS=${BENCH_RUNS:-}
DURATION=${BENCH_DURATION:-}
TOKENS=${BENCH_TOKENS:-}
LICENSES=${BENCH_LICENSES:-}
ECHO_THREADS=${BENCH_ECHO_THREADS:-$(nproc)}
SWIFT=${SWIFT:-swift}
[ -x /opt/swift/usr/bin/swift ] && ! command -v "$SWIFT" >/dev/null 2>&1 && SWIFT=/opt/swift/usr/bin/swift

while (($#)); do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --tokens) TOKENS=$2; shift ;;
    --licenses) LICENSES=$2; shift ;;
    --echo-threads) ECHO_THREADS=$2; shift ;;
    --no-swift-build) SWIFT_BUILD=0 ;;
    -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if ((SMOKE)); then
    RUNS=${RUNS:-1} DURATION=${DURATION:-0.5} TOKENS=${TOKENS:-100} LICENSES=${LICENSES:-10} WARMUP=0.1
    POINTS=("1 1" "1 16" "8 1" "8 16")
else
    RUNS=${RUNS:-5} DURATION=${DURATION:-3} TOKENS=${TOKENS:-10000} LICENSES=${LICENSES:-1000} WARMUP=0.3
    POINTS=("1 1" "1 16" "8 1" "8 16" "64 1" "64 16")
fi
REVOKE_POOL=$TOKENS        # throwaway tokens for the 1 % REVOKE of the mixed load
DURABLE_POINT="64 1"       # the durable-write comparison: 64 connections each waiting for its ack
MIXED_POINTS=("8 1")       # the 95/4/1 mix is measured here
TG_OPS=(check check-cost)  # tollgate ops measured beside redis's check script at every point

log() { printf 'bench: %s\n' "$*" >&2; }
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
die() { log "$*"; exit 1; }

# ----------------------------------------------------------------------------------------------- workspace, cleanup
BIN=$ROOT/.build-bench
mkdir -p "$BIN"
# State (journals, redis AOF, the fsync baseline's file) lives on the repository's disk, not on a tmpfs, so that
# fsync costs what it costs; sockets go to a short path (sun_path is limited to 108 bytes).
WORK=$(mktemp -d "$BIN/run.XXXXXX")
SOCK=$(mktemp -d "${TMPDIR:-/tmp}/tgbench.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK" "$SOCK"
    exit $status
}
stop_pid() { # SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget_pid() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

case "$(stat -f -c %T "$WORK")" in tmpfs | ramfs) log "warning: $WORK is on a $(stat -f -c %T "$WORK"); fsync figures mean nothing there" ;; esac

# ----------------------------------------------------------------------------------------------- builds
log "building the C programs into $BIN"
for prog in loadgen echo_server fsync_baseline; do
    gcc -O2 -Wall -pthread -o "$BIN/$prog" "$ROOT/Benchmarks/$prog.c" || die "cannot build Benchmarks/$prog.c"
done
LOADGEN=$BIN/loadgen

if [ -n "${TOLLGATED:-}" ]; then
    [ -x "$TOLLGATED" ] || die "TOLLGATED=$TOLLGATED is not executable"
else
    if ((SWIFT_BUILD)); then
        log "building tollgated in release mode (waits for the SwiftPM lock if another build is running)"
        (cd "$ROOT" && timeout 3600 "$SWIFT" build -c release --product tollgated >&2 && timeout 3600 "$SWIFT" build -c release --product tollgate >&2) ||
            die "swift build -c release failed"
    fi
    TOLLGATED="$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)/tollgated"
    [ -x "$TOLLGATED" ] || die "no release tollgated at $TOLLGATED (run without --no-swift-build)"
fi

HAVE_REDIS=1
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "redis-server is missing; installing Debian's redis-server"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo -n)
    if ! DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server >&2; then
        DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server >&2 || true
    fi
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
        { log "warning: could not install redis-server; the Redis columns are skipped"; HAVE_REDIS=0; }
fi

# ----------------------------------------------------------------------------------------------- servers
PIN=() # the command prefix of the current CPU placement: () or (taskset -c 0)

wait_ready() { # wait_ready NAME PID COMMAND...: until COMMAND succeeds, at most 30 s
    local name=$1 pid=$2 i
    shift 2
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (see $WORK/$name.log)"
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$name did not answer within 30 s (see $WORK/$name.log)"
}

ECHO_PID= REDIS_PID= TG_PID= AOF_PID= FSYNC_PID=
start_echo() {
    "${PIN[@]}" "$BIN/echo_server" --socket "$SOCK/echo.sock" --threads "$ECHO_THREADS" >"$WORK/echo.log" 2>&1 &
    ECHO_PID=$!; PIDS+=("$ECHO_PID")
    wait_ready echo "$ECHO_PID" timeout 10 "$LOADGEN" echo --socket "$SOCK/echo.sock" --requests 1
}
start_redis() { # start_redis NAME SOCKET EXTRA_ARGS...
    local name=$1 sock=$2
    shift 2
    mkdir -p "$WORK/$name"
    "${PIN[@]}" redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --dir "$WORK/$name" \
        --daemonize no --logfile "$WORK/$name.log" "$@" &
    REDIS_LAST_PID=$!; PIDS+=("$REDIS_LAST_PID")
    wait_ready "$name" "$REDIS_LAST_PID" timeout 5 redis-cli -s "$sock" ping
}
preload_redis() {
    REDIS_SHA=$(timeout 10 redis-cli -s "$SOCK/redis.sock" SCRIPT LOAD "$(cat "$ROOT/Benchmarks/redis_check.lua")")
    [[ $REDIS_SHA =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD answered '$REDIS_SHA'"
    timeout 300 "$LOADGEN" redis-preload --socket "$SOCK/redis.sock" --tokens-file "$WORK/tokens.txt" \
        --revoke-file "$WORK/revoke.txt" --licenses "$LICENSES" || die "loading the tokens into redis failed"
}
start_tollgate() {
    "${PIN[@]}" "$TOLLGATED" --config "$WORK/tollgate.json" >"$WORK/tollgate.log" 2>&1 &
    TG_PID=$!; PIDS+=("$TG_PID")
    wait_ready tollgate "$TG_PID" timeout 10 "$LOADGEN" tollgate --op ping --socket "$SOCK/tg.sock" --requests 1
}
start_all() {
    start_echo
    if ((HAVE_REDIS)); then start_redis redis "$SOCK/redis.sock" --appendonly no; REDIS_PID=$REDIS_LAST_PID; fi
    start_tollgate
}
stop_all() {
    local p
    for p in "$ECHO_PID" "$REDIS_PID" "$TG_PID"; do
        if [ -n "$p" ]; then stop_pid "$p"; forget_pid "$p"; fi
    done
    ECHO_PID= REDIS_PID= TG_PID=
}

cat >"$WORK/tollgate.json" <<EOF
{
  "state_dir": "$WORK/tollgate",
  "api_socket": "$SOCK/tg.sock",
  "admin_socket": "$SOCK/tg-admin.sock",
  "journal": { "fsync": true },
  "event_loop_threads": ${BENCH_EVENT_LOOP_THREADS:-1},
  "api_io": "${BENCH_API_IO:-epoll}",
  "api_io_threads": ${BENCH_API_IO_THREADS:-0},
  "log_level": "warning",
  "plans": [
    $BENCH_PLAN
  ]
}
EOF
mkdir -p "$WORK/tollgate"

# ----------------------------------------------------------------------------------------------- measuring
RESULTS=$WORK/results.txt # one line per run: key system op c d pinned rps p50 p99 p999
: >"$RESULTS"
FAILURES=0
KEYS=() # measured points, in order of first measurement

measure() { # measure SYSTEM OP C D PINNED SOCKET LOADGEN_ARGS...
    local system=$1 op=$2 c=$3 d=$4 pinned=$5 sock=$6
    shift 6
    local key="$system|$op|$c|$d|$pinned"
    [[ " ${KEYS[*]} " == *" $key "* ]] || KEYS+=("$key")
    run_loadgen "$key" "$(printf '%-8s %-10s c=%-3s d=%-3s %-6s' "$system" "$op" "$c" "$d" "$pinned")" \
        "${PIN[@]}" "$LOADGEN" "$@" --socket "$sock" -c "$c" -d "$d"
}

run_point() { # run_point C D PINNED: every system once, in turn
    local c=$1 d=$2 pinned=$3 op
    measure echo echo "$c" "$d" "$pinned" "$SOCK/echo.sock" echo
    if ((HAVE_REDIS)); then
        measure redis check "$c" "$d" "$pinned" "$SOCK/redis.sock" redis --op check --sha "$REDIS_SHA" --tokens-file "$WORK/tokens.txt"
    fi
    for op in "${TG_OPS[@]}"; do
        measure tollgate "$op" "$c" "$d" "$pinned" "$SOCK/tg.sock" tollgate --op "$op" --tokens-file "$WORK/tokens.txt"
    done
}


# ----------------------------------------------------------------------------------------------- the run
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(date -u +%FT%TZ)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_START (other processes compete with the servers and the load generator)"
log "N=$TOKENS tokens over L=$LICENSES licenses; $RUNS run(s) of ${DURATION}s (+${WARMUP}s warm-up) per point"
start_all
log "preloading tollgate"
timeout 600 "$LOADGEN" preload --socket "$SOCK/tg-admin.sock" --licenses "$LICENSES" --count "$TOKENS" --plan bench \
    --out "$WORK/tokens.txt" --revoke-count "$REVOKE_POOL" --revoke-out "$WORK/revoke.txt" || die "preloading tollgate failed"
if ((HAVE_REDIS)); then preload_redis; fi

for point in "${POINTS[@]}"; do
    read -r c d <<<"$point"
    for ((run = 1; run <= RUNS; run++)); do run_point "$c" "$d" no; done
done
for point in "${MIXED_POINTS[@]}"; do
    read -r c d <<<"$point"
    for ((run = 1; run <= RUNS; run++)); do
        measure tollgate mixed "$c" "$d" no "$SOCK/tg.sock" tollgate --op mixed --tokens-file "$WORK/tokens.txt" \
            --revoke-file "$WORK/revoke.txt" --revoke-start $(((run - 1) * 2000))
    done
done

# Durable writes: every request acknowledged only once fsynced.
log "durable writes at $DURABLE_POINT (connections x in flight)"
"$BIN/fsync_baseline" --socket "$SOCK/fsync.sock" --file "$WORK/fsync-baseline.log" >"$WORK/fsync.log" 2>&1 &
FSYNC_PID=$!; PIDS+=("$FSYNC_PID")
wait_ready fsync-baseline "$FSYNC_PID" timeout 10 "$LOADGEN" echo --socket "$SOCK/fsync.sock" --requests 1
if ((HAVE_REDIS)); then
    start_redis redis-aof "$SOCK/redis-aof.sock" --appendonly yes --appendfsync always
    AOF_PID=$REDIS_LAST_PID
fi
read -r c d <<<"$DURABLE_POINT"
for ((run = 1; run <= RUNS; run++)); do
    measure fsync-baseline write "$c" "$d" no "$SOCK/fsync.sock" echo
    if ((HAVE_REDIS)); then measure redis-aof incr "$c" "$d" no "$SOCK/redis-aof.sock" redis --op incr; fi
    measure tollgate meter "$c" "$d" no "$SOCK/tg.sock" tollgate --op meter --tokens-file "$WORK/tokens.txt"
done
stop_pid "$FSYNC_PID"; forget_pid "$FSYNC_PID"
if [ -n "$AOF_PID" ]; then stop_pid "$AOF_PID"; forget_pid "$AOF_PID"; fi

# One connection, one in flight, server and load generator pinned to the same CPU.
log "restarting the servers pinned to CPU 0"
stop_all
PIN=(taskset -c 0)
start_all
if ((HAVE_REDIS)); then preload_redis; fi
for ((run = 1; run <= RUNS; run++)); do run_point 1 1 cpu0; done
stop_all
PIN=()

# ----------------------------------------------------------------------------------------------- report
ref_rps() { # the median rps of SYSTEM OP at the same point as KEY
    local key=$1 system=$2 op=$3 rest
    rest=$(cut -d'|' -f3- <<<"$key")
    awk -v k="$system|$op|$rest" '$1 == k { print $2 }' "$RESULTS" | median
}

echo
echo "Tollgate benchmark: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(date -u +%F)," \
    "N=$TOKENS tokens / L=$LICENSES licenses, medians of $RUNS run(s) of ${DURATION}s;" \
    "load average before $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-13s %-15s %-11s %11s %9s %9s %9s %8s %8s\n' point system op "req/s" "p50 us" "p99 us" "p99.9 us" "T/Redis" "T/raw"
for key in "${KEYS[@]}"; do
    IFS='|' read -r system op c d pinned <<<"$key"
    rps=$(stat_of "$key" rps)
    vs_redis="" vs_raw=""
    if [ "$system" = tollgate ] && { [ "$op" = check ] || [ "$op" = check-cost ]; }; then
        vs_redis=$(ratio "$rps" "$(ref_rps "$key" redis check)")
        vs_raw=$(ratio "$rps" "$(ref_rps "$key" echo echo)")
    elif [ "$system" = tollgate ] && [ "$op" = meter ]; then
        vs_redis=$(ratio "$rps" "$(ref_rps "$key" redis-aof incr)")
        vs_raw="$(ratio "$rps" "$(ref_rps "$key" fsync-baseline write)")*"
    fi
    where="${c}x${d}"
    [ "$pinned" = no ] || where="$where cpu0"
    printf '%-13s %-15s %-11s %11.0f %9s %9s %9s %8s %8s\n' "$where" "$system" "$op" "$rps" "$(stat_of "$key" p50)" \
        "$(stat_of "$key" p99)" "$(stat_of "$key" p999)" "$vs_redis" "$vs_raw"
done
echo "(T/Redis, T/raw: Tollgate's median req/s over Redis's check script and over the raw echo at the same point;"
echo " for meter: over Redis appendfsync-always INCR and, marked *, over the one-fsync-per-write baseline)"
echo
for key in "${KEYS[@]}"; do
    IFS='|' read -r system op c d pinned <<<"$key"
    printf 'BENCH {"system":"%s","op":"%s","connections":%s,"depth":%s,"pinned":%s,"rps":%.0f,"p50_us":%s,"p99_us":%s,"p999_us":%s,"runs":%s}\n' \
        "$system" "$op" "$c" "$d" "$([ "$pinned" = no ] && echo false || echo true)" "$(stat_of "$key" rps)" \
        "$(stat_of "$key" p50)" "$(stat_of "$key" p99)" "$(stat_of "$key" p999)" "$(runs_of "$key")"
done

# The targets of issue 6, judged on the medians above (informative: a benchmark is not a pass/fail test).
echo
target() { # target NAME VALUE GOAL(>=x or <=x)
    local verdict
    verdict=$(awk -v v="$2" -v g="$3" 'BEGIN { if (v == "-" || v == "nan") { print "n/a"; exit }
        op = substr(g, 1, 2); x = substr(g, 3) + 0
        if ((op == ">=" && v + 0 >= x) || (op == "<=" && v + 0 <= x)) print "met"; else print "MISSED" }')
    printf 'TARGET %-52s %8s  (goal %s)  %s\n' "$1" "$2" "$3" "$verdict"
}
med() { stat_of "$1" "$2"; }
t_ratio() { ratio "$(med "$1" rps)" "$(med "$2" rps)"; }
target "1x1 check / raw echo (unpinned)" "$(t_ratio "tollgate|check|1|1|no" "echo|echo|1|1|no")" ">=0.9"
target "1x1 check / raw echo (both on cpu0)" "$(t_ratio "tollgate|check|1|1|cpu0" "echo|echo|1|1|cpu0")" ">=0.9"
for c in 8 64; do
    target "${c}x1 check / redis check script" "$(t_ratio "tollgate|check|$c|1|no" "redis|check|$c|1|no")" ">=1.5"
    target "${c}x1 check-cost / redis check script" "$(t_ratio "tollgate|check-cost|$c|1|no" "redis|check|$c|1|no")" ">=1.5"
    target "${c}x1 check / raw echo" "$(t_ratio "tollgate|check|$c|1|no" "echo|echo|$c|1|no")" ">=0.6"
done
for c in 1 8 64; do
    target "${c}x16 check / redis check script" "$(t_ratio "tollgate|check|$c|16|no" "redis|check|$c|16|no")" ">=4"
    target "${c}x16 check-cost / redis check script" "$(t_ratio "tollgate|check-cost|$c|16|no" "redis|check|$c|16|no")" ">=4"
done
target "8x1 check p99 / raw echo p99" "$(ratio "$(med "tollgate|check|8|1|no" p99)" "$(med "echo|echo|8|1|no" p99)")" "<=2"
read -r c d <<<"$DURABLE_POINT"
target "${c}x${d} meter / one-fsync-per-write baseline" "$(t_ratio "tollgate|meter|$c|$d|no" "fsync-baseline|write|$c|$d|no")" ">=5"
target "${c}x${d} meter / redis appendfsync always INCR" "$(t_ratio "tollgate|meter|$c|$d|no" "redis-aof|incr|$c|$d|no")" ">=1"

if ((FAILURES)); then
    log "$FAILURES measurement(s) failed"
    exit 1
fi
