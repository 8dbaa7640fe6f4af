# Shared by the tests that boot a real systemd as PID 1 in fresh namespaces (Tests/systemd/e2e.sh, the project's
# units from the checkout; Tests/packaging/deb-e2e.sh, the installed .deb). Sourced, not run. See
# ../shared/recipes/systemd-in-a-namespace.md for the recipe and its traps.
#
#   harness_preconditions        prints `# SKIP …` and exits 0 when this machine cannot boot systemd in namespaces
#   harness_start                the overall timer (HARNESS_TIME_LIMIT seconds) and the test folder $testdir, with
#                                $testdir/units holding the test drop-ins (Tests/systemd/units) and the masks
#   harness_boot PREPARE         boots; PREPARE (a script) is sourced inside the namespace, as PID 1, before systemd
#                                starts (private mounts, installing what the test needs); passes or fails a check
#   in_ns / in_ns_for S / sctl / prop / state / wait_for   run and poll inside the booted namespaces
#
# Every step is bounded in time; on exit the namespace is always powered off (or killed), its cgroup removed and the
# test folder deleted (HARNESS_KEEP=1 keeps it). Prints `ok - NAME` / `not ok - NAME` lines, diagnostics as `# …`,
# and `N passed, M failed` at the end.

harness_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$harness_dir/../.." && pwd)
time_limit=${HARNESS_TIME_LIMIT:-180}
passed=0
failed=0
testdir="" cgroup="" script_pid="" outer_pid="" sd_pid="" timer_pid="" finished=0

say() { printf '%s\n' "$*"; }
diag() { sed 's/^/# /' <<<"$*"; }
pass() { passed=$((passed + 1)); say "ok - $1"; }
fail() { failed=$((failed + 1)); say "not ok - $1"; [ -z "${2:-}" ] || diag "$2"; }
skip() { say "# SKIP $1"; say "0 passed, 0 failed"; finished=1; exit 0; }
now_ms() { date +%s%3N; }

# Anything missing here means "cannot run on this machine", not a failure.
harness_preconditions() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (unshare, mounts, cgroups)"
    local tool
    for tool in unshare nsenter script setsid setpriv findmnt pgrep timeout systemctl journalctl systemd-analyze systemd-sysusers "$@"; do
        command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
    done
    [ -x /lib/systemd/systemd ] || skip "/lib/systemd/systemd is not installed"
    [ -e /dev/console ] || skip "no /dev/console to bind systemd's console onto"
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || skip "no overlay file system (needed for private /etc, /usr, /var)"
    cgroup_root=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n 1)
    [ -n "$cgroup_root" ] || skip "no cgroup2 hierarchy mounted"
    timeout 10 unshare --fork --pid --mount --uts --ipc --net --cgroup --mount-proc --propagation private true 2>/dev/null ||
        skip "unshare of pid/mount/uts/ipc/net/cgroup namespaces is not permitted here"
}

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

harness_cleanup() {
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
        [ -z "${HARNESS_KEEP:-}" ] || in_ns journalctl --no-pager -o export >"$testdir/journal.export" 2>/dev/null
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
    fi
    # script(1) ends with the namespace; one that has not is ended here (only this pid: it is ours).
    [ -z "$script_pid" ] || kill "$script_pid" 2>/dev/null
    if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
        wait_for 5 eval '[ -z "$(find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]' ||
            diag "processes remain in $cgroup"
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
        [ ! -d "$cgroup" ] || diag "could not remove $cgroup"
    fi
    if [ -n "$testdir" ]; then
        if [ -n "${HARNESS_KEEP:-}" ]; then diag "kept $testdir"; else rm -rf "$testdir"; fi
    fi
    if [ "$finished" -eq 0 ]; then
        say "$passed passed, $failed failed"
        [ "$failed" -eq 0 ] && [ "$status" -eq 0 ] || exit 1
        exit 0
    fi
}

harness_start() {
    trap harness_cleanup EXIT
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
    testdir=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e.XXXXXX")
    chmod 0755 "$testdir"
    mkdir -p "$testdir/units"
    cp -r "$harness_dir/units/." "$testdir/units/"
    # Masks: units of the host that must never start in here (an empty /dev/null link masks a unit). The test
    # target pulls none of them; this guards against a dependency pulling one in. /dev is the host's: the /dev/log
    # socket would leave a symlink there.
    local unit
    for unit in systemd-journald-dev-log.socket systemd-journald-audit.socket \
        systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service \
        systemd-tmpfiles-clean.timer apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
        redis-server.service postgresql.service systemd-timesyncd.service systemd-pstore.service e2scrub_reap.service \
        systemd-sysusers.service sysinit.target basic.target multi-user.target default.target man-db.timer man-db.service; do
        ln -s /dev/null "$testdir/units/$unit"
    done
}

harness_boot() {
    local prepare=$1
    cp "$prepare" "$testdir/prepare.sh"
    cgroup="$cgroup_root/tollgate-e2e-$$"
    if ! mkdir "$cgroup" 2>/dev/null; then cgroup=""; skip "cannot create a cgroup under $cgroup_root (read-only?)"; fi
    # Under a pty (script) so that systemd has a console; with a clean environment (no NOTIFY_SOCKET, LISTEN_FDS or
    # SYSTEMD_* of whatever runs this test).
    setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb LANG=C.UTF-8 \
        script -qfec "bash '$harness_dir/namespace.sh' outer '$testdir' '$cgroup'" "$testdir/console.log" </dev/null >/dev/null 2>&1 &
    script_pid=$!
    local boot_started
    boot_started=$(now_ms)
    if wait_for 30 harness_boot_ok; then
        pass "systemd boots the test target in fresh namespaces ($(($(now_ms) - boot_started)) ms)"
    else
        fail "systemd boots the test target in fresh namespaces" "is-system-running: $([ -n "$sd_pid" ] && in_ns_for 5 systemctl is-system-running 2>&1)"
        [ -z "$sd_pid" ] || diag "$(sctl --failed 2>&1)"
        diag "--- console"
        diag "$(tail -n 40 "$testdir/console.log" 2>/dev/null | tr -d '\r')"
        exit 1
    fi
}

harness_boot_ok() {
    [ -n "$outer_pid" ] || outer_pid=$(cat "$testdir/outer.pid" 2>/dev/null)
    [ -n "$outer_pid" ] || return 1
    [ -n "$sd_pid" ] || sd_pid=$(pgrep -P "$outer_pid" -x systemd | head -n 1)
    [ -n "$sd_pid" ] || return 1
    [ "$(in_ns_for 5 systemctl is-system-running 2>/dev/null)" = running ]
}
