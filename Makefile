# The two commands of the README: `make run` and `make test`.
SWIFT ?= swift

.PHONY: run test build release setup clean install

## Run the daemon on its embedded default configuration (state and sockets in ./state).
run: setup
	$(SWIFT) build -c release --product tollgated
	$(SWIFT) build -c release --product tollgate
	exec "$$($(SWIFT) build -c release --show-bin-path)/tollgated"

## Run the whole test suite (installs what it needs first).
test:
	bash scripts/test.sh

## Install binaries, systemd units, sysusers entry and a default configuration (PREFIX, DESTDIR honoured).
install:
	bash scripts/install.sh

setup:
	bash scripts/setup.sh

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

clean:
	rm -rf .build state
