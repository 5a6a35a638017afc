# Each target builds .venv itself when it is missing or older than pyproject.toml,
# so `make run` and `make test` work on a fresh machine with only python3 and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export QDK_PYTHON_TELEMETRY := none
export PYTHONDONTWRITEBYTECODE := 1

PYTEST := $(BIN)/pytest -p no:cacheprovider
DOCTESTS := --doctest-modules src/qrelease --ignore=src/qrelease/__main__.py

.PHONY: run test lint unit tests bench failover clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/qrelease demo

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/lint-imports

# The fast lane: pure and in-process tests (real git, SQLite, HTTP, Textual; no venv
# builds, no qdk) and the docstring examples, four at a time. Under a minute.
unit: $(STAMP)
	$(PYTEST) -q -n 4 tests/unit $(DOCTESTS)

# Everything: unit, integration (real venvs, qdk, Azure SDKs on loopback, subprocess
# daemons) and end-to-end; a test file stays on one worker so session fixtures build once.
tests: $(STAMP)
	$(PYTEST) -q -n 4 --dist loadfile tests $(DOCTESTS)

test: lint tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The slow lane of the replica failover test: 20 rounds of kill -9 instead of 5.
failover: $(STAMP)
	QRELEASE_FAILOVER_ROUNDS=20 $(PYTEST) -q -s tests/integration/daemon/test_failover.py

clean:
	rm -rf $(VENV) .qrelease .pytest_cache .mypy_cache .ruff_cache
