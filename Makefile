# Every target builds the virtual environment first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# Test processes (pytest-xdist). The suite waits on servers, locks and sleeps as much as
# it computes, so more workers than cores still shortens it. Two tests at a time per
# worker, so the slow ones, collected first (tests/conftest.py), start side by side.
TEST_WORKERS ?= 4
PYTEST_PARALLEL = -n $(TEST_WORKERS) --maxschedchunk 2
# The tests start a hundred Python processes (workers, servers, CLI commands): they compile
# groupd's modules and the rewritten test modules once and read the bytecode after, even
# where the environment turns writing it off (PYTHONDONTWRITEBYTECODE, empty = unset).
test test-fast: export PYTHONDONTWRITEBYTECODE =

# The environment is what the lockfile pins (every extra, hashes checked), plus groupd
# itself as an editable install; it is built again whenever either file changes.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

.PHONY: install run test test-fast check lock
install: $(STAMP)

run: $(STAMP)
	$(BIN)/groupd serve

# Everything, the slow scenarios included (CI runs this).
test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) --durations=25

# The inner loop: everything but the scenarios marked slow.
test-fast: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not slow"

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Resolve pyproject.toml's dependencies and extras again into requirements.lock (pinned,
# with hashes, for every platform). Run it after changing a dependency: pins already in
# the lockfile are kept where they still fit; `make lock LOCK_FLAGS=--upgrade` moves every
# pin to the newest release allowed. Needs the package index, and nothing but uv, which
# it installs into .venv when it is missing.
LOCK_FLAGS ?=
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv; }
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --generate-hashes \
		--quiet $(LOCK_FLAGS) --output-file $(LOCK)
