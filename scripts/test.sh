#!/usr/bin/env bash
# The whole test suite, in two tiers. Ends with one line "N passed, M failed" over all stages.
#
#   bash scripts/test.sh          both tiers (`make test`)
#   bash scripts/test.sh fast     tier 1: the Swift unit and component tests (engine, codec, journal, core, handler,
#                                 the daemon in-process); about a minute after the build (`make test-fast`)
#   bash scripts/test.sh slow     tier 2: the crash loop, kill and slow daemon tests, the Python client against the
#                                 live daemon, the CLI end to end, the hostile-load soak, forward auth behind nginx
#                                 and Caddy, Envoy's gRPC ext_authz against Envoy's own API definitions (xds-protos),
#                                 metrics scraped by a real Prometheus (and promtool), `tollgate top` read off a tmux
#                                 pane under load, Stripe webhooks signed by the stripe library, identity providers
#                                 (PyJWT), the fleet (PostgreSQL and network namespaces), systemd end to end, the
#                                 static release build and the Debian
#                                 package (`make deb`): its binaries run without the toolchain, and it installs and
#                                 serves under systemd (`make test-slow`)
set -uo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
cd "$(dirname "$0")/.."
tier=${1:-all}
case "$tier" in all | fast | slow) ;; *) echo "usage: $0 [all|fast|slow]" >&2; exit 2 ;; esac
# The Swift tests of tier 2 (regular expressions over "Class.test"): processes killed in a loop, real restarts,
# floods. Everything else is tier 1.
slow_swift='CrashLoopTests|KillTests|DurabilityTests|SystemdIntegrationTests|DurableBacklogTests.testAFreshClient'
# The tests that exercise the api socket's I/O (limits, framing, pipelining, backpressure, peer checks), run a second
# time with the api socket on SwiftNIO instead of the default epoll loops (`api_io`), so that both stay correct.
socket_swift='EndToEndTests|ConnectionLimitTests|MalformedInputTests|PipelinedFramingTests|DurableBacklogTests|LicensingEndToEndTests|ReadinessTests'

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
    grep -E "^(ok|not ok) |^# (SKIP|exposure|RSS|probe|fleet)|^[0-9]+ passed, [0-9]+ failed" "$log"
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

# `swift_stage NAME ARGS...`: runs `swift test` with ARGS and counts its test cases one by one: a crash ends the run
# without a summary line, and a test that started but never finished counts as failed.
swift_stage() {
    local name=$1
    shift
    local started_at=$SECONDS
    swift test --skip-build "$@" 2>&1 | tee "$log_dir/$name.log" | grep -E "^(Test Suite|.*error:|.*failed|\s+Executed)"
    local status=${PIPESTATUS[0]}
    local started passed failures crashed
    started=$(grep -cE "^Test Case '.*' started" "$log_dir/$name.log")
    passed=$(grep -cE "^Test Case '.*' passed" "$log_dir/$name.log")
    failures=$(grep -cE "^Test Case '.*' failed" "$log_dir/$name.log")
    crashed=$((started - passed - failures))
    if [ "$crashed" -gt 0 ]; then
        echo "$name: $crashed test(s) started and never finished (crash):"
        grep -E "crashed|Fatal error|runtime failure" "$log_dir/$name.log" | head -n 5
    fi
    echo "$name: $((SECONDS - started_at)) s"
    record "$name" "$passed" $((failures + crashed)) "$status"
}

if [ "$tier" != slow ]; then
    echo "== tier 1: swift unit and component tests"
    swift_stage swift-fast --skip "$slow_swift"
    echo "== tier 1: the socket tests again with the api socket on SwiftNIO (api_io: nio)"
    TOLLGATE_TEST_API_IO=nio swift_stage swift-fast-nio --filter "$socket_swift" --skip "$slow_swift"
fi
if [ "$tier" = fast ]; then
    printf '%s\n' "${summary[@]}"
    echo "$((total - failed)) passed, ${failed} failed"
    [ "$failed" -eq 0 ]
    exit
fi

echo "== tier 2: swift crash loop, kill and slow daemon tests"
swift_stage swift-slow --filter "$slow_swift"

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

echo "== forward auth behind the real proxies (nginx auth_request, Caddy forward_auth, HAProxy Lua)"
tap_stage proxies "$log_dir/proxies.log" timeout 300 bash Tests/proxy/proxies.sh "$bin"

echo "== Envoy ext_authz over gRPC: a client generated from Envoy's own API definitions (xds-protos, grpcio) against a live daemon"
tap_stage grpc "$log_dir/grpc.log" timeout 300 python3 Tests/grpc/envoy_ext_authz.py "$bin"

echo "== metrics and health: promtool on a real scrape, a real Prometheus server scraping tollgated"
tap_stage metrics "$log_dir/metrics.log" timeout 300 bash Tests/metrics/prometheus.sh "$bin"

echo "== tollgate top in tmux against a live daemon under load (the screen read with capture-pane), --json, --license"
tap_stage top "$log_dir/top.log" timeout 300 bash Tests/top/top.sh "$bin"

echo "== Stripe webhooks: events built and signed with Stripe's own Python library, against a live daemon"
tap_stage stripe "$log_dir/stripe.log" timeout 300 python3 Tests/stripe/stripe_webhooks.py "$bin"

echo "== identity providers: JWTs minted by PyJWT (RSA, EC, Ed25519), a JWKS and discovery server, RFC 8693, SCIM (Okta, Entra ID shapes), roles through apply, a hanging IdP"
tap_stage identity "$log_dir/identity.log" timeout 300 python3 Tests/identity/identity_exchange.py "$bin"

echo "== fleet mode: 3 hosts in network namespaces and a throwaway PostgreSQL, kills and partitions (TOLLGATE_FLEET_ROUNDS)"
tap_stage fleet "$log_dir/fleet.log" timeout 900 python3 Tests/fleet/fleet.py "$bin/tollgated"

echo "== systemd end-to-end"
tap_stage systemd "$log_dir/systemd.log" bash Tests/systemd/e2e.sh "$bin"

echo "== the Debian package: static release build (.build-static), make deb, the binaries without the toolchain, the .deb under systemd"
deb_started=$SECONDS
# xz level 1: the same package, 5 MB bigger, compressed in ~10 s instead of ~90 s (make deb uses dpkg's 6).
deb=$(DEB_XZ_LEVEL=1 bash packaging/deb.sh 2>"$log_dir/deb-build.log")
deb_status=$?
grep -E "^deb: " "$log_dir/deb-build.log"
echo "deb build: $((SECONDS - deb_started)) s"
if [ "$deb_status" -eq 0 ] && [ -f "$deb" ]; then
    record deb-build 1 0 0
else
    tail -n 40 "$log_dir/deb-build.log"
    record deb-build 0 1 "$deb_status"
fi
static_bin=$(swift build -c release --static-swift-stdlib --scratch-path .build-static --show-bin-path)
tap_stage static-binaries "$log_dir/static.log" timeout 120 bash Tests/packaging/static-binaries.sh "$static_bin"
tap_stage deb "$log_dir/deb-e2e.log" timeout 300 bash Tests/packaging/deb-e2e.sh "$deb"

echo "== a package outside the repository depends on TollgateClient by version, and builds"
tap_stage consumer "$log_dir/consumer.log" timeout 900 bash Tests/consumer/check.sh

printf '%s\n' "${summary[@]}"
echo "$((total - failed)) passed, ${failed} failed"
[ "$failed" -eq 0 ]
