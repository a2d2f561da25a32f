"""The strategy corpus (``tests/corpus``) through the product, checked against plain backtrader.

For every corpus entry:

1. ``tradeops backtest FILE --symbols … --start … --end … --json`` runs as a subprocess in
   a private ``TRADEOPS_HOME`` (validation, the sandbox, the FMEL recorder), and
   ``tradeops fmel RUN --verify`` recomputes the run's hash chain;
2. the same strategy class runs in this process in a plain ``bt.Cerebro()`` (default broker:
   10,000 cash, no commission; no recorder, no tradeops analyzer) on the same bars, loaded
   with the project's loader (``runtime.data.load``, as ``runtime.backtest.load_and_check``
   does) and handed to backtrader as ``bt.feeds.PandasData`` (``runtime.data.to_feed``);
3. the two must agree: final value, trade count (counted as ``runtime.metrics`` does: closed
   trades plus trades still open), and one FMEL decision per bar the strategy saw
   (``len(strategy)``), with no line left out by the recorder and a chain that verifies.

The CLI runs cost about two seconds of machine time each, most of it starting Python,
backtrader and the sandbox, so the module starts them all in the background when its first
test asks, a few at a time, and each test checks its own entry while the rest still run.
Only the selected entries run (``-k``). The module starts ``WORKERS`` ``tradeops worker``
processes on its home, so each backtest goes through the queue to a worker that keeps a
sandbox warm (quicker than each command line running its job in its own process).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from runtime import data as market
from runtime.agent import load_agent
from runtime.backtest import DEFAULT_CASH
from tests.conftest import REPO_ROOT, CliResult, cli_env, processes_mentioning, run_cli_in
from tests.corpus import ENTRIES, CorpusEntry, write_data_dir

pytestmark = pytest.mark.slow

# One `tradeops worker` for the module: every `tradeops backtest` goes through its queue and
# its warm sandbox. Measured for the 45 entries on an idle 2-core machine: 1 worker and 2
# command lines at a time 64-69 s; no worker (each command line runs its own job) 66-71 s;
# 3 at a time no better; 2 workers slower (the two cores are the limit).
WORKERS = 1
MAX_PARALLEL = 2  # command lines in flight at once
CLI_TIMEOUT_S = 180


@dataclass(frozen=True)
class Outcome:
    backtest: CliResult
    doc: dict[str, Any] | None
    verify: CliResult | None


# ------------------------------------------------------------------ the product's side
@pytest.fixture(scope="module")
def corpus_home() -> Iterator[tuple[Path, Path]]:
    """(TRADEOPS_HOME, data folder) for the module, with WORKERS workers on it.

    The home is short and under /tmp: the embedded Redis listens on a unix socket in it,
    and such paths are limited to about 107 bytes (as in tests/conftest.py's redis_home).
    """
    home = Path("/tmp") / f"tro-corpus-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    data = write_data_dir(home / "data")
    env = {"TRADEOPS_DATA_DIR": str(data)}
    workers = [_start_worker(home, env) for _ in range(WORKERS)]
    try:
        yield home, data
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
        if workers:
            from infra.local.redis_server import EmbeddedRedis

            EmbeddedRedis(home).stop()
        for pid in processes_mentioning(str(home)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(home)], check=False)


def _start_worker(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    from bot.desk import Desk
    from infra.local.redis_server import EmbeddedRedis
    from infra.settings import Settings

    EmbeddedRedis(home).ensure_running()
    desk = Desk(Settings.from_env(cli_env(home, env)), user="corpus")
    n = desk.workers_on("backtest")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "validate,backtest"],
        cwd=REPO_ROOT, env=cli_env(home, env), stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (desk.workers_on("backtest") > n and desk.workers_on("validate") > n):
        assert proc.poll() is None and time.monotonic() < deadline, "worker did not start"
        time.sleep(0.05)
    return proc


def _through_the_product(home: Path, data: Path, entry: CorpusEntry) -> Outcome:
    env = {"TRADEOPS_DATA_DIR": str(data)}
    window = ["--start", entry.start.isoformat(), "--end", entry.end.isoformat()]
    args = ["backtest", entry.path, "--symbols", ",".join(entry.symbols), *window, "--json"]
    backtest = run_cli_in(home, args, env=env, timeout=CLI_TIMEOUT_S)
    try:
        doc = json.loads(backtest.stdout)
    except json.JSONDecodeError:
        return Outcome(backtest, None, None)
    verify = None
    if doc.get("error") is None and doc.get("run_id"):
        verify = run_cli_in(home, ["fmel", doc["run_id"], "--verify"], env=env)
    return Outcome(backtest, doc, verify)


@pytest.fixture(scope="module")
def product_runs(
    request: pytest.FixtureRequest, corpus_home: tuple[Path, Path]
) -> Iterator[dict[str, Future[Outcome]]]:
    """Every selected entry's product run, started in the background in test order."""
    home, data = corpus_home
    selected = [
        item.callspec.params["entry"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL)
    futures = {e.name: pool.submit(_through_the_product, home, data, e) for e in selected}
    try:
        yield futures
    finally:
        for future in futures.values():
            future.cancel()
        pool.shutdown(wait=True)


# -------------------------------------------------------------------- plain backtrader
class _TradeCount(bt.Analyzer):
    """Trades as runtime.metrics counts total_trades: closed ones plus those still open."""

    def start(self) -> None:
        self.closed: set[int] = set()
        self.open: set[int] = set()

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed:
            self.open.discard(trade.ref)
            self.closed.add(trade.ref)
        elif trade.justopened:
            self.open.add(trade.ref)

    def get_analysis(self) -> dict[str, int]:
        return {"total": len(self.closed) + len(self.open)}


@dataclass(frozen=True)
class PlainRun:
    final_value: float
    total_trades: int
    bars: int


def _plain_backtrader(entry: CorpusEntry, data_dir: Path) -> PlainRun:
    agent = load_agent(entry.path)
    cerebro = bt.Cerebro()
    for symbol in market.load(data_dir, list(entry.symbols), entry.start, entry.end):
        cerebro.adddata(market.to_feed(symbol), name=symbol.symbol)
    cerebro.addstrategy(agent.strategy)
    cerebro.addanalyzer(_TradeCount, _name="tradecount")
    with contextlib.redirect_stdout(io.StringIO()):  # the agents' own prints
        strat = cerebro.run()[0]
    return PlainRun(
        final_value=cerebro.broker.getvalue(),
        total_trades=strat.analyzers.tradecount.get_analysis()["total"],
        bars=len(strat),
    )


# ------------------------------------------------------------------------- the test
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_corpus_entry_matches_plain_backtrader(
    entry: CorpusEntry,
    corpus_home: tuple[Path, Path],
    product_runs: dict[str, Future[Outcome]],
) -> None:
    _, data = corpus_home
    plain = _plain_backtrader(entry, data)
    assert plain.total_trades > 0, "a corpus strategy must trade"

    outcome = product_runs[entry.name].result(timeout=600)
    doc = outcome.doc
    assert doc is not None, f"no result document:\n{outcome.backtest.stderr[-3000:]}"
    error = doc["error"]
    assert error is None, f"{error['kind']}: {error['message']}\n{error.get('traceback') or ''}"
    assert outcome.backtest.code == 0, outcome.backtest.stderr[-3000:]
    if WORKERS:
        assert " queued (" in outcome.backtest.stderr  # it went through the worker
    assert doc["parameters"]["initial_cash"] == DEFAULT_CASH

    results = doc["results"]
    assert results["final_value"] == pytest.approx(plain.final_value, rel=1e-6, abs=0)
    assert results["total_trades"] == plain.total_trades

    decisions = doc["fmel"]["decisions"]
    assert decisions > 0
    assert decisions == plain.bars  # one row per bar the strategy saw (prenext included)
    # the recorder left no line of the strategy out and saw no look-ahead (a sample may ask
    # for more than its cash: backtrader refuses such orders alike, and that is said too)
    fmel_said = [w for w in doc.get("warnings", []) if not w.endswith("the portfolio held")]
    assert fmel_said == []

    verify = outcome.verify
    assert verify is not None
    assert verify.code == 0, verify.stdout + verify.stderr
    assert f"{doc['run_id']}: OK · {decisions} decisions" in verify.stdout, verify.stdout
