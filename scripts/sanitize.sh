#!/usr/bin/env bash
# Runs the Swift test suite under ThreadSanitizer and AddressSanitizer (each in its own build folder).
# XCTest itself leaks, so LeakSanitizer is off (detect_leaks=0). Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export SWIFT_BACKTRACE=enable=no
passed=0
failed=0
for sanitizer in thread address; do
    scratch=".build-${sanitizer:0:1}san"
    echo "== building the tests with -sanitize=$sanitizer"
    swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch" 2>&1 | tail -n 2
    [ "${PIPESTATUS[0]}" -eq 0 ] || { failed=$((failed + 1)); continue; }
    log=$(mktemp)
    TSAN_OPTIONS="halt_on_error=1" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
        swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" >"$log" 2>&1
    status=$?
    p=$(grep -cE "^Test Case '.*' passed" "$log")
    f=$(grep -cE "^Test Case '.*' failed" "$log")
    started=$(grep -cE "^Test Case '.*' started" "$log")
    crashed=$((started - p - f))
    reports=$(grep -cE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer" "$log")
    echo "$sanitizer: $p passed, $f failed, $crashed did not finish, $reports sanitizer reports (exit $status)"
    if [ "$f" -gt 0 ] || [ "$crashed" -gt 0 ] || [ "$reports" -gt 0 ] || [ "$status" -ne 0 ]; then
        grep -E -A20 "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|error:" "$log" | head -n 60
        failed=$((failed + f + crashed + (reports > 0 ? 1 : 0)))
        [ "$f" -gt 0 ] || [ "$crashed" -gt 0 ] || [ "$reports" -gt 0 ] || failed=$((failed + 1))
    fi
    passed=$((passed + p))
    rm -f "$log"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
