# rwagent — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
GOTAGS    ?=
BIN       := bin
DEMO_DIR  ?= $(CURDIR)/.demo

.PHONY: all build test fuzz-short test-unit test-process test-durability test-browser deps-browser test-systemd deps-systemd test-container deps-container deps demo fmt vet fuzz bench bench-go clean

all: build

# grpcnotrace keeps gRPC (linked through Prometheus' config, for Google
# IAM) from importing golang.org/x/net/trace, whose templates would make
# the linker keep every exported method: 15 MB of the binary (README,
# "Service discovery"). GOTAGS is comma-separated.
build:
	$(GO) build -trimpath -tags 'grpcnotrace,$(GOTAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/rwagent ./cmd/rwagent
	$(GO) build -trimpath -tags grpcnotrace -ldflags '$(LDFLAGS)' -o $(BIN)/ampemu ./cmd/ampemu

# The test command of the README: vet, every package's tests (race detector
# on the concurrent packages), then the process-level test against Debian's
# prometheus and node_exporter.
test: deps vet test-unit test-process test-durability test-browser test-systemd test-container fuzz-short

test-unit:
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -timeout 15m ./pkg/wal/... ./pkg/remotewrite/... ./pkg/scrape/...

test-process: build
	RWAGENT_BIN=$(CURDIR)/$(BIN)/rwagent AMPEMU_BIN=$(CURDIR)/$(BIN)/ampemu $(GO) test -count=1 -tags process -timeout 10m -run Process ./test/process/...

# Crash tests: rwagent killed with SIGKILL and restarted on its data dir.
test-durability: build
	RWAGENT_BIN=$(CURDIR)/$(BIN)/rwagent $(GO) test -count=1 -tags durability -timeout 10m ./test/durability/...

# The status page as a user sees it: loaded in headless Chromium (Debian's
# chromium, installed by .ci/run and by deps-browser).
test-browser: deps-browser
	$(GO) test -count=1 -tags browser -timeout 5m -run Browser ./cmd/rwagent/

# Debian's systemd (systemd-analyze) and docker.io (dockerd), when missing.
deps-systemd:
	@command -v systemd-analyze >/dev/null || { \
	  echo "installing Debian's systemd (for systemd-analyze)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends systemd; }

deps-container:
	@command -v dockerd >/dev/null || { \
	  echo "installing Debian's docker.io (for dockerd)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends docker.io; }

deps-browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# The systemd unit: systemd-analyze verify and security (score at most
# 2.0), and the binary run as the unit runs it, with a notify socket.
test-systemd: build deps-systemd
	RWAGENT_BIN=$(CURDIR)/$(BIN)/rwagent $(GO) test -count=1 -tags systemd -timeout 5m ./test/systemd/...

# The image: the Dockerfile's runtime stage built from a static rwagent
# made here, on a dockerd of the test's own (root; nothing pulled), run
# and stopped. The test builds its own binary (CGO_ENABLED=0).
test-container: deps-container
	$(GO) test -count=1 -tags container -timeout 15m ./test/container/...

# Debian's prometheus and node_exporter for the process-level test.
deps:
	@command -v prometheus >/dev/null && command -v prometheus-node-exporter >/dev/null || { \
	  echo "installing Debian's prometheus and prometheus-node-exporter"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-node-exporter; }

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# A short fuzz run (about 30 s) of the decoders of what is on disk or on the wire, so CI
# fuzzes every time (the seed corpora of all fuzz targets run in test-unit).
fuzz-short:
# Counts, not durations: a -fuzztime duration can end the run with a
# spurious "context deadline exceeded" failure.
	$(GO) test -run XXX -fuzz '^FuzzReader$$' -fuzztime 2000x -fuzzminimizetime 100x ./pkg/wal/
	$(GO) test -run XXX -fuzz '^FuzzParseTrimLog$$' -fuzztime 30000x ./pkg/wal/
	$(GO) test -run XXX -fuzz '^FuzzCheckpointRecord$$' -fuzztime 30000x ./pkg/wal/
	$(GO) test -run XXX -fuzz '^FuzzUnmarshal$$' -fuzztime 30000x ./pkg/sendpos/
	$(GO) test -run XXX -fuzz '^FuzzParseRetryAfter$$' -fuzztime 30000x ./pkg/remotewrite/
	$(GO) test -run XXX -fuzz '^FuzzVerifyAuthorization$$' -fuzztime 30000x ./pkg/sigv4/
	$(GO) test -run XXX -fuzz '^FuzzProtobufParser$$' -fuzztime 30000x ./pkg/exposition/
	$(GO) test -run XXX -fuzz '^FuzzTextParser$$' -fuzztime 30000x ./pkg/exposition/
	$(GO) test -run XXX -fuzz '^FuzzOpenMetricsParser$$' -fuzztime 30000x -fuzzminimizetime 100x ./pkg/exposition/
	$(GO) test -run XXX -fuzz '^FuzzReadBody$$' -fuzztime 2000x ./pkg/scrape/
	$(GO) test -run XXX -fuzz '^FuzzDecode$$' -fuzztime 30000x ./pkg/gateway/
	$(GO) test -run XXX -fuzz '^FuzzDecodeDifferential$$' -fuzztime 30000x ./pkg/gateway/
	$(GO) test -run XXX -fuzz '^FuzzDecodeOTLP$$' -fuzztime 30000x ./pkg/gateway/

# Short runs of every fuzz target (seed corpora also run in `make test`).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Side-by-side load benchmark (bench/, cmd/rwbench; not part of `make test`):
# rwagent, Prometheus agent and vmagent, one at a time, against the same
# synthetic targets and counting receiver on 127.0.0.1. bench/peers.sh builds
# the peers into ~/.cache/rwagent-bench. Default: the small workload
# (10 × 1,000 series @ 5s); the large one is
#   make bench BENCH_FLAGS='-targets 50 -series 10000 -interval 15s -warmup 60s -duration 120s'
BENCH_FLAGS ?=
bench: build
	-bench/peers.sh
	$(GO) build -o $(BIN)/rwbench ./cmd/rwbench
	$(BIN)/rwbench -rwagent.bin $(BIN)/rwagent -json $(BIN)/bench-results.jsonl $(BENCH_FLAGS)

# The go-test benchmarks of the hot paths (scrape→WAL, WAL→wire, encode, sign).
bench-go:
	$(GO) test -run XXX -bench . -benchmem ./pkg/...

# The main job on a local default, no AWS account: ampemu as the AMP
# workspace, rwagent scraping itself and ampemu, signed remote write.
demo: build
	$(GO) run ./scripts/demo -bin $(BIN) -dir $(DEMO_DIR) $(DEMO_FLAGS)

clean:
	rm -rf $(BIN) $(DEMO_DIR)
