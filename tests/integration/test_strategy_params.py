"""A strategy's own parameters set on a run: `tradeops backtest AGENT fast=5`, on paper, and
the runtime's own check when the trusted side could not read a default."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import SMA_CROSS, RunCli, WriteAgent, processes_mentioning

COMPUTED = """
import backtrader as bt

class Computed(bt.Strategy):
    params = (("period", int("15")), ("label", "x"))  # a default the report cannot read

    def __init__(self):
        print(f"period={self.p.period!r} label={self.p.label!r}", flush=True)

    def next(self):
        pass
"""


@pytest.mark.slow
def test_a_backtest_runs_with_the_parameters_given(run_cli: RunCli) -> None:
    done = run_cli("backtest", SMA_CROSS, "--symbols", "SPY", "--start", "2023-01-01",
                   "--json", "fast=5", "stake_pct=0.2")  # fmt: skip
    assert done.code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["parameters"]["params"] == {"fast": 5, "stake_pct": 0.2}
    ran = doc["strategy"]["params"]
    assert (ran["fast"], ran["slow"], ran["stake_pct"]) == (5, 30, 0.2)  # the rest: defaults
    again = run_cli("backtest", "sma_cross", "--symbols", "SPY", "--start", "2023-01-01",
                    "--json")  # fmt: skip
    assert json.loads(again.stdout)["results"] != doc["results"]  # fast=5 traded differently


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("nope=1", "sma_cross has no parameter nope: its parameters: fast=10"),
        ("fast=5.5", "fast= expects a whole number (its default is 10), got 5.5"),
        ("stake_pct=lots", "stake_pct= expects a number (its default is 0.1), got 'lots'"),
    ],
)
def test_a_parameter_the_strategy_cannot_take_is_refused_before_it_runs(
    run_cli: RunCli, word: str, said: str
) -> None:
    done = run_cli("backtest", SMA_CROSS, "--symbols", "SPY", word)
    assert done.code == 1
    assert said in done.stderr and "Traceback" not in done.stderr


def test_the_runtime_checks_what_the_report_could_not(
    run_cli: RunCli, write_agent: WriteAgent
) -> None:
    agent = write_agent(COMPUTED, "computed.py")
    done = run_cli("backtest", agent, "--symbols", "SPY", "--json", "period=abc")
    assert done.code == 1
    doc = json.loads(done.stdout)
    assert doc["error"]["kind"] == "validation"
    assert (
        doc["error"]["message"] == "period= expects a whole number (its default is 15), got 'abc'"
    )
    ok = run_cli("backtest", "computed", "--symbols", "SPY", "--json", "period=20", "label=y")
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["strategy"]["params"] == {"period": 20, "label": "y"}


@pytest.mark.slow
def test_a_paper_session_runs_with_the_parameters_given(
    run_cli: RunCli, write_agent: WriteAgent, tmp_path: Path
) -> None:
    home = tmp_path / "h"  # short: the session's health socket path must fit in 107 bytes
    agent = write_agent(COMPUTED, "computed.py")
    assert run_cli("agents", "add", agent, home=home).code == 0
    try:
        started = run_cli("paper", "start", "computed", "period=7", "label=paper",
                          "--bar-seconds", "0.05", home=home)  # fmt: skip
        assert started.code == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 60
        logs = ""
        while "period=7 label='paper'" not in logs and time.monotonic() < deadline:
            time.sleep(0.2)
            logs = run_cli("paper", "logs", "computed", home=home).stdout
        assert "period=7 label='paper'" in logs, logs[-2000:]
        status = json.loads(run_cli("paper", "status", "computed", "--json", home=home).stdout)
        assert status[0]["parameters"]["params"] == {"period": 7, "label": "paper"}
        refused = run_cli("paper", "start", "computed", "nope=1", home=home)
        assert refused.code == 1 and "computed has no parameter nope" in refused.stdout
    finally:
        run_cli("paper", "stop", "computed", home=home)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)
