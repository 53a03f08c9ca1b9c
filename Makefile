# confidisk — see README.md. `make demo` runs the main job, `make test` every test.
SHELL := /bin/bash
GO      ?= go
BIN     := bin/confidisk
PKGS    := ./...
STATICCHECK_VERSION := v0.8.2
export CGO_ENABLED := 0

.PHONY: all build deps test unit lint lab demo bench fuzz clean install-dracut

all: build

# bin/confidisk is the whole binary; bin/confidisk-guest (-tags confidisk_guest)
# leaves out the broker server, its stores and the operator's broker client:
# it is what an initrd carries (the lab's and the demo's guests).
build:
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/confidisk
	$(GO) build -trimpath -ldflags='-s -w' -tags confidisk_guest -o $(BIN)-guest ./cmd/confidisk

# Installs the oracles and lab tools (veritysetup, qemu, swtpm, ...) when run as root.
deps:
	@scripts/install-deps.sh

# Every test: lint, unit and oracle tests, then the lab (real kernel under QEMU).
test: deps build lint unit lab

# Unit and oracle tests; the lab scenarios (TestLab*) run in `make lab`.
unit:
	$(GO) test -count=1 -timeout 30m -skip '^TestLab' $(PKGS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) vet -tags confidisk_guest ./cmd/confidisk
	$(GO) vet -tags confidisk_insecure ./cmd/confidisk
	@scripts/check-deps.sh
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck $(PKGS)

# End-to-end scenarios in QEMU + swtpm with a real kernel; one LAB line each.
lab: build
	@scripts/lab.sh

# Installs the dracut module and the guest binary it puts into initrds on
# this machine (as root; DESTDIR for a package): then
# `dracut --add confidisk` makes a systemd initrd with confidisk (docs/distros.md).
install-dracut: build
	install -D -m 0755 $(BIN)-guest $(DESTDIR)/usr/bin/confidisk-guest
	install -D -m 0755 dist/dracut/90confidisk/module-setup.sh $(DESTDIR)/usr/lib/dracut/modules.d/90confidisk/module-setup.sh
	install -D -m 0644 dist/dracut/90confidisk/confidisk-boot.service $(DESTDIR)/usr/lib/dracut/modules.d/90confidisk/confidisk-boot.service

demo: deps build
	@scripts/demo.sh

bench: build
	@bench/verity.sh
	@bench/xts.sh
	@bench/luks.sh
	@bench/broker.sh
	@bench/image.sh

# Short fuzzing run of every fuzz target (FUZZTIME=30s by default): every
# "func FuzzX" in a _test.go file of the module.
FUZZTIME ?= 30s
fuzz:
	@for t in $$(git grep -o -e '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's#^\(.*\)/[^/]*_test.go:func #\1:#'); do \
	  echo "fuzz $$t"; $(GO) test ./$${t%%:*} -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s || exit 1; done

clean:
	rm -rf bin
