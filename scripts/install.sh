#!/usr/bin/env bash
# Installs tollgated, tollgate, the systemd units, the sysusers entry and a default configuration.
#   PREFIX   where binaries go (default /usr/local; the unit's ExecStart expects /usr/local/bin)
#   DESTDIR  staging root for packaging (default: none)
# Run as root. Afterwards: systemctl enable --now tollgated.socket tollgated-admin.socket
set -euo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}

swift build -c release --product tollgated
swift build -c release --product tollgate
bin=$(swift build -c release --show-bin-path)

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/systemd/system" "$DESTDIR/etc/sysusers.d" "$DESTDIR/etc/tollgate"
install -m 0755 "$bin/tollgated" "$bin/tollgate" "$DESTDIR$PREFIX/bin/"
install -m 0644 systemd/tollgated.service systemd/tollgated.socket systemd/tollgated-admin.socket systemd/tollgated-http.socket systemd/tollgated-grpc.socket "$DESTDIR/etc/systemd/system/"
install -m 0644 systemd/tollgate.sysusers.conf "$DESTDIR/etc/sysusers.d/tollgate.conf"
if [ "$PREFIX" != /usr/local ]; then
    sed -i "s|/usr/local/bin/tollgated|$PREFIX/bin/tollgated|" "$DESTDIR/etc/systemd/system/tollgated.service"
fi
# Keep an existing configuration; install the embedded default (with the production state dir) otherwise.
if [ ! -e "$DESTDIR/etc/tollgate/tollgated.json" ]; then
    bash scripts/production-config.sh "$bin/tollgated" >"$DESTDIR/etc/tollgate/tollgated.json"
    chmod 0644 "$DESTDIR/etc/tollgate/tollgated.json"
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemd-sysusers /etc/sysusers.d/tollgate.conf
    systemctl daemon-reload
    echo "installed; start with: systemctl enable --now tollgated.socket tollgated-admin.socket"
else
    echo "installed under ${DESTDIR:-/} (systemd not running here: run systemd-sysusers and systemctl daemon-reload on the target)"
fi
