"""Market data on this machine: one ``SYMBOL.csv`` of daily (or intraday) bars per symbol in
a folder (``TRADEOPS_DATA_DIR``, by default the bundled sample)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from runtime.prepared import PreparedSymbol


class LocalMarketData:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def symbols(self) -> list[str]:
        from runtime import data

        return data.list_symbols(self.folder)

    def bars(
        self, symbols: Sequence[str], start: date | None = None, end: date | None = None
    ) -> list[PreparedSymbol]:
        from runtime import data

        return data.prepare(data.load(self.folder, list(symbols), start, end))
