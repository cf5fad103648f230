# The two set-up commands in the README: `make run` and `make test`.
# Both build the virtual environment from the project's own files on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-export clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rebound serve --with-worker

test: $(STAMP)
	$(BIN)/ruff check course lessons quizzes plugin tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check course lessons quizzes plugin tests bench

# HR export: CSV, XLSX and JSON beside PostgreSQL's COPY, 100,000 and 1,000,000 rows.
bench-export: $(STAMP)
	$(BIN)/python bench/export_bench.py

clean:
	rm -rf $(VENV) .pytest_cache
