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
CHECKOV := .tools/checkov/bin/checkov
NODE := node_modules/.bin/node

.PHONY: help demo test deps lint typecheck clean postgres-binaries package synth infra-tools

help:
	@echo "make demo   - the main job: synthesize the stack and deploy it locally (PostgreSQL, moto, the packaged function)"
	@echo "make test   - the whole test suite (lint, types, tests)"

demo: deps $(NODE)
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(RUN) python -m local.demo

test: deps infra-tools lint typecheck
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(RUN) pytest

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

# The Lambda zip (build/lambda.zip) and the synthesized stack (cdktf.out/); `cdktf synth` works too.
package: deps
	$(RUN) python -m infra.packaging

synth: deps $(NODE)
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(RUN) python main.py

# What the infra tests need besides the venv: checkov (own venv: its pins clash with ours) and Node 22 for jsii.
infra-tools: $(CHECKOV) $(NODE)

$(CHECKOV): tests/infra/checkov-requirements.txt
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install -q --no-deps -r tests/infra/checkov-requirements.txt
	touch $@

$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf .venv .tools build cdktf.out .pytest_cache .mypy_cache .ruff_cache
