# The two commands of the README: `make run` and `make test`.
SWIFT ?= swift

.PHONY: run test test-fast test-slow build release setup clean install sanitize fuzz fuzz-smoke bench bench-smoke bench-proxy scale

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
## nginx (auth_request to Tollgate, to a static 204, and no auth) with wrk.
bench: setup
	bash scripts/bench.sh
	bash scripts/bench-proxy.sh --no-swift-build

## The forward-auth section alone.
bench-proxy: setup
	bash scripts/bench-proxy.sh

## The same at a tiny size (CI checks that it runs to completion).
bench-smoke: setup
	bash scripts/bench.sh --smoke
	bash scripts/bench-proxy.sh --smoke --no-swift-build

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
	rm -rf .build state
