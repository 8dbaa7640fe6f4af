#!/usr/bin/env bash
# The scale run of issue 6: Tollgate with N tokens over L licenses, against the same daemon with 1 k tokens.
#
#   bash scripts/scale.sh [TOKENS] [LICENSES]     default 1000000 tokens over 100000 licenses
#   bash scripts/scale.sh --smoke                 10000 tokens over 1000 licenses, 1 run of 0.5 s per point
#   bash scripts/scale.sh --callgrind [TOKENS]    instructions per check under valgrind's callgrind (default 1000
#                                                 tokens): see the callgrind section below; CALLGRIND_DEPTHS="1 16"
#                                                 (the default) measures 1 connection x 1 and x 16 in flight;
#                                                 CALLGRIND_OPS="check check-cost" (the default; loadgen's ops, e.g.
#                                                 "meter" for durable METERs, which wait for the disk: use smaller
#                                                 CALLGRIND_K1/K2, e.g. 5000/10000)
#
# Options: --runs R (default 3), --duration S (seconds per measured point, default 3), --snapshot-after BYTES
# (journal.snapshot_after_bytes of the daemon; default the daemon's 64 MiB), --no-swift-build (use the release
# tollgated already built), TOLLGATED=path (a tollgated binary to use instead of building one), SCALE_API_IO=nio
# (the api socket on SwiftNIO instead of the default epoll loops: the A/B of Benchmarks/SCALE.md).
#
# What it measures (one daemon at a time is started, except that the N-token and the 1 k-token daemons are both up
# while the check latency is measured, so they can be driven alternately):
#   memory    VmRSS of an empty daemon, VmRSS after preloading L licenses and N tokens (loadgen preload, pipelined,
#             over the admin socket), bytes per token = (loaded - empty) / N; VmRSS again after a restart
#   disk      bytes of journal segments (wal-*.log) and snapshots (snap-*.snap) after the preload
#   startup   time from exec to both sockets answering PING, after a graceful stop (SIGTERM) and after SIGKILL;
#             the daemon's own "journal replayed" line says whether it loaded a snapshot and how many records it
#             replayed after it
#   check     CHECK (no meter) and CHECK with cost 1 at C x D in {1x1, 8x1, 8x16} for a fixed duration, against
#             the N-token daemon and a 1 k-token daemon (L scaled down in proportion), alternately (1k, N, 1k, N,
#             ...), R runs each; medians
# Output: a table, then `SCALE {json}` lines. Every server started here is stopped (trap EXIT); every wait is bounded.
set -euo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SWIFT=${SWIFT:-swift}
[ -x /opt/swift/usr/bin/swift ] && ! command -v "$SWIFT" >/dev/null 2>&1 && SWIFT=/opt/swift/usr/bin/swift
SMOKE=0 SWIFT_BUILD=1 CALLGRIND=0 RUNS= DURATION= SNAPSHOT_AFTER= POS=()
while (($#)); do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --callgrind) CALLGRIND=1 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --snapshot-after) SNAPSHOT_AFTER=$2; shift ;;
    --no-swift-build) SWIFT_BUILD=0 ;;
    -h | --help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "scale: unknown option $1" >&2; exit 2 ;;
    *) POS+=("$1") ;;
    esac
    shift
done
if ((SMOKE)); then
    TOKENS=${POS[0]:-10000} LICENSES=${POS[1]:-1000} RUNS=${RUNS:-1} DURATION=${DURATION:-0.5} WARMUP=0.1
elif ((CALLGRIND)); then
    TOKENS=${POS[0]:-1000} LICENSES=${POS[1]:-100}
else
    TOKENS=${POS[0]:-1000000} LICENSES=${POS[1]:-100000} RUNS=${RUNS:-3} DURATION=${DURATION:-3} WARMUP=0.3
fi
SMALL_TOKENS=1000
SMALL_LICENSES=$(((LICENSES * SMALL_TOKENS + TOKENS - 1) / TOKENS))
POINTS=("1 1" "8 1" "8 16")
OPS=(check check-cost)

log() { printf 'scale: %s\n' "$*" >&2; }
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
die() { log "$*"; exit 1; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# ----------------------------------------------------------------------------------------------- workspace, cleanup
BIN=$ROOT/.build-scale
mkdir -p "$BIN"
WORK=$(mktemp -d "$BIN/run.XXXXXX") # state on the repository's disk, so that fsync costs what it costs
SOCK=$(mktemp -d "${TMPDIR:-/tmp}/tgscale.XXXXXX")
PIDS=()
stop_pid() { # SIGTERM, wait up to 30 s, then SIGKILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
    return 0
}
forget_pid() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
cleanup() {
    local status=$?
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$SOCK"
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------------------------- builds
# The same build step as scripts/bench.sh: the C load generator with gcc, tollgated with SwiftPM in release mode.
log "building Benchmarks/loadgen.c into $BIN"
gcc -O2 -Wall -pthread -o "$BIN/loadgen" "$ROOT/Benchmarks/loadgen.c" || die "cannot build Benchmarks/loadgen.c"
LOADGEN=$BIN/loadgen
if [ -z "${TOLLGATED:-}" ]; then
    if ((SWIFT_BUILD)); then
        log "building tollgated in release mode (waits for the SwiftPM lock if another build is running)"
        (cd "$ROOT" && timeout 3600 "$SWIFT" build -c release --product tollgated >&2) || die "swift build -c release failed"
    fi
    TOLLGATED="$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)/tollgated"
fi
[ -x "$TOLLGATED" ] || die "no tollgated at $TOLLGATED"
# A private copy: another build may replace the binary in .build while this runs; every start uses the same one.
cp "$TOLLGATED" "$WORK/tollgated"
log "tollgated: $TOLLGATED (sha256 $(sha256sum "$WORK/tollgated" | cut -c1-16), built $(date -u -r "$TOLLGATED" +%FT%TZ)), HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
TOLLGATED=$WORK/tollgated

# ----------------------------------------------------------------------------------------------- daemons
write_config() { # write_config NAME [SNAPSHOT_AFTER_BYTES]: $WORK/NAME.json, state in $WORK/NAME, sockets $SOCK/NAME*.sock
    local name=$1 snap=${2:-}
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name.json" <<EOF
{
  "state_dir": "$WORK/$name",
  "api_socket": "$SOCK/$name.sock",
  "admin_socket": "$SOCK/$name-admin.sock",
  "journal": { "fsync": true${snap:+, \"snapshot_after_bytes\": $snap} },
  "limits": { "max_tokens": $((TOKENS * 2 + 10000)), "max_licenses": $((LICENSES * 2 + 1000)) },
  "log_level": "info",
  "api_io": "${SCALE_API_IO:-epoll}",
  "plans": [
    $BENCH_PLAN
  ]
}
EOF
}
ping_both() { # ping_both NAME: both sockets answer PING
    timeout 5 "$LOADGEN" tollgate --op ping --socket "$SOCK/$1.sock" --requests 1 >/dev/null 2>&1 &&
        timeout 5 "$LOADGEN" tollgate --op ping --socket "$SOCK/$1-admin.sock" --requests 1 >/dev/null 2>&1
}
# start_daemon NAME [PREFIX...]: starts tollgated on $WORK/NAME.json; sets DAEMON_PID and STARTUP_S (exec to both
# sockets answering PING). Bounded: 300 s.
start_daemon() {
    local name=$1 t0 deadline
    shift
    t0=$(now_ns)
    "$@" "$TOLLGATED" --config "$WORK/$name.json" >>"$WORK/$name.log" 2>&1 &
    DAEMON_PID=$!; PIDS+=("$DAEMON_PID")
    deadline=$((t0 + 300000000000))
    until ping_both "$name"; do
        kill -0 "$DAEMON_PID" 2>/dev/null || die "$name exited during start-up: $(tail -5 "$WORK/$name.log")"
        (($(now_ns) < deadline)) || die "$name did not answer within 300 s"
        sleep 0.005
    done
    STARTUP_S=$(secs "$t0" "$(now_ns)")
}
stop_daemon() { # stop_daemon PID [KILL]: sets STOP_S
    local t0
    t0=$(now_ns)
    if [ "${2:-}" = KILL ]; then kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; else stop_pid "$1"; fi
    forget_pid "$1"
    STOP_S=$(secs "$t0" "$(now_ns)")
}
rss_kb() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status"; }
settle_rss() { # the RSS once it stops changing (at most 5 s): allocations finish after the last answer
    local pid=$1 a b i
    a=$(rss_kb "$pid")
    for ((i = 0; i < 10; i++)); do sleep 0.5; b=$(rss_kb "$pid"); [ "$a" = "$b" ] && break; a=$b; done
    echo "$b"
}
replay_line() { # what the last start of NAME recovered: "snapshot=<seq|none> records=<n>"
    local line
    line=$(grep 'journal replayed' "$WORK/$1.log" | tail -1 || true)
    printf 'snapshot=%s records=%s' "$(sed -nE 's/.*tollgate.journal.snapshot=([^ ,]+).*/\1/p' <<<"$line" | head -1)" \
        "$(sed -nE 's/.*tollgate.journal.records=([0-9]+).*/\1/p' <<<"$line" | head -1)"
}
disk_bytes() { # disk_bytes NAME GLOB: total bytes of matching journal files
    find "$WORK/$1/journal" -maxdepth 1 -name "$2" -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
disk_count() { find "$WORK/$1/journal" -maxdepth 1 -name "$2" 2>/dev/null | wc -l | tr -d ' '; }

# ================================================================================================ callgrind mode
if ((CALLGRIND)); then
    command -v valgrind >/dev/null 2>&1 || die "valgrind is missing (apt-get -o DPkg::Lock::Timeout=600 install -y valgrind)"
    CG=$BIN/callgrind-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$CG"
    K1=${CALLGRIND_K1:-20000} K2=${CALLGRIND_K2:-40000} WARM=${CALLGRIND_WARMUP:-5000}
    read -r -a CG_DEPTHS <<<"${CALLGRIND_DEPTHS:-1 16}"
    read -r -a CG_OPS <<<"${CALLGRIND_OPS:-check check-cost}"
    # Two work-arounds for Debian's valgrind 3.19 (neither changes what tollgated executes on the check path):
    # - its DWARF reader gives up on the Swift toolchain's debug info ("Possibly corrupted debuginfo file"): run a
    #   copy with the debug sections stripped (the symbol table stays, so functions keep their names);
    # - its rt_sigsuspend wrapper writes into the signal mask it is given, and libdispatch's main thread (parked
    #   in _dispatch_sig_thread once `main` has handed over to the dispatch main queue) passes a mask in read-only
    #   memory: valgrind dies with "the 'impossible' happened" (SIGSEGV, syscall 130). A two-line preload copies
    #   the mask to the stack before the system call.
    strip --strip-debug -o "$WORK/tollgated-nodebug" "$TOLLGATED"
    cat >"$WORK/sigsuspend-shim.c" <<'EOF'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
EOF
    gcc -O2 -shared -fPIC -o "$WORK/sigsuspend-shim.so" "$WORK/sigsuspend-shim.c" || die "cannot build the sigsuspend shim"
    TOLLGATED=$WORK/tollgated-nodebug
    write_config cg
    log "starting tollgated under callgrind (instrumentation on, counters zeroed before each measured batch)"
    start_daemon cg env LD_PRELOAD="$WORK/sigsuspend-shim.so" \
        valgrind --tool=callgrind --callgrind-out-file="$CG/callgrind.out.%p" --dump-instr=no
    CG_PID=$DAEMON_PID
    log "tollgated under callgrind answered after $STARTUP_S s; preloading $LICENSES licenses, $TOKENS tokens"
    timeout 600 "$LOADGEN" preload --socket "$SOCK/cg-admin.sock" --licenses "$LICENSES" --count "$TOKENS" --plan bench \
        --out "$WORK/cg-tokens.txt" >&2 || die "preload failed"
    # The valgrind process is the daemon (valgrind execs nothing); callgrind_control addresses it by pid.
    batch() { # batch LABEL OP K DEPTH: zero the counters, send exactly K requests (1 connection, DEPTH in flight), dump
        local label=$1 op=$2 k=$3 depth=$4
        timeout 60 callgrind_control -z "$CG_PID" >/dev/null || die "callgrind_control -z failed"
        timeout 900 "$LOADGEN" tollgate --op "$op" --socket "$SOCK/cg.sock" --tokens-file "$WORK/cg-tokens.txt" \
            --requests "$k" -c 1 -d "$depth" >"$CG/$label.loadgen" 2>&1 || die "loadgen $label failed: $(cat "$CG/$label.loadgen")"
        timeout 60 callgrind_control -d "$label" "$CG_PID" >/dev/null || die "callgrind_control -d failed"
        sleep 0.5
    }
    total_ir() { # the Ir total of the dump named LABEL
        local f
        f=$(grep -lx "desc: Trigger: dump $1" "$CG"/callgrind.out.* 2>/dev/null | head -1)
        [ -n "$f" ] || die "no callgrind dump for $1"
        echo "$f" >"$CG/$1.file"
        awk '/^(summary|totals):/ { print $2; exit }' "$f"
    }
    for depth in "${CG_DEPTHS[@]}"; do
        for op in "${CG_OPS[@]}"; do
            batch "warm-$op-d$depth" "$op" "$WARM" "$depth"
            batch "$op-d$depth-$K1" "$op" "$K1" "$depth"
            batch "$op-d$depth-$K2" "$op" "$K2" "$depth"
        done
    done
    stop_daemon "$CG_PID"
    echo
    echo "Callgrind: $TOKENS tokens / $LICENSES licenses, 1 connection x D in flight (D in ${CG_DEPTHS[*]}); counters zeroed"
    echo "before each batch; per request = (Ir[$K2] - Ir[$K1]) / ($K2 - $K1) (cancels what does not grow with the count); dumps in $CG"
    for depth in "${CG_DEPTHS[@]}"; do
    for op in "${CG_OPS[@]}"; do
        tag=$op-d$depth
        a=$(total_ir "$tag-$K1") b=$(total_ir "$tag-$K2")
        per=$(awk -v a="$a" -v b="$b" -v k1="$K1" -v k2="$K2" 'BEGIN { printf "%.0f", (b - a) / (k2 - k1) }')
        naive=$(awk -v b="$b" -v k2="$K2" 'BEGIN { printf "%.0f", b / k2 }')
        printf '%-11s d=%-3s Ir[%s]=%s Ir[%s]=%s  per request %s (Ir[%s]/%s = %s)\n' "$op" "$depth" "$K1" "$a" "$K2" "$b" "$per" "$K2" "$K2" "$naive"
        printf 'CALLGRIND {"op":"%s","depth":%s,"tokens":%s,"k1":%s,"k2":%s,"ir_k1":%s,"ir_k2":%s,"ir_per_request":%s}\n' \
            "$op" "$depth" "$TOKENS" "$K1" "$K2" "$a" "$b" "$per"
        f=$(cat "$CG/$tag-$K2.file")
        callgrind_annotate --inclusive=yes "$f" 2>/dev/null | swift-demangle --simplified >"$CG/$tag-$K2.inclusive.txt" || true
        callgrind_annotate --threshold=100 "$f" 2>/dev/null | swift-demangle --simplified >"$CG/$tag-$K2.self.txt" || true
        # The event loop's own frames (thread start, selector, channel plumbing) hold ~100 % inclusive: skipped here.
        echo "check path, top 10 by inclusive Ir ($op, depth $depth, $K2 requests; Ir / request in brackets; all in $CG/$tag-$K2.inclusive.txt):"
        grep -E '^ *[0-9,]+ \(' "$CG/$tag-$K2.inclusive.txt" |
            grep -Ev 'PROGRAM TOTALS|clone|start_thread|ThreadOps|EventLoop|Selector|NIOThread|SelectorEvent|readable0|readFromSocket|fireChannelRead|invokeChannelRead|channelRead\(context|decodeLoop' |
            head -10 | awk -v k="$K2" '{ n = $1; gsub(",", "", n); printf "[%6.0f] %s\n", n / k, substr($0, 1, 200) }' || true
        echo "top 10 by self Ir:"
        grep -E '^ *[0-9,]+ \(' "$CG/$tag-$K2.self.txt" | grep -Ev '\((100\.0|99\.[0-9]+)%\)' | head -10 |
            awk -v k="$K2" '{ n = $1; gsub(",", "", n); printf "[%6.0f] %s\n", n / k, substr($0, 1, 200) }' || true
        echo
    done
    done
    exit 0
fi

# ================================================================================================ the scale run
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(date -u +%FT%TZ); load average $LOAD_START"
log "N=$TOKENS tokens over L=$LICENSES licenses (and $SMALL_TOKENS over $SMALL_LICENSES); snapshot_after_bytes ${SNAPSHOT_AFTER:-default}"

write_config big "$SNAPSHOT_AFTER"
write_config small "$SNAPSHOT_AFTER"

# ---- memory: empty, then preloaded
start_daemon big
BIG_PID=$DAEMON_PID
FRESH_START_S=$STARTUP_S
RSS_EMPTY=$(settle_rss "$BIG_PID")
log "empty daemon: started in $FRESH_START_S s, VmRSS $RSS_EMPTY kB"
t0=$(now_ns)
timeout 1800 "$LOADGEN" preload --socket "$SOCK/big-admin.sock" --licenses "$LICENSES" --count "$TOKENS" --plan bench \
    --out "$WORK/big-tokens.txt" >&2 || die "preloading failed"
PRELOAD_S=$(secs "$t0" "$(now_ns)")
RSS_LOADED=$(settle_rss "$BIG_PID")
HWM_LOADED=$(rss_kb "$BIG_PID" VmHWM)
BYTES_PER_TOKEN=$(awk -v a="$RSS_LOADED" -v b="$RSS_EMPTY" -v n="$TOKENS" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
log "preloaded in $PRELOAD_S s; VmRSS $RSS_LOADED kB (peak $HWM_LOADED kB): $BYTES_PER_TOKEN bytes per token"
sleep 2 # a snapshot started by the last records finishes off the request path
WAL_BYTES=$(disk_bytes big 'wal-*.log') WAL_FILES=$(disk_count big 'wal-*.log')
SNAP_BYTES=$(disk_bytes big 'snap-*.snap') SNAP_FILES=$(disk_count big 'snap-*.snap')
log "on disk after the preload: $WAL_FILES segment(s) $WAL_BYTES bytes, $SNAP_FILES snapshot(s) $SNAP_BYTES bytes"

# ---- start-up after a graceful stop, then after SIGKILL
stop_daemon "$BIG_PID"
GRACEFUL_STOP_S=$STOP_S
WAL_BYTES_STOPPED=$(disk_bytes big 'wal-*.log') SNAP_BYTES_STOPPED=$(disk_bytes big 'snap-*.snap')
start_daemon big
BIG_PID=$DAEMON_PID
START_GRACEFUL_S=$STARTUP_S
REPLAY_GRACEFUL=$(replay_line big)
RSS_RESTARTED=$(settle_rss "$BIG_PID")
log "graceful stop took $GRACEFUL_STOP_S s (journal then $WAL_BYTES_STOPPED bytes of segments, $SNAP_BYTES_STOPPED of snapshots);" \
    "start-up $START_GRACEFUL_S s ($REPLAY_GRACEFUL); VmRSS after it $RSS_RESTARTED kB"
stop_daemon "$BIG_PID" KILL
start_daemon big
BIG_PID=$DAEMON_PID
START_KILL_S=$STARTUP_S
REPLAY_KILL=$(replay_line big)
log "after SIGKILL: start-up $START_KILL_S s ($REPLAY_KILL)"

# ---- check latency: the N-token daemon (running) against a 1 k-token daemon, alternately
start_daemon small
SMALL_PID=$DAEMON_PID
timeout 300 "$LOADGEN" preload --socket "$SOCK/small-admin.sock" --licenses "$SMALL_LICENSES" --count "$SMALL_TOKENS" \
    --plan bench --out "$WORK/small-tokens.txt" >&2 || die "preloading the 1 k daemon failed"
RSS_SMALL=$(settle_rss "$SMALL_PID")

RESULTS=$WORK/results.txt
: >"$RESULTS"
FAILURES=0
measure() { # measure SIZE(small|big) OP C D
    local name=$1 op=$2 c=$3 d=$4
    run_loadgen "$name|$op|$c|$d" "$(printf '%-5s %-10s c=%-2s d=%-2s' "$name" "$op" "$c" "$d")" \
        "$LOADGEN" tollgate --op "$op" --socket "$SOCK/$name.sock" --tokens-file "$WORK/$name-tokens.txt" -c "$c" -d "$d"
}
for point in "${POINTS[@]}"; do
    read -r c d <<<"$point"
    for ((run = 1; run <= RUNS; run++)); do
        for op in "${OPS[@]}"; do
            measure small "$op" "$c" "$d"
            measure big "$op" "$c" "$d"
        done
    done
done
RSS_AFTER_LOAD=$(rss_kb "$BIG_PID")
stop_daemon "$SMALL_PID"
stop_daemon "$BIG_PID"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ----------------------------------------------------------------------------------------------- report
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "Tollgate scale run: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(date -u +%FT%TZ);" \
    "N=$TOKENS tokens / L=$LICENSES licenses; load average before $LOAD_START, after $LOAD_END"
printf '  %-44s %s\n' "preload (LICENSE_PUT + ISSUE, 256 in flight)" "$PRELOAD_S s ($(awk -v n="$TOKENS" -v s="$PRELOAD_S" 'BEGIN { printf "%.0f", n / s }') tokens/s)"
printf '  %-44s %s MiB\n' "VmRSS, empty daemon" "$(mb "$RSS_EMPTY")"
printf '  %-44s %s MiB (peak %s MiB)\n' "VmRSS after the preload" "$(mb "$RSS_LOADED")" "$(mb "$HWM_LOADED")"
printf '  %-44s %s\n' "bytes per token (loaded - empty) / N" "$BYTES_PER_TOKEN"
printf '  %-44s %s MiB\n' "VmRSS after a restart (state recovered)" "$(mb "$RSS_RESTARTED")"
printf '  %-44s %s MiB\n' "VmRSS after the check runs" "$(mb "$RSS_AFTER_LOAD")"
printf '  %-44s %s MiB\n' "VmRSS of the 1 k-token daemon" "$(mb "$RSS_SMALL")"
printf '  %-44s %s segment file(s) %s MiB, %s snapshot(s) %s MiB\n' "journal on disk after the preload" "$WAL_FILES" \
    "$(mb $((WAL_BYTES / 1024)))" "$SNAP_FILES" "$(mb $((SNAP_BYTES / 1024)))"
printf '  %-44s %s s\n' "graceful stop (SIGTERM to exit)" "$GRACEFUL_STOP_S"
printf '  %-44s %s s (%s)\n' "start-up after a graceful stop" "$START_GRACEFUL_S" "$REPLAY_GRACEFUL"
printf '  %-44s %s s (%s)\n' "start-up after SIGKILL" "$START_KILL_S" "$REPLAY_KILL"
printf '  %-44s %s s\n' "start-up of the empty daemon (for reference)" "$FRESH_START_S"
echo
printf '%-6s %-11s %11s %9s %9s %11s %9s %9s %9s %9s\n' point op "1k req/s" "1k p50" "1k p99" "${TOKENS} req/s" "p50" "p99" "rps ratio" "p50 ratio"
for point in "${POINTS[@]}"; do
    read -r c d <<<"$point"
    for op in "${OPS[@]}"; do
        s="small|$op|$c|$d" b="big|$op|$c|$d"
        printf '%-6s %-11s %11.0f %9s %9s %11.0f %9s %9s %9s %9s\n' "${c}x${d}" "$op" "$(stat_of "$s" rps)" "$(stat_of "$s" p50)" \
            "$(stat_of "$s" p99)" "$(stat_of "$b" rps)" "$(stat_of "$b" p50)" "$(stat_of "$b" p99)" \
            "$(ratio "$(stat_of "$b" rps)" "$(stat_of "$s" rps)")" "$(ratio "$(stat_of "$b" p50)" "$(stat_of "$s" p50)")"
    done
done
echo "(medians of $RUNS run(s) of ${DURATION}s, 1 k and $TOKENS alternately; ratios: $TOKENS-token daemon over 1 k-token daemon; latencies in us)"
echo
js() { printf '"%s":%s' "$1" "$2"; }
echo "SCALE {$(js kind '"memory"'),$(js tokens "$TOKENS"),$(js licenses "$LICENSES"),$(js rss_empty_kb "$RSS_EMPTY"),$(js rss_loaded_kb "$RSS_LOADED"),$(js hwm_loaded_kb "$HWM_LOADED"),$(js bytes_per_token "$BYTES_PER_TOKEN"),$(js rss_restarted_kb "$RSS_RESTARTED"),$(js rss_after_checks_kb "$RSS_AFTER_LOAD"),$(js rss_1k_kb "$RSS_SMALL")}"
echo "SCALE {$(js kind '"disk"'),$(js tokens "$TOKENS"),$(js wal_files "$WAL_FILES"),$(js wal_bytes "$WAL_BYTES"),$(js snapshot_files "$SNAP_FILES"),$(js snapshot_bytes "$SNAP_BYTES"),$(js snapshot_after_bytes "${SNAPSHOT_AFTER:-67108864}")}"
echo "SCALE {$(js kind '"preload"'),$(js tokens "$TOKENS"),$(js licenses "$LICENSES"),$(js seconds "$PRELOAD_S")}"
for which in graceful sigkill; do
    if [ $which = graceful ]; then s=$START_GRACEFUL_S r=$REPLAY_GRACEFUL; else s=$START_KILL_S r=$REPLAY_KILL; fi
    snap=$(sed -E 's/snapshot=([^ ]*).*/\1/' <<<"$r") recs=$(sed -E 's/.*records=([0-9]*).*/\1/' <<<"$r")
    echo "SCALE {$(js kind '"startup"'),$(js after "\"$which\""),$(js tokens "$TOKENS"),$(js seconds "$s"),$(js snapshot "\"${snap:-?}\""),$(js records_replayed "${recs:-null}")}"
done
for point in "${POINTS[@]}"; do
    read -r c d <<<"$point"
    for op in "${OPS[@]}"; do
        for name in small big; do
            k="$name|$op|$c|$d"
            n=$([ $name = small ] && echo "$SMALL_TOKENS" || echo "$TOKENS")
            echo "SCALE {$(js kind '"check"'),$(js tokens "$n"),$(js op "\"$op\""),$(js connections "$c"),$(js depth "$d"),$(printf '"rps":%.0f' "$(stat_of "$k" rps)"),$(js p50_us "$(stat_of "$k" p50)"),$(js p99_us "$(stat_of "$k" p99)"),$(js p999_us "$(stat_of "$k" p999)"),$(js runs "$(runs_of "$k")")}"
        done
    done
done
echo
target() { # target NAME VALUE GOAL(<=x or >=x)
    local verdict
    verdict=$(awk -v v="$2" -v g="$3" 'BEGIN { if (v == "-" || v == "nan") { print "n/a"; exit }
        op = substr(g, 1, 2); x = substr(g, 3) + 0
        if ((op == ">=" && v + 0 >= x) || (op == "<=" && v + 0 <= x)) print "met"; else print "MISSED" }')
    printf 'TARGET %-50s %10s  (goal %s)  %s\n' "$1" "$2" "$3" "$verdict"
}
target "VmRSS with $TOKENS tokens, MiB" "$(mb "$RSS_LOADED")" "<=300"
target "start-up after a graceful stop, s" "$START_GRACEFUL_S" "<=3"
target "start-up after SIGKILL, s" "$START_KILL_S" "<=3"
for point in "${POINTS[@]}"; do
    read -r c d <<<"$point"
    for op in "${OPS[@]}"; do
        target "${c}x${d} $op p50 ${TOKENS} / 1k" "$(ratio "$(stat_of "big|$op|$c|$d" p50)" "$(stat_of "small|$op|$c|$d" p50)")" "<=1.2"
        target "${c}x${d} $op req/s ${TOKENS} / 1k" "$(ratio "$(stat_of "big|$op|$c|$d" rps)" "$(stat_of "small|$op|$c|$d" rps)")" ">=0.8"
    done
done
if ((FAILURES)); then log "$FAILURES measurement(s) failed"; exit 1; fi
