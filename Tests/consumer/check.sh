#!/usr/bin/env bash
# A package outside this repository can depend on TollgateClient by version (issue 12): SwiftPM refuses products
# whose targets carry unsafe build flags for version-based dependencies, so this resolves a tiny consumer against a
# tagged clone of the repository and builds it. Prints ok/not ok lines and "N passed, M failed".
set -uo pipefail
# A consumer knows nothing of the variable the Makefile exports for our own release builds (Package.swift).
unset TOLLGATE_UNCHECKED_EXCLUSIVITY
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
result() { if [ "$1" -eq 0 ]; then echo "ok $2"; passed=$((passed + 1)); else echo "not ok $2"; failed=$((failed + 1)); fi; }

git clone -q "$repo" "$work/tollgate"
# The working tree as it is (uncommitted changes included), committed and tagged in the clone.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) | (cd "$repo" && xargs -0 tar cf - 2>/dev/null) | (cd "$work/tollgate" && tar xf -)
(cd "$work/tollgate" && git add -A && git -c user.name=ci -c user.email=ci@localhost commit -qm snapshot --allow-empty && git tag 1.0.0)

mkdir -p "$work/consumer/Sources/Consumer"
cat >"$work/consumer/Package.swift" <<MANIFEST
// swift-tools-version:5.9
import PackageDescription
let package = Package(
    name: "consumer",
    dependencies: [.package(url: "file://$work/tollgate", from: "1.0.0")],
    targets: [.executableTarget(name: "Consumer", dependencies: [.product(name: "TollgateClient", package: "tollgate")])]
)
MANIFEST
cat >"$work/consumer/Sources/Consumer/main.swift" <<'SWIFT'
import TollgateClient
import TollgateModel
// Compiles against the client's public API: a connection type and a request value.
let request = CheckRequest(token: "tg_test_example", scopes: ["read"])
print(request.scopes, TollgateConnection.self)
SWIFT
cd "$work/consumer"
out=$(swift package show-dependencies 2>&1)
status=$?
[ $status -eq 0 ] || echo "$out" | tail -n 5
result $status "a consumer package resolves tollgate 1.0.0 by version and may use the TollgateClient product"
if [ $status -eq 0 ] && [ "${CONSUMER_BUILD:-1}" = 1 ]; then
    out=$(swift build --product Consumer 2>&1)
    status=$?
    [ $status -eq 0 ] || echo "$out" | tail -n 10
    result $status "the consumer builds against TollgateClient"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
