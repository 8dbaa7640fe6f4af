#!/usr/bin/env bash
# The release binaries carry the Swift runtime inside (`swift build -c release --static-swift-stdlib`): they load no
# libswift*, Foundation or dispatch library, their RUNPATH points nowhere into the toolchain, and they work in a
# mount namespace where the toolchain's folder (/opt/swift) is hidden under an empty tmpfs: versions, the
# configuration check, and a daemon that starts, answers a license put, an issue and checks, and stops cleanly.
#
#   bash Tests/packaging/static-binaries.sh BIN_DIR     (BIN_DIR holds tollgated and tollgate)
#
# Prints `ok - …` / `not ok - …` per check and `N passed, M failed`. Needs root (unshare -m); without it: SKIP.
set -uo pipefail
bin_dir=${1:?usage: $0 BIN_DIR (holding the static tollgated and tollgate)}
bin_dir=$(cd "$bin_dir" && pwd)
toolchain=${SWIFT_TOOLCHAIN_DIR:-/opt/swift}
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "not ok - $1"; [ -z "${2:-}" ] || sed 's/^/# /' <<<"$2"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

for binary in tollgated tollgate; do
    path=$bin_dir/$binary
    if [ ! -x "$path" ]; then
        fail "$binary exists" "no executable $path"
        continue
    fi
    libraries=$(ldd "$path" 2>&1)
    swift_libraries=$(grep -E 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime|libicu|'"$toolchain" <<<"$libraries")
    if [ -z "$swift_libraries" ] && grep -q 'libc.so' <<<"$libraries"; then
        pass "$binary loads no Swift runtime library (ldd: $(awk '/=>/ { print $1 }' <<<"$libraries" | paste -sd ' '))"
    else
        fail "$binary loads no Swift runtime library" "$libraries"
    fi
    runpath=$(readelf -d "$path" | grep -E 'RPATH|RUNPATH' | sed -E 's/.*(R[UN]*PATH)\).*\[(.*)\]/\1 \2/')
    if grep -q "$toolchain" <<<"$runpath"; then
        fail "$binary has no RUNPATH into $toolchain" "$runpath"
    else
        pass "$binary has no RUNPATH into $toolchain (${runpath:-none})"
    fi
done

if [ "$(id -u)" -ne 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
    echo "# SKIP running without the toolchain: needs root for unshare -m"
    finish
fi
if [ ! -d "$toolchain" ]; then
    echo "# note: $toolchain does not exist here; the binaries run without it anyway"
fi

# Inside a private mount namespace: the toolchain hidden, a clean environment, a fresh state folder.
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-static.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/inside.sh" <<'EOF'
set -u
toolchain=$1 bin=$2 work=$3
if [ -d "$toolchain" ]; then mount -t tmpfs -o size=1m tmpfs "$toolchain" || { echo "hidden=no"; exit 1; }; fi
echo "hidden=$(ls -A "$toolchain" 2>/dev/null | wc -l)"
echo "swift-on-path=$(command -v swift || echo none)"
"$bin/tollgated" --version >"$work/version.d" 2>&1; echo "version-d=$?"
"$bin/tollgate" --version >"$work/version" 2>&1; echo "version=$?"
"$bin/tollgated" --print-default-config >"$work/default.json" 2>&1 && "$bin/tollgated" --config "$work/default.json" --check-config >"$work/check" 2>&1
echo "check-config=$?"
"$bin/tollgated" --state-dir "$work/state" >"$work/daemon.log" 2>&1 &
daemon=$!
tg() { "$bin/tollgate" --socket "$work/state/tollgate.sock" --admin-socket "$work/state/tollgate-admin.sock" "$@"; }
# Bounded wait for the daemon to answer (50 × 100 ms).
for _ in $(seq 1 50); do tg ping >/dev/null 2>&1 && break; sleep 0.1; done
tg ping >/dev/null 2>&1; echo "ping=$?"
tg license set lic_static --plan pro >/dev/null 2>&1; echo "license=$?"
tg issue --license lic_static --subject static --scope read >"$work/secret" 2>"$work/issue.err"; echo "issue=$?"
tg check - --scope read <"$work/secret" >"$work/allow" 2>&1; echo "check-allow=$?"
tg check - --scope write <"$work/secret" >"$work/deny" 2>&1; echo "check-deny=$?"
kill -TERM "$daemon"
wait "$daemon"; echo "daemon-exit=$?"
EOF
results=$(timeout -k 5 60 unshare -m --propagation private env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    bash "$work/inside.sh" "$toolchain" "$bin_dir" "$work" 2>&1)
value() { sed -n "s/^$1=//p" <<<"$results" | head -n 1; }

if [ ! -d "$toolchain" ] || [ "$(value hidden)" = 0 ]; then
    pass "in a mount namespace $toolchain is an empty tmpfs (swift on PATH: $(value swift-on-path))"
else
    fail "in a mount namespace $toolchain is an empty tmpfs" "$results"
fi
if [ "$(value version-d)" = 0 ] && [ "$(value version)" = 0 ] && grep -q '^tollgated [0-9]' "$work/version.d" &&
    grep -q '^tollgate [0-9]' "$work/version"; then
    pass "without the toolchain: --version of both ($(cat "$work/version.d"))"
else
    fail "without the toolchain: --version of both" "$results"$'\n'"$(cat "$work/version.d" "$work/version" 2>/dev/null)"
fi
if [ "$(value check-config)" = 0 ]; then
    pass "without the toolchain: tollgated --check-config of its default configuration"
else
    fail "without the toolchain: tollgated --check-config of its default configuration" "$(cat "$work/check" 2>/dev/null)"
fi
if [ "$(value ping)" = 0 ] && [ "$(value license)" = 0 ] && [ "$(value issue)" = 0 ] &&
    [ "$(value check-allow)" = 0 ] && grep -q '^allow' "$work/allow" &&
    [ "$(value check-deny)" = 3 ] && grep -q '^deny insufficient_scope' "$work/deny"; then
    pass "without the toolchain: the daemon serves (ping, license set, issue, check allowed, check denied)"
else
    fail "without the toolchain: the daemon serves" "$results"$'\n'"$(cat "$work/issue.err" "$work/allow" "$work/deny" 2>/dev/null)"$'\n'"$(tail -n 20 "$work/daemon.log" 2>/dev/null)"
fi
if [ "$(value daemon-exit)" = 0 ]; then
    pass "without the toolchain: SIGTERM stops the daemon cleanly (exit 0)"
else
    fail "without the toolchain: SIGTERM stops the daemon cleanly" "exit $(value daemon-exit)"$'\n'"$(tail -n 20 "$work/daemon.log" 2>/dev/null)"
fi
finish
