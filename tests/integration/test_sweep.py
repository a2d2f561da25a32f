"""Parameter sweeps end to end: real `tradeops worker` processes on a home's embedded Redis,
the real sandbox, the local stores; and in this process with no worker at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job

from bot.desk import Desk
from infra.settings import Settings
from tests.conftest import REPO_ROOT, SMA_CROSS
from workers import events as ev

PICKY = b"""
import backtrader as bt

class Picky(bt.Strategy):
    params = (("period", 10), ("scale", 1.0))

    def __init__(self):
        self.sma = bt.ind.SMA(period=self.p.period)

    def next(self):
        if self.p.scale == 0:
            raise ZeroDivisionError("scale 0")
        if not self.position and self.data.close[0] > self.sma[0]:
            self.buy(size=1)
        elif self.position and self.data.close[0] < self.sma[0]:
            self.close()
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    return env | {"TRADEOPS_HOME": str(home)}


def _register(desk: Desk, name: str, source: bytes) -> None:
    done = desk.follow(desk.upload(name=name, source=source), lambda e: None)
    assert isinstance(done, ev.AgentRegistered), done


@pytest.fixture
def two_workers(redis_home: Path) -> Iterator[Desk]:
    """A home with two `tradeops worker` processes, and a desk that queues on it."""
    desk = Desk(Settings.from_env(_env(redis_home)), user="U1", use_queue=True)
    desk.queue_running() or desk.ports.queue_url()  # the embedded Redis, started once
    command = [sys.executable, "-m", "bot.cli", "worker"]
    procs = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=_env(redis_home),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]  # fmt: skip
    try:
        for _ in range(200):
            if desk.workers_on("backtest") == 2:
                break
            time.sleep(0.05)
        assert desk.workers_on("backtest") == 2
        yield desk
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


@pytest.mark.slow
def test_a_sweep_spreads_over_the_workers_ranks_holds_out_and_draws(two_workers: Desk) -> None:
    desk = two_workers
    _register(desk, "sma", SMA_CROSS.read_bytes())
    seen: list[ev.Event] = []
    ticket = desk.sweep(agent="sma", grid={"fast": "5..15/5", "slow": "30,50"},
                        parameters={"symbols": ["SPY"], "start": "2021-01-01",
                                    "end": "2024-12-31", "params": {"rsi_max": 80}},
                        rank="sharpe", oos=0.3)  # fmt: skip
    final = desk.follow(ticket, seen.append, timeout_s=300)
    assert isinstance(final, ev.SweepFinished), final
    doc = final.result
    assert doc["combinations"] == 6 and doc["failed"] == 0
    assert doc["grid"] == {"fast": [5, 10, 15], "slow": [30, 50]}
    assert doc["order"] == ["fast", "slow"]
    # one progress message's worth of news: every combination counted, then the held-out runs
    progress = [e for e in seen if isinstance(e, ev.SweepProgress)]
    assert [e.done for e in progress if e.phase == "in_sample"][-1] == 6
    assert [e.done for e in progress if e.phase == "held_out"][-1] == 3
    assert all(e.job_id == ticket.job_id for e in seen)
    # ranked by Sharpe, best first; every combination is a run with its decisions
    sharpes = [m["metrics"]["sharpe"] for m in doc["members"] if m["metrics"]]
    assert sharpes == sorted(sharpes, key=lambda x: -x if x is not None else 0.0)
    registry = desk.registry()
    for member in doc["members"]:
        run = registry.get_run(member["run_id"])
        assert run is not None and run.kind == "backtest" and run.result is not None
        assert run.parameters["sweep"] == doc["sweep_id"]
        assert run.result["strategy"]["params"]["rsi_max"] == 80  # the fixed one, everywhere
        assert run.result["strategy"]["params"]["fast"] == member["params"]["fast"]
        assert run.result["parameters"]["end_date"] <= doc["oos"]["in_sample"]["end"]
        summary = desk.ports.fmel.summary(member["run_id"])
        assert summary is not None and summary["decisions"] > 0
    # both workers took combinations
    conn = desk.conn
    takers = {Job.fetch(f"{ticket.job_id}-i{i:03d}", connection=conn).worker_name
              for i in range(6)}  # fmt: skip
    assert len(takers) == 2, takers
    # the best three again, on the held-out bars only
    oos = doc["oos"]
    assert oos is not None and len(oos["best"]) == 3
    assert oos["in_sample"]["end"] < oos["held_out"]["start"]
    ranked = [m["run_id"] for m in doc["members"]][:3]
    assert [b["in_sample_run_id"] for b in oos["best"]] == ranked
    for best in oos["best"]:
        assert best["held_out"] is not None and best["held_out_run_id"]
        held = registry.get_run(best["held_out_run_id"])
        assert held is not None and held.result is not None
        assert held.result["parameters"]["start_date"] >= oos["held_out"]["start"]
    # the heatmap: fast by slow, a PNG in the artifact store
    png = desk.artifacts().get(doc["heatmap_artifact"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    sweep = registry.get_run(doc["sweep_id"])
    assert sweep is not None and sweep.kind == "sweep" and sweep.status.value == "finished"


@pytest.fixture
def here(tradeops_home: Path) -> Desk:
    """No worker: the sweep's jobs run in this process, one after another."""
    desk = Desk(Settings.from_env({"TRADEOPS_HOME": str(tradeops_home)}), user="U1",
                use_queue=False)  # fmt: skip
    _register(desk, "picky", PICKY)
    return desk


def _sweep(desk: Desk, **kwargs: Any) -> ev.Event:
    params = kwargs.pop("parameters", {"symbols": ["SPY"], "start": "2023-01-01"})
    return desk.follow(desk.sweep(agent="picky", parameters=params, **kwargs), lambda e: None)


@pytest.mark.parametrize(
    ("grid", "rank", "said"),
    [
        pytest.param({"period": "1..400", "scale": "1,2"}, None,
                     "400 period × 2 scale is 800 combinations; a sweep runs at most 100",
                     id="too-many"),
        pytest.param({"fast": "1,2"}, None,
                     "picky has no parameter fast: its parameters: period=10, scale=1.0",
                     id="unknown-parameter"),
        pytest.param({"period": "5,7.5"}, None,
                     "period= expects a whole number (its default is 10), got 7.5",
                     id="wrong-type"),
        pytest.param({"period": "20..5"}, None, "write it low..high", id="reversed-range"),
        pytest.param({"period": "5,10"}, "luck", "rank= is one of sharpe", id="unknown-rank"),
    ],
)  # fmt: skip
def test_a_sweep_that_cannot_run_is_refused_in_one_line(
    here: Desk, grid: dict[str, str], rank: str | None, said: str
) -> None:
    final = _sweep(here, grid=grid, rank=rank)
    assert isinstance(final, ev.SweepFailed), final
    assert said in final.error["message"] and "\n" not in final.error["message"]
    assert not [r for r in here.runs(limit=50) if r.kind in ("sweep", "backtest")]  # nothing ran


@pytest.mark.slow
def test_failed_combinations_are_listed_and_the_others_ranked(here: Desk) -> None:
    final = _sweep(here, grid={"period": "10,20", "scale": "0,1"}, rank="return")
    assert isinstance(final, ev.SweepFinished), final
    doc = final.result
    assert doc["failed"] == 2 and doc["heatmap_artifact"]
    assert [m["status"] for m in doc["members"]] == ["finished", "finished", "failed", "failed"]
    failed = doc["members"][-1]
    assert failed["params"]["scale"] == 0 and "ZeroDivisionError" in (failed["error"] or "")
    run = here.registry().get_run(failed["run_id"])
    assert run is not None and run.status.value == "failed"


def test_too_few_bars_to_hold_out_is_refused(here: Desk) -> None:
    window = {"symbols": ["SPY"], "start": "2024-01-02", "end": "2024-02-15"}
    final = _sweep(here, grid={"period": "5,10"}, oos=0.3, parameters=window)
    assert isinstance(final, ev.SweepFailed), final
    assert "too few to hold out 30%" in final.error["message"]


@pytest.mark.slow
def test_every_failed_combination_fails_the_sweep(here: Desk) -> None:
    final = _sweep(here, grid={"scale": "0"})
    assert isinstance(final, ev.SweepFailed), final
    assert final.error["message"].startswith("every combination failed; the first: ")
    assert "ZeroDivisionError" in final.error["message"]
