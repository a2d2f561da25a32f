"""A corpus of backtrader strategies, each a standalone tradeops agent, that together use
every common backtrader idiom; ``tests/integration/test_corpus.py`` runs each through the
product and through a plain ``bt.Cerebro`` and compares.

``bt_*.py`` are backtrader's own samples (``mementum/backtrader``, folder ``samples/``;
each file's docstring names the sample), with fixed parameters and daily bars;
``idiom_*.py`` each show one family of idioms. ``ENTRIES`` says which symbols and dates
each runs on. ``LATE`` is not a bundled symbol: it is GLD's bars from ``LATE_FIRST_DAY``
on, written by :func:`write_data_dir` next to copies of the bundled CSVs, so that one
strategy sees a data that starts later than the other (``prenext``/``nextstart``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from runtime.paths import DEFAULT_DATA_DIR

CORPUS_DIR = Path(__file__).resolve().parent

LATE_SYMBOL = "LATE"
LATE_SOURCE = "GLD"
LATE_FIRST_DAY = "2022-04-01"


@dataclass(frozen=True)
class CorpusEntry:
    name: str  # file stem in this folder
    symbols: tuple[str, ...]
    start: date
    end: date

    @property
    def path(self) -> Path:
        return CORPUS_DIR / f"{self.name}.py"


def _entry(name: str, symbols: str, start: str, end: str) -> CorpusEntry:
    return CorpusEntry(name, tuple(symbols.split(",")), date.fromisoformat(start),
                       date.fromisoformat(end))  # fmt: skip


ENTRIES: tuple[CorpusEntry, ...] = (
    # backtrader's samples
    _entry("bt_bracket", "SPY", "2021-01-01", "2021-12-31"),
    _entry("bt_bracket_manual", "QQQ", "2021-01-01", "2021-12-31"),
    _entry("bt_btfd", "SPY", "2021-01-01", "2022-12-31"),
    _entry("bt_cheat_on_open", "MSFT", "2021-01-01", "2022-12-31"),
    _entry("bt_close_daily", "SPY", "2022-01-01", "2022-12-31"),
    _entry("bt_credit_interest", "QQQ", "2021-01-01", "2022-12-31"),
    _entry("bt_gold_vs_sp500", "GLD,SPY", "2021-01-01", "2022-12-31"),
    _entry("bt_kselrsi", "AAPL", "2021-01-01", "2022-12-31"),
    _entry("bt_macd_settings", "MSFT", "2020-08-01", "2022-12-31"),
    _entry("bt_memory_savings", "QQQ", "2022-01-01", "2022-12-31"),
    _entry("bt_mult_values", "SPY,QQQ,AAPL", "2022-01-01", "2022-12-31"),
    _entry("bt_multidata", "SPY,QQQ", "2021-01-01", "2021-12-31"),
    _entry("bt_multitrades", "SPY", "2021-01-01", "2022-12-31"),
    _entry("bt_oco", "MSFT", "2021-01-01", "2022-12-31"),
    _entry("bt_order_execution", "SPY", "2021-01-01", "2022-12-31"),
    _entry("bt_order_target_percent", "AAPL", "2022-01-01", "2022-12-31"),
    _entry("bt_order_target_value", "MSFT", "2022-01-01", "2022-12-31"),
    _entry("bt_pinkfish", "QQQ", "2021-01-01", "2021-12-31"),
    _entry("bt_sigsmacross", "SPY", "2021-01-01", "2022-12-31"),
    _entry("bt_sigsmacross2", "QQQ", "2021-01-01", "2023-12-31"),
    _entry("bt_sizer_longonly", "SPY", "2022-01-01", "2022-12-31"),
    _entry("bt_sizer_reverser", "QQQ", "2022-01-01", "2022-12-31"),
    _entry("bt_stoploss_auto", "AAPL", "2022-01-01", "2023-12-31"),
    _entry("bt_stoploss_cheat", "QQQ", "2022-01-01", "2023-12-31"),
    _entry("bt_stoploss_manual", "SPY", "2022-01-01", "2023-12-31"),
    _entry("bt_stoptrail", "AAPL", "2021-01-01", "2022-12-31"),
    _entry("bt_strategy_selection", "GLD", "2022-01-01", "2022-12-31"),
    _entry("bt_timers", "SPY", "2023-01-01", "2023-12-31"),
    # one family of idioms each
    _entry("idiom_brackets_long_short", "QQQ", "2022-01-01", "2023-12-31"),
    _entry("idiom_coupled_data", "SPY,TLT", "2021-01-01", "2023-12-31"),
    _entry("idiom_custom_indicator_init", "SPY", "2021-01-01", "2022-12-31"),
    _entry("idiom_custom_indicator_next", "AAPL", "2022-01-01", "2023-12-31"),
    _entry("idiom_delayed_lines", "QQQ", "2021-01-01", "2023-12-31"),
    _entry("idiom_indicator_containers", "SPY,QQQ,AAPL,MSFT", "2021-01-01", "2022-12-31"),
    _entry("idiom_indicator_of_indicator", "MSFT", "2022-01-01", "2023-12-31"),
    _entry("idiom_line_expressions", "SPY", "2022-01-01", "2022-12-31"),
    _entry("idiom_logic_and_or_if", "SPY", "2021-01-01", "2022-12-31"),
    _entry("idiom_logic_minmax_cmp", "AAPL", "2022-01-01", "2023-12-31"),
    _entry("idiom_multiline_indicators", "QQQ", "2021-01-01", "2023-12-31"),
    _entry("idiom_order_kinds", "SPY", "2022-01-01", "2022-12-31"),
    _entry("idiom_pair_spread", "SPY,QQQ", "2021-01-01", "2022-12-31"),
    _entry("idiom_prenext_late_data", f"SPY,{LATE_SYMBOL}", "2021-07-01", "2022-12-31"),
    _entry("idiom_rebalance_targets", "SPY,TLT", "2021-01-01", "2023-12-31"),
    _entry("idiom_sizer_and_notifications", "MSFT", "2022-01-01", "2022-12-31"),
    _entry("idiom_stored_lines", "SPY", "2022-01-01", "2022-12-31"),
)


def write_data_dir(folder: Path) -> Path:
    """The bundled daily CSVs plus ``LATE.csv`` (GLD from ``LATE_FIRST_DAY``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for csv in sorted(DEFAULT_DATA_DIR.glob("*.csv")):
        shutil.copyfile(csv, folder / csv.name)
    header, *rows = (DEFAULT_DATA_DIR / f"{LATE_SOURCE}.csv").read_text().splitlines()
    kept = [row for row in rows if row[:10] >= LATE_FIRST_DAY]
    (folder / f"{LATE_SYMBOL}.csv").write_text("\n".join([header, *kept]) + "\n")
    return folder
