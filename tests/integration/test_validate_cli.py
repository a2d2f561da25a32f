"""``tradeops validate``, end to end: the command line runs as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SMA_CROSS, CliResult, RunCli, WriteAgent, cli_env
from workers.validation import validate_file

# The caller's shell could set these; each test starts from the defaults.
CLEAN = {"TRADEOPS_ALLOWED_IMPORTS": "", "TRADEOPS_MAX_AGENT_BYTES": ""}

INVALID = """
import backtrader as bt
import os


class Agent(bt.Strategy):
    def next(self):
        bt.feed.os.system("id")
"""

TWO_STRATEGIES = """
import backtrader as bt


class Fast(bt.Strategy):
    def next(self):
        pass


class Slow(bt.Strategy):
    params = (("period", 50),)

    def next(self):
        pass
"""

BASE_AND_LEAF = """
import backtrader as bt


class Base(bt.Strategy):
    def log(self, text):
        print(f"{self.__class__.__name__} {bt.__version__}: {text}")


class Mine(Base):
    params = (("period", 20),)

    def next(self):
        if len(self) > getattr(self.p, "period", 10):
            self.log("bar")
"""

# The passes the security review found (issue 11), one a line.
REVIEWED_PASSES = """
import dataclasses
import backtrader as bt
import numpy as np


class Agent(bt.Strategy):
    def next(self):
        dataclasses._create_fn("f", [], ["return 1"])
        self.data.close.array = np.load("x.npy", None, True)
        "{0.__class__.__mro__}".format(self)
        self.broker.add_cash(1_000_000)
"""

SCIPY = """
import backtrader as bt
import scipy


class Agent(bt.Strategy):
    def next(self):
        pass
"""


@pytest.fixture
def validate(run_cli: RunCli) -> RunCli:
    def run(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
        return run_cli("validate", *args, env=CLEAN | (env or {}), timeout=60)

    return run


def test_a_valid_agent_is_described_and_exits_0(validate: RunCli) -> None:
    res = validate(SMA_CROSS)
    assert res.code == 0, res.stderr
    assert res.stdout.startswith("Valid agent · strategy SmaCross")
    assert "fast=10 · slow=30" in res.stdout
    assert "SMA · CrossOver · RSI" in res.stdout
    assert res.stderr == ""


def test_a_valid_agent_as_json_is_exactly_the_report(validate: RunCli) -> None:
    res = validate(SMA_CROSS, "--json")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout) == validate_file(SMA_CROSS).to_dict()


def test_an_invalid_agent_lists_each_error_with_its_hint_and_exits_1(
    validate: RunCli, write_agent: WriteAgent
) -> None:
    res = validate(write_agent(INVALID))
    assert res.code == 1, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "Invalid agent · 2 errors"
    assert lines[1] == "  line 2, col 8: import of 'os' is not allowed"
    assert lines[2].startswith("    Hint: Only pre-approved packages are available: backtrader")
    assert lines[3].startswith("  line 7, col 17: 'bt.feed.os' reaches 'os'")
    assert lines[4].startswith("    Hint: ")


def test_an_invalid_agent_as_json(validate: RunCli, write_agent: WriteAgent) -> None:
    path = write_agent(INVALID)
    res = validate(path, "--json")
    assert res.code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc == validate_file(path).to_dict()
    assert doc["ok"] is False
    assert [(e["code"], e["line"], e["column"]) for e in doc["errors"]] == [
        ("import", 2, 8),
        ("attribute", 7, 17),
    ]


def test_strategy_picks_one_of_several(validate: RunCli, write_agent: WriteAgent) -> None:
    path = write_agent(TWO_STRATEGIES)
    res = validate(path)
    assert res.code == 1
    assert "defines several strategies (Fast, Slow)" in res.stdout
    res = validate(path, "--strategy", "Slow")
    assert res.code == 0, res.stdout
    assert "strategy Slow" in res.stdout and "period=50" in res.stdout


def test_a_base_strategy_and_the_one_built_on_it(validate: RunCli, write_agent: WriteAgent) -> None:
    res = validate(write_agent(BASE_AND_LEAF))
    assert res.code == 0, res.stdout
    assert res.stdout.startswith("Valid agent · strategy Mine")
    assert "period=20" in res.stdout


def test_the_reviewed_passes_are_refused_each_at_its_line(
    validate: RunCli, write_agent: WriteAgent
) -> None:
    res = validate(write_agent(REVIEWED_PASSES), "--json")
    assert res.code == 1
    errors = json.loads(res.stdout)["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(8, 21), (9, 36), (10, 9), (11, 21)]
    assert "private to its module" in errors[0]["message"]
    assert "np.load" in errors[1]["hint"]
    assert "f-string" in errors[2]["hint"]
    assert "cash=N" in errors[3]["hint"]


def test_a_missing_file_is_a_usage_error(validate: RunCli, tmp_path: Path) -> None:
    res = validate(tmp_path / "nope.py")
    assert res.code == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [f"tradeops: error: agent file not found: {tmp_path}/nope.py"]


def test_a_bad_option_is_a_usage_error(validate: RunCli) -> None:
    res = validate(SMA_CROSS, "--strategy")
    assert res.code == 2
    assert "expected one argument" in res.stderr


def test_allowed_imports_come_from_the_environment(
    validate: RunCli, write_agent: WriteAgent
) -> None:
    path = write_agent(SCIPY)
    refused = validate(path)
    assert refused.code == 1
    assert "import of 'scipy' is not allowed" in refused.stdout
    allowed = validate(path, env={"TRADEOPS_ALLOWED_IMPORTS": "scipy"})
    assert allowed.code == 0, allowed.stdout  # scipy need not be installed: nothing runs
    bad = validate(path, env={"TRADEOPS_ALLOWED_IMPORTS": "sci-py"})
    assert bad.code == 2
    assert bad.stderr.startswith("tradeops: error: TRADEOPS_ALLOWED_IMPORTS:")


def test_the_size_limit_comes_from_the_environment(validate: RunCli) -> None:
    res = validate(SMA_CROSS, "--json", env={"TRADEOPS_MAX_AGENT_BYTES": "1000"})
    assert res.code == 1
    (error,) = json.loads(res.stdout)["errors"]
    assert error["code"] == "size"
    assert "over the limit of 1,000 bytes" in error["message"]


def test_validation_imports_nothing_heavy(tradeops_home: Path) -> None:
    """`tradeops validate` answers without importing backtrader, pandas or numpy."""
    code = (
        "import sys, bot.cli\n"
        f"status = bot.cli.main(['validate', {str(SMA_CROSS)!r}])\n"
        "heavy = sorted({'backtrader', 'pandas', 'numpy'} & set(sys.modules))\n"
        "assert status == 0 and not heavy, (status, heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=cli_env(tradeops_home, CLEAN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
