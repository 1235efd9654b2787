# imgseal — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RIG := tests/sigstore_rig

.PHONY: install demo test lint bench system-deps node-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests need: the CNCF distribution registry, and SoftHSM v2 with OpenSC's
# pkcs11-tool for the PKCS#11 token tests (skopeo for benchmarks is installed by `make bench`).
system-deps:
	@missing=""; \
	command -v docker-registry >/dev/null 2>&1 || missing="$$missing docker-registry"; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	command -v pkcs11-tool >/dev/null 2>&1 || missing="$$missing opensc"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Node packages for the Sigstore mock services (pinned by the lock file).
node-deps:
	@if [ -f $(RIG)/package-lock.json ]; then \
	  if [ ! -d $(RIG)/node_modules ] || [ $(RIG)/package-lock.json -nt $(RIG)/node_modules/.package-lock.json ]; then \
	    if ! command -v npm >/dev/null 2>&1; then \
	      SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	      $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; \
	    fi; \
	    (cd $(RIG) && npm ci --no-audit --no-fund --loglevel=error); \
	  fi; \
	fi

demo: install
	$(BIN)/python -m imgseal.demo

lint: install
	$(BIN)/ruff check imgseal signer verifier keys tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps node-deps lint
	$(BIN)/python -m pytest -q -n 2 --durations=15

bench: install system-deps node-deps
	@command -v skopeo >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq skopeo; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(RIG)/node_modules .mypy_cache .ruff_cache .pytest_cache
