#!/usr/bin/env bash
# `tollgate top` read off a real terminal: a live tollgated under load from Benchmarks/loadgen (one busy license whose
# plan rate-limits it) and the CLI (a quiet license), `tollgate top` running in tmux, its screen captured with
# `tmux capture-pane`, which must show the busy license with a nonzero rate and the deny reason; then `--json` and
# `--license` through the same stream, parsed as JSON lines. Every wait is a bounded poll; every process is stopped on
# exit (the tmux server runs on a private socket).
#
#   bash Tests/top/top.sh BIN_DIR      (BIN_DIR holds tollgated and tollgate)
#
# Prints ok / not ok lines and ends with "N passed, M failed"; exits 1 when any check failed.
set -uo pipefail
bin=${1:?usage: top.sh BIN_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/Tests/lib/suite.sh"
require tmux gcc python3
suite_start tollgate-top
tmux_socket="$dir/tmux.sock"
cleanup_tmux() { tmux -S "$tmux_socket" kill-server 2>/dev/null || true; suite_cleanup; }
trap cleanup_tmux EXIT

gcc -O2 -Wall -pthread -o "$dir/loadgen" "$root/Benchmarks/loadgen.c" || { fail "building Benchmarks/loadgen.c"; finish; }

cat >"$dir/tollgated.json" <<JSON
{
  "state_dir": "$dir/state",
  "journal": { "fsync": false },
  "plans": [
    { "id": "busy", "entitlements": ["read", "write"], "rate_limits": [{ "pool": "license", "rate_per_second": 200, "burst": 200 }] },
    { "id": "quiet", "entitlements": ["read"] }
  ]
}
JSON
"$bin/tollgated" --config "$dir/tollgated.json" >"$dir/tollgated.log" 2>&1 &
pids+=($!)
export TOLLGATE_SOCKET="$dir/state/tollgate.sock" TOLLGATE_ADMIN_SOCKET="$dir/state/tollgate-admin.sock"
tg() { "$bin/tollgate" "$@"; }
if wait_for 30 tg ping; then pass "tollgated answers"; else fail "tollgated answers" "$(tail -n 20 "$dir/tollgated.log")"; finish; fi

# The busy license: lic_0 with 4 tokens (loadgen's preload); the quiet one, lic_quiet, with one token.
"$dir/loadgen" preload --socket "$TOLLGATE_ADMIN_SOCKET" --licenses 1 --count 4 --plan busy --out "$dir/tokens" >/dev/null \
    || { fail "preloading lic_0"; finish; }
tg license set lic_quiet --plan quiet >/dev/null || fail "provisioning lic_quiet"
export QUIET_SECRET
QUIET_SECRET=$(tg issue --license lic_quiet --subject svc-quiet --scope read 2>/dev/null) || fail "issuing the quiet token"

# --- top in tmux, under load. ---
tmux -S "$tmux_socket" new-session -d -s top -x 120 -y 40 \
    "$bin/tollgate top --window 3 2>'$dir/top.err'; sleep 600" || { fail "starting tollgate top in tmux"; finish; }
"$dir/loadgen" tollgate --socket "$TOLLGATE_SOCKET" --op check --tokens-file "$dir/tokens" -c 2 -d 4 --duration 60 --warmup 0 \
    >"$dir/loadgen.log" 2>&1 &
pids+=($!)
(for _ in $(seq 1 200); do tg check --secret-env QUIET_SECRET >/dev/null 2>&1; done) &
pids+=($!)

# A screen is read whole: lic_0 on a line of its own with a rate above zero, the plan's rate limit as a deny reason,
# the header's rates and latency, the journal, the watcher's losses and the busiest tokens. A capture taken while top
# redraws can be cut short, so the pane is read again until one shows everything (bounded), then each part is
# reported on that screen.
busy_license() { awk '$1 == "lic_0" && $2 + 0 > 0 { found = 1 } END { exit !found }' "$dir/screen.txt"; }
deny_reason() { awk '$1 == "rate_limited" && $2 + 0 > 0 { found = 1 } END { exit !found }' "$dir/screen.txt"; }
header_line() {
    local header
    header=$(grep -E '^requests [0-9.]+/s' "$dir/screen.txt" | head -n 1)
    awk '{ split($2, r, "/"); exit !(r[1] + 0 > 0) }' <<<"$header" && grep -qE 'latency p50 [0-9.]+ (ns|us|ms)  p99 [0-9.]+ (ns|us|ms)' <<<"$header"
}
journal_line() { grep -qE '^journal ok   seq [0-9]+' "$dir/screen.txt"; }
losses_line() { grep -qE '^watcher lost [0-9]+ decisions' "$dir/screen.txt"; }
token_rows() { grep -qE '^tok_[0-9A-Za-z]{22} +lic_0 +[0-9.]+' "$dir/screen.txt"; }
screen_complete() {
    tmux -S "$tmux_socket" capture-pane -p -t top >"$dir/screen.txt" || return 1
    busy_license && deny_reason && header_line && journal_line && losses_line && token_rows
}
wait_for 60 screen_complete
[ -z "${TOP_SCREEN_COPY:-}" ] || cp "$dir/screen.txt" "$TOP_SCREEN_COPY"
screen=$(cat "$dir/screen.txt" "$dir/top.err" 2>/dev/null)
if busy_license && deny_reason; then
    pass "the screen shows the busy license with a nonzero rate and rate_limited denials"
else
    fail "the screen shows the busy license with a nonzero rate and rate_limited denials" "$screen"
fi
if header_line; then
    pass "the header shows requests per second and latency p50/p99 ($(grep -E '^requests' "$dir/screen.txt"))"
else
    fail "the header shows requests per second and latency p50/p99" "$screen"
fi
if journal_line; then pass "the journal's state is shown"; else fail "the journal's state is shown" "$screen"; fi
if losses_line; then pass "the watcher's losses are shown"; else fail "the watcher's losses are shown" "$screen"; fi
if token_rows; then pass "the busiest tokens are listed with their license"; else fail "the busiest tokens are listed with their license" "$screen"; fi

# --- --json: the stream as JSON lines; --license: only that license. ---
# 1000 decisions: the plan lets lic_0 through about once in 5 ms (GCRA), so a thousand decisions at loadgen's rate
# hold allows as well as denials; fifty could all fall between two allows.
timeout 30 "$bin/tollgate" top --json --count 1000 >"$dir/all.jsonl" 2>"$dir/json.err"
if python3 - "$dir/all.jsonl" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
events = [e for e in events if "sequence" in e]
assert len(events) >= 1000, len(events)
keys = {"sequence", "at", "decision", "reason", "token_id", "license_id", "subject", "route", "latency_ns", "source"}
assert all(set(e) == keys for e in events), events[0]
assert any(e["decision"] == "allow" for e in events) and any(e["reason"] == "rate_limited" for e in events)
assert all(e["route"] == "read" for e in events if e["license_id"] == "lic_0")
PY
then
    pass "--json prints every decision, allows too, as one JSON object a line"
else
    fail "--json prints every decision as JSON lines" "$(head -n 3 "$dir/all.jsonl"; cat "$dir/json.err")"
fi
(for _ in $(seq 1 300); do tg check --secret-env QUIET_SECRET >/dev/null 2>&1; done) &
pids+=($!)
timeout 60 "$bin/tollgate" top --json --license lic_quiet --count 5 >"$dir/quiet.jsonl" 2>"$dir/quiet.err"
if python3 - "$dir/quiet.jsonl" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
events = [e for e in events if "sequence" in e]
assert len(events) == 5, len(events)
assert all(e["license_id"] == "lic_quiet" and e["subject"] == "svc-quiet" and e["decision"] == "allow" for e in events), events
PY
then
    pass "--license shows only that license's decisions"
else
    fail "--license shows only that license's decisions" "$(cat "$dir/quiet.jsonl" "$dir/quiet.err")"
fi
if grep -rq "$QUIET_SECRET" "$dir"/*.jsonl "$dir/screen.txt"; then fail "no secret in the stream"; else pass "no secret in the stream"; fi
one_watcher() { [ "$(tg stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["decision_watchers"])')" = 1 ]; }
if wait_for 10 one_watcher; then
    pass "only top's own subscription is left (the --json ones ended with their connections)"
else
    fail "only top's own subscription is left" "$(tg stats | grep decision_watchers)"
fi
finish
