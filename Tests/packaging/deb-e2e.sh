#!/usr/bin/env bash
# The Debian package end to end: installed with dpkg into a fresh systemd booted as PID 1 in namespaces where the
# Swift toolchain (/opt/swift) is hidden; the files where Debian puts them; postinst's groups, socket folder and
# sockets; the README's walkthrough against the socket-activated service with the CLI's defaults (no socket
# options: it finds /run/tollgate/…); an upgrade (the daemon restarted, the edited conffile kept); then `dpkg -r`
# (conffile, groups and state kept), a reinstallation that carries on, and `dpkg --purge` (everything gone).
#
#   bash Tests/packaging/deb-e2e.sh dist/tollgate_VERSION_ARCH.deb      (make deb builds it)
#
# Uses Tests/systemd/harness.sh (booting, bounded steps, cleanup). Prints `ok - …` / `not ok - …` per check and
# `N passed, M failed`; needs root, and prints `# SKIP …` with `0 passed, 0 failed` where systemd cannot boot in
# namespaces. DEB_E2E_KEEP=1 keeps the test folder.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
deb=${1:-}
HARNESS_TIME_LIMIT=${DEB_E2E_TIME_LIMIT:-240}
HARNESS_KEEP=${DEB_E2E_KEEP:-}
. "$here/../systemd/harness.sh"
harness_preconditions dpkg dpkg-deb
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    fail "package" "usage: $0 PATH/TO/tollgate_VERSION_ARCH.deb (make deb); no file '${deb}'"
    say "0 passed, 1 failed"
    exit 1
fi
version=$(dpkg-deb -f "$deb" Version)

harness_start
cp "$deb" "$testdir/tollgate.deb"
cp "$here/units/tollgate-e2e.target" "$testdir/units/"
harness_boot "$here/prepare-deb.sh"

# `run NAME COMMAND...` inside the namespace: output in $out, status in $rc.
out="" rc=0
run() { out=$(in_ns_for 120 "$@" 2>&1); rc=$?; }

# --- 1. No Swift in here; the package installs. ---
run sh -c 'ls -A /opt/swift 2>/dev/null | wc -l; command -v swift || echo none'
if [ "$out" = $'0\nnone' ]; then
    pass "the namespace has no Swift toolchain (/opt/swift empty, no swift on PATH)"
else
    fail "the namespace has no Swift toolchain" "$out"
fi
install_started=$(now_ms)
run dpkg -i "$testdir/tollgate.deb"
if [ "$rc" -eq 0 ]; then
    pass "dpkg -i installs tollgate $version ($(($(now_ms) - install_started)) ms, maintainer scripts included)"
else
    fail "dpkg -i installs tollgate $version" "$out"
    exit 1
fi

# --- 2. Files where Debian puts them. ---
run dpkg -L tollgate
listing=$out
missing=""
for path in /usr/sbin/tollgated /usr/bin/tollgate /usr/lib/systemd/system/tollgated.service \
    /usr/lib/systemd/system/tollgated.socket /usr/lib/systemd/system/tollgated-admin.socket \
    /usr/lib/sysusers.d/tollgate.conf /usr/lib/tmpfiles.d/tollgate.conf /etc/tollgate/tollgated.json \
    /usr/share/man/man1/tollgate.1.gz /usr/share/man/man8/tollgated.8.gz /usr/share/man/man5/tollgated.json.5.gz \
    /usr/share/bash-completion/completions/tollgate /usr/share/zsh/vendor-completions/_tollgate \
    /usr/share/fish/vendor_completions.d/tollgate.fish; do
    grep -qx "$path" <<<"$listing" || missing+="$path "
done
# Every unit of the checkout is in the package (they are taken by glob).
for unit in "$repo"/systemd/*.service "$repo"/systemd/*.socket; do
    grep -qx "/usr/lib/systemd/system/$(basename "$unit")" <<<"$listing" || missing+="$(basename "$unit") "
done
if [ -z "$missing" ]; then
    pass "binaries, units, sysusers, tmpfiles, configuration, man pages and completions in Debian's paths"
else
    fail "binaries, units, sysusers, tmpfiles, configuration, man pages and completions in Debian's paths" "missing: $missing"$'\n'"$listing"
fi
run dpkg-query -W -f '${Conffiles}' tollgate
if grep -q '^ /etc/tollgate/tollgated.json [0-9a-f]\{32\}$' <<<"$out"; then
    pass "/etc/tollgate/tollgated.json is a conffile"
else
    fail "/etc/tollgate/tollgated.json is a conffile" "$out"
fi
# Wide lines, so that no name is hyphenated across two.
run env MANWIDTH=400 sh -c 'man -P cat 8 tollgated && man -P cat 5 tollgated.json && man -P cat 1 tollgate'
if [ "$rc" -eq 0 ] && grep -q 'tollgated.json(5)' <<<"$out" && grep -q 'ledger_retention_days' <<<"$out" &&
    grep -q 'usage export' <<<"$out"; then
    pass "man tollgated, man 5 tollgated.json and man tollgate are installed and render"
else
    fail "man tollgated, man 5 tollgated.json and man tollgate are installed and render" "$(head -c 1500 <<<"$out")"
fi
run bash -c '. /usr/share/bash-completion/completions/tollgate && complete -p tollgate'
if [ "$rc" -eq 0 ] && grep -q 'tollgate' <<<"$out"; then
    pass "the bash completion loads (complete -p tollgate: $out)"
else
    fail "the bash completion loads" "$out"
fi
documentation=$(prop tollgated.service Documentation)
exec_start=$(prop tollgated.service ExecStart)
if grep -q 'man:tollgated(8)' <<<"$documentation" && grep -q 'path=/usr/sbin/tollgated ' <<<"$exec_start"; then
    pass "tollgated.service: Documentation=man:tollgated(8), ExecStart=/usr/sbin/tollgated"
else
    fail "tollgated.service: Documentation=man:tollgated(8), ExecStart=/usr/sbin/tollgated" "$documentation"$'\n'"$exec_start"
fi

# --- 3. What postinst did: groups, the socket folder, sockets enabled and listening, the daemon not yet started. ---
problems=""
for group in tollgate-clients tollgate-admin; do
    in_ns getent group "$group" >/dev/null || problems+="no group $group"$'\n'
done
run stat -c '%a %U:%G' /run/tollgate
[ "$out" = "755 root:root" ] || problems+="/run/tollgate: $out"$'\n'
for unit in tollgated.socket tollgated-admin.socket; do
    [ "$(state $unit)" = active/listening ] || problems+="$unit is $(state $unit)"$'\n'
    [ "$(sctl is-enabled $unit 2>&1)" = enabled ] || problems+="$unit is $(sctl is-enabled $unit 2>&1)"$'\n'
done
[ "$(state tollgated.service)" = inactive/dead ] || problems+="tollgated.service is $(state tollgated.service) before any request"$'\n'
if [ -z "$problems" ]; then
    pass "postinst: groups tollgate-clients and tollgate-admin, /run/tollgate 0755, both sockets enabled and listening, the daemon not started"
else
    fail "postinst: groups, /run/tollgate, sockets enabled and listening, the daemon not started" "$problems"
fi

# --- 4. The README's walkthrough with the CLI's defaults: no --socket, no --admin-socket, no environment. ---
# Secrets go through files and standard input, never on a command line.
tg() { in_ns /usr/bin/tollgate "$@"; }
secret_file=$testdir/secret
step() {
    local name=$1 want_status=$2 want=$3 output status
    shift 3
    output=$("$@" 2>&1)
    status=$?
    if [ "$status" -eq "$want_status" ] && grep -qE "$want" <<<"$output"; then
        pass "walkthrough: $name"
    else
        fail "walkthrough: $name" "exit $status (want $want_status), output: $output"
    fi
}
step "tollgate org set acme (the first request starts the daemon)" 0 "acme" tg org set acme --name "Acme Corp"
step "tollgate plan set team" 0 "team" tg plan set team --entitlement read --entitlement write \
    --quota requests:month:1000 --quota bytes:month:100000000
step "tollgate license set lic_acme --plan team --org acme" 0 "lic_acme" \
    tg license set lic_acme --plan team --org acme --customer "Acme Corp"
(umask 077 && tg issue --license lic_acme --subject svc-reports --scope read --ttl 90d >"$secret_file" 2>"$testdir/issue.err")
issue_status=$?
if [ "$issue_status" -eq 0 ] && grep -qE '^tg_live_[0-9A-Za-z]{49}$' "$secret_file"; then
    pass "walkthrough: tollgate issue prints one secret ($(cat "$testdir/issue.err"))"
else
    fail "walkthrough: tollgate issue prints one secret" "exit $issue_status: $(cat "$testdir/issue.err")"
fi
step "check - --scope read --meter requests --cost 1: allow, remaining=999/1000" 0 "^allow .*remaining=999/1000" \
    tg check - --scope read --meter requests --cost 1 <"$secret_file"
step "check - --scope write: deny insufficient_scope (exit 3)" 3 "^deny insufficient_scope" \
    tg check - --scope write <"$secret_file"
step "meter - bytes 4096 --idempotency-key evt-42: recorded" 0 "^recorded remaining=99995904/100000000" \
    tg meter - bytes 4096 --idempotency-key evt-42 <"$secret_file"
step "the same meter again: duplicate, not counted" 0 "^duplicate .*remaining=99995904/100000000" \
    tg meter - bytes 4096 --idempotency-key evt-42 <"$secret_file"
step "revoke --secret -: revoked 1 token" 0 "revoked 1 token" tg revoke --secret - --reason "leaked in a log" <"$secret_file"
step "check - after the revocation: deny revoked (exit 3)" 3 "^deny revoked" tg check - <"$secret_file"
step "tollgate --json stats" 0 '"checks_denied":2' tg --json stats
main_pid=$(prop tollgated.service MainPID)
run readlink "/proc/$main_pid/exe"
if [ "$(state tollgated.service)" = active/running ] && [ "$out" = /usr/sbin/tollgated ]; then
    pass "the walkthrough was served by the socket-activated tollgated.service (/usr/sbin/tollgated, MainPID $main_pid)"
else
    fail "the walkthrough was served by the socket-activated tollgated.service" "state $(state tollgated.service), exe $out"
fi
# A non-root operator in tollgate-admin, with the defaults too.
admins_gid=$(in_ns getent group tollgate-admin | cut -d: -f3)
run setpriv --reuid=65534 --regid=65534 --groups="${admins_gid:-0}" /usr/bin/tollgate license get lic_acme
if [ -n "$admins_gid" ] && [ "$rc" -eq 0 ] && grep -q 'team' <<<"$out"; then
    pass "a non-root member of tollgate-admin administers with the CLI's defaults (license get)"
else
    fail "a non-root member of tollgate-admin administers with the CLI's defaults" "exit $rc: $out"
fi
if [ -s "$secret_file" ]; then
    in_ns journalctl --no-pager -o export >"$testdir/journal.export" 2>&1
    if grep -aqF -f "$secret_file" "$testdir/journal.export"; then
        fail "the secret appears nowhere in the journal" "it does"
    else
        pass "the secret appears nowhere in the journal"
    fi
fi

# --- 5. An upgrade (this package under a higher version): postinst restarts the running daemon with the new
# binary; the edited conffile and the state are kept. ---
in_ns sed -i 's/"log_level": "info"/"log_level": "notice"/' /etc/tollgate/tollgated.json
problems=""
if dpkg-deb -R "$testdir/tollgate.deb" "$testdir/upgrade" &&
    sed -i "s/^Version: .*/Version: $version+upgrade/" "$testdir/upgrade/DEBIAN/control" &&
    dpkg-deb --root-owner-group -Znone --build "$testdir/upgrade" "$testdir/tollgate-upgrade.deb" >/dev/null; then
    rm -rf "$testdir/upgrade"
    pid_before=$(prop tollgated.service MainPID)
    run dpkg -i "$testdir/tollgate-upgrade.deb"
    [ "$rc" -eq 0 ] || problems+="dpkg -i (upgrade): exit $rc: $out"$'\n'
    installed=$(in_ns dpkg-query -W -f '${Version} ${Status}' tollgate 2>&1)
    [ "$installed" = "$version+upgrade install ok installed" ] || problems+="installed: $installed"$'\n'
    wait_for 10 eval '[ "$(state tollgated.service)" = active/running ]'
    pid_after=$(prop tollgated.service MainPID)
    { [ "${pid_after:-0}" -gt 0 ] && [ "$pid_after" != "$pid_before" ]; } ||
        problems+="the daemon was not restarted: MainPID $pid_before -> $pid_after, $(state tollgated.service)"$'\n'
    in_ns grep -q '"log_level": "notice"' /etc/tollgate/tollgated.json || problems+="the edited conffile was replaced"$'\n'
    run /usr/bin/tollgate license get lic_acme
    [ "$rc" -eq 0 ] && grep -q team <<<"$out" || problems+="license get lic_acme after the upgrade: exit $rc: $out"$'\n'
else
    problems+="could not repack the package under a higher version"$'\n'
fi
if [ -z "$problems" ]; then
    pass "upgrade to $version+upgrade: the daemon restarted with the new binary (MainPID $pid_before -> $pid_after), edited conffile and state kept"
else
    fail "upgrade: the daemon restarted with the new binary, edited conffile and state kept" "$problems"
fi

# --- 6. dpkg -r: stops everything, removes the files, keeps the (edited) conffile, the groups and the state. ---
run dpkg -r tollgate
remove_status=$rc remove_out=$out
problems=""
[ "$remove_status" -eq 0 ] || problems+="dpkg -r: exit $remove_status: $remove_out"$'\n'
[ "$(in_ns dpkg-query -W -f '${Status}' tollgate 2>&1)" = "deinstall ok config-files" ] ||
    problems+="status: $(in_ns dpkg-query -W -f '${Status}' tollgate 2>&1)"$'\n'
in_ns pgrep -x tollgated >/dev/null && problems+="tollgated still runs"$'\n'
for path in /usr/sbin/tollgated /usr/bin/tollgate /usr/lib/systemd/system/tollgated.service /run/tollgate/tollgate.sock; do
    in_ns test -e "$path" && problems+="$path is still there"$'\n'
done
in_ns grep -q '"log_level": "notice"' /etc/tollgate/tollgated.json || problems+="the edited /etc/tollgate/tollgated.json is gone"$'\n'
in_ns getent group tollgate-admin >/dev/null || problems+="the group tollgate-admin is gone"$'\n'
in_ns test -d /var/lib/private/tollgate || problems+="the state /var/lib/private/tollgate is gone"$'\n'
if [ -z "$problems" ]; then
    pass "dpkg -r: daemon and sockets stopped, files removed; conffile (as edited), groups and state kept"
else
    fail "dpkg -r: daemon and sockets stopped, files removed; conffile (as edited), groups and state kept" "$problems"
fi

# --- 7. Reinstalling carries on: the edited conffile stays, the sockets listen again, the state is there. ---
run dpkg -i "$testdir/tollgate.deb"
reinstall_status=$rc reinstall_out=$out
problems=""
[ "$reinstall_status" -eq 0 ] || problems+="dpkg -i: exit $reinstall_status: $reinstall_out"$'\n'
in_ns grep -q '"log_level": "notice"' /etc/tollgate/tollgated.json || problems+="the edited conffile was replaced"$'\n'
[ "$(state tollgated.socket)" = active/listening ] || problems+="tollgated.socket is $(state tollgated.socket)"$'\n'
run /usr/bin/tollgate check - <"$secret_file"
[ "$rc" -eq 3 ] && grep -q '^deny revoked' <<<"$out" || problems+="check of the revoked token: exit $rc: $out"$'\n'
if [ -z "$problems" ]; then
    pass "dpkg -i again: the edited conffile kept, sockets listening, the state carried on (the revoked token is still revoked)"
else
    fail "dpkg -i again: the edited conffile kept, sockets listening, the state carried on" "$problems"
fi

# --- 8. dpkg --purge: nothing of the package is left but its groups. ---
run dpkg --purge tollgate
purge_status=$rc purge_out=$out
problems=""
[ "$purge_status" -eq 0 ] || problems+="dpkg --purge: exit $purge_status: $purge_out"$'\n'
run dpkg-query -W -f '${Status}' tollgate
[ "$rc" -ne 0 ] || [ "$out" = "unknown ok not-installed" ] || problems+="status: $out"$'\n'
for path in /etc/tollgate /var/lib/private/tollgate /var/lib/tollgate /usr/sbin/tollgated; do
    in_ns test -e "$path" && problems+="$path is still there"$'\n'
done
links=$(in_ns find /etc/systemd/system -name 'tollgated*' 2>&1)
[ -z "$links" ] || problems+="enablement links left: $links"$'\n'
in_ns pgrep -x tollgated >/dev/null && problems+="tollgated still runs"$'\n'
if [ -z "$problems" ]; then
    pass "dpkg --purge: conffile, /etc/tollgate, the state and the units' enablement links are gone"
else
    fail "dpkg --purge: conffile, /etc/tollgate, the state and the units' enablement links are gone" "$problems"
fi

diag "total $(($(now_ms) - started_ms)) ms"
