# Sourced by Tests/systemd/namespace.sh inside the namespace (as PID 1, before systemd starts) for
# Tests/packaging/deb-e2e.sh. dpkg needs its database and writes /usr, /etc and /var, so all three are overlays whose
# upper layers are on the private /run: installing, removing and purging the package changes nothing on the host.
#   /var/tmp, /var/log/journal   tmpfs (PrivateTmp= folders, journald)
#   /var/lib/private/tollgate    deleted in the overlay (a whiteout), so the state starts empty
#   /opt/swift                   an empty tmpfs: the packaged binaries must run without the Swift toolchain
# The units: the test's, /etc/systemd/system (where postinst's `systemctl enable` links them; any copy of the
# project's units that `make install` left there is deleted in the overlay), then the distribution's, where dpkg
# puts the package's.
for dir in /etc /usr /var; do
    layer=/run/e2e-overlay${dir//\//-}
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$layer/upper,workdir=$layer/work" "$dir"
done
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mkdir -p /var/log/journal && mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
rm -rf /var/lib/private/tollgate /var/lib/tollgate
if [ -d /opt/swift ]; then mount -t tmpfs -o size=1m,mode=755 tmpfs /opt/swift; fi
rm -f /etc/systemd/system/tollgated*
unit_path="$testdir/units:/etc/systemd/system:/lib/systemd/system"
