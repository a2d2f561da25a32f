"""A backtrader live feed per symbol, fed by one ``BarSource`` through a dispatcher.

backtrader polls each live feed's ``_load``: a bar (True), nothing yet (None) or the end
(False). The dispatcher reads the source on its own thread and files each bar under its
symbol; the bars of one time are filed together, so a multi-symbol strategy sees them in
the same ``next``. ``arrivals`` keeps, per symbol, when the last bar was taken from the
source (for the bar-to-order latency benchmark and the health document).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import backtrader as bt

from runtime.paper.sources import Bar, BarSource


class Dispatcher:
    """Reads the source from the first time a feed asks for a bar: bars that came while
    backtrader was still setting up would wait, and count as late."""

    def __init__(
        self,
        source: BarSource,
        symbols: tuple[str, ...],
        *,
        before_start: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.symbols = symbols
        self.before_start = before_start  # on backtrader's thread, just before the first bar
        self._after: datetime | None = None
        self._started = False
        self.pending: dict[str, collections.deque[tuple[Bar, float]]] = {
            s: collections.deque() for s in symbols
        }
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.ended = False
        self.last_bar: Bar | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="bars")

    def start(self, after: datetime | None) -> None:
        """Bars after ``after`` are wanted; reading begins with the first :meth:`take`."""
        self._after = after

    @property
    def started(self) -> bool:
        """Whether bars have begun to flow (backtrader asked for its first)."""
        return self._started

    def _begin(self) -> None:
        self._started = True
        if self.before_start is not None:
            self.before_start()
        self.source.start(self.symbols, after=self._after)
        self._thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            bar = self.source.next_bar(0.2)
            if bar is None:
                if self.source.finished():
                    break
                continue
            arrived = time.perf_counter()
            with self.cond:
                if bar.symbol in self.pending:
                    self.pending[bar.symbol].append((bar, arrived))
                    self.last_bar = bar
                self.cond.notify_all()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def take(self, symbol: str, wait_s: float) -> tuple[Bar, float] | bool | None:
        """The symbol's next bar and when it arrived; None: none yet; False: no more."""
        if not self._started:
            self._begin()
        with self.cond:
            box = self.pending[symbol]
            if not box and not self.ended and not self.stopped.is_set():
                self.cond.wait(wait_s)
            if box:
                return box.popleft()
            return False if (self.ended or self.stopped.is_set()) else None

    def stop(self) -> None:
        self.stopped.set()
        self.source.close()
        with self.cond:
            self.cond.notify_all()


class LiveFeed(bt.feed.DataBase):
    # on_idle: called (in backtrader's thread) when no bar came within wait_s
    params = (("dispatcher", None), ("symbol", ""), ("wait_s", 0.05), ("on_idle", None))
    arrived: float | None = None  # perf_counter() of the bar now being handled

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return bool(self.p.dispatcher.pending[self.p.symbol])

    def _load(self) -> Any:
        got = self.p.dispatcher.take(self.p.symbol, self.p.wait_s)
        if got is None and self.p.on_idle is not None:
            self.p.on_idle()
        if got is None or got is False:
            return got
        bar, arrived = got
        self.arrived = arrived
        lines = self.lines
        lines.datetime[0] = bt.date2num(bar.time.replace(tzinfo=None))
        lines.open[0] = bar.open
        lines.high[0] = bar.high
        lines.low[0] = bar.low
        lines.close[0] = bar.close
        lines.volume[0] = bar.volume
        lines.openinterest[0] = 0.0
        return True


def live_run(*, simulated: bool) -> dict[str, bool]:
    """How backtrader runs on live feeds: bar by bar as they come (no preload, no vectorised
    ``once``). With the simulated broker, order notifications reach the strategy just before
    its next ``next``, as in a backtest: delivered the moment they happen (``quicknotify``),
    a strategy that acts on them (OCO groups, an exit placed on a fill) acts a bar apart from
    its backtest, which the parity check of the strategy corpus showed. A real broker's fills
    come on their own time, so they are delivered at once."""
    return {"runonce": False, "preload": False, "quicknotify": not simulated}


def add_live_feeds(
    cerebro: bt.Cerebro,
    dispatcher: Dispatcher,
    symbols: tuple[str, ...],
    on_idle: Callable[[], None] | None = None,
) -> None:
    """One live feed per symbol, named after it, fed by ``dispatcher``."""
    for sym in symbols:
        cerebro.adddata(LiveFeed(dispatcher=dispatcher, symbol=sym, on_idle=on_idle), name=sym)
