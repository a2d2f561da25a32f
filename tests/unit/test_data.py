"""Tests for runtime.data: loading, data checks, synthetic data and backtrader feeds."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from runtime.data import (
    DEFAULT_DATA_DIR,
    DataCheck,
    DataError,
    SymbolData,
    list_symbols,
    load,
    load_symbol,
    synthetic_frame,
    to_feed,
    write_symbol_csv,
    write_synthetic_dir,
)

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
SAMPLE_SYMBOLS = ["AAPL", "GLD", "MSFT", "QQQ", "SPY", "TLT"]


def bar(day: str | pd.Timestamp, close: float = 10.0, volume: int = 100) -> str:
    """One CSV line in the real files' format (04:00 UTC = midnight New York)."""
    stamp = pd.Timestamp(day).strftime("%Y-%m-%d")
    return f"{stamp} 04:00:00+00:00,{close},{close + 1},{close - 1},{close},{close},{volume}"


def weekdays(n: int, start: str = "2021-01-04") -> list[pd.Timestamp]:
    return list(pd.bdate_range(start, periods=n))


def write_csv(folder: Path, symbol: str, lines: list[str]) -> Path:
    path = folder / f"{symbol}.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def only_check(data: SymbolData, kind: str) -> DataCheck:
    assert [c.kind for c in data.checks] == [kind], data.checks
    return data.checks[0]


def assert_one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# ---------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------


def test_sample_folder_has_the_six_symbols() -> None:
    assert list_symbols(DEFAULT_DATA_DIR) == SAMPLE_SYMBOLS


def test_sample_spy_stray_row_is_dropped_and_reported() -> None:
    spy = load_symbol(DEFAULT_DATA_DIR, "spy")

    assert spy.symbol == "SPY"
    check = only_check(spy, "stray_rows")
    assert check.count == 1
    assert check.message == "SPY: 1 stray row before 2020-07-27 dropped (2018-11-01)"
    assert spy.frame.index[0] == pd.Timestamp("2020-07-27 04:00:00")
    assert spy.frame.index[-1] == pd.Timestamp("2025-04-04 04:00:00")
    assert len(spy.frame) == 1180


def test_sample_frame_shape() -> None:
    frame = load_symbol(DEFAULT_DATA_DIR, "SPY").frame

    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "openinterest"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.tz is None
    assert frame.index.dtype == "datetime64[ns]"
    assert frame.index.is_monotonic_increasing
    assert frame.index.is_unique
    assert frame["close"].iloc[0] == pytest.approx(301.78)
    assert (frame["openinterest"] == 0).all()


def test_other_sample_symbols_are_clean() -> None:
    loaded = load(DEFAULT_DATA_DIR, ["qqq", "AAPL", "MSFT", "GLD", "TLT"])

    assert [d.symbol for d in loaded] == ["QQQ", "AAPL", "MSFT", "GLD", "TLT"]
    for data in loaded:
        assert data.checks == ()
        assert len(data.frame) == 1180


def test_loading_a_real_file_is_fast() -> None:
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        load_symbol(DEFAULT_DATA_DIR, "SPY")
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.05  # a few ms in practice; generous for slow CI machines


# ---------------------------------------------------------------------------
# Date window
# ---------------------------------------------------------------------------


def test_window_is_inclusive_on_both_ends() -> None:
    spy = load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2021, 1, 4), end=date(2021, 1, 8))

    assert [ts.date() for ts in spy.frame.index] == [date(2021, 1, d) for d in range(4, 9)]


def test_window_with_one_open_end() -> None:
    since = load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2025, 4, 1))
    until = load_symbol(DEFAULT_DATA_DIR, "SPY", end=date(2020, 7, 28))

    assert [ts.date() for ts in since.frame.index] == [date(2025, 4, d) for d in range(1, 5)]
    assert [ts.date() for ts in until.frame.index] == [date(2020, 7, 27), date(2020, 7, 28)]


def test_window_is_applied_after_the_checks() -> None:
    # The stray 2018 row is inside the window but must stay dropped (and reported).
    spy = load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2018, 1, 1), end=date(2020, 7, 31))

    assert only_check(spy, "stray_rows").count == 1
    assert spy.frame.index[0] == pd.Timestamp("2020-07-27 04:00:00")
    assert len(spy.frame) == 5


def test_window_applies_to_every_symbol_in_load() -> None:
    loaded = load(DEFAULT_DATA_DIR, ["SPY", "GLD"], start=date(2024, 1, 1), end=date(2024, 1, 31))

    for data in loaded:
        assert data.frame.index[0] >= pd.Timestamp("2024-01-01")
        assert data.frame.index[-1] < pd.Timestamp("2024-02-01")
        assert len(data.frame) == 21


# ---------------------------------------------------------------------------
# Request errors
# ---------------------------------------------------------------------------


def test_unknown_symbol_lists_what_is_available() -> None:
    with pytest.raises(DataError) as error:
        load_symbol(DEFAULT_DATA_DIR, "xyz")

    message = assert_one_line(error)
    assert message == (
        "no data for symbol 'XYZ' in the data folder (available: AAPL, GLD, MSFT, QQQ, SPY, TLT)"
    )


def test_load_names_every_unknown_symbol_at_once() -> None:
    with pytest.raises(DataError) as error:
        load(DEFAULT_DATA_DIR, ["SPY", "NOPE", "ALSO-NOT"])

    message = assert_one_line(error)
    assert "'NOPE', 'ALSO-NOT'" in message


@pytest.mark.parametrize(
    "name", ["../SPY", "a/b", "..\\SPY", "", "   ", "X" * 16, "S P Y", "$SPY", "SPY;rm"]
)
def test_bad_symbol_names_are_rejected(name: str, tmp_path: Path) -> None:
    # A file that a path trick would reach must not be read.
    write_csv(tmp_path, "SPY", [bar("2021-01-04")])
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    with pytest.raises(DataError) as error:
        load_symbol(data_dir, name)

    assert assert_one_line(error).startswith("bad symbol name")


def test_symbol_names_with_dots_and_dashes_are_fine(tmp_path: Path) -> None:
    write_csv(tmp_path, "BRK.B", [bar(day) for day in weekdays(3)])
    write_csv(tmp_path, "BF-B", [bar(day) for day in weekdays(3)])

    assert list_symbols(tmp_path) == ["BF-B", "BRK.B"]
    assert load_symbol(tmp_path, "brk.b").symbol == "BRK.B"


def test_file_names_are_matched_case_insensitively(tmp_path: Path) -> None:
    write_csv(tmp_path, "spy", [bar(day) for day in weekdays(3)])
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "bad name.csv").write_text("not a symbol file name")

    assert list_symbols(tmp_path) == ["SPY"]
    assert len(load_symbol(tmp_path, "SPY").frame) == 3


def test_empty_window_names_the_real_range() -> None:
    with pytest.raises(DataError) as error:
        load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2030, 1, 1), end=date(2030, 12, 31))

    assert assert_one_line(error) == (
        "no bars for SPY between 2030-01-01 and 2030-12-31 (data covers 2020-07-27 to 2025-04-04)"
    )


def test_start_after_end_is_an_error() -> None:
    with pytest.raises(DataError) as error:
        load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2022, 1, 2), end=date(2022, 1, 1))

    assert "after" in assert_one_line(error)


def test_missing_folder_and_no_symbols(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        list_symbols(tmp_path / "nope")
    assert "TRADEOPS_DATA_DIR" in assert_one_line(error)  # the setting, not a host path

    with pytest.raises(DataError) as error:
        load(DEFAULT_DATA_DIR, [])
    assert_one_line(error)


def test_empty_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_symbol(tmp_path, "SPY")

    assert "no SYMBOL.csv files" in assert_one_line(error)


# ---------------------------------------------------------------------------
# Data checks on small hand-made files
# ---------------------------------------------------------------------------


def test_clean_file_has_no_checks(tmp_path: Path) -> None:
    write_csv(tmp_path, "OK", [bar(day) for day in weekdays(20)])

    data = load_symbol(tmp_path, "OK")

    assert data.checks == ()
    assert len(data.frame) == 20


def test_unsorted_rows_are_sorted_and_counted(tmp_path: Path) -> None:
    days = weekdays(10)
    order = [1, 0, 2, 3, 4, 6, 5, 7, 8, 9]  # two rows go back in time
    write_csv(tmp_path, "UNS", [bar(days[i], close=10.0 + i) for i in order])

    data = load_symbol(tmp_path, "UNS")

    check = only_check(data, "unsorted")
    assert check.count == 2
    assert check.message == "UNS: 2 rows out of date order, sorted (order breaks at line 3, 8)"
    assert list(data.frame.index.normalize()) == days
    assert list(data.frame["close"]) == [10.0 + i for i in range(10)]


def test_one_late_row_at_the_top_counts_once(tmp_path: Path) -> None:
    days = weekdays(10)
    write_csv(tmp_path, "TOP", [bar(days[5]), *(bar(days[i]) for i in range(10) if i != 5)])

    data = load_symbol(tmp_path, "TOP")

    assert only_check(data, "unsorted").count == 1
    assert list(data.frame.index.normalize()) == days


def test_a_block_moved_to_the_end_counts_its_rows(tmp_path: Path) -> None:
    days = weekdays(10)
    write_csv(tmp_path, "BLOCK", [bar(day) for day in days[3:] + days[:3]])

    check = only_check(load_symbol(tmp_path, "BLOCK"), "unsorted")

    assert check.count == 3
    assert check.message.endswith("(order breaks at line 9)")


def test_duplicate_timestamps_keep_the_last_row(tmp_path: Path) -> None:
    days = weekdays(10)
    lines = [bar(day) for day in days]
    lines.insert(3, bar(days[2], close=99.0))  # after the first row for days[2]: wins
    lines.insert(5, bar(days[4], close=50.0))  # before the first row for days[4]: loses
    lines.append(bar(days[1], close=77.0))  # out of order, but last in the file: wins
    write_csv(tmp_path, "DUP", lines)

    data = load_symbol(tmp_path, "DUP")

    assert [c.kind for c in data.checks] == ["unsorted", "duplicates"]
    unsorted, duplicates = data.checks
    assert unsorted.count == 1
    assert duplicates.count == 3
    assert duplicates.message == (
        "DUP: 3 duplicate rows dropped, kept the last row per timestamp "
        "(2021-01-05, 2021-01-06, 2021-01-08)"
    )
    assert list(data.frame.index.normalize()) == days
    assert list(data.frame["close"].iloc[:5]) == [10.0, 77.0, 99.0, 10.0, 10.0]


def test_many_duplicates_keep_the_last_row_in_file_order(tmp_path: Path) -> None:
    days = weekdays(60)
    first_pass = [bar(day, close=11.0) for day in reversed(days)]
    second_pass = [bar(day, close=12.0) for day in reversed(days)]
    write_csv(tmp_path, "MANY", first_pass + second_pass)

    data = load_symbol(tmp_path, "MANY")

    assert {c.kind: c.count for c in data.checks} == {"unsorted": 118, "duplicates": 60}
    assert list(data.frame.index.normalize()) == days
    assert (data.frame["close"] == 12.0).all()


def test_gaps_are_reported_not_filled(tmp_path: Path) -> None:
    days = weekdays(20)
    shifted = [*days[:5], *(d + pd.Timedelta(days=14) for d in days[5:12])]
    shifted += [d + pd.Timedelta(days=28) for d in days[12:]]
    write_csv(tmp_path, "GAP", [bar(day) for day in shifted])

    data = load_symbol(tmp_path, "GAP")

    check = only_check(data, "gaps")
    assert check.count == 2
    assert check.message == (
        "GAP: 2 gaps of more than 5 days kept (largest 17 days, 2021-01-08 to 2021-01-25)"
    )
    assert len(data.frame) == 20


def test_weekends_and_long_weekends_are_not_gaps(tmp_path: Path) -> None:
    off = [pd.Timestamp("2021-01-14"), pd.Timestamp("2021-01-15")]  # Wed -> Mon: 5 days
    days = [d for d in weekdays(20) if d not in off]
    write_csv(tmp_path, "LONG", [bar(day) for day in days])

    assert load_symbol(tmp_path, "LONG").checks == ()


def test_stray_rows_at_the_start_are_dropped(tmp_path: Path) -> None:
    lines = [bar("2015-01-02"), bar("2018-11-01")] + [bar(day) for day in weekdays(15)]
    write_csv(tmp_path, "STRAY", lines)

    data = load_symbol(tmp_path, "STRAY")

    check = only_check(data, "stray_rows")
    assert check.count == 2
    assert check.message == (
        "STRAY: 2 stray rows before 2021-01-04 dropped (2015-01-02, 2018-11-01)"
    )
    assert len(data.frame) == 15
    assert data.frame.index[0] == pd.Timestamp("2021-01-04 04:00:00")


def test_a_big_gap_in_the_middle_is_a_gap_not_stray_rows(tmp_path: Path) -> None:
    days = weekdays(10) + weekdays(10, start="2021-06-01")
    write_csv(tmp_path, "MID", [bar(day) for day in days])

    data = load_symbol(tmp_path, "MID")

    assert only_check(data, "gaps").count == 1
    assert len(data.frame) == 20


def test_a_pause_under_30_days_near_the_start_is_a_gap(tmp_path: Path) -> None:
    days = weekdays(2) + weekdays(20, start="2021-01-25")  # 2021-01-05 -> 2021-01-25
    write_csv(tmp_path, "PAUSE", [bar(day) for day in days])

    data = load_symbol(tmp_path, "PAUSE")

    assert only_check(data, "gaps").count == 1
    assert len(data.frame) == 22


def test_a_block_too_big_to_be_strays_is_kept(tmp_path: Path) -> None:
    days = weekdays(4) + weekdays(8, start="2021-03-01")  # 4 rows are not "a few" of 12
    write_csv(tmp_path, "HEAD", [bar(day) for day in days])

    data = load_symbol(tmp_path, "HEAD")

    assert only_check(data, "gaps").count == 1
    assert len(data.frame) == 12


def test_bad_rows_are_dropped_with_line_numbers(tmp_path: Path) -> None:
    days = weekdays(12)
    lines = [bar(day) for day in days]
    lines[1] = lines[1].replace(",10.0,11.0,", ",abc,11.0,", 1)  # line 3: unparseable Open
    lines[4] = f"{days[4]:%Y-%m-%d} 04:00:00+00:00,10,11,9,,10,100"  # line 6: missing Close
    lines[6] = "not-a-date,10,11,9,10,10,100"  # line 8
    lines[9] = f"{days[9]:%Y-%m-%d} 04:00:00+00:00,10,11,0,10,10,100"  # line 11: Low 0
    write_csv(tmp_path, "BAD", lines)

    data = load_symbol(tmp_path, "BAD")

    check = only_check(data, "bad_rows")
    assert check.count == 4
    assert check.message == (
        "BAD: 4 bad rows dropped (line 3: bad number 'abc' in column Open; "
        "line 6: missing Close; line 8: bad date 'not-a-date' in column Date, ...)"
    )
    assert len(data.frame) == 8
    assert (data.frame[["open", "high", "low", "close"]] > 0).all().all()


def test_negative_volume_is_bad_but_zero_volume_is_fine(tmp_path: Path) -> None:
    days = weekdays(6)
    lines = [bar(day, volume=0 if i == 1 else 100) for i, day in enumerate(days)]
    lines[3] = bar(days[3], volume=-5)
    write_csv(tmp_path, "VOL", lines)

    data = load_symbol(tmp_path, "VOL")

    check = only_check(data, "bad_rows")
    assert check.message == "VOL: 1 bad row dropped (line 5: negative Volume -5)"
    assert list(data.frame["volume"]) == [100.0, 0.0, 100.0, 100.0, 100.0]


def test_a_file_without_a_single_good_row_is_an_error(tmp_path: Path) -> None:
    write_csv(tmp_path, "NONE", ["2021-01-04 04:00:00+00:00,abc,1,1,1,1,1"])

    with pytest.raises(DataError) as error:
        load_symbol(tmp_path, "NONE")

    assert assert_one_line(error) == (
        "NONE.csv has no usable rows (line 2: bad number 'abc' in column Open)"
    )


def test_blank_lines_are_ignored_and_line_numbers_stay_right(tmp_path: Path) -> None:
    lines = [bar(day) for day in weekdays(10)]
    lines.insert(2, "")
    lines[5] = "oops,1,1,1,1,1,1"  # line 7 of the file
    write_csv(tmp_path, "BLANK", [*lines, ""])

    check = only_check(load_symbol(tmp_path, "BLANK"), "bad_rows")

    assert check.count == 1
    assert "line 7:" in check.message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "EMPTY.csv is empty"),
        ("symbol,price\nSPY,1\n", "EMPTY.csv: not a price file"),
        (HEADER + "\n", "EMPTY.csv has a header but no data rows"),
        (
            HEADER + "\n2021-01-04,1,2,0.5,1,1,10\n2021-01-05,1,2,0.5,1,1,10,x,y\n",
            "EMPTY.csv: cannot parse",
        ),
    ],
)
def test_unparseable_files_name_the_file(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "EMPTY.csv").write_text(content)

    with pytest.raises(DataError) as error:
        load_symbol(tmp_path, "EMPTY")

    assert assert_one_line(error).startswith(expected)


def test_trailing_commas_do_not_shift_columns(tmp_path: Path) -> None:
    # pandas would otherwise take the first column as an index and shift every value.
    lines = [f"{day:%Y-%m-%d} 04:00:00+00:00,1,2,0.5,1.5,1.5,10," for day in weekdays(3)]
    write_csv(tmp_path, "TRAIL", lines)

    data = load_symbol(tmp_path, "TRAIL")

    assert data.checks == ()
    assert list(data.frame.index.normalize()) == weekdays(3)
    assert data.frame.iloc[0].tolist() == [1.0, 2.0, 0.5, 1.5, 10.0, 0.0]


def test_binary_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "BIN.csv").write_bytes(bytes(range(256)) * 20)

    with pytest.raises(DataError) as error:
        load_symbol(tmp_path, "BIN")

    assert "BIN.csv" in assert_one_line(error)


def test_data_check_to_dict() -> None:
    check = DataCheck("SPY", "gaps", 2, "SPY: 2 gaps")

    assert check.to_dict() == {
        "symbol": "SPY",
        "kind": "gaps",
        "count": 2,
        "message": "SPY: 2 gaps",
    }


# ---------------------------------------------------------------------------
# Synthetic data and writing
# ---------------------------------------------------------------------------


def test_synthetic_frame_is_deterministic() -> None:
    first = synthetic_frame(250, seed=42)

    pd.testing.assert_frame_equal(first, synthetic_frame(250, seed=42))
    assert not first["close"].equals(synthetic_frame(250, seed=43)["close"])


def test_synthetic_bars_are_valid() -> None:
    frame = synthetic_frame(2000, seed=1, volatility=0.05)

    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "openinterest"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["low"] > 0).all()
    assert (frame["volume"] > 0).all()
    assert frame["close"].nunique() == len(frame)


def test_synthetic_index_business_days_at_midnight() -> None:
    index = synthetic_frame(10, seed=1, start="2024-01-05").index

    assert isinstance(index, pd.DatetimeIndex)
    assert index[0] == pd.Timestamp("2024-01-05")
    assert index[1] == pd.Timestamp("2024-01-08")  # skips the weekend
    assert (index.day_of_week < 5).all()
    assert (index == index.normalize()).all()


@pytest.mark.parametrize(("freq", "step"), [("min", "1min"), ("h", "1h"), ("15min", "15min")])
def test_synthetic_intraday(freq: str, step: str) -> None:
    index = synthetic_frame(50, seed=1, freq=freq).index

    assert index[0] == pd.Timestamp("2000-01-03 00:00")
    assert (index[1:] - index[:-1] == pd.Timedelta(step)).all()


def test_synthetic_rejects_nonsense() -> None:
    with pytest.raises(DataError):
        synthetic_frame(0, seed=1)
    with pytest.raises(DataError):
        synthetic_frame(10, seed=1, start_price=-1.0)


def test_write_then_load_round_trips_exactly(tmp_path: Path) -> None:
    frame = synthetic_frame(300, seed=7)
    write_symbol_csv(frame, tmp_path / "SYN.csv")

    loaded = load_symbol(tmp_path, "syn")

    assert loaded.checks == ()
    pd.testing.assert_frame_equal(loaded.frame, frame, check_freq=False)


def test_written_csv_uses_the_file_format(tmp_path: Path) -> None:
    write_symbol_csv(synthetic_frame(3, seed=7, freq="h"), tmp_path / "SYN.csv")

    header, first, second, *_ = (tmp_path / "SYN.csv").read_text().splitlines()
    assert header == HEADER
    assert first.startswith("2000-01-03 00:00:00+00:00,")
    assert second.startswith("2000-01-03 01:00:00+00:00,")
    fields = first.split(",")
    assert fields[4] == fields[5]  # Adj Close = Close


def test_intraday_round_trip_has_no_daily_checks(tmp_path: Path) -> None:
    frame = synthetic_frame(600, seed=3, freq="min")
    write_symbol_csv(frame, tmp_path / "MIN.csv")

    loaded = load_symbol(tmp_path, "MIN")

    assert loaded.checks == ()
    pd.testing.assert_frame_equal(loaded.frame, frame, check_freq=False)


def test_write_synthetic_dir(tmp_path: Path) -> None:
    folder = write_synthetic_dir(tmp_path / "syn", ["spy", "QQQ"], 120, seed=5)

    assert folder == tmp_path / "syn"
    assert list_symbols(folder) == ["QQQ", "SPY"]
    spy, qqq = load(folder, ["SPY", "QQQ"])
    assert len(spy.frame) == len(qqq.frame) == 120
    assert not spy.frame["close"].equals(qqq.frame["close"])

    # A symbol's series depends on the seed and its name, not on the other symbols.
    alone = write_synthetic_dir(tmp_path / "alone", ["SPY"], 120, seed=5)
    pd.testing.assert_frame_equal(load_symbol(alone, "SPY").frame, spy.frame)


# ---------------------------------------------------------------------------
# backtrader feed
# ---------------------------------------------------------------------------


class CountBars(bt.Strategy):
    def __init__(self) -> None:
        self.bars = 0
        self.names = [data._name for data in self.datas]
        self.first_close: float | None = None

    def next(self) -> None:
        if self.first_close is None:
            self.first_close = float(self.data.close[0])
        self.bars += 1


def run_plain_cerebro(*datas: SymbolData) -> CountBars:
    cerebro = bt.Cerebro(stdstats=False)
    for data in datas:
        cerebro.adddata(to_feed(data))
    cerebro.addstrategy(CountBars)
    [strategy] = cerebro.run()
    assert isinstance(strategy, CountBars)
    return strategy


def test_to_feed_runs_in_a_plain_cerebro() -> None:
    spy = load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2024, 1, 1), end=date(2024, 12, 31))

    strategy = run_plain_cerebro(spy)

    assert strategy.names == ["SPY"]
    assert strategy.bars == len(spy.frame) == 252
    assert strategy.first_close == spy.frame["close"].iloc[0]


def test_to_feed_names_each_feed_after_its_symbol(tmp_path: Path) -> None:
    folder = write_synthetic_dir(tmp_path, ["AAA", "BBB"], 40, seed=1)

    strategy = run_plain_cerebro(*load(folder, ["BBB", "AAA"]))

    assert strategy.names == ["BBB", "AAA"]
    assert strategy.bars == 40


def test_to_feed_intraday_bars() -> None:
    data = SymbolData("MIN", synthetic_frame(90, seed=2, freq="min"), ())

    strategy = run_plain_cerebro(data)

    assert strategy.bars == 90
    feed = to_feed(data)
    assert (feed.p.timeframe, feed.p.compression) == (bt.TimeFrame.Minutes, 1)
    quarter = to_feed(SymbolData("H", synthetic_frame(5, seed=2, freq="15min"), ()))
    assert (quarter.p.timeframe, quarter.p.compression) == (bt.TimeFrame.Minutes, 15)
    daily = to_feed(SymbolData("D", synthetic_frame(5, seed=2), ()))
    assert (daily.p.timeframe, daily.p.compression) == (bt.TimeFrame.Days, 1)


def test_checks_outside_the_window_are_not_the_windows_news(tmp_path: Path) -> None:
    spy = load_symbol(DEFAULT_DATA_DIR, "SPY", start=date(2022, 1, 1))
    assert not [c for c in spy.checks if c.kind == "stray_rows"]

    days = weekdays(10) + weekdays(10, start="2021-06-01")  # a gap in spring 2021
    write_csv(tmp_path, "MID", [bar(day) for day in days])
    assert only_check(load_symbol(tmp_path, "MID", end=date(2021, 12, 31)), "gaps").count == 1
    assert not load_symbol(tmp_path, "MID", start=date(2021, 6, 1)).checks
    assert "span" not in only_check(load_symbol(tmp_path, "MID"), "gaps").to_dict()


def test_data_errors_name_no_host_path(tmp_path: Path) -> None:
    from runtime.data import DataError, load

    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        load(missing, ["SPY"])
    assert str(tmp_path) not in str(caught.value) and "TRADEOPS_DATA_DIR" in str(caught.value)
