"""Every benchmark at least starts: `make bench` is not in the test run, so a renamed import
would otherwise go unnoticed until someone measures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

BENCHMARKS = sorted(
    p.name for p in (REPO_ROOT / "benchmarks").glob("*.py") if "__main__" in p.read_text()
)


def test_there_are_benchmarks() -> None:
    assert "queue_latency.py" in BENCHMARKS and "fmel_overhead.py" in BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports_and_answers_help(name: str) -> None:
    done = subprocess.run([sys.executable, f"benchmarks/{name}", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
