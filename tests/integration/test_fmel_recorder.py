"""FMELRecorder in plain Cerebro runs: equivalence, determinism, content, batching, verification.

Every recorded run is checked against what the strategy itself saw (``tests.strategies``
keeps the strategy's own view of orders, fills, positions, indicators, value and cash),
and every run with the recorder is compared with the same run without it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.data import DEFAULT_DATA_DIR, SymbolData, load, synthetic_frame, to_feed
from runtime.fmel import FMELRecorder
from runtime.fmel import encoding as enc
from runtime.fmel.store import (
    DECISION_SCHEMA,
    SUMMARIES,
    SUMMARY_SCHEMA,
    connect,
    decision_files,
    read_rows,
    read_summary,
    verify_run,
)
from tests import strategies as S

N_BARS = 600
ONE = ("SPY",)
TWO = ("SPY", "AAPL")
THREE = ("SPY", "AAPL", "QQQ")
VOLATILE = ("run_id", "recorded_at")  # columns that differ between identical runs


# ------------------------------------------------------------------ helpers
def frames(symbols: tuple[str, ...] = ONE, n: int = N_BARS, seed: int = 11) -> dict[str, Any]:
    return {sym: synthetic_frame(n, seed=seed + i) for i, sym in enumerate(symbols)}


def sample(symbols: tuple[str, ...]) -> list[SymbolData]:
    """The shipped real daily bars."""
    return load(DEFAULT_DATA_DIR, list(symbols))


@dataclass
class Outcome:
    value: float
    cash: float
    closed: int
    strat: Any
    fmel: dict[str, Any] | None
    out: Path | None

    def rows(self) -> list[dict[str, Any]]:
        assert self.out is not None and self.fmel is not None
        return read_rows(self.out, self.fmel["run_id"])


def run(
    strategy: type[bt.Strategy],
    data: Mapping[str, Any] | list[SymbolData] | None = None,
    *,
    record: bool = True,
    out: Path | None = None,
    exactbars: int = 0,
    runonce: bool = True,
    params: Mapping[str, Any] | None = None,
    **recorder: Any,
) -> Outcome:
    """One backtest in a plain Cerebro, with or without the recorder."""
    cerebro = bt.Cerebro(exactbars=exactbars, runonce=runonce)
    if isinstance(data, list):
        for sd in data:
            cerebro.adddata(to_feed(sd))
    else:
        for name, frame in (frames() if data is None else data).items():
            cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.addstrategy(strategy, **(params or {}))
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    if record:
        cerebro.addanalyzer(FMELRecorder, _name="fmel", out=None if out is None else str(out),
                            **recorder)  # fmt: skip
    strat = cerebro.run()[0]
    trades = strat.analyzers.trades.get_analysis()
    return Outcome(
        value=cerebro.broker.getvalue(),
        cash=cerebro.broker.getcash(),
        closed=int(trades.get("total", {}).get("closed", 0)),
        strat=strat,
        fmel=strat.analyzers.fmel.get_analysis() if record else None,
        out=out,
    )


def same(a: Any, b: Any) -> bool:
    """Equality with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the columns that change between identical runs, NaN made comparable."""
    out = []
    for row in rows:
        r = {k: v for k, v in row.items() if k not in VOLATILE}
        r["indicators"] = [(k, "nan" if v != v else v) for k, v in r["indicators"]]
        out.append(r)
    return out


def expected_action(stage: str, orders: list[Any], fills: list[Any]) -> str:
    if fills:
        return "TRADED"
    if orders:
        return "ORDERED"
    return "INACTIVE" if stage == "PRENEXT" else "HOLD"


def check_record(outcome: Outcome, data: Mapping[str, Any] | list[SymbolData]) -> None:
    """Every row against what the strategy saw at that bar."""
    strat, fmel = outcome.strat, outcome.fmel
    assert fmel is not None
    rows = outcome.rows()
    indexes = (
        [sd.frame.index for sd in data]
        if isinstance(data, list)
        else [f.index for f in data.values()]
    )
    index = indexes[0]
    assert all(i.equals(index) for i in indexes)  # bars line up: row timestamps are known
    nbars = len(strat)
    assert fmel["decisions"] == nbars == len(rows) == len(strat.bars)
    assert [r["bar_number"] for r in rows] == list(range(1, nbars + 1))
    assert sum(fmel["actions"].values()) == nbars
    for action in enc.ACTIONS:
        assert fmel["actions"][action] == sum(r["action"] == action for r in rows), action

    placed: dict[int, list[dict[str, Any]]] = {}
    for bar, ref, side, sym, size, otype, price in strat.placed:
        placed.setdefault(bar, []).append(
            {"side": side, "symbol": sym, "size": size, "type": otype, "price": price, "ref": ref}
        )
    fills: dict[int, list[dict[str, Any]]] = {}
    for bar, ref, sym, size, price, comm, pnl in strat.fills:
        fills.setdefault(bar, []).append(
            {"symbol": sym, "size": size, "price": price, "commission": comm, "pnl": pnl,
             "ref": ref}
        )  # fmt: skip

    for row, seen in zip(rows, strat.bars, strict=True):
        bar = row["bar_number"]
        assert seen["bar"] == bar
        assert row["stage"] == seen["stage"], bar
        assert row["portfolio_value"] == seen["value"], bar
        assert row["portfolio_cash"] == seen["cash"], bar
        assert row["actions_taken"] == placed.get(bar, []), bar
        assert row["fills"] == fills.get(bar, []), bar
        assert row["action"] == expected_action(row["stage"], row["actions_taken"], row["fills"])
        positions = [(p["symbol"], p["size"], p["price"], p["value"]) for p in row["positions"]]
        assert positions == seen["positions"], bar
        recorded = dict(row["indicators"])
        assert list(recorded) == list(seen["indicators"])  # named after attributes, in order
        for name, value in seen["indicators"].items():
            assert same(recorded[name], value), (bar, name, recorded[name], value)
        assert row["timestamp"] == index[bar - 1].tz_localize("UTC"), bar
    assert verify_run(outcome.out, fmel["run_id"]).ok


def assert_same_behaviour(plain: Outcome, recorded: Outcome) -> None:
    assert recorded.value == plain.value
    assert recorded.cash == plain.cash
    assert recorded.closed == plain.closed
    assert recorded.strat.events == plain.strat.events
    assert recorded.strat.placed == plain.strat.placed
    assert recorded.strat.fills == plain.strat.fills
    assert stable_bars(recorded.strat.bars) == stable_bars(plain.strat.bars)


def stable_bars(bars: list[dict[str, Any]]) -> list[Any]:
    return [
        {**b, "indicators": {k: "nan" if v != v else v for k, v in b["indicators"].items()}}
        for b in bars
    ]


# ------------------------------------------------------------- 1. equivalence
# (id, strategy, params, symbols or ("sample", *symbols), at least this many closed trades)
CASES = [
    ("minimal", S.MinimalStrategy, {}, ONE, 100),
    ("advanced-seed", S.AdvancedStrategy, {}, ("sample", "SPY"), 0),  # its rule rarely fires
    ("advanced-busy", S.AdvancedStrategy, {"rsi_low": 55, "rsi_high": 65}, ONE, 5),
    ("bracket", S.BracketStrategy, {}, ONE, 10),
    ("stop-orders", S.StopOrderStrategy, {}, ONE, 5),
    ("multi-symbol", S.MultiSymbolStrategy, {}, THREE, 20),
    ("multi-symbol-sample", S.MultiSymbolStrategy, {}, ("sample", "SPY", "AAPL", "QQQ"), 20),
    ("rebalance", S.RebalanceStrategy, {}, TWO, 10),
    ("printing", S.PrintingStrategy, {}, ONE, 50),
    ("line-expressions", S.LineExpressionStrategy, {}, TWO, 5),
]


@pytest.mark.parametrize("exactbars", [0, 1], ids=["default", "exactbars1"])
@pytest.mark.parametrize(
    ("strategy", "params", "symbols", "min_trades"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_recording_does_not_change_the_backtest(
    tmp_path: Path,
    strategy: type[bt.Strategy],
    params: dict[str, Any],
    symbols: Any,
    min_trades: int,
    exactbars: int,
) -> None:
    data = sample(symbols[1:]) if symbols[0] == "sample" else frames(symbols)
    plain = run(strategy, data, record=False, exactbars=exactbars, params=params)
    recorded = run(strategy, data, out=tmp_path, exactbars=exactbars, params=params)
    assert plain.closed >= min_trades  # the comparison means something
    assert_same_behaviour(plain, recorded)
    check_record(recorded, data)


def test_bracket_notify_order_sequence_is_unchanged(tmp_path: Path) -> None:
    plain = run(S.BracketStrategy, record=False)
    recorded = run(S.BracketStrategy, out=tmp_path)
    statuses = {e[2] for e in plain.strat.events}
    assert {"Submitted", "Accepted", "Completed", "Canceled"} <= statuses
    assert [e[:3] for e in recorded.strat.events] == [e[:3] for e in plain.strat.events]
    assert recorded.strat.events == plain.strat.events


def test_equivalence_also_without_data_tracking_or_log_capture(tmp_path: Path) -> None:
    plain = run(S.PrintingStrategy, record=False)
    bare = run(S.PrintingStrategy, out=tmp_path, track_data=False, capture_log=False)
    assert_same_behaviour(plain, bare)
    rows = bare.rows()
    assert all(r["data_accessed"] == [] and r["log"] == [] for r in rows)
    check_record(bare, frames())


# ------------------------------------------------------------- 2. determinism
DETERMINISM = [
    ("advanced-busy", S.AdvancedStrategy, {"rsi_low": 55, "rsi_high": 65}, ONE),
    ("bracket", S.ChattyBracketStrategy, {}, ONE),
    ("stop-orders", S.StopOrderStrategy, {}, ONE),
    ("multi-symbol", S.MultiSymbolStrategy, {}, THREE),
    ("rebalance", S.RebalanceStrategy, {}, TWO),
    ("printing", S.PrintingStrategy, {}, ONE),
]


@pytest.mark.parametrize(
    ("strategy", "params", "symbols"), [c[1:] for c in DETERMINISM], ids=[c[0] for c in DETERMINISM]
)
def test_same_run_same_chain_in_every_mode(
    tmp_path: Path, strategy: type[bt.Strategy], params: dict[str, Any], symbols: tuple[str, ...]
) -> None:
    data = frames(symbols)
    variants = {
        "default": {},
        "again": {},
        "exactbars1": {"exactbars": 1},
        "exactbars-1": {"exactbars": -1},
        "runonce-off": {"runonce": False},
    }
    outcomes = {
        name: run(strategy, data, out=tmp_path / name, params=params, **kw)
        for name, kw in variants.items()
    }
    heads = {name: o.fmel["chain_head"] for name, o in outcomes.items()}
    assert len(set(heads.values())) == 1, heads
    base = outcomes["default"]
    assert base.fmel["run_id"] != outcomes["again"].fmel["run_id"]
    # backtrader's order refs went on counting between the runs; the record's did not
    assert base.strat.events == outcomes["again"].strat.events
    base_rows = stable(base.rows())
    for name, outcome in outcomes.items():
        assert stable(outcome.rows()) == base_rows, name
    # hashes only (no folder) gives the same chain
    nowhere = run(strategy, data, params=params)
    assert nowhere.fmel["chain_head"] == heads["default"]
    assert nowhere.fmel["path"] is None


def test_different_data_or_parameters_give_a_different_chain() -> None:
    base = run(S.AdvancedStrategy, frames(), params={"rsi_low": 55, "rsi_high": 65})
    other_data = run(S.AdvancedStrategy, frames(seed=12), params={"rsi_low": 55, "rsi_high": 65})
    other_param = run(S.AdvancedStrategy, frames(), params={"rsi_low": 56, "rsi_high": 65})
    heads = [o.fmel["chain_head"] for o in (base, other_data, other_param)]
    assert len(set(heads)) == 3


def test_genesis_depends_on_symbols_and_indicator_names() -> None:
    one = run(S.MultiSymbolStrategy, frames(TWO)).fmel
    two = run(S.MultiSymbolStrategy, frames(THREE)).fmel
    assert one["genesis"] == enc.genesis(list(TWO), ["smas[SPY]", "smas[AAPL]", "moms[SPY]",
                                                     "moms[AAPL]"])  # fmt: skip
    assert one["genesis"] != two["genesis"]


# ---------------------------------------------------------------- 3. content
def test_advanced_strategy_rows(tmp_path: Path) -> None:
    data = frames()
    outcome = run(S.AdvancedStrategy, data, out=tmp_path, params={"rsi_low": 55, "rsi_high": 65})
    rows = outcome.rows()
    summary = read_summary(tmp_path, outcome.fmel["run_id"])
    assert summary is not None and summary["indicators"] == ["sma", "rsi"]
    assert summary["symbols"] == ["SPY"]
    # warm-up: SMA(20) needs 20 bars, so 19 prenext bars, then nextstart, then next
    stages = [r["stage"] for r in rows]
    assert stages == ["PRENEXT"] * 19 + ["NEXTSTART"] + ["NEXT"] * (N_BARS - 20)
    assert all(r["action"] == "INACTIVE" for r in rows[:19])
    assert all(r["action"] != "INACTIVE" for r in rows[19:])
    assert all(math.isnan(dict(r["indicators"])["sma"]) for r in rows[:19])
    assert all(not math.isnan(dict(r["indicators"])["sma"]) for r in rows[19:])
    sma = data["SPY"]["close"].rolling(20).mean().to_numpy()
    for r in rows[19:]:
        assert dict(r["indicators"])["sma"] == pytest.approx(sma[r["bar_number"] - 1], rel=1e-9)
    ordered = [r for r in rows if r["action"] == "ORDERED"]
    traded = [r for r in rows if r["action"] == "TRADED"]
    assert ordered and traded
    for r in traded:
        for fill in r["fills"]:
            assert fill["size"] != 0 and fill["price"] > 0 and fill["symbol"] == "SPY"
    # after a buy fill the position is held, after the closing fill it is gone
    for r in traded:
        size = sum(f["size"] for f in r["fills"])
        if size > 0:
            (pos,) = r["positions"]
            assert pos["size"] == size and pos["price"] == r["fills"][0]["price"]
            assert pos["value"] == pytest.approx(
                size * data["SPY"]["close"].iloc[r["bar_number"] - 1]
            )
        else:
            assert r["positions"] == []
    # orders are numbered per run, in the order placed
    refs = [o["ref"] for r in rows for o in r["actions_taken"]]
    assert refs == list(range(1, len(refs) + 1))
    # the strategy reads close[0]; nothing else
    for r in rows[19:]:
        assert r["data_accessed"] == [
            {"symbol": "SPY", "fields": ["close"], "lookback": 0, "lookahead": 0}
        ]
    # the bookkeeping of tests.strategies reads real lines only: no access in warm-up
    assert all(r["data_accessed"] == [] for r in rows[:19])


def test_multi_symbol_rows(tmp_path: Path) -> None:
    outcome = run(S.MultiSymbolStrategy, frames(THREE), out=tmp_path)
    rows = outcome.rows()
    names = [k for k, _ in rows[0]["indicators"]]
    assert names == [f"{d}[{s}]" for d in ("smas", "moms") for s in THREE]
    held = {p["symbol"] for r in rows for p in r["positions"]}
    assert held == set(THREE)
    assert any(len(r["positions"]) >= 2 for r in rows)
    assert {f["symbol"] for r in rows for f in r["fills"]} == set(THREE)
    accessed = {a["symbol"] for r in rows for a in r["data_accessed"]}
    assert accessed == set(THREE)


@pytest.mark.parametrize(
    ("strategy", "symbols", "first", "expected"),
    [
        (S.PrevCloseReader, ONE, 2, [{"symbol": "SPY", "fields": ["close"], "lookback": 1,
                                      "lookahead": 0}]),
        (S.HeldLineReader, ONE, 4, [{"symbol": "SPY", "fields": ["close"], "lookback": 3,
                                     "lookahead": 0}]),
        (S.MultiFieldReader, TWO, 6, [
            {"symbol": "SPY", "fields": ["high", "open"], "lookback": 2, "lookahead": 0},
            {"symbol": "AAPL", "fields": ["volume"], "lookback": 4, "lookahead": 0},
        ]),
        (S.DictHeldReader, TWO, 3, [{"symbol": "AAPL", "fields": ["close"], "lookback": 2,
                                     "lookahead": 0}]),
        (S.IndicatorOnlyReader, ONE, N_BARS + 1, []),
        (S.MinimalStrategy, ONE, 1, [{"symbol": "SPY", "fields": ["close"], "lookback": 0,
                                      "lookahead": 0}]),  # a new order reads close[0]
    ],
    ids=["data.close[-1]", "held-attribute[-3]", "several-fields", "dict-held", "indicators-only",
         "orders-only"],
)  # fmt: skip
def test_data_accessed(
    tmp_path: Path,
    strategy: type[bt.Strategy],
    symbols: tuple[str, ...],
    first: int,
    expected: list[dict[str, Any]],
) -> None:
    rows = run(strategy, frames(symbols, n=60), out=tmp_path).rows()
    for r in rows:
        want = expected if r["bar_number"] >= first else []
        assert r["data_accessed"] == want, r["bar_number"]


@pytest.mark.parametrize(
    ("start", "freq"),
    [("2021-03-01 09:30", "min"), ("2021-03-01 09:30:00", "s"), ("1990-01-01", "D")],
)
def test_timestamps_are_the_bars_own(tmp_path: Path, start: str, freq: str) -> None:
    frame = synthetic_frame(300, seed=5, start=start, freq=freq)
    frame.index = pd.date_range(start, periods=300, freq=freq, name="datetime")
    outcome = run(S.MinimalStrategy, {"SPY": frame}, out=tmp_path)
    check_record(outcome, {"SPY": frame})


def test_look_ahead_is_recorded_and_said(tmp_path: Path) -> None:
    outcome = run(S.LookAheadReader, frames(n=60), out=tmp_path)
    rows = outcome.rows()
    spans = [(a["lookback"], a["lookahead"]) for r in rows for a in r["data_accessed"]]
    assert spans == [(0, 1)] + [(1, 1)] * 58 + [(1, 0)]
    assert all(a["fields"] == ["close"] for r in rows for a in r["data_accessed"])
    assert outcome.fmel is not None
    (warning,) = outcome.fmel["warnings"]
    assert warning.startswith("look-ahead: the strategy read future bars on 59 of 60 bars")
    assert "close of SPY 1 bar ahead" in warning


def test_no_look_ahead_no_warning(tmp_path: Path) -> None:
    fmel = run(S.MinimalStrategy, frames(n=60), out=tmp_path).fmel
    assert fmel is not None and fmel["warnings"] == []


def test_held_line_is_probed_only_while_recording_data(tmp_path: Path) -> None:
    from backtrader.linebuffer import LineBuffer

    untracked = run(S.HeldLineReader, frames(n=30), out=tmp_path, track_data=False)
    assert isinstance(untracked.strat.dataclose, LineBuffer)
    tracked = run(S.HeldLineReader, frames(n=30), out=tmp_path)
    # whatever stands in for the line reads the same values
    assert tracked.strat.dataclose[0] == untracked.strat.dataclose[0]
    assert len(tracked.strat.dataclose) == len(untracked.strat.dataclose)


def test_printed_text_goes_to_the_bar_log_and_still_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout, stderr = sys.stdout, sys.stderr
    outcome = run(S.PrintingStrategy, out=tmp_path)
    assert sys.stdout is stdout and sys.stderr is stderr
    rows = outcome.rows()
    printed = outcome.strat.printed
    assert len(printed) == N_BARS
    for r in rows:
        assert r["log"] == printed[r["bar_number"]], r["bar_number"]
    assert any(line.startswith("order ") for r in rows for line in r["log"])
    captured = capsys.readouterr()
    out_lines = [ln for lines in printed.values() for ln in lines if not ln.startswith("warn")]
    err_lines = [ln for lines in printed.values() for ln in lines if ln.startswith("warn")]
    assert captured.out.splitlines() == out_lines
    assert captured.err.splitlines() == err_lines
    assert len(err_lines) == N_BARS // 50


def test_no_log_capture_leaves_stdout_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout = sys.stdout

    class Spy(S.PrintingStrategy):
        def decide(self) -> None:
            assert sys.stdout is stdout
            super().decide()

    rows = run(Spy, frames(n=30), out=tmp_path, capture_log=False).rows()
    assert all(r["log"] == [] for r in rows)
    assert "bar 30 close" in capsys.readouterr().out


@pytest.mark.parametrize("exactbars", [0, 1])
def test_stdout_is_restored_when_the_strategy_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exactbars: int
) -> None:
    saved = sys.stdout, sys.stderr
    try:
        with pytest.raises(RuntimeError, match="on purpose"):
            run(S.RaisingStrategy, frames(n=30), out=tmp_path, exactbars=exactbars)
        assert sys.stdout is saved[0]
        assert sys.stderr is saved[1]
    finally:
        sys.stdout, sys.stderr = saved
    print("after the failed run")
    assert capsys.readouterr().out.splitlines()[-1] == "after the failed run"


def test_stdout_is_restored_when_stop_raises(tmp_path: Path) -> None:
    class FailsInStop(S.MinimalStrategy):
        def stop(self) -> None:
            raise RuntimeError("stop failed")

    saved = sys.stdout, sys.stderr
    try:
        with pytest.raises(RuntimeError, match="stop failed"):
            run(FailsInStop, frames(n=30), out=tmp_path)
        assert (sys.stdout, sys.stderr) == saved
    finally:
        sys.stdout, sys.stderr = saved


def test_duckdb_views_agree_with_the_summary(tmp_path: Path) -> None:
    outcome = run(S.BracketStrategy, out=tmp_path)
    run_id = outcome.fmel["run_id"]
    con = connect(tmp_path)
    counts = dict(
        con.execute(
            "SELECT action, count(*) FROM trading_decisions WHERE run_id = ? GROUP BY 1", [run_id]
        ).fetchall()
    )
    assert {k: v for k, v in outcome.fmel["actions"].items() if v} == counts
    (head,) = con.execute(
        "SELECT chain_head FROM run_summaries WHERE run_id = ?", [run_id]
    ).fetchone()
    assert head == outcome.fmel["chain_head"]


def test_a_resumed_run_still_verifies(tmp_path: Path) -> None:
    data = frames(n=200)["SPY"]
    first = run(S.BracketStrategy, {"SPY": data.iloc[:100]}, out=tmp_path, run_id="R1")
    assert verify_run(tmp_path, "R1").ok
    second = run(
        S.BracketStrategy,
        {"SPY": data.iloc[100:]},
        out=tmp_path,
        run_id="R1",
        prev_hash=first.fmel["chain_head"],
        first_bar=101,
    )
    rows = read_rows(tmp_path, "R1")
    assert [r["bar_number"] for r in rows] == list(range(1, 201))
    assert rows[-1]["complete_state_hash"] == second.fmel["chain_head"]
    assert verify_run(tmp_path, "R1").ok


# --------------------------------------------------------------- 4. batching
@pytest.mark.parametrize(
    ("bars", "batch_rows", "parts"), [(1000, 100, 10), (1050, 100, 11), (40, 1, 40)]
)
def test_batches_give_the_same_rows_as_one_batch(
    tmp_path: Path, bars: int, batch_rows: int, parts: int
) -> None:
    data = frames(n=bars)
    small = run(S.ChattyBracketStrategy, data, out=tmp_path / "small", batch_rows=batch_rows)
    whole = run(S.ChattyBracketStrategy, data, out=tmp_path / "whole")
    assert len(decision_files(tmp_path / "small", small.fmel["run_id"])) == parts
    assert len(decision_files(tmp_path / "whole", whole.fmel["run_id"])) == 1
    small_rows, whole_rows = small.rows(), whole.rows()
    assert len(small_rows) == bars
    assert [r["state_hash"] for r in small_rows] == [r["state_hash"] for r in whole_rows]
    assert [r["complete_state_hash"] for r in small_rows] == [
        r["complete_state_hash"] for r in whole_rows
    ]
    assert stable(small_rows) == stable(whole_rows)
    assert small.fmel["chain_head"] == whole.fmel["chain_head"]
    assert small.fmel["actions"] == whole.fmel["actions"]
    assert verify_run(tmp_path / "small", small.fmel["run_id"]).ok


# ----------------------------------------------------------- 5. verification
@pytest.fixture(scope="module")
def recorded_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("fmel")
    outcome = run(S.ChattyBracketStrategy, frames(n=300), out=out, batch_rows=100)
    run_id = outcome.fmel["run_id"]
    assert len(decision_files(out, run_id)) == 3
    return out, run_id, read_rows(out, run_id)


def first_bar(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> int:
    return next(r["bar_number"] for r in rows if pred(r) and r["bar_number"] > 100)


def rewrite(root: Path, run_id: str, bar: int, change: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the part file that holds ``bar`` with ``change`` applied to that row
    (``change`` returning False deletes the row)."""
    for path in decision_files(root, run_id):
        rows = pq.read_table(path).to_pylist()
        if all(r["bar_number"] != bar for r in rows):
            continue
        kept = [r for r in rows if r["bar_number"] != bar or change(r) is not False]
        pq.write_table(pa.Table.from_pylist(kept, schema=DECISION_SCHEMA), path)
        return
    raise AssertionError(f"bar {bar} not found")


def _bump(key: str, delta: float) -> Callable[[dict[str, Any]], None]:
    def change(row: dict[str, Any]) -> None:
        row[key] += delta

    return change


def _indicator(row: dict[str, Any]) -> None:
    (name, value), *rest = row["indicators"]
    row["indicators"] = [(name, 0.0 if math.isnan(value) else value * 1.0001), *rest]


def _fill_price(row: dict[str, Any]) -> None:
    row["fills"][0]["price"] += 0.01


def _fill_size(row: dict[str, Any]) -> None:
    row["fills"][0]["size"] *= 2


def _order_price(row: dict[str, Any]) -> None:
    row["actions_taken"][0]["price"] *= 1.01


def _drop_order(row: dict[str, Any]) -> None:
    row["actions_taken"] = row["actions_taken"][1:]


def _position(row: dict[str, Any]) -> None:
    row["positions"][0]["size"] += 1


def _add_position(row: dict[str, Any]) -> None:
    row["positions"] = [{"symbol": "SPY", "size": 1.0, "price": 100.0, "value": 100.0}]


def _lookback(row: dict[str, Any]) -> None:
    row["data_accessed"][0]["lookback"] += 1


def _log(row: dict[str, Any]) -> None:
    row["log"] = [row["log"][0].replace("bar", "BAR")]


def _timestamp(row: dict[str, Any]) -> None:
    row["timestamp"] += pd.Timedelta(days=1)


def _state_hash(row: dict[str, Any]) -> None:
    row["state_hash"] = hashlib.sha256(b"forged").hexdigest()


def _complete_hash(row: dict[str, Any]) -> None:
    row["complete_state_hash"] = hashlib.sha256(b"forged").hexdigest()


def _value_with_its_state_hash(row: dict[str, Any]) -> None:
    """A forger who recomputes the row's own hash still breaks the chain."""
    row["portfolio_value"] += 100.0
    summary_free = hashlib.sha256(enc.encode_row(row, ["SPY"], ["sma"])).hexdigest()
    row["state_hash"] = summary_free


def _delete(row: dict[str, Any]) -> bool:
    return False


def _is_hold(r: dict[str, Any]) -> bool:
    return r["action"] == "HOLD"


TAMPER = [
    ("portfolio_value", _bump("portfolio_value", 0.01), _is_hold),
    ("portfolio_cash", _bump("portfolio_cash", -0.5), _is_hold),
    ("indicator", _indicator, _is_hold),
    ("indicator-in-warm-up", _indicator, None),
    ("action", lambda r: r.update(action="ORDERED"), _is_hold),
    ("stage", lambda r: r.update(stage="PRENEXT"), _is_hold),
    ("timestamp", _timestamp, _is_hold),
    ("bar-number", _bump("bar_number", 1000), _is_hold),
    ("fill-price", _fill_price, lambda r: bool(r["fills"])),
    ("fill-size", _fill_size, lambda r: bool(r["fills"])),
    ("order-price", _order_price, lambda r: bool(r["actions_taken"])),
    ("order-removed", _drop_order, lambda r: bool(r["actions_taken"])),
    ("position-size", _position, lambda r: bool(r["positions"])),
    ("position-added", _add_position, lambda r: not r["positions"]),
    ("lookback", _lookback, lambda r: bool(r["data_accessed"])),
    ("log", _log, lambda r: bool(r["log"])),
    ("state-hash", _state_hash, _is_hold),
    ("complete-state-hash", _complete_hash, _is_hold),
    ("value-and-its-state-hash", _value_with_its_state_hash, _is_hold),
    ("row-deleted", _delete, _is_hold),
]


def test_fresh_run_verifies(recorded_run: tuple[Path, str, list[dict[str, Any]]]) -> None:
    root, run_id, rows = recorded_run
    result = verify_run(root, run_id)
    assert result.ok and result.first_bad_bar is None and result.reason is None
    assert result.rows == 300
    summary = read_summary(root, run_id)
    assert summary is not None and result.chain_head == summary["chain_head"]
    assert result.chain_head == rows[-1]["complete_state_hash"]


@pytest.mark.parametrize(("change", "where"), [t[1:] for t in TAMPER], ids=[t[0] for t in TAMPER])
def test_tampering_with_one_row_is_found(
    tmp_path: Path,
    recorded_run: tuple[Path, str, list[dict[str, Any]]],
    change: Callable[[dict[str, Any]], Any],
    where: Callable[[dict[str, Any]], bool] | None,
) -> None:
    source, run_id, rows = recorded_run
    root = tmp_path / "fmel"
    shutil.copytree(source, root)
    bar = 5 if where is None else first_bar(rows, where)
    rewrite(root, run_id, bar, change)
    result = verify_run(root, run_id)
    assert not result.ok
    assert result.first_bad_bar == bar, result


def test_deleting_the_last_row_is_found(
    tmp_path: Path, recorded_run: tuple[Path, str, list[dict[str, Any]]]
) -> None:
    source, run_id, rows = recorded_run
    root = tmp_path / "fmel"
    shutil.copytree(source, root)
    rewrite(root, run_id, rows[-1]["bar_number"], _delete)
    result = verify_run(root, run_id)
    assert not result.ok and result.first_bad_bar == rows[-1]["bar_number"]


def _rewrite_summary(root: Path, run_id: str, **changes: Any) -> None:
    path = root / SUMMARIES / f"{run_id}.parquet"
    row = pq.read_table(path).to_pylist()[0]
    row.update(changes)
    pq.write_table(pa.Table.from_pylist([row], schema=SUMMARY_SCHEMA), path)


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_head": hashlib.sha256(b"forged").hexdigest()},
        {"decisions": 299},
        {"genesis": hashlib.sha256(b"forged").hexdigest()},
        {"indicators": ["sma", "rsi"]},
    ],
    ids=["chain-head", "decisions", "genesis", "indicators"],
)
def test_tampering_with_the_summary_is_found(
    tmp_path: Path, recorded_run: tuple[Path, str, list[dict[str, Any]]], changes: dict[str, Any]
) -> None:
    source, run_id, _ = recorded_run
    root = tmp_path / "fmel"
    shutil.copytree(source, root)
    _rewrite_summary(root, run_id, **changes)
    assert not verify_run(root, run_id).ok


def test_a_rechained_forgery_is_caught_by_the_summary(
    tmp_path: Path, recorded_run: tuple[Path, str, list[dict[str, Any]]]
) -> None:
    """Changing a row and recomputing every hash after it leaves the summary's head."""
    source, run_id, rows = recorded_run
    root = tmp_path / "fmel"
    shutil.copytree(source, root)
    bar = first_bar(rows, _is_hold)
    summary = read_summary(root, run_id)
    assert summary is not None
    symbols, indicators = summary["symbols"], summary["indicators"]
    forged = [dict(r) for r in rows]
    prev = forged[bar - 2]["complete_state_hash"]
    for r in forged[bar - 1 :]:
        if r["bar_number"] == bar:
            r["portfolio_value"] += 1.0
        r["state_hash"] = hashlib.sha256(enc.encode_row(r, symbols, indicators)).hexdigest()
        prev = r["complete_state_hash"] = enc.chain(prev, r["state_hash"])
    for path in decision_files(root, run_id):
        path.unlink()
    pq.write_table(
        pa.Table.from_pylist(forged, schema=DECISION_SCHEMA),
        root / "trading_decisions" / run_id / "part-00000.parquet",
    )
    result = verify_run(root, run_id)
    assert not result.ok
    assert "chain head" in (result.reason or "")


# ------------------------------------------------------- a flood of prints is cut per bar
def test_a_bar_log_is_cut_at_its_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.fmel.recorder import LOG_CHARS_PER_BAR

    class Flood(bt.Strategy):
        def next(self) -> None:
            if len(self) == 3:
                print("x" * (LOG_CHARS_PER_BAR * 4))
            if len(self) == 4:
                print("quiet")

    result = run(Flood, frames(n=10), out=tmp_path)
    rows = {r["bar_number"]: r for r in result.rows()}
    kept = rows[3]["log"]
    assert sum(len(line) for line in kept[:-1]) == LOG_CHARS_PER_BAR
    assert kept[-1].startswith(f"[{LOG_CHARS_PER_BAR * 3 + 1} more characters")
    assert rows[4]["log"] == ["quiet"]
    assert capsys.readouterr().out.count("x") == LOG_CHARS_PER_BAR * 4  # stdout got it all
    assert verify_run(tmp_path, result.fmel["run_id"]).ok


# ------------------------------------------------- line objects of every kind
@pytest.mark.parametrize("runonce", [True, False], ids=["runonce", "next-mode"])
def test_line_expressions_recorded_in_both_run_modes(tmp_path: Path, runonce: bool) -> None:
    data = frames(TWO)
    plain = run(S.LineExpressionStrategy, data, record=False, runonce=runonce)
    recorded = run(S.LineExpressionStrategy, data, out=tmp_path, runonce=runonce)
    assert plain.closed >= 5
    assert_same_behaviour(plain, recorded)
    check_record(recorded, data)
    assert recorded.fmel is not None and recorded.fmel["warnings"] == []


class _LateSecondData(bt.Strategy):  # type: ignore[misc]
    """An indicator on a data that starts 40 bars after the first."""

    def __init__(self) -> None:
        self.sma1 = bt.ind.SMA(self.data1.close, period=5)

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        if len(self.data1) and not self.position:
            self.buy(size=1)
        elif self.position and len(self) % 7 == 0:
            self.close()


@pytest.mark.parametrize("runonce", [True, False], ids=["runonce", "next-mode"])
def test_lines_of_a_data_that_has_not_started_are_recorded_as_nan(
    tmp_path: Path, runonce: bool
) -> None:
    first = synthetic_frame(200, seed=3)
    late = synthetic_frame(160, seed=4, start=str(first.index[40].date()))
    data = {"SPY": first, "AAPL": late}
    plain = run(_LateSecondData, data, record=False, runonce=runonce)
    recorded = run(_LateSecondData, data, out=tmp_path, runonce=runonce)
    assert recorded.value == plain.value and recorded.closed == plain.closed > 0
    rows = recorded.rows()
    assert len(rows) == len(recorded.strat) and verify_run(tmp_path, rows[0]["run_id"]).ok
    assert math.isnan(dict(rows[0]["indicators"])["sma1"])
    assert not math.isnan(dict(rows[-1]["indicators"])["sma1"])


def test_unnamed_line_objects_get_readable_names(tmp_path: Path) -> None:
    class Unnamed(S.MinimalStrategy):
        def __init__(self) -> None:
            super().__init__()
            sma = bt.ind.SMA(self.data.close, period=5)
            self.signal = bt.And(self.data.close > sma, self.data.high(-1) < sma * 2)

    names = list(dict(run(Unnamed, frames(n=60), out=tmp_path).rows()[-1]["indicators"]))
    assert names == ["sma_0", "gt_1", "delay_2", "mul_3", "lt_4", "signal"]


def test_what_the_recorder_cannot_read_is_left_out_and_said_once() -> None:
    from runtime.fmel.recorder import _indicator_lines

    class Opaque:  # stands for an object backtrader lists whose lines are not buffers
        lines = ("not", "lines")

    class Strat:
        def __init__(self) -> None:
            self.sma = bt.ind.SMA  # a class, not a line object: never named
            self.odd = Opaque()

        def getindicators(self) -> list[Any]:
            return [self.odd, Opaque()]

    names, lines, warnings = _indicator_lines(Strat())  # type: ignore[arg-type]
    assert names == [] and lines == []
    assert warnings == [
        "FMEL does not record these line objects (they hold no readable line): opaque_0, opaque_1"
    ]


def test_a_failure_inside_the_recorder_is_the_platforms_and_not_masked(tmp_path: Path) -> None:
    from runtime.errors import ErrorKind, classify

    saved = sys.stdout, sys.stderr
    try:
        with pytest.raises(ValueError, match="invalid literal") as caught:
            run(S.MinimalStrategy, frames(n=30), out=tmp_path, batch_rows="many")
        assert (sys.stdout, sys.stderr) == saved
    finally:
        sys.stdout, sys.stderr = saved
    error = classify(caught.value, Path(S.__file__))
    assert error.kind is ErrorKind.PLATFORM
    assert error.message.startswith("FMEL recorder failed: ValueError: invalid literal")


def test_a_part_that_is_a_link_or_a_fifo_is_never_read(tmp_path: Path) -> None:
    """A paper session's folder is its agent's to write: its parts are not trusted."""
    victim = run(S.MinimalStrategy, frames(n=40), out=tmp_path).fmel
    attacker = run(S.MinimalStrategy, frames(n=30, seed=5), out=tmp_path).fmel
    assert victim is not None and attacker is not None
    own = decision_files(tmp_path, attacker["run_id"])
    assert own
    for part in own:
        part.unlink()
    folder = tmp_path / "trading_decisions" / attacker["run_id"]
    (folder / "part-00000.parquet").symlink_to(f"../{victim['run_id']}/part-00000.parquet")
    os.mkfifo(folder / "part-00001.parquet")
    assert read_rows(tmp_path, attacker["run_id"]) == []
    assert len(read_rows(tmp_path, victim["run_id"])) == 40


def test_a_paper_sessions_links_and_borrowed_rows_are_not_its_record(tmp_path: Path) -> None:
    """The store links a paper run to its session's folder; what the session puts there is
    read only as its own: no further link is followed, no other run's rows are taken."""
    store_root, session = tmp_path / "store", tmp_path / "session"
    victim = run(S.MinimalStrategy, frames(n=40), out=store_root).fmel
    assert victim is not None
    paper = "paper-run-1"
    rows_dir = session / "trading_decisions" / paper
    rows_dir.mkdir(parents=True)
    (session / "run_summaries").mkdir()
    shutil.copy(decision_files(store_root, victim["run_id"])[0], rows_dir / "part-00000.parquet")
    victim_summary = store_root / SUMMARIES / f"{victim['run_id']}.parquet"
    (session / "run_summaries" / f"{paper}.parquet").symlink_to(victim_summary)
    (store_root / "trading_decisions" / paper).symlink_to(rows_dir)
    (store_root / SUMMARIES / f"{paper}.parquet").symlink_to(
        session / "run_summaries" / f"{paper}.parquet"
    )
    assert read_rows(store_root, paper) == []
    assert read_summary(store_root, paper) is None
    assert read_summary(store_root, victim["run_id"]) is not None
