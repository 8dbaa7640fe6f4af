#!/usr/bin/env bash
# Instructions per forward-auth request (issue 14 item 8), exact and machine-independent: tollgated under
# valgrind's callgrind, one keep-alive connection to its HTTP socket sending nginx's shape (`X-Original-URI`, a
# bearer token) for a route with a scope and a meter, as scripts/bench-proxy.sh does through nginx.
#
#   bash scripts/callgrind-forward-auth.sh [--no-swift-build]     TOLLGATED=/path TOLLGATE=/path to use other binaries
#
# Counters are zeroed before each of two batches (K1 = 2000 and K2 = 4000 requests); per request = (Ir[K2] - Ir[K1])
# / (K2 - K1), which cancels what does not grow with the count. Prints one `CALLGRIND {...}` line and the top
# functions by inclusive cost; the dumps stay in a temporary directory named on the last line.
set -euo pipefail
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SWIFT=${SWIFT:-swift}
[ -x /opt/swift/usr/bin/swift ] && ! command -v "$SWIFT" >/dev/null 2>&1 && SWIFT=/opt/swift/usr/bin/swift
K1=${CALLGRIND_K1:-2000} K2=${CALLGRIND_K2:-4000}
SWIFT_BUILD=1
[ "${1:-}" = --no-swift-build ] && SWIFT_BUILD=0
for tool in valgrind callgrind_control callgrind_annotate python3 gcc strip; do
    command -v "$tool" >/dev/null || { echo "callgrind-forward-auth: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
if [ -z "${TOLLGATED:-}" ]; then
    ((SWIFT_BUILD)) && (cd "$ROOT" && "$SWIFT" build -c release --product tollgated >&2 && "$SWIFT" build -c release --product tollgate >&2)
    bin=$(cd "$ROOT" && "$SWIFT" build -c release --show-bin-path)
    TOLLGATED=$bin/tollgated TOLLGATE=$bin/tollgate
fi
dir=$(mktemp -d /tmp/tollgate-cg-http.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
# The same two work-arounds for Debian's valgrind 3.19 as scripts/scale.sh (see there): no debug sections, and a
# sigsuspend that copies its mask to the stack.
strip --strip-debug -o "$dir/tollgated" "$TOLLGATED"
cat >"$dir/shim.c" <<'C'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
C
gcc -O2 -shared -fPIC -o "$dir/shim.so" "$dir/shim.c"
cat >"$dir/tollgated.json" <<JSON
{ "state_dir": "$dir/state", "journal": { "fsync": true },
  "plans": [ { "id": "bench", "entitlements": ["read"],
               "quotas": [ { "meter": "requests", "window": "month", "limit": 1000000000000 } ] } ],
  "http": { "socket": "$dir/http.sock", "socket_mode": "0600", "default": "deny",
            "routes": [ { "method": "GET", "path": "/bench/*", "scopes": ["read"], "meter": "requests", "cost": 1 } ] } }
JSON
# The client: nginx's shape on one keep-alive connection, each answer read whole (and required to be a 200) before
# the next request, as nginx's auth_request does per connection. The token is read from a private file.
cat >"$dir/client.py" <<'PY'
import socket, sys
path, count, token_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = open(token_file).read().strip()
request = ("GET /v1/forward-auth HTTP/1.1\r\nHost: tollgate\r\nX-Original-Method: GET\r\nX-Original-URI: /bench/x\r\n"
           "Authorization: Bearer " + token + "\r\n\r\n").encode()
connection = socket.socket(socket.AF_UNIX)
connection.connect(path)
pending = b""
for _ in range(count):
    connection.sendall(request)
    while True:
        end = pending.find(b"\r\n\r\n")
        if end >= 0:
            head, rest = pending[:end], pending[end + 4:]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) >= length:
                if not head.startswith(b"HTTP/1.1 200 "):
                    sys.exit("not a 200: " + head.split(b"\r\n")[0].decode())
                pending = rest[length:]
                break
        data = connection.recv(65536)
        if not data:
            sys.exit("the connection closed")
        pending += data
PY
LD_PRELOAD="$dir/shim.so" valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" --dump-instr=no \
    "$dir/tollgated" --config "$dir/tollgated.json" --log-level warning >"$dir/tollgated.log" 2>&1 &
pid=$!
for _ in $(seq 900); do [ -S "$dir/http.sock" ] && break; sleep 0.2; done
[ -S "$dir/http.sock" ] || { echo "callgrind-forward-auth: tollgated did not start: $(tail -n 5 "$dir/tollgated.log")" >&2; exit 1; }
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
"$TOLLGATE" license set lic-bench --plan bench >/dev/null
(umask 077 && "$TOLLGATE" issue --license lic-bench --subject bench --scope read >"$dir/token" 2>/dev/null)
python3 "$dir/client.py" "$dir/http.sock" 1000 "$dir/token"  # warm-up
for k in "$K1" "$K2"; do
    timeout 60 callgrind_control -z "$pid" >/dev/null
    timeout 900 python3 "$dir/client.py" "$dir/http.sock" "$k" "$dir/token"
    timeout 60 callgrind_control -d "batch-$k" "$pid" >/dev/null
done
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
file() { grep -lx "desc: Trigger: dump batch-$1" "$dir"/callgrind.out.* | head -1; }
total() { awk '/^(summary|totals):/ { print $2; exit }' "$(file "$1")"; }
a=$(total "$K1") b=$(total "$K2")
per=$(((b - a) / (K2 - K1)))
echo "forward auth (nginx's shape, a route with a scope and a meter): $per instructions per request"
printf 'CALLGRIND {"op":"forward-auth","k1":%s,"k2":%s,"ir_k1":%s,"ir_k2":%s,"ir_per_request":%s}\n' "$K1" "$K2" "$a" "$b" "$per"
callgrind_annotate --inclusive=yes "$(file "$K2")" 2>/dev/null | swift-demangle --simplified >"$dir/inclusive.txt" || true
echo "top by inclusive Ir per request (below the event loop's own frames; all in $dir/inclusive.txt):"
grep -E '^ *[0-9,]+ \(' "$dir/inclusive.txt" | grep -Ev 'PROGRAM TOTALS|clone|start_thread|ThreadOps|EventLoop|Selector|NIOThread|readable0|readFromSocket' |
    sed -n 1,25p | awk -v k="$K2" '{ n = $1; gsub(",", "", n); printf "[%6.0f] %s\n", n / k, substr($0, 1, 160) }' || true
echo "dumps: $dir"
