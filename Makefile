# xvs: make builds from the committed BPF bindings (no clang needed).
GO        ?= go
BIN       := bin
CLANG_MAJOR := 14
GOTESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: all build generate test bench demo clean lint fmt deps deps-generate

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/xvsd ./cmd/xvsadm

# Regenerates the bpf2go bindings (bpf/, bpf/expire/, bpf/install/, bench/); refuses another clang major so that the
# committed object stays reproducible.
generate: deps-generate
	@v=$$(clang -dumpversion | cut -d. -f1); \
	if [ "$$v" != "$(CLANG_MAJOR)" ]; then \
		echo "make generate needs clang $(CLANG_MAJOR) (Debian 12's clang), found $$v" >&2; exit 1; fi
	$(GO) generate ./bpf/... ./bench/

# Tests that need root (BPF program runs, namespaces) skip with a reason
# when not root.
test: deps
	$(GO) vet ./...
	$(GO) test $(GOTESTFLAGS) ./...

bench: deps build
	bash scripts/bench.sh

demo: deps build
	bash scripts/demo.sh

deps:
	@bash scripts/deps.sh test

deps-generate:
	@bash scripts/deps.sh generate

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
