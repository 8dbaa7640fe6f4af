#!/usr/bin/env bash
# End-to-end test of the `tollgate` CLI: starts a tollgated on its embedded default configuration in a temporary
# directory, drives every command against it, and checks the outputs and exit statuses.
#
# Usage: scripts/cli-e2e.sh BIN_DIR      (the directory holding tollgate and tollgated, e.g. .build/debug)
# Ends with "cli-e2e: N checks, M passed"; exits 1 when any check failed.
set -uo pipefail

bin_dir=${1:?usage: scripts/cli-e2e.sh BIN_DIR (the directory holding tollgate and tollgated)}
bin_dir=$(cd "$bin_dir" && pwd) || exit 1
for binary in tollgate tollgated; do
    [ -x "$bin_dir/$binary" ] || { echo "cli-e2e: no executable $bin_dir/$binary" >&2; exit 1; }
done

work=$(mktemp -d)
daemon_pid=""
follow_pid=""
cleanup() {
    [ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work" || exit 1

checks=0
passed=0
out=""
err=""
rc=0

# `tg ARGS...`: runs the CLI; its stdout, stderr and status are left in $out, $err and $rc.
tg() {
    "$bin_dir/tollgate" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}

# `check NAME TEST...`: one assertion; on failure shows the last command's output.
check() {
    local name=$1
    shift
    checks=$((checks + 1))
    if "$@"; then
        passed=$((passed + 1))
        echo "ok $checks - $name"
    else
        echo "not ok $checks - $name"
        echo "  rc=$rc"
        sed 's/^/  stdout: /' <<<"$out"
        sed 's/^/  stderr: /' <<<"$err"
    fi
}

# Assertions on the last command.
status_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -qE -- "$1" <<<"$out"; }
out_lacks() { ! grep -qE -- "$1" <<<"$out"; }
err_has() { grep -qE -- "$1" <<<"$err"; }
out_lines() { [ "$(grep -c . <<<"$out")" -eq "$1" ]; }
json_field() { sed -nE "s/.*\"$1\":\"?([^\",}]*)\"?.*/\1/p" <<<"$out" | head -n 1; }

# --- The daemon ----------------------------------------------------------------------------------------------------
"$bin_dir/tollgated" --log-level warning >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
    "$bin_dir/tollgate" ping >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
tg ping
check "the daemon answers ping" status_is 0
if [ "$rc" -ne 0 ]; then
    cat "$work/daemon.log"
    echo "cli-e2e: $checks checks, $passed passed"
echo "$passed passed, $((checks - passed)) failed"
    exit 1
fi

# --- Licenses, tokens, check --------------------------------------------------------------------------------------
tg license set lic1 --plan pro --customer "Example Ltd"
check "license set lic1 --plan pro" out_has "^plan: pro$"
tg issue --license lic1 --subject alice
secret_a=$out
token_a=$(sed -nE 's/^issued (tok_[A-Za-z0-9]+) .*/\1/p' <<<"$err")
check "issue prints a live secret once" out_has "^tg_live_[A-Za-z0-9]+$"
check "issue names the token id on stderr" test -n "$token_a"

tg check "$secret_a" --meter requests --cost 5 --explain --feature sso
check "check --explain allows" status_is 0
check "check --explain lists the quota rule with owner and used/limit" out_has "^  quota:requests:month:license lic1 0/1000000$"
check "check --explain lists the token rate rule" out_has "^  rate:token $token_a 0/100$"
check "check shows the quota after the charge" out_has "^allow token=$token_a license=lic1 subject=alice remaining=999995/1000000"
tg check "$secret_a" --details
check "check --details names the plan and the tightest rate limit" out_has "^allow token=$token_a .* plan=pro rate_limit=[0-9]+/[0-9]+ rate_limit_full_in_ms=[0-9]+$"
tg --json check "$secret_a" --details
check "check --json --details carries the details object" out_has '"details":\{"plan_id":"pro","rate_limit":\{"limit":[0-9]+,"remaining":[0-9]+,"reset_ms":[0-9]+\},"token_expires_at":[0-9]+\}'
tg check "$secret_a" --feature billing
check "a feature outside the plan is denied (exit 3)" status_is 3
check "the denial names the reason" out_has "^deny feature_not_entitled"
tg check "$secret_a" --feature nope --explain
check "explain marks the rule that denied" out_has "DENIED$"
tg --json check "$secret_a" --lease
check "check --lease prints lease_id" out_has '"lease_id":[1-9][0-9]*'
tg release 999999
check "release of a lease not held exits 3" status_is 3
check "release says it was not held" out_has "was not held"

# --- Rotation ------------------------------------------------------------------------------------------------------
tg rotate "$token_a" --grace 1h
secret_b=$out
check "rotate prints a new secret" out_has "^tg_live_[A-Za-z0-9]+$"
check "rotate's secret differs from the old one" test "$secret_b" != "$secret_a"
check "rotate says until when the old secret works" err_has "previous secret works until [0-9]{4}-"
tg check "$secret_a"
check "the old secret works during the overlap" status_is 0
tg check "$secret_b"
check "the new secret works" status_is 0
tg rotate-end "$token_a"
check "rotate-end succeeds" status_is 0
check "rotate-end shows when the old secret was last used (RFC 3339)" out_has "^previous_secret_last_used_at: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"
check "rotate-end shows the rotation time (RFC 3339)" out_has "^rotated_at: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"
tg check "$secret_a"
check "the old secret is refused after rotate-end (exit 3)" status_is 3
check "the old secret is refused as revoked" out_has "^deny revoked"
tg check "$secret_b"
check "the new secret still works after rotate-end" status_is 0
tg --json rotate "$token_a" --grace 0
secret_b=$(json_field secret)
check "rotate --grace 0 --json carries the secret" out_has '"secret":"tg_live_'
tg check "$secret_b"
check "the secret of a second rotation works" status_is 0

# --- Derived tokens and revocation ---------------------------------------------------------------------------------
tg derive "$secret_b" --ttl 15m --scope read
secret_c=$out
token_c=$(sed -nE 's/^derived (tok_[A-Za-z0-9]+) from .*/\1/p' <<<"$err")
check "derive prints the child secret" out_has "^tg_live_[A-Za-z0-9]+$"
check "derive names child and parent" err_has "^derived tok_[A-Za-z0-9]+ from $token_a "
tg check "$secret_c" --scope read
check "the child may use its scope" status_is 0
tg check "$secret_c" --scope write
check "the child may not use a scope it lacks (exit 3)" status_is 3
check "the child's denial is insufficient_scope" out_has "^deny insufficient_scope"
tg derive "$secret_c" --ttl 5m
check "a derived token cannot derive further (exit 1)" status_is 1
tg issue --license lic1 --subject gina --scope read
secret_g=$out
tg derive "$secret_g" --ttl 15m --scope write
check "deriving a scope the parent lacks is denied (exit 3)" status_is 3
check "the derive denial is insufficient_scope" out_has "^deny insufficient_scope"
tg revoke --token-id "$token_a" --reason e2e --actor ops
check "revoking the parent revokes the child too" out_has "^revoked 2 tokens$"
tg check "$secret_c"
check "the child is refused after the parent's revocation (exit 3)" status_is 3
check "the child is refused as revoked" out_has "^deny revoked"
tg inspect "$token_a"
check "the revocation records the actor" out_has "^revoked_by: .*ops"
tg derive "$secret_b" --ttl 15m
check "a revoked parent cannot derive (exit 3)" status_is 3
check "derive prints the reason" out_has "^deny revoked"
tg revoke --token-id "$token_a" --license lic1
check "revoke takes exactly one target (exit 64)" status_is 64

# --- Organisations, credits, reservations --------------------------------------------------------------------------
tg org set acme --name "Acme, Inc."
check "org set creates the organisation" out_has '^name: Acme, Inc\.$'
tg --json org get acme
check "org get --json" out_has '"org_id":"acme"'
tg license set lic2 --plan trial --org acme --project 'search, "beta"' --status trialing --trial-ends 2099-01-01T00:00:00Z \
    --billing-anchor-day 15 --customer Acme
check "license set takes org, project, trial end and anchor day" out_has "^billing_anchor_day: 15$"
check "license set stores the trial end (shown in RFC 3339)" out_has "^trial_ends_at: 2099-01-01T00:00:00Z$"
check "a zero time is absent, not 0" out_lacks "^valid_until:"
tg issue --license lic2 --subject carol
secret_d=$out
token_d=$(sed -nE 's/^issued (tok_[A-Za-z0-9]+) .*/\1/p' <<<"$err")
tg check "$secret_d" --meter requests --cost 300
check "a charge on a credits plan shows credits_remaining" out_has "credits_remaining=700$"
tg credits grant --license lic2 500 --reason promo
check "credits grant prints the prepaid balance" out_has "^prepaid balance of license lic2: 500$"
tg --json credits grant --license lic2 1
check "credits grant --json" out_has '"prepaid_balance":501'
tg credits grant --license lic2 --org acme 5
check "credits grant takes exactly one pool (exit 64)" status_is 64
tg check "$secret_d" --meter requests --cost 100
check "prepaid credits are spent after the included ones" out_has "remaining=100/500 .*credits_remaining=1101$"
tg check "$secret_d" --meter requests --cost 150
check "a charge beyond a hard_stop quota is denied (exit 3)" status_is 3
check "the denial is quota_exceeded" out_has "^deny quota_exceeded"
tg check "$secret_d" --meter requests --cost 50 --reserve
reservation=$(sed -nE 's/.* reservation_id=([0-9]+).*/\1/p' <<<"$out")
check "check --reserve prints reservation_id" test -n "$reservation"
tg settle "$reservation" 30
check "settle charges the actual cost" out_has "^allow .*remaining=70/500"
tg settle "$reservation" 30
check "settling twice is an error (exit 1)" status_is 1
check "the error says the reservation is not held" err_has "not held"

tg org set acme --suspended
check "org set --suspended" out_has "^suspended: true$"
check "org set without --name keeps the name" out_has '^name: Acme, Inc\.$'
tg check "$secret_d"
check "a suspended organisation's tokens are denied" out_has "^deny org_suspended"
tg org set acme
tg check "$secret_d"
check "lifting the suspension lets checks through" status_is 0

# Usage beyond a quota on an allow_and_record plan, past 2^53 so that a float would round it.
tg issue --license lic1 --subject erin
secret_e=$out
token_e=$(sed -nE 's/^issued (tok_[A-Za-z0-9]+) .*/\1/p' <<<"$err")
tg check "$secret_e" --meter bytes --cost 9007199254740993
check "allow_and_record allows beyond the quota" status_is 0
check "the overage is reported" out_has "overage=9007099254740993$"

# --- Usage export --------------------------------------------------------------------------------------------------
year=$(date -u +%Y)
from="$((year - 1))-01-01T00:00:00Z"
to="$((year + 2))-01-01T00:00:00Z"
tg usage export --from "$from" --to "$to"
check "usage export writes the CSV header" test "$(head -n 1 <<<"$out")" = "period_start,org,project,license_id,token_id,meter,quantity,overage"
check "CSV rows start with an hourly RFC 3339 UTC period" out_has "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00Z,"
check "CSV quotes a field with a comma and quotes (RFC 4180)" out_has ",acme,\"search, \"\"beta\"\"\",lic2,$token_d,requests,"
check "CSV integers are exact" out_has ",,,lic1,$token_e,bytes,9007199254740993,9007099254740993$"
tg usage export --from "$from" --to "$to" --license lic2 --format jsonl --granularity day
check "jsonl: one object per line" out_has '^\{"period_start":"[0-9-]{10}T00:00:00Z","org":"acme","project":"search, \\"beta\\"","license_id":"lic2"'
total=$(($(grep -oE '"quantity":[0-9]+' <<<"$out" | cut -d: -f2 | paste -sd+ -)))
check "jsonl: lic2's usage sums to what was charged (300+100+30)" test "$total" = 430
check "jsonl: only lic2" out_lacks '"license_id":"lic1"'
tg --json usage export --from "$from" --to "$to" --org acme --granularity month
check "--json exports jsonl" out_has '^\{"period_start":"[0-9-]{8}01T00:00:00Z"'
tg usage export --from "$to" --to "$from"
check "usage export refuses an empty range (exit 64)" status_is 64

# --- Events --------------------------------------------------------------------------------------------------------
tg events
check "events lists the quota_80 crossing" out_has "^[0-9]+ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z quota_80 lic2 quota:requests:day:license@[0-9]+$"
last=$(tail -n 1 <<<"$out" | cut -d' ' -f1)
tg --json events --limit 1
check "events --limit 1 --json prints one object" out_lines 1
check "events --json carries the sequence" out_has '"sequence":1'
tg events --after "$last"
check "events --after the last shows nothing" test -z "$out"

"$bin_dir/tollgate" events --follow --after "$last" >"$work/follow.out" 2>"$work/follow.err" &
follow_pid=$!
sleep 1.5
tg check "$secret_d" --meter requests --cost 70
for _ in $(seq 1 50); do
    grep -q quota_100 "$work/follow.out" && break
    sleep 0.1
done
kill -INT "$follow_pid"
wait "$follow_pid"
follow_rc=$?
follow_pid=""
out=$(cat "$work/follow.out")
err=$(cat "$work/follow.err")
rc=$follow_rc
check "events --follow prints an event that happens while it runs" out_has "quota_100 lic2 quota:requests:day:license"
check "events --follow shows only events after --after" out_lacks " quota_80 "
check "events --follow stops on SIGINT with status 0" status_is 0

# --- Plans ---------------------------------------------------------------------------------------------------------
tg --json plan set metered --entitlement read --feature exports --quota calls:rolling:60:100:token --quota calls:month:1000 \
    --rate 5 --burst 10 --rate-limit token:2:4 --concurrency license:3 --credits org:500:month --overage allow_and_record \
    --max-token-lifetime 90d --max-active-tokens 7 --past-due-grace 7d
check "plan set takes a rolling quota with a pool" out_has '\{"limit":100,"meter":"calls","pool":"token","window":"rolling:60"\}'
check "plan set defaults a quota's pool to license" out_has '\{"limit":1000,"meter":"calls","pool":"license","window":"month"\}'
check "plan set keeps --rate/--burst and adds --rate-limit" out_has '"rate_limits":\[\{"burst":10,"per_second":5,"pool":"license"\},\{"burst":4,"per_second":2,"pool":"token"\}\]'
check "plan set takes concurrency and credits" out_has '"concurrency":\[\{"max":3,"pool":"license"\}\],"credits":\{"included":500,"period":"month","pool":"org"\}'
check "plan set takes lifetimes as durations" out_has '"max_token_lifetime_seconds":7776000.*"past_due_grace_seconds":604800'
tg plan set bad --quota calls:rolling:60
check "a quota without a limit is refused (exit 64)" status_is 64
tg plan set bad --quota calls:week:5
check "an unknown window is refused (exit 64)" status_is 64
# One verdict for the same input (issue 13 §3): the CLI refuses what the daemon and apply refuse, with their sentence.
tg plan set bad --quota "bad meter:day:5"
check "a meter name with a space is refused (exit 64)" status_is 64
check "the refusal names the meter-name rule" err_has "'bad meter' is not a meter name: use 1–64 characters of A-Z a-z 0-9 _ \\. -"
tg plan set bad --quota calls:rolling:7:5
check "a rolling window under a minute is refused (exit 64)" status_is 64
check "the refusal says the minimum" err_has "SECONDS from 60 \\(one minute\\)"
tg license set lic_nosuch --plan pro --org nosuch
check "license set refuses an organisation that does not exist (exit 1)" status_is 1
check "the refusal says how to create it" err_has "no organisation 'nosuch' exists \\(create it first: tollgate org set nosuch"
tg --json license set lic_nosuch --plan pro --org nosuch
check "under --json the code is apply's (unknown_org)" out_has '"error":"unknown_org"'
tg license get lic_nosuch
check "nothing was stored" status_is 1
tg plan set readonly --entitlement read
tg license set lic_ro --plan readonly
tg issue --license lic_ro --subject s --scope read --scope admin
check "issue refuses a scope the plan does not grant (exit 1)" status_is 1
check "the refusal names the scope and what the plan grants" err_has "scope 'admin' is not granted by plan readonly of license 'lic_ro' \\(it grants read\\)"
tg issue --license lic_ro --subject s --scope read
check "a granted scope is issued" status_is 0
tg license set lic3 --plan metered --status expired
check "license set accepts --status expired" out_has "^status: expired$"
tg issue --license lic3 --subject frank
secret_f=$out
tg check "$secret_f"
check "an expired license's token is denied (exit 3)" status_is 3
check "the denial says the license expired" out_has "^deny license_expired"

# --- Revocation by organisation and subject ------------------------------------------------------------------------
tg revoke --subject erin
check "revoke --subject" out_has "^revoked 1 token$"
tg revoke --org acme --actor ops
check "revoke --org revokes the organisation's tokens" out_has "^revoked 1 token$"
tg check "$secret_d"
check "a token of a revoked organisation is refused" out_has "^deny revoked"

# --- apply ---------------------------------------------------------------------------------------------------------
cat >"$work/provisioning.yaml" <<'EOF'
plans:
  - id: e2e_plan
    entitlements: [read, write]
    features: [exports]
    quotas:
      - {meter: calls, window: month, limit: 1000}
      - {meter: calls, window: "rolling:60", limit: 100, pool: token}
    rate_limits: [{pool: license, rate_per_second: 10, burst: 20}]
    credits: {included: 500}
    max_active_tokens: 3
orgs:
  - {id: e2e_org, name: "E2E Org"}
licenses:
  - {id: e2e_lic, customer: "E2E", org: e2e_org, plan: e2e_plan, status: active, billing_anchor_day: 10}
  - {id: e2e_lic_pro, org: acme, plan: pro, status: active, valid_from: 2026-01-01T00:00:00Z}
EOF
tg apply "$work/provisioning.yaml" --dry-run
check "apply --dry-run shows what it would create" out_has "^\+ plan e2e_plan$"
check "apply --dry-run counts" out_has "^4 to create, 0 to update, 0 unchanged$"
check "apply --dry-run says nothing was applied" out_has "^dry run: nothing was applied$"
tg plan get e2e_plan
check "apply --dry-run sent nothing" status_is 1
tg apply "$work/provisioning.yaml"
check "apply creates (a license may name a plan and org only the daemon has)" out_has "^4 created, 0 updated, 0 unchanged$"
tg license get e2e_lic
check "the applied license is on the daemon" out_has "^org: e2e_org$"
tg apply "$work/provisioning.yaml" --verbose
check "apply again changes nothing" out_has "^0 created, 0 updated, 4 unchanged$"
check "apply --verbose lists unchanged objects" out_has "^= plan e2e_plan$"
sed -i 's/"E2E Org"/"E2E Org Renamed"/' "$work/provisioning.yaml"
tg --json apply "$work/provisioning.yaml"
check "apply --json reports one update" out_has '"created":0,"dry_run":false,"unchanged":3,"updated":1'
check "apply --json shows the changed field" out_has '"field":"name"'
tg org get e2e_org
check "the update reached the daemon" out_has "^name: E2E Org Renamed$"
printf 'licenses:\n  - {id: e2e_bad, plan: no_such_plan, status: active}\n' >"$work/bad.yaml"
tg apply "$work/bad.yaml"
check "apply refuses a file naming a plan that exists nowhere (exit 1)" status_is 1
check "apply names the path and code of the error" err_has "licenses\[0\]\.plan: .*\[unknown_plan\]"
printf 'plans:\n  - {id: e2e_bad_plan, overage: sometimes}\nlicenses:\n  - {id: e2e_bad1, plan: no_such_plan, status: active}\n  - {id: e2e_bad2, plan: e2e_plan, status: sleeping}\n' >"$work/bad2.yaml"
tg apply "$work/bad2.yaml"
check "apply reports every error of a file (exit 1)" err_has "^tollgate: 3 errors; nothing was applied:"
check "apply names the plan's error" err_has "plans\[0\]\.overage: .*\[invalid_name\]"
check "apply names the second license's error" err_has "licenses\[1\]\.status: .*\[invalid_name\]"
check "apply names the first license's unknown plan" err_has "licenses\[0\]\.plan: .*\[unknown_plan\]"
tg --json apply "$work/bad2.yaml"
check "apply --json lists the errors" out_has '"errors":\[\{"code":"invalid_name",'
# An http section (forward-auth routes): checked by the daemon configuration's rules, reported, not applied.
printf 'http:\n  default: deny\n  routes:\n    - {method: GET, path: "/v1/items/{id}", scopes: [read], meter: requests}\n' >"$work/routes.yaml"
tg apply "$work/routes.yaml"
check "apply checks an http section's routes and says they are not applied" out_has "^http: 1 route checked \(default deny\); not applied"
printf 'http:\n  routes:\n    - {method: get, path: /x}\n' >"$work/bad-routes.yaml"
tg apply "$work/bad-routes.yaml"
check "apply refuses a bad route with the validation source's field and code (exit 1)" err_has "http\.routes\[0\]\.method: .*\[invalid_value\]"

# --- Version -------------------------------------------------------------------------------------------------------
tg --version
check "tollgate --version prints the version and the commit" out_has '^tollgate [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$'
"$bin_dir/tollgated" --version >"$work/out" 2>"$work/err"
rc=$?
out=$(cat "$work/out")
check "tollgated --version prints the version and the commit" out_has '^tollgated [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$'

# --- Socket paths from the environment ----------------------------------------------------------------------------
if [ ! -S /run/tollgate/tollgate.sock ]; then
    tg ping
    check "without options or environment the CLI finds ./state/tollgate.sock" status_is 0
fi
TOLLGATE_SOCKET=$work/nowhere.sock tg ping
check "TOLLGATE_SOCKET names the api socket (a wrong one fails)" status_is 1
check "the error says no daemon listens there" err_has "no tollgated is listening"
mkdir -p "$work/elsewhere"
(cd "$work/elsewhere" && TOLLGATE_SOCKET=$work/state/tollgate.sock TOLLGATE_ADMIN_SOCKET=$work/state/tollgate-admin.sock \
    "$bin_dir/tollgate" license get lic1 >"$work/out" 2>"$work/err")
rc=$?
out=$(cat "$work/out")
check "TOLLGATE_ADMIN_SOCKET names the admin socket from another directory" out_has "^license_id: lic1$"
TOLLGATE_SOCKET=$work/nowhere.sock tg --socket ./state/tollgate.sock ping
check "--socket wins over TOLLGATE_SOCKET" status_is 0

# --- Secrets never on the command line ----------------------------------------------------------------------------
tg issue --license lic1 --subject hidden
secret_h=$out
token_h=$(sed -nE 's/^issued (tok_[A-Za-z0-9]+) .*/\1/p' <<<"$err")
tg_in() { # tg with standard input from $1
    local input=$1
    shift
    "$bin_dir/tollgate" "$@" <<<"$input" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}
tg_in "$secret_h" check - --meter requests --cost 1
check "check - reads the secret from standard input" out_has "^allow token=$token_h "
printf '%s\n' "$secret_h" >"$work/secret"
tg check --secret-file "$work/secret" --meter requests --cost 1
check "check --secret-file reads the secret from a file" out_has "^allow token=$token_h "
HIDDEN_SECRET=$secret_h tg check --secret-env HIDDEN_SECRET
check "check --secret-env reads the secret from a variable" out_has "^allow token=$token_h "
tg_in "$secret_h" meter - bytes 7 --idempotency-key hidden-1
check "meter - reads the secret from standard input" out_has "^recorded "
HIDDEN_SECRET=$secret_h tg meter --secret-env HIDDEN_SECRET bytes 7 --idempotency-key hidden-1
check "meter --secret-env takes METER QUANTITY only" out_has "^duplicate "
tg_in "$secret_h" derive - --ttl 5m
check "derive - reads the parent's secret from standard input" out_has "^tg_live_[A-Za-z0-9]+$"
tg_in "" check -
check "check - with nothing on standard input is an error (exit 1)" status_is 1
check "the error says where the secret was missing" err_has "no token secret in standard input"
tg check "$secret_h" --secret-env HIDDEN_SECRET
check "a secret given twice is refused (exit 64)" status_is 64
tg check --secret-env NO_SUCH_VARIABLE_E2E
check "an unset --secret-env variable is an error naming it" err_has "NO_SUCH_VARIABLE_E2E is not set"
tg_in "$secret_h" revoke --secret - --reason e2e-stdin
check "revoke --secret - reads the secret from standard input" out_has "^revoked 2 tokens$"
tg check --secret-file "$work/secret"
check "the token revoked through standard input is refused" out_has "^deny revoked"
check "no secret in the daemon's log" test "$(grep -c "$secret_h" "$work/daemon.log")" -eq 0

# --- JSON errors ---------------------------------------------------------------------------------------------------
tg --json license get no_such_license
check "--json: a server error is a JSON object with the status name (exit 1)" status_is 1
check "--json: the error object" out_has '^\{"error":"not_found","message":"[^"]*no_such_license[^"]*"\}$'
tg --json --socket "$work/nowhere.sock" ping
check "--json: no daemon is daemon_not_running (exit 1)" out_has '^\{"error":"daemon_not_running",'
tg --json check
check "--json: a usage error is JSON with code usage (exit 64)" status_is 64
check "--json: the usage error object" out_has '^\{"error":"usage","message":'
tg --json plan set bad --quota calls:week:5
check "--json: a validation error is JSON too (exit 64)" out_has '^\{"error":"usage",'
tg --json check "$secret_a"
check "--json: a denial is an answer, not an error (exit 3)" out_has '"decision":"deny"'
check "--json: a denial exits 3" status_is 3
tg --json apply "$work/bad.yaml"
check "--json: apply's file error carries the provisioning code" out_has '^\{"error":"unknown_plan",'

# --- Readable output -----------------------------------------------------------------------------------------------
tg plan get metered
check "plan get lists one quota per line" out_has "^  quota:calls:rolling:60:token limit 100$"
check "plan get lists rate limits readably" out_has "^  rate:license 5/s burst 10$"
check "plan get shows credits readably" out_has "^credits: 500 included per month, pool org$"
check "plan get shows lifetimes with a unit" out_has "^max_token_lifetime_seconds: 7776000 \(90d\)$"
check "plan get prints no <null> or Swift dictionaries" out_lacks '<null>|\[\['
check "plan get keeps the protocol's field order" test "$(head -n 1 <<<"$out")" = "plan_id: metered"
tg plan get free
check "a plan without credits shows no credits line" out_lacks "^credits"
tg inspect "$token_h"
check "inspect shows times in RFC 3339" out_has "^issued_at: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"
check "inspect shows a token without expiry as never" out_has "^expires_at: never$"

# --- Help text -----------------------------------------------------------------------------------------------------
tg help derive
check "help derive has no stray backslash" out_lacks '\\'
tg help revoke
check "help revoke documents --token-id" out_has "--token-id <token-id> +Revoke the token with this id"
tg help plan set
check "help plan set has no doubled default" out_lacks '\(default: [^)]*\)\.? \(default'

# --- Reading usage without consuming it ----------------------------------------------------------------------------
tg stats
checks_before=$(sed -nE 's/^checks_total ([0-9]+)$/\1/p' <<<"$out")
tg usage show --license lic2
check "usage show --license shows the day quota's usage (300+100+30+70)" out_has "^quota:requests:day:license lic2 used 500 of 500, 0 left, window [0-9-]{10}T00:00:00Z to "
tg --json usage show --license lic2
check "usage show --json" out_has '"rule":"quota:requests:day:license","used":500'
tg usage show --token "$token_h"
check "usage show --token shows the token's license-level quotas" out_has "^quota:requests:month:license lic1 used [0-9]+ of 1000000"
tg license set lic_free --plan free
tg usage show --license lic_free
check "usage show names the rolling quota it cannot show" out_has "^quota:requests:rolling:60:token: not shown "
tg usage show --license lic2
tg usage show --license lic2
check "usage show twice shows the same: it consumes nothing" out_has "used 500 of 500"
tg stats
check "usage show made no checks" test "$(sed -nE 's/^checks_total ([0-9]+)$/\1/p' <<<"$out")" = "$checks_before"
tg usage show --license lic1 --token "$token_h"
check "usage show takes exactly one of --license, --token (exit 64)" status_is 64

# --- Listing, deleting, export and apply --prune -------------------------------------------------------------------
sorted_ids() { [ "$(cut -d' ' -f1 <<<"$out")" = "$(cut -d' ' -f1 <<<"$out" | LC_ALL=C sort)" ]; }
tg license list
check "license list shows lic1 with its plan and status" out_has "^lic1  plan=pro  status=active  org=-  active_tokens=[0-9]+"
check "license list is in id order" sorted_ids
tg --json license list --org acme
check "license list --org --json: one object per license of the organisation" out_has '^\{.*"license_id":"lic2".*\}$'
check "license list --org leaves out other organisations' licenses" out_lacks '"license_id":"lic1"'
tg plan list
check "plan list shows every plan in id order" sorted_ids
check "plan list summarises a plan on one line" out_has "^metered  entitlements=.*  quotas=[0-9]+  rate_limits=[0-9]+  concurrency=[0-9]+  credits=500/month  overage="
tg org list
check "org list shows the organisation" out_has "^acme  suspended=false  name=Acme, Inc\.$"
tg plan delete pro
check "plan delete of a plan in use fails (exit 1)" status_is 1
check "the refusal names the licenses on it" err_has "plan 'pro' is in use: [0-9]+ licenses? (is|are) on it \(.*lic1"
tg --json plan delete pro
check "--json: the refusal's code is in_use" out_has '^\{"error":"in_use","message":'
tg license delete lic1
check "license delete of a license with live tokens fails (exit 1)" status_is 1
check "the refusal names the live tokens and how to revoke them" err_has "holds [0-9]+ live tokens? \(tok_.*tollgate revoke --license lic1"
tg org set doomed --name Doomed
tg plan set doomed_plan --entitlement read
tg license set lic_doomed --plan doomed_plan --org doomed
tg org delete doomed
check "org delete of an organisation a license names fails" err_has "organisation 'doomed' is in use: 1 license names it \(lic_doomed\)"
tg license delete lic_doomed --actor e2e
check "license delete prints what it deleted" out_has "^deleted license lic_doomed \(plan doomed_plan, org doomed\)$"
tg license get lic_doomed
check "a deleted license is not found (exit 1)" status_is 1
tg --json plan delete doomed_plan --actor e2e
check "plan delete --json prints the plan as it was" out_has '"deleted":true.*"plan_id":"doomed_plan"'
tg org delete doomed
check "org delete prints what it deleted" out_has "^deleted organisation doomed$"
tg plan delete doomed_plan
check "deleting again is not_found" err_has "not_found: plan 'doomed_plan' does not exist"
tg export --output "$work/policy.yaml"
check "export --output writes the file" out_has "^exported [0-9]+ plans, [0-9]+ organisations, [0-9]+ licenses to "
check "export warns about nothing when every organisation exists" test -z "$err"
tg export
check "export to standard output is the same file" test "$out" = "$(cat "$work/policy.yaml")"
tg apply --dry-run "$work/policy.yaml"
check "export then apply --dry-run shows no change" out_has "^0 to create, 0 to update, [0-9]+ unchanged$"
tg apply --dry-run --prune "$work/policy.yaml"
check "export then apply --dry-run --prune shows no change at all" out_has "^0 to create, 0 to update, [0-9]+ unchanged$"
tg plan set stale_plan --entitlement read
tg org set stale_org
tg license set lic_stale --plan stale_plan --org stale_org
tg issue --license lic_stale --subject stale
tg apply --dry-run --prune "$work/policy.yaml"
check "apply --dry-run --prune shows the deletions" out_has "^0 to create, 0 to update, [0-9]+ unchanged, 3 to delete$"
check "the deletions are listed, users first" test "$(grep -E '^- ' <<<"$out" | tr '\n' ' ')" = "- license lic_stale - plan stale_plan - org stale_org "
tg license get lic_stale
check "--dry-run --prune deletes nothing" status_is 0
tg apply --prune "$work/policy.yaml"
check "apply --prune stops at a license with a live token (exit 1)" status_is 1
check "the stop names the license and the daemon's refusal" err_has "apply stopped at license lic_stale: in_use: .*live token"
tg --json apply --prune "$work/policy.yaml"
check "--json: the stop carries the daemon's code in_use" out_has '^\{"error":"apply_stopped","errors":\[\{"code":"in_use",'
tg revoke --license lic_stale
tg apply --prune "$work/policy.yaml"
check "apply --prune deletes what the file does not name" out_has "^0 created, 0 updated, [0-9]+ unchanged, 3 deleted$"
tg org get stale_org
check "the pruned organisation is gone" err_has "not_found"
tg apply --dry-run --prune "$work/policy.yaml"
check "after apply --prune the daemon holds exactly the file" out_has "^0 to create, 0 to update, [0-9]+ unchanged$"

# --- Global options before the command name ------------------------------------------------------------------------
tg --json --admin-socket ./state/tollgate-admin.sock events --limit 1
check "global options may precede a new command" out_has '"sequence":1'

echo "cli-e2e: $checks checks, $passed passed"
echo "$passed passed, $((checks - passed)) failed"
[ "$checks" -eq "$passed" ]
