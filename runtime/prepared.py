"""Market data made ready for a run: checked bars as plain arrays, and a feed over them.

The trusted side loads and checks the CSV data (``runtime.data``, with pandas) and saves
the bars a run needs in one ``.npz`` file; the sandboxed run reads it with numpy alone, so
it never imports pandas (a third of the sandbox's start-up) nor sees the data folder.
The feed gives the same values, bit for bit, as ``bt.feeds.PandasData`` over the frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np

COLUMNS = ("open", "high", "low", "close", "volume", "openinterest")
PREPARED_FILE = "data.npz"


@dataclass(frozen=True, eq=False)
class PreparedSymbol:
    symbol: str
    dates: np.ndarray  # datetime64[us], naive UTC wall time, sorted, unique
    values: np.ndarray  # float64, one row a bar, COLUMNS in order
    timeframe: int  # bt.TimeFrame value
    compression: int
    checks: tuple[dict[str, Any], ...] = ()

    def feed(self) -> ArrayFeed:
        return ArrayFeed(
            name=self.symbol,
            dates=self.dates,
            values=self.values,
            timeframe=self.timeframe,
            compression=self.compression,
        )


def save(symbols: Sequence[PreparedSymbol], path: Path) -> Path:
    meta = [
        {"symbol": s.symbol, "timeframe": s.timeframe, "compression": s.compression,
         "checks": list(s.checks)}
        for s in symbols
    ]  # fmt: skip
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
    for i, s in enumerate(symbols):
        arrays[f"dates{i}"] = s.dates.astype("datetime64[us]").astype(np.int64)
        arrays[f"values{i}"] = np.ascontiguousarray(s.values, dtype=np.float64)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


def load(path: Path) -> list[PreparedSymbol]:
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        return [
            PreparedSymbol(
                symbol=m["symbol"],
                dates=npz[f"dates{i}"].astype("datetime64[us]"),
                values=npz[f"values{i}"],
                timeframe=int(m["timeframe"]),
                compression=int(m["compression"]),
                checks=tuple(m["checks"]),
            )
            for i, m in enumerate(meta)
        ]


class ArrayFeed(bt.feed.DataBase):
    """A backtrader feed over arrays (what PandasData does, without pandas)."""

    params = (("dates", None), ("values", None))

    def start(self) -> None:
        super().start()
        stamps: list[datetime] = self.p.dates.astype("datetime64[us]").tolist()
        self._nums = [bt.date2num(ts) for ts in stamps]
        self._rows = self.p.values.tolist()
        self._i = 0

    def _load(self) -> bool:
        i = self._i
        if i >= len(self._nums):
            return False
        lines = self.lines
        lines.datetime[0] = self._nums[i]
        o, h, lo, c, v, oi = self._rows[i]
        lines.open[0] = o
        lines.high[0] = h
        lines.low[0] = lo
        lines.close[0] = c
        lines.volume[0] = v
        lines.openinterest[0] = oi
        self._i = i + 1
        return True
