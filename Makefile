# The only entry points: `make demo` and `make test` (what CI runs), plus helpers.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tradeops-installed

.PHONY: demo test lint unit bench clean

demo: $(STAMP)
	$(VENV)/bin/tradeops demo

test: $(STAMP) lint
	$(PY) -m pytest

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

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tradeops needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .tradeops .pytest_cache .mypy_cache .ruff_cache
