#!/usr/bin/env bash
# The metrics and health endpoints against real tools: a live tollgated with its HTTP listener on a loopback TCP
# port (and its Unix socket), `promtool check metrics` on a real scrape, and a real Prometheus server (Debian's
# `prometheus`) scraping it every second, whose query API must then return the series with the values the CHECKs
# and METERs driven here produced. Every wait is a bounded poll; both processes are stopped on exit.
#
#   bash Tests/metrics/prometheus.sh BIN_DIR      (BIN_DIR holds tollgated and tollgate)
#
# Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed.
set -uo pipefail
bin=${1:?usage: prometheus.sh BIN_DIR}
. "$(dirname "$0")/../lib/suite.sh"
require prometheus promtool curl python3
suite_start tollgate-metrics
read -r tcp_port prom_port < <(free_ports 2)
base="http://127.0.0.1:$tcp_port"

cat >"$dir/tollgated.json" <<JSON
{
  "state_dir": "$dir/state",
  "journal": { "fsync": true },
  "usage_flush_interval_ms": 20,
  "plans": [ { "id": "m", "entitlements": ["read"] } ],
  "http": { "socket": "$dir/http.sock", "tcp": "127.0.0.1:$tcp_port" }
}
JSON
"$bin/tollgated" --config "$dir/tollgated.json" >"$dir/tollgated.log" 2>&1 &
pids+=($!)
if wait_for 30 curl -sf "$base/healthz"; then
    pass "/healthz answers 200 on the loopback port"
else
    fail "/healthz answers 200 on the loopback port" "$(tail -n 20 "$dir/tollgated.log")"
    finish
fi

ready=$(curl -s -w ' %{http_code}' "$base/readyz")
if [[ "$ready" == "ready: "*" 200" ]]; then pass "/readyz answers 200 with what it checked"; else fail "/readyz answers 200" "$ready"; fi

# --- Traffic: 5 allowed CHECKs, 3 denied (malformed token), 4 METER events of which 1 duplicate, 1 forward auth. ---
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
tg() { "$bin/tollgate" "$@"; }
tg license set lic-m --plan m >/dev/null || fail "provisioning a license"
secret=$(tg issue --license lic-m --subject svc-m --scope read 2>/dev/null) || fail "issuing a token"
export METRICS_SECRET=$secret
for _ in 1 2 3 4 5; do tg check --secret-env METRICS_SECRET >/dev/null 2>&1; done
for _ in 1 2 3; do tg check not-a-token >/dev/null 2>&1; done
for key in a b c a; do tg meter --secret-env METRICS_SECRET events 1 --idempotency-key "$key" >/dev/null 2>&1; done
# One forward-auth request without a token (no route is configured: denied) and two reserved paths, which are not
# forward-auth answers: tollgate_http_answers_total must count 1.
http_status=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /x' "$base/v1/forward-auth")
curl -s -o /dev/null "$base/healthz"
curl -s -o /dev/null "$base/readyz"

# --- promtool on a real scrape, over TCP and over the Unix socket. ---
curl -s "$base/metrics" >"$dir/scrape.txt"
if out=$(promtool check metrics <"$dir/scrape.txt" 2>&1); then
    pass "promtool check metrics accepts a real scrape ($(grep -c '^# TYPE' "$dir/scrape.txt") families)"
else
    fail "promtool check metrics accepts a real scrape" "$out"
fi
# Read whole before grep: with pipefail, grep -q leaving early would fail curl with SIGPIPE.
unix_scrape=$(curl -s --unix-socket "$dir/http.sock" http://tollgate/metrics)
if grep -q '^tollgate_build_info{' <<<"$unix_scrape"; then
    pass "/metrics is served on the Unix socket too"
else
    fail "/metrics is served on the Unix socket too"
fi
if grep -qE '\{[^}]*(token|license|subject)=' "$dir/scrape.txt"; then
    fail "no token, license or subject label" "$(grep -E '\{[^}]*(token|license|subject)=' "$dir/scrape.txt" | head -n 3)"
else
    pass "no token, license or subject label"
fi

# --- A real Prometheus scraping every second. ---
cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tollgate
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$tcp_port"]
YAML
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" --web.listen-address="127.0.0.1:$prom_port" \
    >"$dir/prometheus.log" 2>&1 &
pids+=($!)
if ! wait_for 60 curl -sf "http://127.0.0.1:$prom_port/-/ready"; then
    fail "prometheus starts" "$(tail -n 20 "$dir/prometheus.log")"
    finish
fi

# `query PROMQL`: the value of the first series of an instant query, or nothing.
query() {
    curl -s -G "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
try:
    result = json.load(sys.stdin)["data"]["result"]
    print(result[0]["value"][1] if result else "")
except Exception:
    print("")'
}
# `expect NAME PROMQL VALUE`: polls the query API (up to 30 s) until PROMQL has VALUE.
expect() {
    local name=$1 promql=$2 want=$3 got= deadline=$((SECONDS + 30))
    while :; do
        got=$(query "$promql")
        [ "$got" = "$want" ] && { pass "$name ($promql = $want)"; return; }
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.2
    done
    fail "$name: $promql = $want" "got '${got}'"
}
expect "prometheus scrapes tollgated" 'up{job="tollgate"}' 1
expect "allowed checks" 'tollgate_checks_total{decision="allow",reason="none"}' 5
expect "denied checks by reason" 'tollgate_checks_total{decision="deny",reason="malformed_token"}' 3
# Every reason of PROTOCOL.md's table but `none` (1 to 19, `fleet_stale` the last) has its series from the start.
expect "every deny reason has a series" 'count(tollgate_checks_total{decision="deny"})' 19
expect "meter events" 'tollgate_meter_events_total' 4
expect "meter duplicates" 'tollgate_meter_duplicates_total' 1
expect "build info" 'count(tollgate_build_info{version!="",commit!=""})' 1
expect "tokens" 'tollgate_tokens' 1
expect "journal batches observed" 'tollgate_journal_batch_records_count > bool 0' 1
expect "journal fsyncs timed" 'tollgate_journal_fsync_duration_seconds_count > bool 0' 1
expect "journal healthy" 'tollgate_journal_failed' 0
expect "api connections series" 'count(tollgate_connections{socket="api"})' 1
expect "forward-auth answers by status" "tollgate_http_answers_total{status=\"$http_status\"}" 1
expect "forward-auth answers: the reserved paths are not counted" 'sum(tollgate_http_answers_total)' 1

# --- The Grafana dashboard: every query parses in this Prometheus and names only metrics a scrape exposes. ---
dashboard="$(cd "$(dirname "$0")/../.." && pwd)/examples/grafana/tollgate-dashboard.json"
if out=$(python3 - "$dashboard" "$dir/scrape.txt" "http://127.0.0.1:$prom_port" <<'PY'
import json, re, sys, urllib.parse, urllib.request
dashboard, scrape, prom = sys.argv[1:4]
exposed = {line.split()[2] for line in open(scrape) if line.startswith("# TYPE ")}
suffixes = ("_bucket", "_sum", "_count")
problems, count = [], 0
for panel in json.load(open(dashboard))["panels"]:
    for target in panel.get("targets", []):
        count += 1
        expr = target["expr"].replace("$__rate_interval", "5s").replace("$job", ".*").replace("$instance", ".*")
        for name in set(re.findall(r"\btollgate_[a-z_]+", expr)):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s) and name[: -len(s)] in exposed), name)
            if base not in exposed:
                problems.append(f"{panel['title']}: {name} is not exposed")
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = json.load(urllib.request.urlopen(url, timeout=10))
        except Exception as error:
            answer = {"status": "error", "error": str(getattr(error, "read", lambda: error)())}
        if answer.get("status") != "success":
            problems.append(f"{panel['title']}: {expr}: {answer.get('error')}")
print("\n".join(problems) if problems else f"{count} queries")
sys.exit(1 if problems else 0)
PY
); then
    pass "the Grafana dashboard's queries parse and use exposed metrics ($out)"
else
    fail "the Grafana dashboard's queries parse and use exposed metrics" "$out"
fi
finish
