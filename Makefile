# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Each installs what it needs: PostgreSQL server binaries (apt, when missing and root),
# pipenv in a bootstrap venv (.tools/), and the locked environment (.venv/).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PIPENV_VERSION := 2026.10.3
PIP_INDEX_URL ?= $(shell $(PYTHON) -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')
export PIP_INDEX_URL
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
export PIPENV_NOSPIN := 1
export PIPENV_VERBOSITY := -1
PIPENV := .tools/bin/pipenv
RUN := $(PIPENV) run

.PHONY: help demo test deps lint typecheck clean postgres-binaries

help:
	@echo "make demo   - the main job: a local end-to-end run on a throwaway PostgreSQL"
	@echo "make test   - the whole test suite (lint, types, tests)"

demo: deps
	$(RUN) python -m local.demo

test: deps lint typecheck
	$(RUN) pytest

lint: deps
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: deps
	$(RUN) mypy

deps: .venv/.synced postgres-binaries

postgres-binaries:
	@$(PYTHON) -c 'import sys; sys.path.insert(0, "."); from local.postgres import find_bindir; find_bindir()' 2>/dev/null \
	  || { echo "installing PostgreSQL server binaries (apt)"; \
	       if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	       else echo "PostgreSQL server binaries are missing: install them (apt-get install postgresql) or set PG_BINDIR" >&2; exit 2; fi; }

$(PIPENV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q "pipenv==$(PIPENV_VERSION)"

.venv/.synced: Pipfile.lock lambda_src/pyproject.toml | $(PIPENV)
	$(PIPENV) sync --dev
	touch $@

clean:
	rm -rf .venv .tools build cdktf.out .pytest_cache .mypy_cache .ruff_cache
