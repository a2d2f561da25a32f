"""Market data: load per-symbol OHLCV CSV files, check them, and feed them to backtrader.

One file per symbol (``SYMBOL.csv``) with the header
``Date,Open,High,Low,Close,Adj Close,Volume`` and UTC timestamps such as
``2020-07-27 04:00:00+00:00``. Problems in a file are fixed in the open: every fix
(sorting, dropping duplicates, stray rows or bad rows) is reported as a ``DataCheck``
so a user can see what the backtest actually ran on. Gaps are reported, never filled.

This module is part of the agent runtime: standard library, backtrader, numpy and
pandas only.
"""

from __future__ import annotations

import bisect
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import backtrader as bt
import numpy as np
import pandas as pd

from runtime.paths import DEFAULT_DATA_DIR as DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from runtime.prepared import PreparedSymbol

CSV_HEADER: tuple[str, ...] = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
FRAME_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "openinterest")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S+00:00"

_PRICE_COLUMNS = ("Open", "High", "Low", "Close")
_NUMBER_COLUMNS = (*_PRICE_COLUMNS, "Volume")
_REQUIRED_COLUMNS = ("Date", *_NUMBER_COLUMNS)  # "Adj Close" is optional and ignored
_SYMBOL_RE = re.compile(r"[A-Z0-9.\-]{1,15}")

_GAP_LIMIT = pd.Timedelta(days=5)  # daily data: a longer spacing is reported as a gap
_DAILY_MIN_SPACING = pd.Timedelta(hours=12)  # median spacing range that counts as daily data
_DAILY_MAX_SPACING = pd.Timedelta(days=4)
_STRAY_MIN_GAP = pd.Timedelta(days=30)
_STRAY_GAP_FACTOR = 10  # a stray block is separated by > max(30 days, 10 x median spacing)
_MAX_STRAY_ROWS = 5
_STRAY_REST_FACTOR = 5  # ...and the rest of the file has >= 5x as many rows
_MAX_LISTED = 3  # how many examples (line numbers, dates) a message names
_MAX_LISTED_SYMBOLS = 12

CheckKind = Literal["unsorted", "duplicates", "gaps", "stray_rows", "bad_rows"]


class DataError(ValueError):
    """Bad data request or unreadable data: message is ONE line a user can act on.

    Examples: "no data for symbol 'XYZ' in the data folder (available: AAPL, GLD, ...)",
    "no bars for SPY between 2030-01-01 and 2030-12-31 (data covers 2020-07-27 to 2025-04-04)",
    "SPY.csv has no usable rows (line 2: bad number 'abc' in column Close)".
    """


@dataclass(frozen=True)
class DataCheck:
    """One problem found in a symbol's file and what was done about it."""

    symbol: str
    kind: CheckKind
    count: int
    message: str
    # the bars it concerns (epoch ns, first and last) when that is known: a check outside a
    # backtest's window is not that backtest's news
    span: tuple[int, int] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        del out["span"]
        return out


# eq=False: a generated __eq__/__hash__ would compare DataFrames, which raises.
@dataclass(frozen=True, eq=False)
class SymbolData:
    """A symbol's checked bars.

    ``frame`` has a tz-naive DatetimeIndex (UTC wall time, datetime64[ns]), sorted and
    unique, and float64 columns open, high, low, close, volume, openinterest.
    """

    symbol: str
    frame: pd.DataFrame
    checks: tuple[DataCheck, ...]


# ---------------------------------------------------------------------------
# Symbols and files
# ---------------------------------------------------------------------------


def normalize_symbol(symbol: str) -> str:
    """Uppercase ``symbol`` and make sure it is safe to use as a file name."""
    name = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not _SYMBOL_RE.fullmatch(name):
        raise DataError(
            f"bad symbol name {symbol!r}: use 1-15 letters, digits, '.' or '-' (e.g. SPY, BRK.B)"
        )
    return name


def _check_dir(data_dir: Path) -> Path:
    path = Path(data_dir)
    if not path.is_dir():
        # no host path: the message reaches chat (the operator knows TRADEOPS_DATA_DIR)
        raise DataError("the data folder (TRADEOPS_DATA_DIR) does not exist or is not a folder")
    return path


def _symbol_files(data_dir: Path) -> dict[str, Path]:
    """Map of uppercased symbol -> CSV file for every valid ``SYMBOL.csv`` in the folder."""
    files: dict[str, Path] = {}
    for path in sorted(_check_dir(data_dir).iterdir()):
        name = path.stem.upper()
        if path.suffix.lower() == ".csv" and path.is_file() and _SYMBOL_RE.fullmatch(name):
            files.setdefault(name, path)
    return files


def list_symbols(data_dir: Path) -> list[str]:
    """Symbols (uppercase, sorted) that have a CSV file in ``data_dir``."""
    return sorted(_symbol_files(data_dir))


def _missing_error(data_dir: Path, missing: Sequence[str], available: Sequence[str]) -> DataError:
    names = ", ".join(repr(s) for s in missing)
    what = "symbol" if len(missing) == 1 else "symbols"
    if not available:
        hint = "no SYMBOL.csv files there"
    elif len(available) <= _MAX_LISTED_SYMBOLS:
        hint = "available: " + ", ".join(available)
    else:
        shown = ", ".join(available[:_MAX_LISTED_SYMBOLS])
        hint = f"available: {shown}, ... ({len(available)} in all)"
    # no folder path: the message reaches chat, and the host's layout is nobody's business there
    return DataError(f"no data for {what} {names} in the data folder ({hint})")


def _resolve_files(data_dir: Path, symbols: Sequence[str]) -> dict[str, Path]:
    """Validate symbols and find their files; one error names every missing symbol."""
    wanted = list(dict.fromkeys(normalize_symbol(s) for s in symbols))
    files = _symbol_files(data_dir)
    missing = [s for s in wanted if s not in files]
    if missing:
        raise _missing_error(Path(data_dir), missing, sorted(files))
    return {s: files[s] for s in wanted}


# ---------------------------------------------------------------------------
# Reading and checking
# ---------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_raw(path: Path) -> pd.DataFrame:
    """Read the file (index = file line numbers); a DataError names the file if it is not CSV."""
    try:
        with warnings.catch_warnings():
            # index_col=False: extra trailing fields must not shift the columns into an index.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            raw = pd.read_csv(path, dtype={"Date": str}, skip_blank_lines=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} is empty (expected header {','.join(CSV_HEADER)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot parse as CSV ({_first_line(exc)})") from None
    except OSError as exc:
        why = _first_line(exc).replace(str(path), path.name)  # no host path: it reaches chat
        raise DataError(f"cannot read {path.name}: {why}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in _REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path.name}: not a price file, missing column(s) {', '.join(missing)} "
            f"(expected header {','.join(CSV_HEADER)})"
        )
    raw.index = pd.RangeIndex(2, len(raw) + 2)  # header is line 1
    raw = raw.dropna(how="all")  # blank lines carry no data
    if raw.empty:
        raise DataError(f"{path.name} has a header but no data rows")
    return raw


@dataclass(frozen=True)
class _Rows:
    """Parsed rows as plain arrays, so the checks stay vectorized and cheap."""

    lines: np.ndarray  # file line number of each row
    dates: np.ndarray  # datetime64[ns], tz-naive UTC wall time (NaT if unparseable)
    values: np.ndarray  # float64 (n, 5): Open, High, Low, Close, Volume (NaN if unparseable)

    def take(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.lines[keep], self.dates[keep], self.values[keep])


def _numbers(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _parse(raw: pd.DataFrame) -> _Rows:
    """Date -> tz-naive UTC timestamps, numbers -> float64; bad values become NaT/NaN."""
    dates = pd.to_datetime(raw["Date"], utc=True, format="ISO8601", errors="coerce")
    values = np.column_stack([_numbers(raw[c]) for c in _NUMBER_COLUMNS])
    return _Rows(
        lines=raw.index.to_numpy(),
        dates=dates.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]"),
        values=values,
    )


def _bad_mask(rows: _Rows) -> np.ndarray:
    prices, volume = rows.values[:, :4], rows.values[:, 4]
    invalid = np.isnat(rows.dates) | np.isnan(rows.values).any(axis=1)
    return invalid | (prices <= 0).any(axis=1) | (volume < 0)


def _row_problem(raw_row: pd.Series, date_ok: bool, numbers: np.ndarray) -> str:
    """Why one row is bad, e.g. "bad number 'abc' in column Close"."""
    if pd.isna(raw_row["Date"]):
        return "missing Date"
    if not date_ok:
        return f"bad date {str(raw_row['Date'])!r} in column Date"
    for column, value in zip(_NUMBER_COLUMNS, numbers, strict=True):
        text = raw_row[column]
        if pd.isna(text):
            return f"missing {column}"
        if np.isnan(value):
            return f"bad number {str(text)!r} in column {column}"
        if column in _PRICE_COLUMNS and value <= 0:
            return f"non-positive {column} {text}"
        if column == "Volume" and value < 0:
            return f"negative Volume {text}"
    return "bad row"


def _describe_bad_rows(raw: pd.DataFrame, rows: _Rows, bad: np.ndarray) -> list[str]:
    problems = []
    for position in np.flatnonzero(bad)[:_MAX_LISTED]:
        line = int(rows.lines[position])
        date_ok = not np.isnat(rows.dates[position])
        problem = _row_problem(raw.loc[line], date_ok, rows.values[position])
        problems.append(f"line {line}: {problem}")
    return problems


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _more(shown: int, total: int) -> str:
    return ", ..." if total > shown else ""


def _spacing(dates: np.ndarray) -> np.ndarray:
    """Nanoseconds between consecutive (sorted) timestamps."""
    return np.diff(dates.view("int64"))


def _is_daily(dates: np.ndarray) -> bool:
    if len(dates) < 2:
        return True
    median = float(np.median(_spacing(dates)))
    return bool(_DAILY_MIN_SPACING.value <= median <= _DAILY_MAX_SPACING.value)


def _fmt(ts: np.datetime64 | pd.Timestamp, daily: bool) -> str:
    stamp = pd.Timestamp(ts)
    return stamp.date().isoformat() if daily else stamp.isoformat(sep=" ")


def _drop_bad_rows(symbol: str, raw: pd.DataFrame, rows: _Rows) -> tuple[_Rows, DataCheck | None]:
    bad = _bad_mask(rows)
    count = int(bad.sum())
    if not count:
        return rows, None
    problems = _describe_bad_rows(raw, rows, bad)
    detail = "; ".join(problems) + _more(len(problems), count)
    if count == len(bad):
        raise DataError(f"{symbol}.csv has no usable rows ({detail})")
    message = f"{symbol}: {_plural(count, 'bad row')} dropped ({detail})"
    return rows.take(~bad), DataCheck(symbol, "bad_rows", count, message)


def _misplaced_count(dates: np.ndarray) -> int:
    """Fewest rows that must move to sort the file: n - longest non-decreasing subsequence.

    One late row at the top of a file counts as 1, not as every row that follows it.
    """
    tails: list[int] = []
    for value in dates.view("int64").tolist():
        position = bisect.bisect_right(tails, value)
        if position == len(tails):
            tails.append(value)
        else:
            tails[position] = value
    return len(dates) - len(tails)


def _sort_rows(symbol: str, rows: _Rows) -> tuple[_Rows, DataCheck | None]:
    """Stable sort by date (so "keep the last duplicate" still means last in the file)."""
    breaks = np.flatnonzero(rows.dates[1:] < rows.dates[:-1]) + 1
    if not len(breaks):
        return rows, None
    count = _misplaced_count(rows.dates)
    lines = ", ".join(str(n) for n in rows.lines[breaks[:_MAX_LISTED]])
    message = (
        f"{symbol}: {_plural(count, 'row')} out of date order, sorted "
        f"(order breaks at line {lines}{_more(_MAX_LISTED, len(breaks))})"
    )
    order = np.argsort(rows.dates, kind="stable")
    return rows.take(order), DataCheck(symbol, "unsorted", count, message)


def _drop_duplicates(symbol: str, rows: _Rows) -> tuple[_Rows, DataCheck | None]:
    """Keep the last row (in file order) of each timestamp; ``rows`` must be stable-sorted."""
    duplicated = np.zeros(len(rows.dates), dtype=bool)
    duplicated[:-1] = rows.dates[:-1] == rows.dates[1:]
    count = int(duplicated.sum())
    if not count:
        return rows, None
    kept = rows.take(~duplicated)
    daily = _is_daily(kept.dates)
    stamps = np.unique(rows.dates[duplicated])
    shown = ", ".join(_fmt(ts, daily) for ts in stamps[:_MAX_LISTED])
    message = (
        f"{symbol}: {_plural(count, 'duplicate row')} dropped, kept the last row per timestamp "
        f"({shown}{_more(_MAX_LISTED, len(stamps))})"
    )
    return kept, DataCheck(symbol, "duplicates", count, message)


def _stray_count(dates: np.ndarray) -> int:
    """How many leading rows are cut off from the rest by a much larger gap than usual.

    Real example: SPY.csv has one bar from 2018-11-01, then daily bars from 2020-07-27.
    """
    if len(dates) < 3:
        return 0
    spacing = _spacing(dates)
    limit = max(_STRAY_MIN_GAP.value, _STRAY_GAP_FACTOR * float(np.median(spacing)))
    for position in reversed(np.flatnonzero(spacing[:_MAX_STRAY_ROWS] > limit)):
        strays = int(position) + 1
        if len(dates) - strays >= _STRAY_REST_FACTOR * strays:
            return strays
    return 0


def _drop_stray_rows(symbol: str, rows: _Rows) -> tuple[_Rows, DataCheck | None]:
    count = _stray_count(rows.dates)
    if not count:
        return rows, None
    kept = rows.take(np.arange(count, len(rows.dates)))
    daily = _is_daily(kept.dates)
    dropped = ", ".join(_fmt(ts, daily) for ts in rows.dates[:count])
    message = (
        f"{symbol}: {_plural(count, 'stray row')} before {_fmt(kept.dates[0], daily)} "
        f"dropped ({dropped})"
    )
    span = (int(rows.dates[0]), int(rows.dates[count - 1]))
    return kept, DataCheck(symbol, "stray_rows", count, message, span)


def _find_gaps(symbol: str, dates: np.ndarray) -> DataCheck | None:
    """Daily data only: report spacings longer than 5 calendar days (kept as they are)."""
    if len(dates) < 2 or not _is_daily(dates):
        return None
    spacing = _spacing(dates)
    count = int((spacing > _GAP_LIMIT.value).sum())
    if not count:
        return None
    widest = int(spacing.argmax())
    days = pd.Timedelta(int(spacing[widest])).days
    message = (
        f"{symbol}: {_plural(count, 'gap')} of more than {_GAP_LIMIT.days} days kept "
        f"(largest {days} days, {_fmt(dates[widest], True)} to {_fmt(dates[widest + 1], True)})"
    )
    return DataCheck(symbol, "gaps", count, message)


def _to_frame(rows: _Rows) -> pd.DataFrame:
    openinterest = np.zeros((len(rows.dates), 1))
    return pd.DataFrame(
        np.hstack([rows.values, openinterest]),
        index=pd.DatetimeIndex(rows.dates, name="datetime"),
        columns=list(FRAME_COLUMNS),
        dtype="float64",
    )


def _check_file(symbol: str, path: Path) -> SymbolData:
    """Read one file and run every check, in order: bad rows, order, duplicates, strays, gaps."""
    raw = _read_raw(path)
    checks: list[DataCheck | None] = []
    rows, check = _drop_bad_rows(symbol, raw, _parse(raw))
    checks.append(check)
    rows, check = _sort_rows(symbol, rows)
    checks.append(check)
    rows, check = _drop_duplicates(symbol, rows)
    checks.append(check)
    rows, check = _drop_stray_rows(symbol, rows)
    checks.append(check)
    checks.append(_find_gaps(symbol, rows.dates))
    return SymbolData(symbol, _to_frame(rows), tuple(c for c in checks if c is not None))


def _window(data: SymbolData, start: date | None, end: date | None) -> SymbolData:
    """Keep bars whose calendar date (UTC) is within [start, end], both inclusive."""
    if start is None and end is None:
        return data
    index = data.frame.index
    first = pd.Timestamp(start).normalize() if start is not None else index[0].normalize()
    after = pd.Timestamp(end).normalize() + pd.Timedelta(days=1) if end is not None else None
    if after is not None and first >= after:
        raise DataError(f"start {start} is after end {end}")
    keep = index >= first if after is None else (index >= first) & (index < after)
    if not keep.any():
        raise DataError(
            f"no bars for {data.symbol} {_describe_window(start, end)} "
            f"(data covers {index[0].date()} to {index[-1].date()})"
        )
    kept = data.frame[keep]
    return SymbolData(data.symbol, kept, _checks_within(data, kept, first, after))


def _checks_within(
    data: SymbolData, kept: pd.DataFrame, first: pd.Timestamp, after: pd.Timestamp | None
) -> tuple[DataCheck, ...]:
    """The checks that concern the window: gaps found again within it, a check whose bars
    lie outside it dropped (stray rows from 2018 are no news to a 2022 backtest)."""
    lo, hi = first.value, (after.value if after is not None else None)
    out = []
    for check in data.checks:
        if check.kind == "gaps":
            continue
        span = check.span
        if span is not None and (span[1] < lo or (hi is not None and span[0] >= hi)):
            continue
        out.append(check)
    gaps = _find_gaps(data.symbol, kept.index.values.astype("datetime64[ns]"))
    return tuple(out + ([gaps] if gaps is not None else []))


def _describe_window(start: date | None, end: date | None) -> str:
    if start is None:
        return f"up to {end}"
    if end is None:
        return f"from {start}"
    return f"between {start} and {end}"


def load_symbol(
    data_dir: Path, symbol: str, start: date | None = None, end: date | None = None
) -> SymbolData:
    """Load, check and window one symbol's bars (``start``/``end`` inclusive)."""
    [(name, path)] = _resolve_files(data_dir, [symbol]).items()
    return _window(_check_file(name, path), start, end)


def load(
    data_dir: Path, symbols: Sequence[str], start: date | None = None, end: date | None = None
) -> list[SymbolData]:
    """Load several symbols (duplicates in ``symbols`` are loaded once, order kept)."""
    if isinstance(symbols, str):
        symbols = [symbols]
    if not symbols:
        raise DataError("no symbols given")
    files = _resolve_files(data_dir, symbols)
    return [_window(_check_file(name, path), start, end) for name, path in files.items()]


# ---------------------------------------------------------------------------
# backtrader
# ---------------------------------------------------------------------------


def _timeframe(index: pd.DatetimeIndex) -> tuple[int, int]:
    """(backtrader timeframe, compression) from the median bar spacing."""
    if len(index) < 2:
        return bt.TimeFrame.Days, 1
    median = float(np.median(_spacing(index.to_numpy(dtype="datetime64[ns]"))))
    minute, second = pd.Timedelta(minutes=1).value, pd.Timedelta(seconds=1).value
    if median >= _DAILY_MIN_SPACING.value:
        return bt.TimeFrame.Days, 1
    if median >= minute:
        return bt.TimeFrame.Minutes, max(1, round(median / minute))
    return bt.TimeFrame.Seconds, max(1, round(median / second))


def to_feed(data: SymbolData) -> bt.feeds.PandasData:
    """A backtrader feed named after the symbol, so strategies see ``data._name == symbol``."""
    timeframe, compression = _timeframe(data.frame.index)
    return bt.feeds.PandasData(
        dataname=data.frame,
        name=data.symbol,
        datetime=None,  # the index
        open="open",
        high="high",
        low="low",
        close="close",
        volume="volume",
        openinterest="openinterest",
        timeframe=timeframe,
        compression=compression,
    )


# ---------------------------------------------------------------------------
# Synthetic data and writing
# ---------------------------------------------------------------------------


def _synthetic_index(n_bars: int, start: str, freq: str) -> pd.DatetimeIndex:
    try:
        first = pd.Timestamp(start).normalize()
        index = pd.date_range(first, periods=n_bars, freq=freq, name="datetime")
    except ValueError as exc:
        reason = _first_line(exc)
        raise DataError(f"bad synthetic start {start!r} or freq {freq!r}: {reason}") from None
    return index.as_unit("ns")


def synthetic_frame(
    n_bars: int,
    *,
    seed: int,
    start: str = "2000-01-03",
    freq: str = "B",
    start_price: float = 100.0,
    volatility: float = 0.015,
    drift: float = 0.0002,
) -> pd.DataFrame:
    """Seeded geometric random walk with valid OHLCV bars (same seed -> same frame)."""
    if n_bars < 1:
        raise DataError(f"n_bars must be at least 1 (got {n_bars})")
    if start_price <= 0 or volatility < 0:
        raise DataError("start_price must be > 0 and volatility >= 0")
    index = _synthetic_index(n_bars, start, freq)
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(drift, volatility, n_bars)))
    previous = np.concatenate(([start_price], close[:-1]))
    open_ = previous * np.exp(rng.normal(0.0, volatility / 4, n_bars))
    wick = volatility / 2
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, wick, n_bars)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, wick, n_bars)))
    volume = np.round(rng.lognormal(np.log(1_000_000), 0.3, n_bars)) + 1
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "openinterest": 0.0,
        },
        index=index,
        dtype="float64",
    )


def write_symbol_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` in the CSV format ``load_symbol`` reads (Adj Close = Close).

    A tz-naive index is taken as UTC wall time; a tz-aware one is converted to UTC.
    """
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in frame.columns]
    if missing:
        columns = ", ".join(missing)
        raise DataError(f"cannot write {Path(path).name}: frame lacks column(s) {columns}")
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    out = pd.DataFrame(
        {
            "Date": index.strftime(DATE_FORMAT),
            "Open": frame["open"].to_numpy(),
            "High": frame["high"].to_numpy(),
            "Low": frame["low"].to_numpy(),
            "Close": frame["close"].to_numpy(),
            "Adj Close": frame["close"].to_numpy(),
            "Volume": frame["volume"].to_numpy(),
        }
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, lineterminator="\n")


def _symbol_seed(seed: int, symbol: str) -> int:
    """Per-symbol seed: a symbol's series does not depend on which other symbols are written."""
    state = np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]).generate_state(1)
    return int(state[0])


def write_synthetic_dir(
    directory: Path, symbols: Sequence[str], n_bars: int, *, seed: int, start: str = "2000-01-03"
) -> Path:
    """Write one synthetic daily ``SYMBOL.csv`` per symbol into ``directory``; return it."""
    names = list(dict.fromkeys(normalize_symbol(s) for s in symbols))
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        frame = synthetic_frame(n_bars, seed=_symbol_seed(seed, name), start=start)
        write_symbol_csv(frame, folder / f"{name}.csv")
    return folder


def prepare(datas: Sequence[SymbolData]) -> list[PreparedSymbol]:
    """The checked bars as plain arrays, for a run that should not need pandas."""
    from runtime.prepared import COLUMNS, PreparedSymbol

    out = []
    for d in datas:
        timeframe, compression = _timeframe(d.frame.index)
        out.append(
            PreparedSymbol(
                symbol=d.symbol,
                dates=d.frame.index.to_numpy(dtype="datetime64[us]"),
                values=d.frame[list(COLUMNS)].to_numpy(dtype=np.float64),
                timeframe=int(timeframe),
                compression=int(compression),
                checks=tuple(c.to_dict() for c in d.checks),
            )
        )
    return out
