# SigAtlas: two commands for a new user.
#   make demo   set up, build the demo atlas (offline) and serve the dashboard
#   make test   set up and run the test suite (includes real-browser tests)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.sigatlas-installed
MANIFEST ?= data_manifest.yaml
ATLAS ?= atlas/demo
PORT ?= 8050

.PHONY: demo test setup browser-deps atlas serve lint clean

setup: $(STAMP)

# Re-installs whenever pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "SigAtlas needs Python >= 3.11, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned, so that nothing later resolves a CUDA build
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# Debian's Chromium and chromedriver for the browser tests (no browser download).
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "browser: $$(chromium --version 2>/dev/null | head -1)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "browser: installing Debian chromium + chromium-driver"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "browser: chromium/chromedriver not found and cannot apt-get them;"; \
		echo "         browser tests will be skipped (set CHROME_BIN and CHROMEDRIVER to run them)."; \
	fi

atlas: setup
	$(PY) -m compute simulate --out data/demo
	$(PY) -m compute build $(MANIFEST)

serve: setup
	$(PY) -m dashboard --atlas $(ATLAS) --port $(PORT)

demo: atlas serve

test: setup browser-deps
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check compute dashboard tests

clean:
	rm -rf $(VENV) atlas data .pytest_cache .hypothesis
