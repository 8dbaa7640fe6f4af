#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for SECONDS (default 30) on a copy of its seed corpus.
#
#   scripts/fuzz.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS   targets to run (default: fuzz-frames fuzz-messages fuzz-journal fuzz-payloads)
#   FUZZ_WORK      directory for corpora, logs and crash inputs (default: a new temporary directory, kept)
#   FUZZ_SANITIZE  sanitizers to build with (default: fuzzer,address)
#   FUZZ_RUNS      run each target for exactly this many inputs with a fixed seed instead of SECONDS (used by CI,
#                  so that a CI run is reproducible)
#
# Exits non-zero if a target crashes (or violates an invariant, or times out); the crash input's path is printed
# as "CRASH <target>: <path>" together with the tail of its log. Reproduce with:
#   SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 .build-fuzz/release/<target> <path>
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
targets="${FUZZ_TARGETS:-fuzz-frames fuzz-messages fuzz-journal fuzz-payloads}"
sanitize="${FUZZ_SANITIZE:-fuzzer,address}"
scratch="$PWD/.build-fuzz"

# The fuzz package pins the same dependency versions as the main package when they are known.
if [ ! -f Fuzz/Package.resolved ] && [ -f Package.resolved ]; then cp Package.resolved Fuzz/Package.resolved; fi

echo "== building fuzz targets ($sanitize) in $scratch"
if ! swift build -c release --package-path Fuzz --scratch-path "$scratch" \
    -Xswiftc "-sanitize=$sanitize" -Xswiftc -parse-as-library 2>&1 | grep -vE "Cannot export local symbol '__asan" | tail -n 5; then
    :
fi
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz build failed"; exit 2; }
bin="$scratch/release"

work="${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/tollgate-fuzz.XXXXXX")}"
mkdir -p "$work"
python3 Fuzz/make_seeds.py "$work/seeds" || { echo "seed generation failed"; exit 2; }

export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
status=0
for target in $targets; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    cp -n "$work/seeds/$target/"* "$corpus/" 2>/dev/null || true
    log="$work/$target.log"
    if [ -n "${FUZZ_RUNS:-}" ]; then amount="$FUZZ_RUNS runs"; else amount="${seconds}s"; fi
    echo "== $target for $amount (corpus $corpus, log $log)"
    if [ -n "${FUZZ_RUNS:-}" ]; then budget=(-runs="$FUZZ_RUNS" -seed=1); else budget=(-max_total_time="$seconds"); fi
    "$bin/$target" "$corpus" "${budget[@]}" -rss_limit_mb=2048 -timeout=5 -detect_leaks=0 \
        -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
    rc=$?
    grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)" "$log" | tail -n 2
    grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log"
    echo "corpus: $(ls "$corpus" | wc -l) files"
    crash=$(ls -t "$artifacts" 2>/dev/null | head -n 1)
    if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
        status=1
        echo "---- $target failed (exit $rc); log tail:"
        grep -vE "^#[0-9]+[[:space:]]" "$log" | tail -n 40
        [ -n "$crash" ] && echo "CRASH $target: $artifacts$crash"
    fi
done
echo "== fuzz work directory: $work"
[ "$status" -eq 0 ] && echo "fuzz: no crash" || echo "fuzz: FAILED"
exit "$status"
