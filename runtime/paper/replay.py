"""The replay source: stored bars played as if they were arriving live.

Bars of all the session's symbols that share a time are handed out together, one time
every ``bar_seconds`` (0 plays as fast as the session takes them). A resumed session first
gets, at full speed, the bars it had already handled (``fast_until``), so the strategy
rebuilds its state, then the rest at the chosen pace.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.paper.sources import Bar

if TYPE_CHECKING:
    from runtime.prepared import PreparedSymbol


class ReplaySource:
    def __init__(
        self,
        data_dir: Path,
        *,
        start: date | None = None,
        bar_seconds: float = 1.0,
        fast_until: datetime | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.start_date = start
        self.bar_seconds = bar_seconds
        self.fast_until = fast_until
        self._queue: queue.Queue[Bar | None] = queue.Queue()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, symbols: tuple[str, ...], *, after: datetime | None = None) -> None:
        self._thread = threading.Thread(target=self._play, args=(self._slices(symbols, after),),
                                        daemon=True, name="replay")  # fmt: skip
        self._thread.start()

    def _slices(self, symbols: tuple[str, ...], after: datetime | None) -> list[list[Bar]]:
        """The bars to play, grouped by time, in time order."""
        from runtime.data import load

        frames = load(self.data_dir, list(symbols), self.start_date)
        slices: dict[datetime, list[Bar]] = {}
        for data in frames:
            f = data.frame
            for ts, o, h, lo, c, v in zip(f.index, f["open"], f["high"], f["low"], f["close"],
                                          f["volume"], strict=True):  # fmt: skip
                when = ts.to_pydatetime().replace(tzinfo=UTC)
                if after is not None and when <= after:
                    continue
                slices.setdefault(when, []).append(
                    Bar(data.symbol, when, float(o), float(h), float(lo), float(c), float(v))
                )
        return [slices[t] for t in sorted(slices)]

    def _play(self, ordered: list[list[Bar]]) -> None:
        due = time.monotonic()
        for bars in ordered:
            fast = self.fast_until is not None and bars[0].time <= self.fast_until
            if not fast and self.bar_seconds > 0:
                due += self.bar_seconds
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
            elif self._stop.is_set():
                break
            for bar in bars:
                self._queue.put(bar)
        self._done.set()
        self._queue.put(None)

    def next_bar(self, timeout_s: float) -> Bar | None:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def finished(self) -> bool:
        return self._done.is_set() and self._queue.empty()

    def close(self) -> None:
        self._stop.set()


class PreparedReplay(ReplaySource):
    """The bars a backtest runs on (``runtime.prepared``), played as live bars as fast as
    the session takes them: a parity check's paper run sees exactly the backtest's bars."""

    def __init__(self, datas: Sequence[PreparedSymbol]) -> None:
        super().__init__(Path("."), bar_seconds=0.0)
        self.datas = list(datas)

    def _slices(self, symbols: tuple[str, ...], after: datetime | None) -> list[list[Bar]]:
        slices: dict[datetime, list[Bar]] = {}
        for data in self.datas:
            if data.symbol not in symbols:
                continue
            stamps: list[datetime] = data.dates.astype("datetime64[us]").tolist()
            for when, row in zip(stamps, data.values.tolist(), strict=True):
                aware = when.replace(tzinfo=UTC)
                if after is None or aware > after:
                    o, h, lo, c, v = row[:5]
                    slices.setdefault(aware, []).append(Bar(data.symbol, aware, o, h, lo, c, v))
        return [slices[t] for t in sorted(slices)]
