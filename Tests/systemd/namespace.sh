#!/usr/bin/env bash
# Boots a real systemd as PID 1 in fresh namespaces for Tests/systemd/e2e.sh (see ../shared/recipes/
# systemd-in-a-namespace.md). Not meant to be run by hand.
#
#   namespace.sh outer TESTDIR CGROUP   run under a pty (script(1)); joins CGROUP, then unshares
#   namespace.sh inner TESTDIR TTY      PID 1 of the new namespaces: private mounts, "install", exec systemd
#
# Everything the booted system may write goes to private mounts of this mount namespace (propagation private):
#   /run, /tmp, /var/tmp, /var/lib, /var/log/journal  tmpfs (TESTDIR is bound back into the private /tmp)
#   /etc, /usr/local                                   overlays whose upper layers are on the private /run
# so the host's files are never changed: the sysusers groups, /etc/tollgate and the binaries in /usr/local/bin
# exist only in here, and the state directory (/var/lib/private/tollgate) is fresh every run.
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
    # PrivateTmp= makes folders in /var/tmp; StateDirectory= makes /var/lib/private/tollgate; journald writes
    # /var/log/journal. All private and empty.
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
    mount -t tmpfs -o mode=755 tmpfs /var/lib
    mkdir -p /var/log/journal && mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
    # Writable copies of /etc and /usr/local for the install step below.
    for dir in /etc /usr/local; do
        layer=/run/e2e-overlay${dir//\//-}
        mkdir -p "$layer/upper" "$layer/work"
        mount -t overlay overlay -o "lowerdir=$dir,upperdir=$layer/upper,workdir=$layer/work" "$dir"
    done
    # What scripts/install.sh does, minus the build and the units (those come first in SYSTEMD_UNIT_PATH).
    install -d /usr/local/bin /etc/sysusers.d /etc/tollgate
    install -m 0755 "$testdir/bin/tollgated" "$testdir/bin/tollgate" /usr/local/bin/
    install -m 0644 "$testdir/tollgate.sysusers.conf" /etc/sysusers.d/tollgate.conf
    install -m 0644 "$testdir/tollgated.json" /etc/tollgate/tollgated.json
    systemd-sysusers /etc/sysusers.d/tollgate.conf
    # A pure cgroup2 hierarchy rooted at the test's cgroup (the cgroup namespace), and a console for systemd.
    umount -R /sys/fs/cgroup 2>/dev/null || true
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    mount --bind "$tty" /dev/console
    export container=tollgate-e2e
    # Only the test's units (the project's units, drop-ins, masks) and the distribution's: not /etc/systemd/system
    # (the host's enabled services and any installed copy of the project's units) nor the generators' output.
    export SYSTEMD_UNIT_PATH="$testdir/units:/lib/systemd/system"
    exec /lib/systemd/systemd --unit=tollgate-e2e.target --log-level=info --show-status=yes
    ;;
*)
    echo "usage: $0 outer|inner TESTDIR ..." >&2
    exit 2
    ;;
esac
