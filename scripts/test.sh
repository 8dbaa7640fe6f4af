#!/usr/bin/env bash
# The whole test suite: Swift unit and integration tests, then the Python client's conformance tests against the
# live daemon. Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

echo "== building"
swift build --build-tests 2>&1 | tail -n 3
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "0 passed, 1 failed"; exit 1; }

echo "== swift test"
swift test --skip-build 2>&1 | tee "$log_dir/swift.log" | grep -E "^(Test Suite|.*error:|.*failed|\s+Executed)" || true
swift_status=${PIPESTATUS[0]}
# Count test cases one by one: a crash ends the run without a summary line, and a test that started but never
# finished counts as failed.
swift_started=$(grep -cE "^Test Case '.*' started" "$log_dir/swift.log")
swift_passed=$(grep -cE "^Test Case '.*' passed" "$log_dir/swift.log")
swift_failed=$(grep -cE "^Test Case '.*' failed" "$log_dir/swift.log")
swift_crashed=$((swift_started - swift_passed - swift_failed))
if [ "$swift_crashed" -gt 0 ]; then
    echo "swift: $swift_crashed test(s) started and never finished (crash):"
    grep -E "crashed|Fatal error|runtime failure" "$log_dir/swift.log" | head -n 5
    swift_failed=$((swift_failed + swift_crashed))
fi
swift_total=$((swift_passed + swift_failed))
[ "$swift_total" -gt 0 ] || swift_failed=1
[ "$swift_status" -eq 0 ] || [ "$swift_failed" -gt 0 ] || swift_failed=1

echo "== python conformance client against the live daemon"
TOLLGATED="$(swift build --show-bin-path)/tollgated" python3 clients/python/test_conformance.py -v >"$log_dir/python.log" 2>&1
python_status=$?
tail -n 5 "$log_dir/python.log"
python_total=$(grep -E "^Ran [0-9]+ tests?" "$log_dir/python.log" | sed -E 's/Ran ([0-9]+).*/\1/')
python_failed=$(grep -E "^FAILED" "$log_dir/python.log" | grep -oE "(failures|errors)=[0-9]+" | cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }')
[ -n "$python_total" ] || python_total=0
[ -n "$python_failed" ] || python_failed=0
if [ "$python_status" -ne 0 ] && [ "$python_failed" -eq 0 ]; then python_failed=1; cat "$log_dir/python.log"; fi
[ "$python_status" -eq 0 ] || grep -E "^(FAIL|ERROR):" "$log_dir/python.log"

echo "== hostile-load soak"
timeout 300 python3 scripts/soak.py --tollgated "$(swift build --show-bin-path)/tollgated" --seconds 10 >"$log_dir/soak.log" 2>&1
soak_status=$?
grep -E "^(ok|not ok) |^# (RSS|probe):|^[0-9]+ passed, [0-9]+ failed" "$log_dir/soak.log"
soak_line=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$log_dir/soak.log" | tail -n 1)
soak_passed=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$soak_line")
soak_failed=$(sed -E 's/.*, ([0-9]+) failed.*/\1/' <<<"$soak_line")
[ -n "$soak_line" ] || { soak_passed=0; soak_failed=1; }
if [ "$soak_status" -ne 0 ] && [ "$soak_failed" -eq 0 ]; then soak_failed=1; fi
[ "$soak_failed" -eq 0 ] || cat "$log_dir/soak.log"
soak_total=$((soak_passed + soak_failed))

echo "== systemd end-to-end"
bash Tests/systemd/e2e.sh "$(swift build --show-bin-path)" >"$log_dir/systemd.log" 2>&1
systemd_status=$?
grep -E "^(ok|not ok) |^# (SKIP|exposure)|^[0-9]+ passed, [0-9]+ failed" "$log_dir/systemd.log"
systemd_line=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$log_dir/systemd.log" | tail -n 1)
systemd_passed=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$systemd_line")
systemd_failed=$(sed -E 's/.*, ([0-9]+) failed.*/\1/' <<<"$systemd_line")
[ -n "$systemd_line" ] || { systemd_passed=0; systemd_failed=1; }
if [ "$systemd_status" -ne 0 ] && [ "$systemd_failed" -eq 0 ]; then systemd_failed=1; fi
[ "$systemd_failed" -eq 0 ] || cat "$log_dir/systemd.log"
systemd_total=$((systemd_passed + systemd_failed))

total=$((swift_total + python_total + soak_total + systemd_total))
failed=$((swift_failed + python_failed + soak_failed + systemd_failed))
echo "swift: ${swift_total} tests, ${swift_failed} failed; python: ${python_total} tests, ${python_failed} failed; soak: ${soak_total} checks, ${soak_failed} failed; systemd: ${systemd_total} checks, ${systemd_failed} failed"
echo "$((total - failed)) passed, ${failed} failed"
[ "$failed" -eq 0 ]
