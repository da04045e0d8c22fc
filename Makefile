# Quick start: `make run` serves the examples (and prints the job console's link); `make test` runs
# ruff, mypy and pytest (the console's browser tests in Debian's chromium, which it installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install install-test install-node install-browser install-bench bench \
	console-screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $(VENV)/.installed-test $@

# Node clients and validators the tests run (@medplum/core, fhir-kit-client), pinned by the lock
NODE_DIR := tests/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed
install-node: $(NODE_DIR)/node_modules/.installed
install-test: $(VENV)/.installed-test

# Debian's chromium, which the console's browser tests drive headless (Playwright brings no
# browser of its own); as root on CI, else through sudo
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
install-browser:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)
install-bench: $(VENV)/.installed-bench

run: install
	$(BIN)/fhir-server serve --host $(HOST) --port $(PORT) --load examples/jobs

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint install-node install-browser
	$(BIN)/python -m pytest

# docs/console-overview.png and docs/console-job.png, from a real server and browser
console-screenshots: install-test install-browser
	$(BIN)/python -m tests.console_screenshots

# Server against the ceiling app with wrk (apt-get install wrk); writes benchmarks/results.*
# e.g. make bench BENCH_ARGS="--sizes 1000 --duration 3"
# Before/after against a commit (served from a temporary git worktree of it):
# make bench BENCH_ARGS="--baseline c436025 --sizes 100000 --scenarios read search"
BENCH_ARGS ?=
bench: install-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(NODE_DIR)/node_modules
