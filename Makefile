# The only entry points people need. `make up` installs and runs Cellplane on this machine;
# `make test` installs what the tests need and runs them (both idempotent). `make up MINIMAL=1`
# skips the cluster distros' software (`cellplane cluster distros` then says what is missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
PORT ?= 7400
NO_TLS ?=
# MINIMAL=1: skip the software of the shipped cluster distros (ZooKeeper, etcd, Redis).
MINIMAL ?=
# HOSTS=3: also run three dev hosts (network namespaces with their own agent; root).
HOSTS ?=

.PHONY: up test test-unit test-integration lint deps deps-test venv bench clean

deps:
	./scripts/install-system.sh $(if $(MINIMAL),--minimal,)

deps-test:
	./scripts/install-system.sh --test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,postgres]'

up: deps venv
	$(BIN)/cellplane up --port $(PORT) $(if $(DATA_DIR),--data-dir $(DATA_DIR),) $(if $(NO_TLS),--no-tls,) $(if $(HOSTS),--hosts $(HOSTS),)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src/cellplane
	$(BIN)/lint-imports

test-unit: venv
	$(BIN)/python -m pytest tests/unit -q -n auto

test-integration: venv
	$(BIN)/python -m pytest tests/integration tests/e2e -q -m integration

# Unit tests (pure, no engine) spread over the cores; then the integration and end-to-end
# tests, one at a time (they share the machine's podman, ports and network namespaces).
test: deps-test venv lint
	$(BIN)/python -m pytest tests/unit -q -n auto --durations=10
	$(BIN)/python -m pytest tests/integration tests/e2e -q --durations=30

bench: venv
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/cell_start.py --cells 50
	$(BIN)/python bench/burst.py --cells 1000
	$(BIN)/python bench/footprint.py --cells 100

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
