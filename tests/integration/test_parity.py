"""`tradeops parity` and the parity job: a backtest and the paper runtime's replay of the same
bars, both in the real sandbox, their verified decision records compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.desk import Desk
from infra.settings import Settings
from tests.conftest import SMA_CROSS, RunCli
from workers import events as ev

# buys on bar `entry` in a backtest, one bar later when its data is live (the paper runtime)
LIVE_DIFFERS = """
import backtrader as bt


class LiveDiffers(bt.Strategy):
    params = (("entry", 20),)

    def next(self):
        entry = self.p.entry + (1 if self.data.islive() else 0)
        if len(self) == entry:
            self.buy(size=1)
"""
WINDOW = ("--symbols", "SPY", "--start", "2022-01-01", "--end", "2022-06-30")


@pytest.fixture
def desk(tradeops_home: Path) -> Desk:
    desk = Desk(Settings.from_env({"TRADEOPS_HOME": str(tradeops_home)}), user="U1",
                use_queue=False)  # fmt: skip
    for name, source in (("sma", SMA_CROSS.read_bytes()), ("differs", LIVE_DIFFERS.encode())):
        done = desk.follow(desk.upload(name=name, source=source), lambda e: None)
        assert isinstance(done, ev.AgentRegistered), done
    return desk


def _check(desk: Desk, agent: str, **params: object) -> ev.ParityChecked:
    parameters = {"symbols": ["SPY"], "start": "2022-01-01", "end": "2022-12-31"}
    if params:
        parameters["params"] = params  # type: ignore[assignment]
    final = desk.follow(desk.parity(agent=agent, parameters=parameters), lambda e: None)  # type: ignore[arg-type]
    assert isinstance(final, ev.ParityChecked), final
    return final


@pytest.mark.slow
def test_a_strategy_trades_the_same_in_the_paper_runtime(desk: Desk) -> None:
    report = _check(desk, "sma").report
    assert report["verdict"] == "identical", report
    assert report["bars"] > 200 and report["orders"] > 0 and report["fills"] > 0
    assert report["first_difference"] is None and report["differing_bars"] == 0
    fmel = desk.ports.fmel
    backtest, paper = (fmel.decisions(report["backtest_run_id"]),
                       fmel.decisions(report["paper_run_id"]))  # fmt: skip
    assert {r["mode"] for r in backtest} == {"BACKTEST"}
    assert {r["mode"] for r in paper} == {"PAPER"}  # the paper runtime's own record
    assert [r["state_hash"] for r in backtest] == [r["state_hash"] for r in paper]
    for run_id in (report["backtest_run_id"], report["paper_run_id"]):
        run = desk.registry().get_run(run_id)
        assert run is not None and run.parameters["parity"] == report["parity_id"]
        assert fmel.verify(run_id).ok


@pytest.mark.slow
def test_where_they_part_is_named(desk: Desk) -> None:
    report = _check(desk, "differs", entry=25).report
    assert report["verdict"] == "different"
    first = report["first_difference"]
    assert first is not None
    assert (first["bar"], first["field"]) == (25, "orders")
    assert first["backtest"].startswith("BUY 1 SPY Market @ ") and first["paper"] == "none"
    assert (first["timestamp"] or "").startswith("2022-02-07")


def test_a_parameter_the_strategy_lacks_is_refused(desk: Desk) -> None:
    report = _check(desk, "sma", entry=3).report
    assert report["verdict"] == "failed" and report["error"] is not None
    assert report["error"]["message"].startswith("sma has no parameter entry: its parameters: ")
    assert desk.registry().get_run(report["backtest_run_id"]) is None  # nothing ran


@pytest.mark.slow
def test_the_command_exits_0_when_identical_and_1_naming_the_bar(
    run_cli: RunCli, tmp_path: Path
) -> None:
    same = run_cli("parity", SMA_CROSS, *WINDOW)
    assert same.code == 0, same.stderr
    assert "identical over" in same.stdout
    agent = tmp_path / "differs.py"
    agent.write_text(LIVE_DIFFERS)
    # the strategy's parameter after the options, as people type it
    parted = run_cli("parity", agent, *WINDOW, "entry=30")
    assert parted.code == 1, parted.stderr
    assert "first at bar 30" in parted.stdout and "in orders" in parted.stdout
    assert "BUY 1 SPY Market @" in parted.stdout
