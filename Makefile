# The only entry points: `make demo` and `make test` (what CI runs), plus helpers.
PYTHON ?= python3
VENV   ?= .venv
LOCK   ?= requirements.lock
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tradeops-installed
# the BigQuery emulator runs from its own environment (it pins duckdb 1.5.5); the tests start it
BQEMU  := $(VENV)/opt/bqemulator
BQEMU_STAMP := $(BQEMU)/.installed
# checkov, which lints the Kubernetes manifests in the tests, pins what tradeops cannot take
CHECKOV := $(VENV)/opt/checkov
CHECKOV_STAMP := $(CHECKOV)/.installed

.PHONY: demo test lint unit bench lock clean emulators

demo: $(STAMP)
	$(VENV)/bin/tradeops demo

test: $(STAMP) $(BQEMU_STAMP) $(CHECKOV_STAMP) lint
	$(PY) -m pytest

emulators: $(BQEMU_STAMP) $(CHECKOV_STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP)
	$(PY) benchmarks/fmel_overhead.py
	$(PY) benchmarks/sandbox_startup.py
	$(PY) benchmarks/queue_latency.py
	$(PY) benchmarks/slack_ack.py
	$(PY) benchmarks/paper_latency.py
	$(PY) benchmarks/fmel_bigquery.py
	$(PY) benchmarks/cloudbuild_runner.py
	$(PY) benchmarks/sweep_workers.py

# Exactly the versions in the lock (pip, setuptools and the build included); pyproject.toml keeps
# ranges for those who install tradeops as a library.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tradeops needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip setuptools
	$(PY) -m pip install --quiet --no-build-isolation -c $(LOCK) -e '.[dev,all]'
	@touch $@

$(BQEMU_STAMP): requirements-bqemulator.lock $(STAMP)
	$(PYTHON) -m venv $(BQEMU)
	$(BQEMU)/bin/pip install --quiet -r requirements-bqemulator.lock
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.lock $(STAMP)
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet --no-deps -r requirements-checkov.lock
	@touch $@

# Resolve the newest versions pyproject.toml allows, run `make test` on them in a fresh
# environment, and commit the new lock only if the tests pass.
lock:
	.ci/refresh-lock

clean:
	rm -rf $(VENV) .tradeops .pytest_cache .mypy_cache .ruff_cache
