# Shared by the shell suites that run real programs (Tests/proxy, Tests/metrics, scripts/bench-proxy.sh): ok / not ok
# lines with a closing "N passed, M failed", background processes stopped on exit, bounded polling, free loopback
# ports. Source it after `set -uo pipefail`; then `suite_start PREFIX` makes the private directory "$dir".

passed=0
failed=0
pids=()

pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() {
    echo "not ok - $1"
    [ -z "${2:-}" ] || sed 's/^/#   /' <<<"$2"
    failed=$((failed + 1))
}
# Ends the suite: the closing line, and exit 1 when a check failed.
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

# `require TOOL...`: a missing program is one failed check (setup.sh installs them), and the suite ends.
require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "not ok - $tool is installed (scripts/setup.sh installs it)"; echo "0 passed, 1 failed"; exit 1; }
    done
}

# `suite_start PREFIX`: a private temporary directory in $dir (traversable, for proxies running as another user),
# removed on exit together with every process whose pid was added to `pids`.
suite_start() {
    dir=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    chmod 0755 "$dir"
    trap suite_cleanup EXIT
}
suite_cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}

# `wait_for SECONDS COMMAND...`: polls COMMAND every 50 ms until it succeeds; returns 1 after SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# `free_ports N`: N loopback TCP ports free now, on one line.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# `nginx_conf NGINX_DIR TOLLGATE_HTTP_SOCKET NGINX_PORT ECHO_PORT [WORKERS]`: Tests/proxy/nginx.conf.in made concrete
# in NGINX_DIR (nginx.conf; WORKERS worker processes, 1 by default), with examples/nginx/tollgate-upstream.conf
# beside it, its socket path the test's: the proxy tests and scripts/bench-proxy.sh run the same configuration, the
# shipped files unchanged but for that path.
nginx_conf() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    mkdir -p "$1"
    sed -e "s|@DIR@|$1|g" -e "s|@EXAMPLES@|$root/examples|g" -e "s|@NGINX_PORT@|$3|g" -e "s|@ECHO_PORT@|$4|g" -e "s|@NGINX_WORKERS@|${5:-1}|g" \
        "$root/Tests/proxy/nginx.conf.in" >"$1/nginx.conf"
    sed -e "s|unix:/run/tollgate/tollgate-http.sock;|unix:$2;|" "$root/examples/nginx/tollgate-upstream.conf" >"$1/tollgate-upstream.conf"
    grep -qF "unix:$2;" "$1/tollgate-upstream.conf"
}
