# clearhub — see README.md. Every target works on a fresh machine with Go.
SHELL := /bin/bash
GO ?= go
BIN := bin

.PHONY: all build run test test-short vet proto cluster interop bench clean fmt install check-ops

all: build

# The version both binaries report (hubd --version, hubctl version, cluster
# status); each main package has a `version` variable, "dev" by default.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/hubd ./cmd/hubd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/hubctl ./cmd/hubctl

# A single-node hub on embedded defaults: data in ./hub-data, dev CA made on
# first start, SIP on loopback 5060/5061, admin gRPC on 127.0.0.1:9443.
run: build
	./$(BIN)/hubd

# The whole suite with the race detector, end-to-end tests included (they
# build the binaries themselves).
test: vet
	$(GO) test -race -count=1 -timeout 25m ./...

# The Prometheus alert rules parse and their unit tests pass (promtool comes
# with Debian's prometheus package; CI installs it). The Go test in
# ops/metrics checks, under `make test`, that the rules and the Grafana
# dashboard name only metrics a node registers.
check-ops:
	@if ! command -v promtool >/dev/null; then \
		echo "check-ops: promtool not installed (apt-get install prometheus); skipped"; test -z "$$CI"; exit; fi; \
	promtool check rules ops/prometheus/clearhub-rules.yml && \
	cd ops/prometheus && promtool test rules clearhub-rules.test.yml

test-short:
	$(GO) test -short -count=1 ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './proto/hubv1/*')

# Regenerate the committed protobuf code (needs protoc: apt-get install protobuf-compiler).
proto:
	PATH="$$(dirname $$($(GO) tool -n protoc-gen-go)):$$(dirname $$($(GO) tool -n protoc-gen-go-grpc)):$$PATH" \
	protoc -I proto \
		--go_out=proto/hubv1 --go_opt=paths=source_relative \
		--go-grpc_out=proto/hubv1 --go-grpc_opt=paths=source_relative \
		proto/clearhub/v1/*.proto
	mv proto/hubv1/clearhub/v1/*.go proto/hubv1/ && rm -rf proto/hubv1/clearhub

# Three local nodes on loopback (ops/cluster.sh); Ctrl-C stops them all.
cluster: build
	./ops/cluster.sh

# Interop with real third-party SIP software: Kamailio member networks and
# SIPp users around a real hubd (installs Debian packages when missing).
interop: build
	bash ./tests/interop/run.sh

# Speed, measured (never asserted): SIP forwarding through an in-process hub
# with the real ledger, ledger appends/export/verify/proofs, replicated admin
# writes, then the load bench (tests/load/bench.sh): the project's driver
# (sipload) ramps MESSAGE over UDP and TLS through hubd and through a tuned
# Kamailio, pinned and unpinned, and checks the targets of issue 10. About
# twenty minutes on two cores. The SIPp ramp (tests/interop/bench.sh) is a
# separate cross-check, not part of this target.
bench: build
	$(GO) test -run '^$$' -bench MessageForward -benchtime 50000x ./hub/
	$(GO) test -run '^$$' -bench . ./ledger/
	$(GO) test -run '^$$' -bench Apply3NodeTLS -benchtime 200x ./raft/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./hub/lists/
	$(GO) test -run '^$$' -bench 'RoomPost' -benchtime 2000x ./raft/
	$(GO) test -run '^$$' -bench 'Fanout1000|Room200Sustained|RoomMemoryPerParticipant' -benchtime 4x ./chatroom/
	$(GO) test -run '^$$' -bench 'Relay$$|IdleSessions|SendLatency' -benchtime 3x ./hub/msrp/
	bash ./tests/load/bench.sh

# Installs the binaries, the systemd unit and (if none exists) the example
# configuration; DESTDIR and PREFIX work as usual for packaging.
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN)/hubd $(DESTDIR)$(PREFIX)/bin/hubd
	install -D -m 0755 $(BIN)/hubctl $(DESTDIR)$(PREFIX)/bin/hubctl
	install -D -m 0644 ops/systemd/hubd.service $(DESTDIR)/etc/systemd/system/hubd.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/clearhub/README.md
	install -d $(DESTDIR)$(PREFIX)/share/doc/clearhub/docs
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/clearhub/docs/
	test -e $(DESTDIR)/etc/clearhub/hubd.yaml || install -D -m 0644 ops/hubd.example.yaml $(DESTDIR)/etc/clearhub/hubd.yaml
	@echo "installed; edit /etc/clearhub/hubd.yaml, then: systemctl daemon-reload && systemctl enable --now hubd"

clean:
	rm -rf $(BIN)
