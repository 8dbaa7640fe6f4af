#!/usr/bin/env bash
# Installs what building and testing Tollgate needs on a fresh Debian 12 machine with Swift at /opt/swift.
# Idempotent: does nothing when everything is present.
set -euo pipefail

# nginx, caddy: the proxy tests (Tests/proxy/proxies.sh); haproxy: checked for a forward-auth mechanism (README);
# wrk: the forward-auth benchmark (scripts/bench-proxy.sh). curl: the proxy tests' client.
# dpkg-dev: dpkg-shlibdeps for `make deb` (it brings binutils: strip, readelf); man-db: the package test reads the
# installed manual pages. prometheus: promtool (`promtool check metrics` on a real scrape) and the server the metrics
# test starts (Tests/metrics/prometheus.sh); its packaged service is not used. tmux: `tollgate top` runs in a tmux
# pane whose screen the test reads (Tests/top/top.sh). postgresql: the fleet test (Tests/fleet/fleet.py) makes a
# throwaway cluster with its initdb and pg_ctl; the packaged cluster is never used. iproute2: the fleet test's
# network namespaces and veth links. libcurl4-openssl-dev: the identity providers' key fetch uses Foundation's
# URLSession, whose static library (the .deb's --static-swift-stdlib build) links libcurl, found through libcurl.so.
packages=(python3 pkg-config libsystemd-dev systemd nginx caddy haproxy wrk curl dpkg-dev binutils man-db prometheus tmux postgresql iproute2
    libcurl4-openssl-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected under /opt/swift)" >&2; exit 1; }

# PyPI: stripe, Stripe's official Python library; the webhook tests (Tests/stripe/stripe_webhooks.py) build and sign
# their events with it. Pinned to the major version the tests were written against (16: `stripe.Event.construct_from`,
# `stripe.WebhookSignature.generate_signature_header`, `stripe.Webhook.construct_event`).
if ! python3 -c 'import stripe, sys; sys.exit(0 if stripe.VERSION.split(".")[0] == "16" else 1)' 2>/dev/null; then
    echo "setup: installing the stripe Python package (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'stripe>=16,<17' \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'stripe>=16,<17'
fi

# PyPI: PyJWT with its crypto extra (the `cryptography` package); the identity-provider tests
# (Tests/identity/identity_exchange.py) mint their RS256, ES256 and EdDSA JWTs and JWKS with it.
if ! python3 -c 'import jwt, cryptography, sys; sys.exit(0 if jwt.__version__.split(".")[0] == "2" else 1)' 2>/dev/null; then
    echo "setup: installing the pyjwt[crypto] Python package (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'pyjwt[crypto]>=2.8,<3' \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'pyjwt[crypto]>=2.8,<3'
fi
# PyPI: grpcio and xds-protos (Envoy's published API definitions, compiled) play Envoy in the gRPC ext_authz tests
# (Tests/grpc/envoy_ext_authz.py) and drive the gRPC benchmark (scripts/bench-grpc.sh); PyYAML reads the shipped
# Envoy configuration there.
if ! python3 -c 'import grpc, yaml; from envoy.service.auth.v3 import external_auth_pb2_grpc' 2>/dev/null; then
    echo "setup: installing grpcio, xds-protos and PyYAML (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check grpcio xds-protos pyyaml \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages grpcio xds-protos pyyaml
fi
