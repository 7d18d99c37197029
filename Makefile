# The two commands: `make run` starts the platform on local stand-ins, `make test` runs lint and the whole
# test suite. Both install what they need first (idempotent: a second run reuses .venv).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
UV_VERSION := 0.13.8
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lock lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@bash scripts/install-system-tools.sh
	@touch $(STAMP)

run: install
	@exec $(BIN)/python -m demobank.launcher

# The end-to-end tests (one live `make run`) and the others run side by side: see scripts/run-tests.sh.
test: install
	$(BIN)/ruff check .
	@bash scripts/run-tests.sh

lint: install
	$(BIN)/ruff check .

# Every benchmark runs, even after one misses its target; the exit status is non-zero if any failed.
bench: install
	@failed=""; for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed or missed a target:$$failed"; exit 1; fi

# Regenerate the pins from requirements*.in (needs the package registry).
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) .airflow .pytest_cache .ruff_cache
