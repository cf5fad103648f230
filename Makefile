# The two set-up commands in the README: `make run` and `make test`.
# Both build the virtual environment from the project's own files on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-export load clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rebound serve --with-worker

test: $(STAMP) browser-deps
	$(BIN)/ruff check course lessons quizzes plugin tests bench
	$(BIN)/python -m pytest

# The real-browser tests (tests/browser) drive Debian's Chromium and inject axe-core from npm.
# Without them the tests are skipped with the reason; with CI=true they fail instead.
AXE := tests/browser/node_modules/axe-core/axe.min.js

.PHONY: browser-deps
browser-deps: $(AXE)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "Chromium is missing: run 'apt-get install chromium' as root, or the browser tests are skipped."; fi; \
	fi

$(AXE): tests/browser/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/axe-core/axe.min.js; \
	else echo "npm is missing: the browser tests need axe-core from 'npm ci' in tests/browser."; fi

lint: $(STAMP)
	$(BIN)/ruff check course lessons quizzes plugin tests bench

# HR export: CSV, XLSX and JSON beside PostgreSQL's COPY, 100,000 and 1,000,000 rows.
bench-export: $(STAMP)
	$(BIN)/python bench/export_bench.py

# Launch and case-step benchmarks, and the deadline-day load test (README, "Benchmarks").
# They need PostgreSQL at 127.0.0.1:5432 and install the `bench` extra themselves.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.launch_bench
	$(BIN)/python -m bench.case_step_bench

load: $(BENCH_STAMP)
	$(BIN)/python -m bench.load_test

clean:
	rm -rf $(VENV) .pytest_cache
