# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:12])')

.PHONY: demo test lint typecheck unit install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/balance-monitor demo

lint: $(STAMP)
	$(BIN)/ruff check monitor tests
	$(BIN)/ruff format --check monitor tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite on PYTEST_WORKERS pytest-xdist workers (0: in this process). The end-to-end tests
# mostly wait on real one-second polls, so more workers than cores pays; they are handed out
# first and one at a time (tests/conftest.py), so no worker is left with a block of them.
# On 2 cores 6 was fastest (4 and 5 wait longer on the e2e tests; 8 spends more CPU starting
# workers, each of which collects the whole suite under coverage, than it saves).
PYTEST_WORKERS ?= 6
unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxschedchunk 1 --cov --cov-report=term

test: lint typecheck unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

# CPU, RSS, state writes and delivery latency per poll, beside two references (docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python -c 'import orjson' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)
