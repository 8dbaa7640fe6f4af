#!/usr/bin/env bash
# The whole test suite: Swift unit and integration tests, the Python client's conformance tests against the live
# daemon, the CLI end to end, a short hostile-load soak, and the end-to-end test under a real systemd. Ends with one line
# "N passed, M failed" over all stages.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
total=0
failed=0
summary=()

# `record NAME PASSED FAILED STATUS`: adds a stage's counts; a non-zero exit with no failure counted is a failure.
record() {
    local name=$1 passed=$2 failures=$3 status=$4
    if [ "$status" -ne 0 ] && [ "$failures" -eq 0 ]; then failures=1; fi
    [ $((passed + failures)) -gt 0 ] || failures=1
    total=$((total + passed + failures))
    failed=$((failed + failures))
    summary+=("$name: $((passed + failures)) run, $failures failed")
}

# `tap_stage NAME LOG COMMAND...`: runs a stage that prints ok/not ok lines and ends with "N passed, M failed".
tap_stage() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1
    local status=$?
    grep -E "^(ok|not ok) |^# (SKIP|exposure|RSS|probe)|^[0-9]+ passed, [0-9]+ failed" "$log"
    local line passed=0 failures=1
    line=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
    if [ -n "$line" ]; then
        passed=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
        failures=$(sed -E 's/.*, ([0-9]+) failed.*/\1/' <<<"$line")
    fi
    [ "$failures" -eq 0 ] && [ "$status" -eq 0 ] || tail -n 60 "$log"
    record "$name" "$passed" "$failures" "$status"
}

echo "== building"
swift build --build-tests 2>&1 | tail -n 3
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "0 passed, 1 failed"; exit 1; }
bin=$(swift build --show-bin-path)

echo "== swift test"
swift test --skip-build 2>&1 | tee "$log_dir/swift.log" | grep -E "^(Test Suite|.*error:|.*failed|\s+Executed)"
swift_status=${PIPESTATUS[0]}
# Count test cases one by one: a crash ends the run without a summary line, and a test that started but never
# finished counts as failed.
started=$(grep -cE "^Test Case '.*' started" "$log_dir/swift.log")
passed=$(grep -cE "^Test Case '.*' passed" "$log_dir/swift.log")
failures=$(grep -cE "^Test Case '.*' failed" "$log_dir/swift.log")
crashed=$((started - passed - failures))
if [ "$crashed" -gt 0 ]; then
    echo "swift: $crashed test(s) started and never finished (crash):"
    grep -E "crashed|Fatal error|runtime failure" "$log_dir/swift.log" | head -n 5
fi
record swift "$passed" $((failures + crashed)) "$swift_status"

echo "== python conformance client against the live daemon"
TOLLGATED="$bin/tollgated" python3 clients/python/test_conformance.py -v >"$log_dir/python.log" 2>&1
python_status=$?
tail -n 5 "$log_dir/python.log"
python_total=$(grep -E "^Ran [0-9]+ tests?" "$log_dir/python.log" | sed -E 's/Ran ([0-9]+).*/\1/')
python_failed=$(grep -E "^FAILED" "$log_dir/python.log" | grep -oE "(failures|errors)=[0-9]+" | cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }')
[ "$python_status" -eq 0 ] || grep -E "^(FAIL|ERROR):" "$log_dir/python.log"
record python $((${python_total:-0} - python_failed)) "$python_failed" "$python_status"

echo "== the tollgate CLI against a live daemon (every command, apply, usage export)"
tap_stage cli "$log_dir/cli.log" timeout 300 bash scripts/cli-e2e.sh "$bin"

echo "== hostile-load soak (short; the debug build on a shared CI machine, so correctness is asserted, not speed)"
tap_stage soak "$log_dir/soak.log" timeout 300 python3 scripts/soak.py --tollgated "$bin/tollgated" --seconds 8 \
    --mutate-conns 60 --pipeline-conns 2 --no-flood --probe-slow 10 --probe-timeout 20 --timeout-slack 20

echo "== systemd end-to-end"
tap_stage systemd "$log_dir/systemd.log" bash Tests/systemd/e2e.sh "$bin"

printf '%s\n' "${summary[@]}"
echo "$((total - failed)) passed, ${failed} failed"
[ "$failed" -eq 0 ]
