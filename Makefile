# The two set-up commands: `make run` and `make test`. Both install into .venv when needed:
# the project editable with its test and cluster (Ray) extras (pyproject.toml), which also gives .venv/bin/attn.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: install run lint test test-fast browser-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

run: install
	$(PY) -m ui.serve --server.port $(PORT)

# Browser tests drive Debian's chromium with Playwright (no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(PY) -m ruff check .

test: lint browser-deps
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not slow and not browser"

bench: install
	$(PY) -m bench.variants_cpu

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache *.egg-info
