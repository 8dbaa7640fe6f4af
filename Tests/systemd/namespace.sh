#!/usr/bin/env bash
# Boots a real systemd as PID 1 in fresh namespaces for the tests that use Tests/systemd/harness.sh (see
# ../shared/recipes/systemd-in-a-namespace.md). Not meant to be run by hand.
#
#   namespace.sh outer TESTDIR CGROUP   run under a pty (script(1)); joins CGROUP, then unshares
#   namespace.sh inner TESTDIR TTY      PID 1 of the new namespaces: private mounts, TESTDIR/prepare.sh, exec systemd
#
# Everything the booted system may write goes to private mounts of this mount namespace (propagation private):
# /run and /tmp are tmpfs here (TESTDIR is bound back into the private /tmp); TESTDIR/prepare.sh adds the rest
# (tmpfs, or overlays whose upper layers are on the private /run), so the host's files are never changed.
set -euo pipefail

phase=$1 testdir=$2

case "$phase" in
outer)
    cgroup=$3
    echo $$ >"$cgroup/cgroup.procs"
    echo $$ >"$testdir/outer.pid"
    # The harness looks for the systemd that this unshare forks.
    exec unshare --fork --pid --mount --uts --ipc --net --cgroup --mount-proc --propagation private \
        bash "$0" inner "$testdir" "$(tty)"
    ;;
inner)
    tty=$3
    # Private /run (systemd's runtime state, the sockets) and /tmp; keep the test's own folder across the latter.
    mount -t tmpfs -o mode=755 tmpfs /run
    mkdir /run/hold && mount --bind "$testdir" /run/hold
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mkdir -p "$testdir" && mount --move /run/hold "$testdir" && rmdir /run/hold
    # What the test needs besides: more private mounts, and the installation (prepare-e2e.sh: the binaries and
    # configuration from the checkout; Tests/packaging/prepare-deb.sh: private /usr and /var for dpkg, no Swift).
    # Only the test's units (the project's units, drop-ins, masks) and the distribution's: not /etc/systemd/system
    # (the host's enabled services and any installed copy of the project's units) nor the generators' output.
    # prepare.sh may widen it (the package test needs /etc/systemd/system, where `systemctl enable` links).
    unit_path="$testdir/units:/lib/systemd/system"
    . "$testdir/prepare.sh"
    # A pure cgroup2 hierarchy rooted at the test's cgroup (the cgroup namespace), and a console for systemd.
    umount -R /sys/fs/cgroup 2>/dev/null || true
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    mount --bind "$tty" /dev/console
    export container=tollgate-e2e
    export SYSTEMD_UNIT_PATH="$unit_path"
    exec /lib/systemd/systemd --unit=tollgate-e2e.target --log-level=info --show-status=yes
    ;;
*)
    echo "usage: $0 outer|inner TESTDIR ..." >&2
    exit 2
    ;;
esac
