"""Backtest–paper parity: the pure comparison of two decision records (``workers.parity``).

Rows are FMEL-like dicts (the columns ``compare`` and ``difference`` read, maps as the
(name, value) pairs pyarrow gives) whose ``state_hash`` covers their content the way the
record's encoding does (floats to about 10 significant digits, the log included).

Covered: identical records (no difference, orders and fills counted); an order on one side
only, differing fills, positions, cash, value, indicators, data read, bar time, stage and
action, each named with readable values (``BUY 10 SPY Market @ 429.13``, ``none``); float
noise in the 13th significant digit is no difference while the 6th is; NaN equals NaN;
rows apart only in the order of their log lines count as ``log_only_bars`` with no first
difference; records of different lengths name the first missing bar; the first difference
is the earliest bar; on one bar the first field of ``FIELDS`` that differs is named;
misaligned bar numbers; equal fields with unequal hashes; long values shortened;
``canonical`` and ``shown`` on their own.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from runtime.fmel.encoding import normalise
from workers.parity import FIELDS, SHOWN_CHARS, canonical, compare, difference, shown

T0 = datetime(2024, 1, 2, 21, 0, tzinfo=UTC)
CONTENT = (
    "bar_number",
    "timestamp",
    "stage",
    "action",
    "actions_taken",
    "fills",
    "positions",
    "portfolio_cash",
    "portfolio_value",
    "indicators",
    "data_accessed",
    "log",
)


def order(
    side: str = "BUY",
    size: float = 10.0,
    price: float = 429.13,
    *,
    symbol: str = "SPY",
    kind: str = "Market",
    ref: int = 1,
) -> dict[str, Any]:
    return {"side": side, "symbol": symbol, "size": size, "type": kind, "price": price, "ref": ref}


def fill(
    size: float = 10.0, price: float = 429.13, *, symbol: str = "SPY", ref: int = 1
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "size": size,
        "price": price,
        "commission": 0.0,
        "pnl": 0.0,
        "ref": ref,
    }


def position(size: float = 10.0, price: float = 429.13, *, symbol: str = "SPY") -> dict[str, Any]:
    return {"symbol": symbol, "size": size, "price": price, "value": size * price}


def access(symbol: str = "SPY", lookback: int = 0) -> dict[str, Any]:
    return {"symbol": symbol, "fields": ["close"], "lookback": lookback, "lookahead": 0}


def _hashed(value: Any) -> Any:
    """What the record's hash sees of a value: floats to ~10 significant digits, one NaN."""
    if isinstance(value, float):
        x = normalise(value)
        return "nan" if x is None or math.isnan(x) else x
    if isinstance(value, Mapping):
        return sorted((str(k), _hashed(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [_hashed(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def rehash(r: dict[str, Any]) -> dict[str, Any]:
    content = [(k, _hashed(r.get(k))) for k in CONTENT]
    r["state_hash"] = hashlib.sha256(repr(content).encode()).hexdigest()
    return r


def row(bar: int, **changes: Any) -> dict[str, Any]:
    """Bar ``bar`` of a quiet run (no orders, flat, one indicator), with ``changes``."""
    r: dict[str, Any] = {
        "bar_number": bar,
        "timestamp": T0 + timedelta(days=bar - 1),
        "stage": "next",
        "action": "HOLD",
        "actions_taken": [],
        "fills": [],
        "positions": [],
        "portfolio_cash": 10_000.0,
        "portfolio_value": 10_000.0,
        "indicators": [("sma_fast", 428.5), ("sma_slow", 427.25)],
        "data_accessed": [access()],
        "log": [],
    }
    r.update(changes)
    return rehash(r)


def record(n: int, **at: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` bars; ``at={"3": {...}}`` changes bar 3 (keyword names are the bar numbers)."""
    return [row(i, **at.get(str(i), {})) for i in range(1, n + 1)]


def trading_run() -> list[dict[str, Any]]:
    """Five bars: buy 10 on bar 2, filled on bar 3, sell on bar 4, filled on bar 5."""
    held = [position(10.0, 429.13)]
    return [
        row(1),
        row(2, action="BUY", actions_taken=[order()], log=["BUY CREATE 429.13"]),
        row(
            3,
            fills=[fill()],
            positions=held,
            portfolio_cash=5708.7,
            portfolio_value=10_000.0,
            log=["BUY EXECUTED 429.13"],
        ),
        row(
            4,
            action="SELL",
            actions_taken=[order("SELL", -10.0, 431.0, ref=2)],
            positions=held,
            portfolio_cash=5708.7,
            portfolio_value=10_018.7,
        ),
        row(5, fills=[fill(-10.0, 431.0, ref=2)], portfolio_cash=10_018.7),
    ]


def changed(rows: Sequence[dict[str, Any]], bar: int, **changes: Any) -> list[dict[str, Any]]:
    """A copy of ``rows`` with bar ``bar`` changed (and hashed again)."""
    out = copy.deepcopy(list(rows))
    i = next(i for i, r in enumerate(out) if r["bar_number"] == bar)
    out[i].update(changes)
    rehash(out[i])
    return out


# ----------------------------------------------------------------------- compare
def test_identical_records() -> None:
    backtest = trading_run()
    assert compare(backtest, copy.deepcopy(backtest)) == {
        "bars": 5,
        "orders": 2,
        "fills": 2,
        "differing_bars": 0,
        "log_only_bars": 0,
        "first_difference": None,
    }


def test_empty_records() -> None:
    assert compare([], []) == {
        "bars": 0,
        "orders": 0,
        "fills": 0,
        "differing_bars": 0,
        "log_only_bars": 0,
        "first_difference": None,
    }


def test_orders_and_fills_are_the_backtests_and_none_counts_as_no_orders() -> None:
    backtest = record(3, **{"2": {"actions_taken": None, "fills": None}})
    backtest[0]["actions_taken"] = [order(), order("SELL", -5.0, ref=2)]
    backtest[0]["fills"] = [fill()]
    rehash(backtest[0])
    got = compare(backtest, record(3))
    assert (got["bars"], got["orders"], got["fills"]) == (3, 2, 1)


def test_an_order_on_one_side_only() -> None:
    backtest = trading_run()
    paper = changed(backtest, 2, actions_taken=[])
    got = compare(backtest, paper)
    assert got["differing_bars"] == 1
    assert got["log_only_bars"] == 0
    assert got["first_difference"] == {
        "bar": 2,
        "timestamp": "2024-01-03T21:00:00+00:00",
        "field": "orders",
        "backtest": "BUY 10 SPY Market @ 429.13",
        "paper": "none",
    }
    assert compare(paper, backtest)["first_difference"] == {
        "bar": 2,
        "timestamp": "2024-01-03T21:00:00+00:00",
        "field": "orders",
        "backtest": "none",
        "paper": "BUY 10 SPY Market @ 429.13",
    }


def test_an_order_of_another_kind() -> None:
    backtest = trading_run()
    paper = changed(backtest, 4, actions_taken=[order("SELL", -10.0, 431.0, kind="Limit", ref=2)])
    first = compare(backtest, paper)["first_difference"]
    assert first is not None
    assert first["field"] == "orders"
    assert first["backtest"] == "SELL 10 SPY Market @ 431"
    assert first["paper"] == "SELL 10 SPY Limit @ 431"


def test_fills_differing() -> None:
    backtest = trading_run()
    paper = changed(backtest, 3, fills=[fill(price=429.5)])
    got = compare(backtest, paper)
    assert got["differing_bars"] == 1
    first = got["first_difference"]
    assert first is not None
    assert (first["bar"], first["field"]) == (3, "fills")
    assert (first["backtest"], first["paper"]) == ("SPY 10 @ 429.13", "SPY 10 @ 429.5")


def test_a_fill_on_one_side_only() -> None:
    backtest = trading_run()
    first = compare(backtest, changed(backtest, 5, fills=[]))["first_difference"]
    assert first is not None
    assert (first["bar"], first["field"], first["backtest"], first["paper"]) == (
        5,
        "fills",
        "SPY -10 @ 431",
        "none",
    )


@pytest.mark.parametrize(
    ("column", "label", "paper_value", "shown_backtest", "shown_paper"),
    [
        ("positions", "positions", [position(5.0)], "SPY 10 @ 429.13", "SPY 5 @ 429.13"),
        ("portfolio_cash", "cash", 5708.9, "5708.7", "5708.9"),
        ("portfolio_value", "portfolio value", 10_000.1, "10000", "10000.1"),
        ("action", "action", "SELL", "HOLD", "SELL"),
        ("stage", "stage", "prenext", "next", "prenext"),
        (
            "indicators",
            "indicators",
            [("sma_fast", 428.75), ("sma_slow", 427.25)],
            "sma_fast 428.5, sma_slow 427.25",
            "sma_fast 428.75, sma_slow 427.25",
        ),
        (
            "data_accessed",
            "data read",
            [access(lookback=-1)],
            '[{"symbol": "SPY", "fields": ["close"], "lookback": 0, "lookahead": 0}]',
            '[{"symbol": "SPY", "fields": ["close"], "lookback": -1, "lookahead": 0}]',
        ),
        (
            "timestamp",
            "bar time",
            T0 + timedelta(days=2, hours=-6, minutes=-30),
            "2024-01-04T21:00:00+00:00",
            "2024-01-04T14:30:00+00:00",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and len(v) < 20 else None,
)
def test_each_field_is_named_with_readable_values(
    column: str, label: str, paper_value: Any, shown_backtest: str, shown_paper: str
) -> None:
    backtest = record(3, **{"3": {"positions": [position()], "portfolio_cash": 5708.7}})
    paper = changed(backtest, 3, **{column: paper_value})
    got = compare(backtest, paper)
    assert got["differing_bars"] == 1
    assert got["first_difference"] == {
        "bar": 3,
        "timestamp": "2024-01-04T21:00:00+00:00",  # the backtest's time for the bar
        "field": label,
        "backtest": shown_backtest,
        "paper": shown_paper,
    }


def test_float_noise_in_the_13th_significant_digit_is_no_difference() -> None:
    backtest = trading_run()
    paper = changed(
        backtest,
        3,
        portfolio_cash=5708.700000000001,
        portfolio_value=10_000.00000000002,
        indicators=[("sma_fast", 428.5000000000003), ("sma_slow", 427.2499999999998)],
        fills=[fill(price=429.1300000000004)],
        positions=[position(10.0, 429.1300000000004)],
    )
    assert paper[2]["portfolio_value"] != backtest[2]["portfolio_value"]
    assert paper[2]["state_hash"] == backtest[2]["state_hash"]
    got = compare(backtest, paper)
    assert (got["differing_bars"], got["log_only_bars"], got["first_difference"]) == (0, 0, None)
    # and field by field, should the hashes differ for another reason
    assert difference(backtest[2], {**paper[2], "state_hash": "0" * 64}) == {
        "bar": 3,
        "timestamp": "2024-01-04T21:00:00+00:00",
        "field": "decision state",
        "backtest": backtest[2]["state_hash"][:16],
        "paper": "0" * 16,
    }


def test_a_difference_in_the_6th_significant_digit_is_one() -> None:
    backtest = trading_run()
    paper = changed(backtest, 3, portfolio_value=10_000.1)  # 6th digit: 10000.0 vs 10000.1
    first = compare(backtest, paper)["first_difference"]
    assert first is not None
    assert (first["field"], first["backtest"], first["paper"]) == (
        "portfolio value",
        "10000",
        "10000.1",
    )
    paper = changed(backtest, 2, actions_taken=[order(price=429.131)])
    first = compare(backtest, paper)["first_difference"]
    assert first is not None
    assert (first["field"], first["paper"]) == ("orders", "BUY 10 SPY Market @ 429.131")


def test_nan_equals_nan() -> None:
    nan_indicators = [("sma_fast", math.nan), ("sma_slow", float("nan"))]
    backtest = record(3, **{"1": {"indicators": nan_indicators}})
    paper = record(3, **{"1": {"indicators": [("sma_fast", float("nan")), ("sma_slow", math.nan)]}})
    assert compare(backtest, paper)["first_difference"] is None
    # field by field too: only the log differs, so it is not a difference
    a = {**backtest[0], "log": ["a", "b"], "state_hash": "a"}
    b = {**paper[0], "log": ["b", "a"], "state_hash": "b"}
    assert difference(a, b) is None


def test_nan_against_a_number_is_a_difference() -> None:
    backtest = record(2, **{"2": {"indicators": [("sma_fast", math.nan)]}})
    paper = record(2, **{"2": {"indicators": [("sma_fast", 1.5)]}})
    first = compare(backtest, paper)["first_difference"]
    assert first is not None
    assert (first["field"], first["backtest"], first["paper"]) == (
        "indicators",
        "sma_fast nan",
        "sma_fast 1.5",
    )


def test_log_line_order_only_counts_apart() -> None:
    backtest = record(4, **{"2": {"log": ["BUY CREATE 429.13", "ORDER ACCEPTED"]}})
    paper = changed(backtest, 2, log=["ORDER ACCEPTED", "BUY CREATE 429.13"])
    assert paper[1]["state_hash"] != backtest[1]["state_hash"]
    got = compare(backtest, paper)
    assert got["differing_bars"] == 0
    assert got["log_only_bars"] == 1
    assert got["first_difference"] is None
    assert difference(backtest[1], paper[1]) is None


def test_log_only_bars_next_to_real_differences() -> None:
    backtest = trading_run()
    paper = changed(backtest, 2, log=["BUY CREATE 429.13", "late notification"])
    paper = changed(paper, 3, log=[])
    paper = changed(paper, 5, fills=[])
    got = compare(backtest, paper)
    assert (got["differing_bars"], got["log_only_bars"]) == (1, 2)
    assert got["first_difference"] is not None
    assert (got["first_difference"]["bar"], got["first_difference"]["field"]) == (5, "fills")


def test_the_first_difference_is_the_earliest_bar() -> None:
    backtest = trading_run()
    paper = changed(backtest, 4, portfolio_value=9_000.0)
    paper = changed(paper, 2, actions_taken=[])
    paper = changed(paper, 5, fills=[])
    got = compare(backtest, paper)
    assert got["differing_bars"] == 3
    assert got["first_difference"] is not None
    assert (got["first_difference"]["bar"], got["first_difference"]["field"]) == (2, "orders")


@pytest.mark.parametrize(
    ("longer", "shorter", "side"),
    [("backtest", "paper", "backtest"), ("paper", "backtest", "paper")],
    ids=["backtest-longer", "paper-longer"],
)
def test_one_record_longer_names_the_first_missing_bar(
    longer: str, shorter: str, side: str
) -> None:
    runs = {longer: record(5), shorter: record(3)}
    got = compare(runs["backtest"], runs["paper"])
    assert got["bars"] == len(runs["backtest"])
    assert got["differing_bars"] == 2
    assert got["first_difference"] == {
        "bar": 4,
        "timestamp": "2024-01-05T21:00:00+00:00",
        "field": f"bars (only the {side} run saw this one)",
        "backtest": f"{len(runs['backtest'])} bars",
        "paper": f"{len(runs['paper'])} bars",
    }


def test_a_difference_before_the_missing_bars_comes_first() -> None:
    backtest = trading_run()
    paper = changed(backtest, 3, fills=[])[:4]
    got = compare(backtest, paper)
    assert got["differing_bars"] == 2  # bar 3, and bar 5 the paper run never saw
    assert got["first_difference"] is not None
    assert (got["first_difference"]["bar"], got["first_difference"]["field"]) == (3, "fills")


def test_one_record_empty() -> None:
    got = compare([], record(2))
    assert (got["bars"], got["differing_bars"]) == (0, 2)
    assert got["first_difference"] is not None
    assert got["first_difference"]["bar"] == 1
    assert got["first_difference"]["field"] == "bars (only the paper run saw this one)"


def test_a_skipped_bar_misaligns_bar_numbers() -> None:
    backtest = record(4)
    paper = [backtest[0], backtest[2], backtest[3]]  # bar 2 missing
    got = compare(backtest, paper)
    assert got["first_difference"] == {
        "bar": 2,
        "timestamp": "2024-01-03T21:00:00+00:00",
        "field": "bar number",
        "backtest": "2",
        "paper": "3",
    }
    assert got["differing_bars"] == 3  # bars 2 and 3 misaligned, and one bar missing


def test_equal_hashes_with_different_bar_numbers_are_compared() -> None:
    a = row(1)
    b = {**row(2), "state_hash": a["state_hash"]}
    assert compare([a], [b])["differing_bars"] == 1


# ------------------------------------------------------- which field is named first
VARIANTS: dict[str, Any] = {
    "timestamp": T0 + timedelta(hours=1),
    "stage": "prenext",
    "actions_taken": [order()],
    "fills": [fill()],
    "positions": [position()],
    "portfolio_cash": 9_000.0,
    "portfolio_value": 9_000.0,
    "action": "BUY",
    "indicators": [("sma_fast", 1.0), ("sma_slow", 2.0)],
    "data_accessed": [access("QQQ")],
}


def test_every_field_has_a_variant() -> None:
    assert [column for _, column in FIELDS] == list(VARIANTS)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(FIELDS[i], FIELDS[j]) for i in range(len(FIELDS)) for j in range(i + 1, len(FIELDS))],
    ids=lambda f: f[1],
)
def test_the_earlier_field_is_named(earlier: tuple[str, str], later: tuple[str, str]) -> None:
    backtest = row(1)
    paper = row(1, **{earlier[1]: VARIANTS[earlier[1]], later[1]: VARIANTS[later[1]]})
    found = difference(backtest, paper)
    assert found is not None
    assert found["field"] == earlier[0]


def test_bar_time_comes_before_orders() -> None:
    backtest = trading_run()
    paper = changed(backtest, 2, timestamp=T0 + timedelta(days=1, seconds=1), actions_taken=[])
    first = compare(backtest, paper)["first_difference"]
    assert first is not None
    assert first["field"] == "bar time"
    assert (first["backtest"], first["paper"]) == (
        "2024-01-03T21:00:00+00:00",
        "2024-01-03T21:00:01+00:00",
    )


def test_bar_number_comes_before_every_field() -> None:
    found = difference(row(1), row(2, **VARIANTS))
    assert found is not None
    assert (found["bar"], found["field"], found["backtest"], found["paper"]) == (
        1,
        "bar number",
        "1",
        "2",
    )


def test_a_row_without_a_datetime_has_no_timestamp() -> None:
    a = {**row(1), "timestamp": None}
    b = {**row(1, stage="prenext"), "timestamp": None}
    found = difference(a, b)
    assert found is not None
    assert (found["timestamp"], found["field"]) == (None, "stage")


def test_long_values_are_shortened() -> None:
    many = [order(ref=i, price=400.0 + i) for i in range(40)]
    found = difference(row(1, actions_taken=many), row(1))
    assert found is not None
    assert len(found["backtest"]) == SHOWN_CHARS
    assert found["backtest"].endswith("…")
    assert found["backtest"].startswith("BUY 10 SPY Market @ 400; BUY 10 SPY Market @ 401; ")
    assert found["paper"] == "none"


# --------------------------------------------------------------------- canonical
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (429.13, 429.1300000000001),
        (1e-9, 1.0000000000001e-9),
        (-0.0, 0.0),
        (math.nan, float("nan")),
        (math.inf, math.inf),
        ({"b": 1.0, "a": 2.0}, {"a": 2.0, "b": 1.0}),
        ([("x", 1.0)], [["x", 1.0000000000001]]),
        ((1, 2), [1, 2]),
        (10, 10.0),
        (T0, datetime(2024, 1, 2, 21, 0, tzinfo=UTC)),
        (None, None),
        ("text", "text"),
    ],
    ids=[
        "13th-digit",
        "tiny",
        "signed-zero",
        "nan",
        "inf",
        "map-order",
        "pairs",
        "tuple-list",
        "int-float",
        "datetime",
        "none",
        "text",
    ],
)
def test_canonical_equal(a: Any, b: Any) -> None:
    assert canonical(a) == canonical(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (429.13, 429.131),
        (10_000.0, 10_000.1),
        (1.0, 1.00001),
        (math.nan, 0.0),
        (math.inf, -math.inf),
        ({"a": 1.0}, {"a": 1.1}),
        (["a", "b"], ["b", "a"]),
        (None, []),
        (T0, T0 + timedelta(microseconds=1)),
    ],
    ids=[
        "6th-digit",
        "value",
        "5th-decimal",
        "nan-zero",
        "inf",
        "map",
        "order",
        "none-empty",
        "datetime",
    ],
)
def test_canonical_different(a: Any, b: Any) -> None:
    assert canonical(a) != canonical(b)


def test_canonical_nested() -> None:
    assert canonical([{"price": math.nan, "size": 10.0}]) == [[("price", "nan"), ("size", 10.0)]]
    assert canonical(T0) == "2024-01-02T21:00:00+00:00"
    assert canonical(datetime(2024, 1, 2, 16, 0, tzinfo=timezone(timedelta(hours=-5)))) == (
        "2024-01-02T16:00:00-05:00"
    )


# ------------------------------------------------------------------------- shown
@pytest.mark.parametrize(
    ("column", "value", "text"),
    [
        ("actions_taken", [order()], "BUY 10 SPY Market @ 429.13"),
        ("actions_taken", [order("SELL", -10.0, 431.0)], "SELL 10 SPY Market @ 431"),
        (
            "actions_taken",
            [order(), order("SELL", -2.5, 430.0, symbol="QQQ", kind="Stop")],
            "BUY 10 SPY Market @ 429.13; SELL 2.5 QQQ Stop @ 430",
        ),
        ("actions_taken", [], "none"),
        ("actions_taken", None, "none"),
        ("fills", [fill(-10.0, 431.0)], "SPY -10 @ 431"),
        ("fills", None, "none"),
        (
            "positions",
            [position(), position(-5.0, 370.5, symbol="QQQ")],
            "SPY 10 @ 429.13; QQQ -5 @ 370.5",
        ),
        ("portfolio_value", 10_018.123456, "10018.1"),
        ("portfolio_value", math.nan, "nan"),
        ("indicators", [("sma", 429.1312345), ("rsi", 55.0)], "sma 429.131, rsi 55"),
        ("indicators", [], "none"),
        ("indicators", None, "none"),
        ("timestamp", T0, "2024-01-02T21:00:00+00:00"),
        ("stage", "next", "next"),
    ],
)
def test_shown(column: str, value: Any, text: str) -> None:
    assert shown(column, value) == text
