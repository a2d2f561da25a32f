"""Where live bars come from: the contract between paper mode and its feeds.

A ``BarSource`` is polled by paper mode's backtrader feed; it hands out finished bars, in
time order per symbol, as they arrive. The replay source plays stored daily bars at a chosen
pace (local use and tests); the Alpaca source (``runtime/paper/alpaca.py``) turns alpaca-py's
``StockDataStream`` bar messages into the same ``Bar``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Bar:
    symbol: str
    time: datetime  # the bar's start, timezone-aware UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarSource(Protocol):
    def start(self, symbols: tuple[str, ...], *, after: datetime | None = None) -> None:
        """Begin delivering bars of ``symbols`` that start after ``after`` (a resumed
        session passes the last bar it handled)."""
        ...

    def next_bar(self, timeout_s: float) -> Bar | None:
        """The next finished bar, waiting up to ``timeout_s``; ``None`` if none came."""
        ...

    def finished(self) -> bool:
        """True when no bar will ever come again (a replay played to its end)."""
        ...

    def close(self) -> None: ...
