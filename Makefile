# trustlake: `make run` and `make test` are the two commands a new user needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.trustlake-installed
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
# The install skips compiling every installed module (pip compiles one file at a time: 1.5 of its 2.5
# minutes here); Python compiles what is imported, once, as it first imports it, so bytecode writing
# must be on even where the environment turns it off.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test test-unit test-e2e lint format ui bench clean

$(PY):
	python3 -m venv $(VENV)

# Reinstall only when the dependency list or the pins change. uv installs the same pins (and pip's
# indexes, find-links and constraints: .ci/with_pip_config.py) in 30 s where pip takes 79 s here (cold
# caches, 2 cores); where uv cannot be had or fails, pip installs them.
UV := $(VENV)/bin/uv
$(STAMP): pyproject.toml constraints.txt | $(PY)
	@if $(PY) -m pip install -q uv==0.13.9 && UV_CONSTRAINT=constraints.txt \
		$(PY) .ci/with_pip_config.py $(UV) pip install -q --python $(PY) -e ".[test]"; then :; else \
		echo "make: uv could not install; installing with pip"; \
		$(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q --no-compile -c constraints.txt -e ".[test]"; \
	fi
	touch $(STAMP)

install: $(STAMP)
	$(VENV)/bin/trustlake prepare

run: install
	$(VENV)/bin/trustlake run

# The lint gate (rules in pyproject.toml [tool.ruff]): lint, then the formatter's check, then pytest.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

# The halves of `make test`: unit tests (seconds each) and end-to-end ones (Dagster, dbt, Ray for real).
test-unit: install
	$(PY) -m pytest -m unit

test-e2e: install
	$(PY) -m pytest -m e2e

ui: install
	$(VENV)/bin/trustlake ui

# Every benchmark writes bench/results/<name>.json; scoring and quality need a champion (make run).
bench: install
	$(PY) bench/simulate.py
	$(PY) bench/warehouse.py
	$(PY) bench/train.py
	$(PY) bench/scoring.py
	$(PY) bench/quality.py
	$(PY) bench/matching.py

clean:
	rm -rf .trustlake dbt_project/target dbt_project/logs
