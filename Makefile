# Ferry: two commands on a fresh machine — `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.install-stamp
BUF_VERSION := 1.75.0
BUF := .tools/buf/node_modules/.bin/buf
# sdk before the services that depend on it (ferry-sdk): listed after them, pip (25.x)
# looks for ferry-sdk on the index instead of taking the editable copy in the same command.
PACKAGES := protos libs/profile services/common sdk services/registry services/ingest services/train services/serve services/monitor
INSTALL_INPUTS := constraints.txt requirements-dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help install protos lint typecheck test demo up down status bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is (re)built when missing or when any dependency list changed.
$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-dev.txt \
	  -e protos $(foreach p,$(filter-out protos,$(PACKAGES)),-e '$(p)[test,dev]')
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install every package (editable, with test and dev extras)

protos: $(STAMP) ## Regenerate the Python stubs beside the .proto files
	$(PY) tools/protogen.py

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools/buf @bufbuild/buf@$(BUF_VERSION)

lint: $(STAMP) $(BUF) ## ruff check + ruff format --check + buf lint (STANDARD rules)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd protos && ../$(BUF) lint

typecheck: $(STAMP) ## mypy --strict on the source
	$(VENV)/bin/mypy protos/ferry libs/*/src services/*/src sdk/src

test: $(STAMP) ## The whole test suite (starts PostgreSQL and installs Ceph RGW first when run as root)
	scripts/ensure-postgres.sh
	scripts/ensure-ceph.sh
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# DEMO_ARGS="--timings timings.json" also writes each step's wall time (bench/lifecycle reads them).
demo: $(STAMP) ## Start the local stack, walk the whole lifecycle on scikit-learn's wine data, stop it
	$(PY) demo/lifecycle.py $(DEMO_ARGS)

up: $(STAMP) ## Start the five services in the background (logs in .ferry/logs)
	$(VENV)/bin/ferry up

down: ## Stop the local stack gracefully
	@test -x $(VENV)/bin/ferry && $(VENV)/bin/ferry down || true

status: $(STAMP) ## Health of each service
	$(VENV)/bin/ferry status

bench: $(STAMP) ## Run every benchmark (prints tables with ratios to baselines)
	@for b in bench/*/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove the venv, tool caches and local state
	rm -rf $(VENV) .tools .ferry .pytest_cache .mypy_cache .ruff_cache
