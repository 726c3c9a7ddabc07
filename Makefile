# vidlib — `make run` serves the API, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench services clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --quiet
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the package with its dev extras.

run: install  ## Serve on http://127.0.0.1:8000 (SQLite + local store under ./var by default).
	$(VENV)/bin/vidlib serve

services:  ## Make sure PostgreSQL and Redis are up (start them if not).
	@scripts/ensure-services.sh

test: install services  ## Every test, on both databases and both storage backends.
	$(VENV)/bin/pytest -n 2 --dist loadgroup -q

lint: install  ## ruff + mypy --strict.
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: install services  ## Benchmarks; writes docs/benchmarks.md.
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
