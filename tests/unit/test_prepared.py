"""Prepared bars: the array feed gives what PandasData gives, bit for bit, without pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from runtime.data import DEFAULT_DATA_DIR, SymbolData, load, prepare, synthetic_frame, to_feed
from runtime.prepared import load as load_prepared
from runtime.prepared import save as save_prepared


class Tape(bt.Strategy):
    """Writes down every bar it sees, on every data."""

    def __init__(self) -> None:
        self.tape: list[tuple[Any, ...]] = []

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for d in self.datas:
            if len(d):
                self.tape.append((d._name, d.datetime[0], d.open[0], d.high[0], d.low[0],
                                  d.close[0], d.volume[0], d.openinterest[0]))  # fmt: skip


def tape(feeds: list[Any]) -> list[tuple[Any, ...]]:
    cerebro = bt.Cerebro()
    for f in feeds:
        cerebro.adddata(f)
    cerebro.addstrategy(Tape)
    return list(cerebro.run()[0].tape)


@pytest.mark.parametrize("kind", ["sample", "minutes"])
def test_array_feed_equals_pandas_feed(kind: str, tmp_path: Path) -> None:
    if kind == "sample":
        datas = load(DEFAULT_DATA_DIR, ["SPY", "TLT"])
    else:
        frame = synthetic_frame(500, seed=4, start="2024-03-01", freq="min")
        datas = [SymbolData(symbol="SYN", frame=frame, checks=())]
    expected = tape([to_feed(d) for d in datas])
    path = save_prepared(prepare(datas), tmp_path / "data.npz")
    got = tape([p.feed() for p in load_prepared(path)])
    assert got == expected
    assert len(got) > 400


def test_checks_travel_with_the_bars(tmp_path: Path) -> None:
    datas = load(DEFAULT_DATA_DIR, ["SPY"])
    [back] = load_prepared(save_prepared(prepare(datas), tmp_path / "d.npz"))
    assert back.symbol == "SPY"
    assert back.checks == tuple(c.to_dict() for c in datas[0].checks)
    assert back.checks and back.checks[0]["kind"] == "stray_rows"


def test_a_sandboxed_run_needs_no_pandas() -> None:
    code = "import sys, runtime.backtest; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
