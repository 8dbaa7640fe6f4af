# Sourced by namespace.sh inside the namespace (as PID 1, before systemd starts) for Tests/systemd/e2e.sh: what
# scripts/install.sh does, minus the build and the units (those come first in SYSTEMD_UNIT_PATH), on private mounts:
#   /var/tmp, /var/lib, /var/log/journal   tmpfs: PrivateTmp= makes folders in /var/tmp, StateDirectory= makes
#                                          /var/lib/private/tollgate (fresh every run), journald writes /var/log/journal
#   /etc, /usr/local                       overlays whose upper layers are on the private /run
# so the sysusers groups, /etc/tollgate and the binaries in /usr/local/bin exist only in here.
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=755 tmpfs /var/lib
mkdir -p /var/log/journal && mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
for dir in /etc /usr/local; do
    layer=/run/e2e-overlay${dir//\//-}
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$layer/upper,workdir=$layer/work" "$dir"
done
install -d /usr/local/bin /etc/sysusers.d /etc/tollgate
install -m 0755 "$testdir/bin/tollgated" "$testdir/bin/tollgate" /usr/local/bin/
install -m 0644 "$testdir/tollgate.sysusers.conf" /etc/sysusers.d/tollgate.conf
install -m 0644 "$testdir/tollgated.json" /etc/tollgate/tollgated.json
systemd-sysusers /etc/sysusers.d/tollgate.conf
