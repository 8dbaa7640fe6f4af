#!/usr/bin/env bash
# Builds the Debian package of Tollgate with dpkg-deb (`make deb`): release binaries linked with the Swift runtime
# statically, so the package installs on a machine without a Swift toolchain.
#
#   bash packaging/deb.sh            prints the path of the package it built (dist/tollgate_VERSION_ARCH.deb)
#
#   SCRATCH  SwiftPM scratch path of the static release build (default .build-static: never the tests' .build)
#   OUT      where the .deb goes (default dist)
#   DEB_XZ_LEVEL  xz level of the package (default 6, dpkg's: 34 MB in ~90 s here; `make test` uses 1: 39 MB in ~10 s)
#
# What goes where (Debian's paths):
#   /usr/sbin/tollgated, /usr/bin/tollgate                       stripped
#   /usr/lib/systemd/system/<every systemd/*.service, *.socket>  ExecStart= pointed at /usr/sbin/tollgated
#   /usr/lib/sysusers.d/tollgate.conf, /usr/lib/tmpfiles.d/tollgate.conf
#   /etc/tollgate/tollgated.json                                 conffile: the embedded default, production paths
#   /usr/share/man/man1/tollgate.1, man8/tollgated.8             generated from the binaries by swift-argument-parser's
#                                                                generate-manual tool (what its plugin runs)
#   /usr/share/man/man5/tollgated.json.5                         packaging/man: every configuration key
#   bash, zsh and fish completions                               tollgate --generate-completion-script
# Units are taken by glob, so a new unit in systemd/ is packaged (and, if a socket, enabled) with no change here.
set -euo pipefail
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings).
export TOLLGATE_UNCHECKED_EXCLUSIVITY="${TOLLGATE_UNCHECKED_EXCLUSIVITY:-1}"
cd "$(dirname "$0")/.."
repo=$(pwd)
scratch=${SCRATCH:-.build-static}
out=${OUT:-dist}
swift=${SWIFT:-swift}

for tool in dpkg-deb dpkg-shlibdeps strip gzip git; do
    command -v "$tool" >/dev/null || { echo "deb: $tool is missing (bash scripts/setup.sh installs it)" >&2; exit 1; }
done

# --- Version: the hand-kept release version and where git is. `git describe` names a tag when there is one
# (v0.2.0-3-gabc1234 -> 0.2.0+3.gabc1234); without tags, a build before the release: 0.1.0~git412.abc1234
# (`~` sorts before 0.1.0 itself). Uncommitted changes add `.dirty`.
release=$(sed -n 's/.*static let version = "\(.*\)".*/\1/p' Sources/TollgateBuildInfo/BuildInfo.swift)
[ -n "$release" ] || { echo "deb: no version in Sources/TollgateBuildInfo/BuildInfo.swift" >&2; exit 1; }
described=$(git describe --tags --long --dirty=.dirty --match 'v[0-9]*' 2>/dev/null || true)
if [[ "$described" =~ ^v([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)(\.dirty)?$ ]]; then
    version=${BASH_REMATCH[1]}
    [ "${BASH_REMATCH[2]}" = 0 ] || version+="+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
    version+=${BASH_REMATCH[4]}
else
    hash=$(git describe --always --abbrev=7 --dirty=.dirty)
    version="$release~git$(git rev-list --count HEAD).$hash"
fi
arch=$(dpkg --print-architecture)

# --- The static release build and the manual generator (swift-argument-parser's, same scratch path and flags). ---
build_started=$SECONDS
"$swift" build -c release --static-swift-stdlib --scratch-path "$scratch" --product tollgated >&2
"$swift" build -c release --static-swift-stdlib --scratch-path "$scratch" --product tollgate >&2
"$swift" build -c release --static-swift-stdlib --scratch-path "$scratch" --product generate-manual >&2
bin=$("$swift" build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)
echo "deb: static release build in $((SECONDS - build_started)) s" >&2
if ldd "$bin/tollgated" "$bin/tollgate" | grep -E 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime'; then
    echo "deb: the binaries still load the Swift runtime dynamically" >&2
    exit 1
fi

# --- The tree. ---
work=$scratch/deb
root=$work/root
rm -rf "$work"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" \
    "$root/usr/lib/tmpfiles.d" "$root/etc/tollgate" "$root/usr/share/man/man1" "$root/usr/share/man/man5" \
    "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/tollgate"
install -m 0755 "$bin/tollgated" "$root/usr/sbin/tollgated"
install -m 0755 "$bin/tollgate" "$root/usr/bin/tollgate"
strip --strip-unneeded "$root/usr/sbin/tollgated" "$root/usr/bin/tollgate"

sockets=()
for unit in systemd/*.service systemd/*.socket; do
    name=$(basename "$unit")
    sed 's|/usr/local/bin/tollgated|/usr/sbin/tollgated|g' "$unit" >"$root/usr/lib/systemd/system/$name"
    chmod 0644 "$root/usr/lib/systemd/system/$name"
    [[ "$name" != *.socket ]] || sockets+=("$name")
done
grep -q '^ExecStart=/usr/sbin/tollgated ' "$root/usr/lib/systemd/system/tollgated.service" ||
    { echo "deb: tollgated.service's ExecStart= does not point at /usr/sbin/tollgated" >&2; exit 1; }
install -m 0644 systemd/tollgate.sysusers.conf "$root/usr/lib/sysusers.d/tollgate.conf"
install -m 0644 systemd/tollgate.tmpfiles.conf "$root/usr/lib/tmpfiles.d/tollgate.conf"

bash scripts/production-config.sh "$bin/tollgated" >"$root/etc/tollgate/tollgated.json"
chmod 0644 "$root/etc/tollgate/tollgated.json"
echo /etc/tollgate/tollgated.json >"$root/DEBIAN/conffiles"

# Manual pages: the date of the commit, so that the same commit gives the same pages.
date=$(git log -1 --format=%cs)
manuals=$work/man
mkdir -p "$manuals"
"$bin/generate-manual" "$bin/tollgate" --section 1 --date "$date" --output-directory "$manuals"
"$bin/generate-manual" "$bin/tollgated" --section 8 --date "$date" --output-directory "$manuals"
gzip -9n <"$manuals/tollgate.1" >"$root/usr/share/man/man1/tollgate.1.gz"
gzip -9n <"$manuals/tollgated.8" >"$root/usr/share/man/man8/tollgated.8.gz"
gzip -9n <packaging/man/tollgated.json.5 >"$root/usr/share/man/man5/tollgated.json.5.gz"

# bash-completion sources the file: no #! line (it would only mislead).
"$bin/tollgate" --generate-completion-script bash | sed '1{/^#!/d}' >"$root/usr/share/bash-completion/completions/tollgate"
"$bin/tollgate" --generate-completion-script zsh >"$root/usr/share/zsh/vendor-completions/_tollgate"
"$bin/tollgate" --generate-completion-script fish >"$root/usr/share/fish/vendor_completions.d/tollgate.fish"
gzip -9n <README.md >"$root/usr/share/doc/tollgate/README.md.gz"

# The changelog of a native package: one entry, this build's commit.
{
    echo "tollgate ($version) unstable; urgency=medium"
    echo
    echo "  * Built from commit $(git rev-parse --short=12 HEAD)."
    echo
    echo " -- Tollgate maintainers <tollgate@example.invalid>  $(git log -1 --format=%aD)"
} | gzip -9n >"$root/usr/share/doc/tollgate/changelog.gz"

# copyright: the binaries link the Swift runtime, Foundation and every package dependency statically, so their
# licenses travel with them, in full, as the checkouts carry them.
{
    echo "Tollgate"
    echo "Copyright: the Tollgate authors. No license has been chosen for Tollgate's own code yet."
    echo
    echo "The binaries in this package contain, linked statically, the software below. Each one's license and"
    echo "notice files follow in full."
    toolchain=$(dirname "$(dirname "$(command -v "$swift")")")
    echo
    echo "==> The Swift runtime and Foundation ($("$swift" --version 2>/dev/null | head -n 1)): LICENSE.txt"
    cat "$toolchain/share/swift/LICENSE.txt"
    for checkout in "$scratch"/checkouts/*; do
        name=$(basename "$checkout")
        tag=$(git -C "$checkout" describe --tags 2>/dev/null || echo unknown)
        find "$checkout" -path "$checkout/.git" -prune -o \( -iname 'LICENSE*' -o -iname 'COPYING*' -o -iname 'NOTICE*' \) \
            -type f -print | grep -viE '/(Tests?|Benchmarks?|Examples?)/' | sort | while read -r file; do
            echo
            echo "==> $name $tag: ${file#"$checkout"/}"
            cat "$file"
        done
    done
} >"$root/usr/share/doc/tollgate/copyright"
[ "$(grep -c '^==> ' "$root/usr/share/doc/tollgate/copyright")" -gt 5 ] ||
    { echo "deb: the license files of the dependencies were not found under $scratch/checkouts" >&2; exit 1; }

for script in postinst prerm postrm; do
    sed "s|@SOCKETS@|${sockets[*]}|" "packaging/debian/$script" >"$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
done
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" -type f -exec chmod 0644 {} +

# --- Depends: dpkg-shlibdeps reads the libraries the binaries load and the installed packages' symbols files
# (it wants a debian/control to read, so it runs in a folder with a minimal one).
mkdir -p "$work/shlibs/debian"
printf 'Source: tollgate\n\nPackage: tollgate\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$repo/$root/usr/sbin/tollgated" "$repo/$root/usr/bin/tollgate" | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

cat >"$root/DEBIAN/control" <<EOF
Package: tollgate
Version: $version
Architecture: $arch
Maintainer: Tollgate maintainers <tollgate@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: systemd
Section: net
Priority: optional
Description: local enforcement point for API tokens and licenses
 tollgated runs next to an API server, gateway or worker and answers over a
 Unix socket whether a token may do something now: authentication, scopes,
 plans, quotas, rate limits and metering, from memory, with every change kept
 in a write-ahead journal. tollgate is its command-line client.
 .
 The daemon is socket-activated (tollgated.socket, tollgated-admin.socket);
 members of tollgate-clients may check and meter, members of tollgate-admin
 may administer. See tollgated(8), tollgated.json(5) and tollgate(1).
EOF

mkdir -p "$out"
deb="$out/tollgate_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z"${DEB_XZ_LEVEL:-6}" --build "$root" "$deb" >&2
echo "deb: $(du -k "$deb" | cut -f1) KiB, installed $(sed -n 's/^Installed-Size: //p' "$root/DEBIAN/control") KiB; Depends: $depends" >&2
echo "$deb"
