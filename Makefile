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

.PHONY: demo test setup browser-deps proxy-deps test-data atlas serve lint clean

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

# Debian's nginx for the production-serving tests (tests/e2e/test_proxy.py: nginx in front of gunicorn,
# run by the tests as a foreground process on a free port). Not installed: its .deb is downloaded
# (apt-get download, no root needed) and unpacked into .cache/nginx, so no system service starts.
# Without it those tests are skipped (SIGATLAS_REQUIRE_PROXY=1 makes them fail instead).
NGINX_DIR := .cache/nginx

proxy-deps:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || [ -x $(NGINX_DIR)/usr/sbin/nginx ]; then \
		echo "proxy: nginx present"; \
	elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
		echo "proxy: fetching Debian nginx into $(NGINX_DIR)"; \
		tmp=$$(mktemp -d); \
		( cd $$tmp && apt-get download -qq nginx >/dev/null 2>&1 ) \
		|| { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null && ( cd $$tmp && apt-get download -qq nginx >/dev/null ); }; \
		if ls $$tmp/nginx_*.deb >/dev/null 2>&1 && mkdir -p $(NGINX_DIR).part && dpkg-deb -x $$tmp/nginx_*.deb $(NGINX_DIR).part \
			&& $(NGINX_DIR).part/usr/sbin/nginx -v >/dev/null 2>&1; then \
			rm -rf $(NGINX_DIR) && mv $(NGINX_DIR).part $(NGINX_DIR) && echo "proxy: $(NGINX_DIR)/usr/sbin/nginx ready"; \
		else \
			rm -rf $(NGINX_DIR).part; echo "proxy: could not fetch nginx; the proxy tests will be skipped"; \
		fi; \
		rm -rf $$tmp; \
	else \
		echo "proxy: nginx not found and apt-get not available; the proxy tests will be skipped"; \
	fi

# Real test data that no PyPI package ships: HSMMSingleCell's FPKM of 271 myoblasts, taken from
# the Debian package r-bioc-hsmmsinglecell (its three .rda files; pyreadr reads them, no R
# needed). Fetched once, into .cache/; without apt-get the tests that need it are skipped
# (SIGATLAS_REQUIRE_TEST_DATA=1 makes them fail instead).
HSMM_DIR := .cache/test-data/HSMMSingleCell
HSMM_DATA := ./usr/lib/R/site-library/HSMMSingleCell/data
HSMM_FILES := HSMM_expr_matrix.rda HSMM_gene_annotation.rda HSMM_sample_sheet.rda

test-data:
	@if [ -d $(HSMM_DIR) ]; then \
		echo "test data: $(HSMM_DIR) present"; \
	elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
		echo "test data: fetching Debian r-bioc-hsmmsinglecell into $(HSMM_DIR)"; \
		tmp=$$(mktemp -d); \
		( cd $$tmp && apt-get download -qq r-bioc-hsmmsinglecell >/dev/null 2>&1 ) \
		|| { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null \
			&& ( cd $$tmp && apt-get download -qq r-bioc-hsmmsinglecell >/dev/null ); }; \
		if ls $$tmp/r-bioc-hsmmsinglecell_*.deb >/dev/null 2>&1 \
			&& dpkg-deb --fsys-tarfile $$tmp/r-bioc-hsmmsinglecell_*.deb \
				| tar -x -C $$tmp $(addprefix $(HSMM_DATA)/,$(HSMM_FILES)); then \
			mkdir -p $(dir $(HSMM_DIR)) && rm -rf $(HSMM_DIR).part && mkdir $(HSMM_DIR).part \
			&& mv $(addprefix $$tmp/$(HSMM_DATA)/,$(HSMM_FILES)) $(HSMM_DIR).part/ \
			&& mv $(HSMM_DIR).part $(HSMM_DIR) && echo "test data: $(HSMM_DIR) ready"; \
		else \
			echo "test data: could not download r-bioc-hsmmsinglecell; HSMM tests will be skipped"; \
		fi; \
		rm -rf $$tmp; \
	else \
		echo "test data: apt-get not found; HSMM tests will be skipped"; \
	fi

atlas: setup
	$(PY) -m compute simulate --out data/demo
	$(PY) -m compute build $(MANIFEST)
	@# the README's demo numbers, measured on the demo atlas just built (issue 36): never typed by hand
	@if [ "$(MANIFEST)" = "data_manifest.yaml" ]; then $(PY) -m compute demo-numbers --atlas $(ATLAS); fi

serve: setup
	$(PY) -m dashboard --atlas $(ATLAS) --port $(PORT)

demo: atlas serve

test: setup browser-deps proxy-deps test-data
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check compute dashboard tests

clean:
	rm -rf $(VENV) atlas data .pytest_cache .hypothesis
