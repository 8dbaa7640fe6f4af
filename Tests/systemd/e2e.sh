#!/usr/bin/env bash
# End-to-end test of tollgated under a real systemd as PID 1, in fresh namespaces, with the project's own units
# (systemd/*.service, *.socket, *.sysusers.conf) plus test drop-ins (Tests/systemd/units/).
#
#   bash Tests/systemd/e2e.sh "$(swift build --show-bin-path)"
#
# Prints one `ok - NAME` / `not ok - NAME` line per check, diagnostics as `# ...` lines, and ends with
# `N passed, M failed`. Every step is bounded in time and the whole run is cut at E2E_TIME_LIMIT seconds (180);
# the namespace is always powered off (or killed) and its cgroup removed. Needs root. When this machine cannot
# boot systemd in namespaces it prints `# SKIP <reason>` and `0 passed, 0 failed` and exits 0.
# E2E_KEEP=1 keeps the test folder (console log, journal export) for a post-mortem.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin_dir=${1:-}
time_limit=${E2E_TIME_LIMIT:-180}
passed=0
failed=0
testdir="" cgroup="" script_pid="" outer_pid="" sd_pid="" timer_pid="" finished=0
api=/run/tollgate/tollgate.sock
admin=/run/tollgate/tollgate-admin.sock
http=/run/tollgate/tollgate-http.sock

say() { printf '%s\n' "$*"; }
diag() { sed 's/^/# /' <<<"$*"; }
pass() { passed=$((passed + 1)); say "ok - $1"; }
fail() { failed=$((failed + 1)); say "not ok - $1"; [ -z "${2:-}" ] || diag "$2"; }
skip() { say "# SKIP $1"; say "0 passed, 0 failed"; finished=1; exit 0; }
now_ms() { date +%s%3N; }

# --- Preconditions: anything missing here means "cannot run on this machine", not a failure. ---
[ "$(id -u)" -eq 0 ] || skip "needs root (unshare, mounts, cgroups)"
for tool in unshare nsenter script setsid setpriv findmnt pgrep timeout systemctl journalctl systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
[ -x /lib/systemd/systemd ] || skip "/lib/systemd/systemd is not installed"
[ -e /dev/console ] || skip "no /dev/console to bind systemd's console onto"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "no overlay file system (needed for private /etc and /usr/local)"
cgroup_root=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n 1)
[ -n "$cgroup_root" ] || skip "no cgroup2 hierarchy mounted"
timeout 10 unshare --fork --pid --mount --uts --ipc --net --cgroup --mount-proc --propagation private true 2>/dev/null ||
    skip "unshare of pid/mount/uts/ipc/net/cgroup namespaces is not permitted here"

# --- The binaries under test. A wrong argument is a failure, not a skip. ---
if [ -z "$bin_dir" ] || [ ! -x "$bin_dir/tollgated" ] || [ ! -x "$bin_dir/tollgate" ]; then
    fail "binaries" "usage: $0 BIN_DIR (the output of 'swift build --show-bin-path'); no tollgated/tollgate in '${bin_dir}'"
    say "0 passed, 1 failed"
    exit 1
fi

# Runs COMMAND inside the booted namespaces (as root, clean environment), bounded by SECONDS.
in_ns_for() {
    local seconds=$1
    shift
    timeout -k 2 "$seconds" nsenter -t "$sd_pid" -m -p -n -u -i -C --wd=/ -- \
        env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
in_ns() { in_ns_for 20 "$@"; }
sctl() { in_ns systemctl --no-pager "$@"; }
# `prop UNIT NAME`: one property's value.
prop() { sctl show -p "$2" --value "$1"; }
# `state UNIT`: ActiveState/SubState.
state() { local out; out=$(sctl show -p ActiveState -p SubState "$1") || return 1; printf '%s/%s' "$(sed -n 's/^ActiveState=//p' <<<"$out")" "$(sed -n 's/^SubState=//p' <<<"$out")"; }
tg() { in_ns /usr/local/bin/tollgate --socket "$api" --admin-socket "$admin" "$@"; }
# `wait_for SECONDS COMMAND...`: polls COMMAND every 100 ms until it succeeds or SECONDS pass.
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    while :; do
        "$@" && return 0
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
unit_log() { in_ns journalctl --no-pager -o short-monotonic -u tollgated.service "$@"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -z "$timer_pid" ] || kill "$timer_pid" 2>/dev/null
    if [ -n "$sd_pid" ] && kill -0 "$sd_pid" 2>/dev/null; then
        if [ "$failed" -gt 0 ]; then
            diag "--- systemctl status (after a failure)"
            diag "$(sctl status --all tollgated.service tollgated.socket tollgated-admin.socket 2>&1 | tail -n 40)"
            diag "--- journal of tollgated.service (last 40 lines)"
            diag "$(unit_log -n 40 2>&1)"
        fi
        [ -z "${E2E_KEEP:-}" ] || in_ns journalctl --no-pager -o export >"$testdir/journal.export" 2>/dev/null
        in_ns_for 10 systemctl --no-block poweroff >/dev/null 2>&1
    fi
    if [ -n "$outer_pid" ]; then
        # A clean poweroff ends systemd, unshare and script; a stuck one is cut after 15 s: SIGKILL to PID 1 of a
        # PID namespace kills everything in it.
        if ! wait_for 15 eval '! kill -0 "$outer_pid" 2>/dev/null'; then
            diag "systemd did not power off within 15 s; killing the namespace"
            [ -z "$sd_pid" ] || kill -KILL "$sd_pid" 2>/dev/null
            kill -KILL "$outer_pid" 2>/dev/null
            wait_for 5 eval '! kill -0 "$outer_pid" 2>/dev/null'
        fi
        [ -z "$script_pid" ] || kill "$script_pid" 2>/dev/null
    fi
    if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
        wait_for 5 eval '[ -z "$(find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]' ||
            diag "processes remain in $cgroup"
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
        [ ! -d "$cgroup" ] || diag "could not remove $cgroup"
    fi
    if [ -n "$testdir" ]; then
        if [ -n "${E2E_KEEP:-}" ]; then diag "kept $testdir"; else rm -rf "$testdir"; fi
    fi
    if [ "$finished" -eq 0 ]; then
        say "$passed passed, $failed failed"
        [ "$failed" -eq 0 ] && [ "$status" -eq 0 ] || exit 1
        exit 0
    fi
}
trap cleanup EXIT
trap 'fail "finished within ${time_limit} s (overall time limit hit)"; exit 1' TERM
trap 'fail "interrupted"; exit 1' INT
# The overall bound: a timer that sends this script SIGTERM (its own output is detached, so a pipe reading this
# script's output is not held open by it).
(
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    sleep "$time_limit" &
    sleeper=$!
    wait $sleeper && kill -TERM $$
) >/dev/null 2>&1 &
timer_pid=$!
started_ms=$(now_ms)

# --- Test folder: binaries, configuration, units (the project's, unchanged, plus drop-ins and masks). ---
testdir=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e.XXXXXX")
chmod 0755 "$testdir"
mkdir -p "$testdir/bin" "$testdir/units"
install -m 0755 "$bin_dir/tollgated" "$bin_dir/tollgate" "$testdir/bin/"
cp "$repo/systemd/tollgate.sysusers.conf" "$testdir/"
cp "$repo"/systemd/*.service "$repo"/systemd/*.socket "$testdir/units/"
cp -r "$here/units/." "$testdir/units/"
# Masks: units of the host that must never start in here (an empty /dev/null link masks a unit). The test target
# pulls none of them; this guards against a dependency pulling one in. /dev is the host's: the /dev/log socket
# would leave a symlink there.
for unit in systemd-journald-dev-log.socket systemd-journald-audit.socket \
    systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service \
    systemd-tmpfiles-clean.timer apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
    redis-server.service postgresql.service systemd-timesyncd.service systemd-pstore.service e2scrub_reap.service \
    systemd-sysusers.service sysinit.target basic.target multi-user.target default.target; do
    ln -s /dev/null "$testdir/units/$unit"
done
# The configuration: the embedded default with the production state directory, as scripts/install.sh writes it.
bash "$repo/scripts/production-config.sh" "$testdir/bin/tollgated" >"$testdir/tollgated.json"
chmod 0644 "$testdir/tollgated.json"
grep -q '"state_dir": "/var/lib/tollgate"' "$testdir/tollgated.json" ||
    { fail "configuration" "could not set state_dir in the default configuration"; exit 1; }

# --- Boot. ---
cgroup="$cgroup_root/tollgate-e2e-$$"
if ! mkdir "$cgroup" 2>/dev/null; then cgroup=""; skip "cannot create a cgroup under $cgroup_root (read-only?)"; fi
# Under a pty (script) so that systemd has a console; with a clean environment (no NOTIFY_SOCKET, LISTEN_FDS or
# SYSTEMD_* of whatever runs this test).
setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb LANG=C.UTF-8 \
    script -qfec "bash '$here/namespace.sh' outer '$testdir' '$cgroup'" "$testdir/console.log" </dev/null >/dev/null 2>&1 &
script_pid=$!
boot_ok() {
    [ -n "$outer_pid" ] || outer_pid=$(cat "$testdir/outer.pid" 2>/dev/null)
    [ -n "$outer_pid" ] || return 1
    [ -n "$sd_pid" ] || sd_pid=$(pgrep -P "$outer_pid" -x systemd | head -n 1)
    [ -n "$sd_pid" ] || return 1
    [ "$(in_ns_for 5 systemctl is-system-running 2>/dev/null)" = running ]
}
boot_started=$(now_ms)
if wait_for 30 boot_ok; then
    pass "systemd boots the test target in fresh namespaces ($(($(now_ms) - boot_started)) ms)"
else
    fail "systemd boots the test target in fresh namespaces" "is-system-running: $([ -n "$sd_pid" ] && in_ns_for 5 systemctl is-system-running 2>&1)"
    [ -z "$sd_pid" ] || diag "$(sctl --failed 2>&1)"
    diag "--- console"
    diag "$(tail -n 40 "$testdir/console.log" 2>/dev/null | tr -d '\r')"
    exit 1
fi

# --- 1. Sockets listen; the service does not run yet. ---
check_sockets() {
    local problems="" s
    for s in tollgated.socket tollgated-admin.socket; do
        [ "$(state $s)" = active/listening ] || problems+="$s is $(state $s), not active/listening"$'\n'
    done
    local api_meta admin_meta
    api_meta=$(in_ns stat -c '%F %a %U:%G' "$api" 2>&1)
    admin_meta=$(in_ns stat -c '%F %a %U:%G' "$admin" 2>&1)
    [ "$api_meta" = "socket 660 root:tollgate-clients" ] || problems+="api socket: $api_meta (want socket 660 root:tollgate-clients)"$'\n'
    [ "$admin_meta" = "socket 660 root:tollgate-admin" ] || problems+="admin socket: $admin_meta (want socket 660 root:tollgate-admin)"$'\n'
    [ -z "$problems" ] && return 0
    fail "socket units listen on $api and $admin with their modes and groups" "$problems"
    return 1
}
check_sockets && pass "socket units listen on $api and $admin with their modes and groups"

service_state=$(state tollgated.service)
if [ "$service_state" = inactive/dead ] && ! in_ns pgrep -x tollgated >/dev/null; then
    pass "tollgated.service is not running before the first request"
else
    fail "tollgated.service is not running before the first request" "state $service_state; processes: $(in_ns pgrep -a -x tollgated)"
fi

# --- 2. The first request activates the service through the socket; active/running only after READY. ---
# Inside the namespace: the first request (a PING on the api socket) in the background while the unit's state is
# sampled (ActiveState, SubState and StatusText in one GetAll, i.e. one consistent snapshot) until it is
# active/running and the request is answered.
cat >"$testdir/activate.sh" <<EOF
/usr/local/bin/tollgate --socket $api ping >$testdir/ping.out 2>&1 &
ping=\$!
end=\$((\$(date +%s) + 20))
while [ "\$(date +%s)" -lt "\$end" ]; do
    snap=\$(systemctl show -p ActiveState -p SubState -p StatusText tollgated.service | tr '\n' ' ')
    echo "\$snap"
    case "\$snap" in *"ActiveState=active "*) case "\$snap" in *"SubState=running "*) kill -0 \$ping 2>/dev/null || break ;; esac ;; esac
done
wait \$ping
echo "ping-exit=\$?"
EOF
activation_started=$(now_ms)
samples=$(in_ns_for 25 bash "$testdir/activate.sh")
activation_ms=$(($(now_ms) - activation_started))
ping_exit=$(sed -n 's/^ping-exit=//p' <<<"$samples")
main_pid=$(prop tollgated.service MainPID)
if [ "$ping_exit" = 0 ] && [ "$(state tollgated.service)" = active/running ] && [ "${main_pid:-0}" -gt 0 ] &&
    [ "$(in_ns cat /proc/"$main_pid"/comm 2>/dev/null)" = tollgated ] && [ "$(prop tollgated.service NRestarts)" = 0 ]; then
    pass "the first request (PING on the api socket) activates tollgated.service through the socket unit ($activation_ms ms)"
else
    fail "the first request (PING on the api socket) activates tollgated.service through the socket unit" \
        "ping exit ${ping_exit:-?}: $(cat "$testdir/ping.out" 2>/dev/null); state $(state tollgated.service); MainPID $main_pid"
fi
# Type=notify: the unit stays activating until READY=1; READY comes with STATUS=, so a snapshot that is
# active/running without a status would mean systemd did not wait for READY. And systemd entered "active" after
# the process was started, not at the fork.
activating_seen=$(grep 'ActiveState=activating ' <<<"$samples" | grep -c 'SubState=start ')
active_without_status=$(grep 'ActiveState=active ' <<<"$samples" | grep 'SubState=running ' | grep -cE 'StatusText=( |$)')
fork_us=$(prop tollgated.service ExecMainStartTimestampMonotonic)
active_us=$(prop tollgated.service ActiveEnterTimestampMonotonic)
status_text=$(prop tollgated.service StatusText)
if [ "$(prop tollgated.service Type)" = notify ] && [ "$(state tollgated.service)" = active/running ] &&
    [ "$active_without_status" -eq 0 ] && [ -n "$status_text" ] && [ "${active_us:-0}" -gt "${fork_us:-0}" ]; then
    pass "Type=notify: active/running only after READY=1 (activating/start seen in $activating_seen snapshots; fork to active $(((active_us - fork_us) / 1000)) ms)"
    diag "STATUS: $status_text"
else
    fail "Type=notify: active/running only after READY=1" \
        "Type=$(prop tollgated.service Type) StatusText='$status_text' fork=$fork_us active=$active_us active-without-status=$active_without_status"$'\n'"$samples"
fi

# Who may connect once the service runs (starting it must not change /run/tollgate or the sockets' owners): for a
# process that is not root, the api socket's group decides.
clients_gid=$(in_ns getent group tollgate-clients | cut -d: -f3)
as_nobody() { in_ns setpriv --reuid=65534 --regid=65534 "$@"; }
check_group_access() {
    local name="a non-root member of tollgate-clients may use the api socket, a non-member may not$1"
    local member member_status stranger stranger_status
    member=$(as_nobody --groups="$clients_gid" /usr/local/bin/tollgate --socket "$api" ping 2>&1)
    member_status=$?
    stranger=$(as_nobody --clear-groups /usr/local/bin/tollgate --socket "$api" ping 2>&1)
    stranger_status=$?
    if [ -n "$clients_gid" ] && [ "$member_status" -eq 0 ] && [ "$stranger_status" -ne 0 ]; then
        pass "$name"
    else
        fail "$name" "member (gid ${clients_gid:-?}): exit $member_status: $member"$'\n'"non-member: exit $stranger_status: $stranger"$'\n'"$(in_ns ls -la /run /run/tollgate/ 2>&1)"
    fi
}
check_group_access ""
admins_gid=$(in_ns getent group tollgate-admin | cut -d: -f3)
admin_out=$(as_nobody --groups="$admins_gid" /usr/local/bin/tollgate --admin-socket "$admin" stats 2>&1)
admin_status=$?
client_out=$(as_nobody --groups="$clients_gid" /usr/local/bin/tollgate --admin-socket "$admin" stats 2>&1)
client_status=$?
if [ -n "$admins_gid" ] && [ "$admin_status" -eq 0 ] && [ "$client_status" -ne 0 ]; then
    pass "a non-root member of tollgate-admin may administer (socket mode and allow-list agree), a client may not"
else
    fail "a non-root member of tollgate-admin may administer, a client may not" "admin member: exit $admin_status: $admin_out"$'\n'"client: exit $client_status: $client_out"
fi

# --- 3. Provisioning on the admin socket; allowed and denied checks on the api socket. ---
secret="" doomed=""
if tg license set lic_e2e --plan pro --customer "End to end" >/dev/null 2>"$testdir/err" &&
    secret=$(tg issue --license lic_e2e --subject e2e-service --scope read 2>"$testdir/err") &&
    doomed=$(tg issue --license lic_e2e --subject e2e-doomed --scope read 2>"$testdir/err") &&
    [[ "$secret" =~ ^tg_live_[0-9A-Za-z]{49}$ ]] && [[ "$doomed" =~ ^tg_live_[0-9A-Za-z]{49}$ ]]; then
    pass "provisioning on the admin socket (license set, issue)"
else
    fail "provisioning on the admin socket (license set, issue)" "$(cat "$testdir/err")"
fi
# `check_answer EXPECTED_EXIT EXPECTED_PREFIX TOKEN ARGS...`: the CLI's exit status and first word.
check_answer() {
    local want_status=$1 want=$2 out status
    shift 2
    out=$(tg check "$@" 2>&1)
    status=$?
    [ "$status" -eq "$want_status" ] && [[ "$out" == "$want"* ]] && return 0
    echo "exit $status: $out"
    return 1
}
if [ -n "$secret" ] && why=$(check_answer 0 "allow" "$secret" --scope read --meter requests --cost 1); then
    pass "check of the issued token is allowed"
else
    fail "check of the issued token is allowed" "${why:-no token was issued}"
fi
if why=$(check_answer 3 "deny malformed_token" "tg_live_not-a-real-token"); then
    pass "check of a garbage token is denied (exit 3, malformed_token)"
else
    fail "check of a garbage token is denied (exit 3, malformed_token)" "$why"
fi
if [ -n "$doomed" ] && tg revoke --secret "$doomed" --reason "e2e" >/dev/null 2>"$testdir/err" &&
    why=$(check_answer 3 "deny revoked" "$doomed"); then
    pass "check of a revoked token is denied (exit 3, revoked)"
else
    fail "check of a revoked token is denied (exit 3, revoked)" "${why:-$(cat "$testdir/err")}"
fi

# --- 3b. The HTTP socket unit: the service took it by name (FileDescriptorName=http) and answers forward auth on it
# (the installed configuration has no http section: no routes, so the default, deny, answers no_route). ---
http_meta=$(in_ns stat -c '%F %a %U:%G' "$http" 2>&1)
http_answer=$(in_ns curl -s --max-time 5 --unix-socket "$http" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /anything" \
    -w ' %{http_code}' http://tollgate/v1/forward-auth 2>&1)
if [[ "$(state tollgated-http.socket)" == active/* ]] && [ "$http_meta" = "socket 660 root:tollgate-clients" ] &&
    [ "$http_answer" = '{"decision":"deny","reason":"no_route"} 403' ]; then
    pass "tollgated-http.socket is handed over by name and serves forward auth ($http: $http_meta)"
else
    fail "tollgated-http.socket is handed over by name and serves forward auth" \
        "state $(state tollgated-http.socket); $http: $http_meta; answer: $http_answer"
fi

# --- 4. systemctl reload: same process, still active, STATUS present, new plan from the file in force. ---
pid_before=$(prop tollgated.service MainPID)
if tg plan get e2e-gold >/dev/null 2>&1; then
    fail "plan e2e-gold is unknown before the reload" "it exists already"
fi
in_ns sed -i 's|"plans": \[|"plans": [\n    { "id": "e2e-gold", "entitlements": ["read", "gold"], "quotas": [] },|' /etc/tollgate/tollgated.json
config_check=$(in_ns /usr/local/bin/tollgated --config /etc/tollgate/tollgated.json --check-config 2>&1)
reload_started=$(now_ms)
reload_out=$(in_ns_for 30 systemctl reload tollgated.service 2>&1)
reload_status=$?
reload_ms=$(($(now_ms) - reload_started))
wait_for 5 eval '[ "$(state tollgated.service)" = active/running ]'
pid_after=$(prop tollgated.service MainPID)
status_text=$(prop tollgated.service StatusText)
if [ "$reload_status" -eq 0 ] && [ "$(state tollgated.service)" = active/running ] && [ "$pid_after" = "$pid_before" ] &&
    [ -n "$status_text" ] && [ "$(prop tollgated.service NRestarts)" = 0 ]; then
    pass "systemctl reload returns 0 in $reload_ms ms; same MainPID $pid_after, still active/running, STATUS present"
    diag "STATUS: $status_text"
else
    fail "systemctl reload returns 0; same MainPID, still active/running, STATUS present" \
        "exit $reload_status: $reload_out; state $(state tollgated.service); MainPID $pid_before -> $pid_after; STATUS '$status_text'"
fi
if plan=$(tg plan get e2e-gold 2>&1) && grep -q 'gold' <<<"$plan" &&
    grep -q "configuration reloaded" <<<"$(unit_log)"; then
    pass "a plan added to the configuration file is in force after the reload (tollgate plan get e2e-gold)"
else
    fail "a plan added to the configuration file is in force after the reload (tollgate plan get e2e-gold)" \
        "check-config: $config_check"$'\n'"plan get: $plan"$'\n'"$(unit_log -n 5 2>&1)"
fi

# --- 5. The watchdog kills a frozen daemon (SIGABRT) and systemd restarts it; the state survives. ---
old_pid=$(prop tollgated.service MainPID)
restarts_before=$(prop tollgated.service NRestarts)
ping_before=$(prop tollgated.service WatchdogTimestampMonotonic)
pings_arrive() { [ "$(prop tollgated.service WatchdogTimestampMonotonic)" != "$ping_before" ]; }
restarted() {
    local pid
    pid=$(prop tollgated.service MainPID)
    [ "${pid:-0}" -gt 0 ] && [ "$pid" != "$old_pid" ] && [ "$(state tollgated.service)" = active/running ]
}
if [ "$(prop tollgated.service WatchdogUSec)" != 2s ] || ! wait_for 3 pings_arrive; then
    fail "the watchdog kills the frozen daemon (SIGABRT) and systemd restarts it" \
        "WatchdogUSec=$(prop tollgated.service WatchdogUSec); no WATCHDOG=1 ping within 3 s (WatchdogTimestampMonotonic stays $ping_before)"
else
    frozen_at=$(now_ms)
    in_ns kill -STOP "$old_pid"
    if wait_for 15 restarted; then
        restart_ms=$(($(now_ms) - frozen_at))
        new_pid=$(prop tollgated.service MainPID)
        log=$(unit_log 2>&1)
        if grep -q "Watchdog timeout" <<<"$log" && grep -q "status=6/ABRT" <<<"$log" &&
            [ "$(prop tollgated.service NRestarts)" -gt "$restarts_before" ] && ! in_ns kill -0 "$old_pid" 2>/dev/null; then
            pass "the watchdog kills the frozen daemon (SIGABRT) and systemd restarts it (MainPID $old_pid -> $new_pid in $restart_ms ms)"
        else
            fail "the watchdog kills the frozen daemon (SIGABRT) and systemd restarts it" \
                "restarted, but the journal lacks 'Watchdog timeout'/'status=6/ABRT', NRestarts did not grow or $old_pid lives:"$'\n'"$(grep -E 'Watchdog|ABRT|Main process' <<<"$log")"
        fi
    else
        fail "the watchdog kills the frozen daemon (SIGABRT) and systemd restarts it" \
            "not restarted within 15 s: state $(state tollgated.service), MainPID $(prop tollgated.service MainPID), Result $(prop tollgated.service Result)"
        in_ns kill -CONT "$old_pid" 2>/dev/null
    fi
fi
if [ -n "$secret" ] && why=$(check_answer 0 "allow" "$secret" --scope read) &&
    why=$(check_answer 3 "deny revoked" "$doomed") && plan=$(tg plan get e2e-gold 2>&1); then
    pass "the state survives the restart (issued token allowed, revoked token denied, plan e2e-gold present)"
else
    fail "the state survives the restart (issued token allowed, revoked token denied, plan e2e-gold present)" "${why:-} ${plan:-}"
fi
check_group_access " (after the restart)"

# --- 6. journald: structured fields, read back with journalctl; no secret in the journal. ---
deny_entries() { in_ns journalctl --no-pager -u tollgated TOLLGATE_DECISION=deny -o json; }
deny_entry_complete() {
    local entries
    entries=$(deny_entries 2>/dev/null) || return 1
    grep '"TOLLGATE_REASON":"' <<<"$entries" | grep '"SYSLOG_IDENTIFIER":"tollgated"' |
        grep '"_SYSTEMD_UNIT":"tollgated.service"' | grep -q '"TOLLGATE_TOKEN_ID":"'
}
if wait_for 10 deny_entry_complete; then
    reasons=$(deny_entries | grep -o '"TOLLGATE_REASON":"[a-z_]*"' | sort -u | tr '\n' ' ')
    pass "journalctl -u tollgated TOLLGATE_DECISION=deny: entries with TOLLGATE_REASON, TOLLGATE_TOKEN_ID, SYSLOG_IDENTIFIER=tollgated"
    diag "reasons: $reasons"
else
    fail "journalctl -u tollgated TOLLGATE_DECISION=deny: entries with TOLLGATE_REASON, TOLLGATE_TOKEN_ID, SYSLOG_IDENTIFIER=tollgated" \
        "$(deny_entries 2>&1 | head -c 2000)"
fi
in_ns journalctl --no-pager -o export >"$testdir/journal.export" 2>&1
if [ -z "$secret" ]; then
    fail "no issued secret appears in the journal" "no secret was issued"
elif grep -aqF -e "$secret" -e "$doomed" "$testdir/journal.export"; then
    fail "no issued secret appears in the journal" "a secret is in the journal"
else
    pass "no issued secret appears in the journal ($(grep -ac '^__CURSOR=' "$testdir/journal.export") entries searched)"
fi

# --- 6b. A restart under socket activation loses no connection attempt: clients queue on the sockets. ---
before_pid=$(prop tollgated.service MainPID)
restart_log="$testdir/restart-pings"
mkdir -p "$restart_log"
sctl restart --no-block tollgated.service >/dev/null 2>&1
ping_pids=()
for i in $(seq 1 20); do
    (tg ping >"$restart_log/$i.out" 2>&1; echo $? >"$restart_log/$i.rc") &
    ping_pids+=($!)
done
wait "${ping_pids[@]}"  # only these: a bare `wait` would also wait for the namespace itself
ok_pings=$(grep -lx 0 "$restart_log"/*.rc 2>/dev/null | wc -l)
service_running() { [ "$(state tollgated.service)" = active/running ]; }
wait_for 20 service_running || true
after_pid=$(prop tollgated.service MainPID)
if [ "$ok_pings" -eq 20 ] && [ "$after_pid" != "$before_pid" ] && [ "$after_pid" != 0 ]; then
    pass "20 pings sent while the service restarts all succeed (MainPID $before_pid -> $after_pid): none lost"
else
    fail "20 pings sent while the service restarts all succeed" "$ok_pings of 20 succeeded; MainPID $before_pid -> $after_pid"$'\n'"$(cat "$restart_log"/*.out 2>/dev/null | sort | uniq -c | head -n 5)"
fi

# --- 8 (before the stop, while the unit is loaded). The sandbox's exposure, for information. ---
# The live unit carries the test's DefaultDependencies=no, for which systemd-analyze skips PrivateTmp=,
# ProtectHome=, ProtectSystem= and RootDirectory= ("special boot phase"); the unit file as shipped is scored
# offline too.
security=$(in_ns systemd-analyze security --no-pager tollgated.service 2>&1)
diag "systemd-analyze security tollgated.service (live, in the booted namespace):"
diag "$security"
mkdir -p "$testdir/shipped" && cp "$repo/systemd/tollgated.service" "$testdir/shipped/"
shipped=$(in_ns systemd-analyze security --no-pager --offline=yes "$testdir/shipped/tollgated.service" 2>&1)
diag "exposure (live, test drop-ins): $(grep -o 'Overall exposure level for tollgated.service: [0-9.]* [A-Z]*' <<<"$security")"
diag "exposure (unit file as shipped, --offline=yes): $(grep -o 'Overall exposure level for tollgated.service: [0-9.]* [A-Z]*' <<<"$shipped")"

# --- 7. A clean stop. ---
stop_started=$(now_ms)
stop_out=$(in_ns_for 40 systemctl stop tollgated.service tollgated.socket tollgated-admin.socket tollgated-http.socket 2>&1)
stop_status=$?
stop_ms=$(($(now_ms) - stop_started))
result=$(prop tollgated.service Result)
code=$(prop tollgated.service ExecMainCode)
exit_status=$(prop tollgated.service ExecMainStatus)
if [ "$stop_status" -eq 0 ] && [ "$(state tollgated.service)" = inactive/dead ] && [ "$result" = success ] &&
    [ "$code" = 1 ] && [ "$exit_status" = 0 ] && [ "$(state tollgated.socket)" = inactive/dead ] &&
    [ "$(state tollgated-admin.socket)" = inactive/dead ] && grep -q "tollgated stopped" <<<"$(unit_log)"; then
    pass "systemctl stop tollgated.service and its three sockets is clean in $stop_ms ms (Result=success, exit status 0)"
else
    fail "systemctl stop tollgated.service and its three sockets is clean (Result=success, exit status 0)" \
        "exit $stop_status: $stop_out; state $(state tollgated.service); Result=$result ExecMainCode=$code ExecMainStatus=$exit_status"
fi

diag "total $(($(now_ms) - started_ms)) ms"
