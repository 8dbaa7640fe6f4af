# The two commands of the README: `make run` and `make test`.
SWIFT ?= swift
# Release builds of the request path without dynamic exclusivity checks (Package.swift's hotPathSettings); a package
# that depends on this one by version does not set it and so may use TollgateClient.
export TOLLGATE_UNCHECKED_EXCLUSIVITY ?= 1

.PHONY: run test test-fast test-slow build release setup clean install deb sanitize fuzz fuzz-smoke bench bench-smoke bench-proxy scale

## Run the daemon on its embedded default configuration (state and sockets in ./state).
run: setup
	$(SWIFT) build -c release --product tollgated
	$(SWIFT) build -c release --product tollgate
	exec "$$($(SWIFT) build -c release --show-bin-path)/tollgated"

## Run the whole test suite (installs what it needs first): both tiers.
test:
	bash scripts/test.sh

## Tier 1: the Swift unit and component tests (about a minute after the build).
test-fast:
	bash scripts/test.sh fast

## Tier 2: crash loop, kill, soak, the Python client and the CLI against the live daemon, forward auth behind nginx
## and Caddy, systemd end to end.
test-slow:
	bash scripts/test.sh slow

## Install binaries, systemd units, sysusers entry and a default configuration (PREFIX, DESTDIR honoured).
install:
	bash scripts/install.sh

## The Debian package, dist/tollgate_VERSION_ARCH.deb: release binaries with the Swift runtime linked in statically
## (built in .build-static), units, sysusers/tmpfiles entries, the configuration as a conffile, man pages, completions.
deb: setup
	bash packaging/deb.sh

## The Swift tests under ThreadSanitizer and AddressSanitizer.
sanitize: setup
	bash scripts/sanitize.sh

## libFuzzer targets for the frame and message decoders, journal replay and record payloads (30 s each).
fuzz: setup
	bash scripts/fuzz.sh 30

## The same, a fixed number of inputs with a fixed seed (CI).
fuzz-smoke: setup
	FUZZ_RUNS=20000 bash scripts/fuzz.sh

## The side-by-side benchmark: raw AF_UNIX echo, Redis with a Lua check script, Tollgate; then forward auth through
## nginx (auth_request to Tollgate, to a static 204, and no auth) with wrk; then Envoy's gRPC ext_authz Check against an
## always-OK gRPC handler (bench-grpc.sh builds its release tollgate-grpc-empty; the daemon is already built).
bench: setup
	bash scripts/bench.sh
	bash scripts/bench-proxy.sh --no-swift-build
	bash scripts/bench-grpc.sh

## The forward-auth section alone.
bench-proxy: setup
	bash scripts/bench-proxy.sh

## The same at a tiny size (CI checks that it runs to completion).
bench-smoke: setup
	bash scripts/bench.sh --smoke
	bash scripts/bench-proxy.sh --smoke --no-swift-build
	bash scripts/bench-grpc.sh --smoke

## The scale run: 1 M tokens over 100 k licenses (memory per token, start-up time, check latency vs 1 k tokens).
scale: setup
	bash scripts/scale.sh

setup:
	bash scripts/setup.sh

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

clean:
	rm -rf .build .build-static dist state
