"""runtime.fmel.encoding: float normalisation, and the two encoders (batch and per row) agree."""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from runtime.fmel import encoding as enc

QNAN_BITS = 0x7FF8000000000000


def bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def special_values() -> np.ndarray:
    tiny = [5e-324, -5e-324, 1e-320, 2.2250738585072014e-308, 1e-300, -1e-310]
    huge = [1e300, -1e300, 1.7e308, sys.float_info.max, -sys.float_info.max]
    other = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 1.0, -1.0, 0.1, 1 / 3]
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]
    return np.array([*tiny, *huge, *other, payload_nan], dtype=np.float64)


def random_values(seed: int, n: int = 20_000) -> np.ndarray:
    """Seeded values over the whole exponent range, with the special cases mixed in."""
    rng = np.random.default_rng(seed)
    mantissa = rng.uniform(-1.0, 1.0, n)
    exponent = rng.integers(-1070, 1024, n)
    with np.errstate(over="ignore"):
        wide = np.ldexp(mantissa, exponent)
    prices = rng.lognormal(4.0, 1.5, n)  # the common case: prices, values, indicators
    raw = rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)  # any bit pattern
    values = np.concatenate([wide, prices, -prices, raw, special_values()])
    return np.asarray(rng.permutation(values))


def normalised(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be written into the bar's log
        return enc.normalise_array(a.copy())


# ------------------------------------------------------------- normalisation
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scalar_and_array_normalise_agree_bit_for_bit(seed: int) -> None:
    values = random_values(seed)
    array = normalised(values)
    for x, y in zip(values.tolist(), array.tolist(), strict=True):
        s = enc.normalise(x)
        assert s is not None
        assert bits(s) == bits(y), (x, s, y)


@pytest.mark.parametrize("seed", [4, 5])
def test_normalise_is_idempotent(seed: int) -> None:
    values = random_values(seed)
    once = normalised(values)
    twice = normalised(once)
    assert once.tobytes() == twice.tobytes()
    for x in once[:2000].tolist():
        s = enc.normalise(x)
        assert s is not None and bits(s) == bits(x)


def test_normalise_canonical_forms() -> None:
    assert bits(enc.normalise(-0.0)) == bits(0.0)  # type: ignore[arg-type]
    assert enc.normalise(None) is None
    for nan in (math.nan, -math.nan, struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]):
        assert bits(enc.normalise(nan)) == QNAN_BITS  # type: ignore[arg-type]
    out = normalised(np.array([-0.0, math.nan, -math.nan, math.inf, -math.inf]))
    assert [bits(v) for v in out.tolist()] == [
        bits(0.0),
        QNAN_BITS,
        QNAN_BITS,
        bits(math.inf),
        bits(-math.inf),
    ]
    # exact small numbers, powers of two and whole prices are kept as they are
    for x in (1.0, 0.5, 100.0, 123456.0, 2.0**-1000, 5e-324, -(2.0**500)):
        assert enc.normalise(x) == x


def test_normalise_keeps_about_ten_significant_digits() -> None:
    values = random_values(6)
    finite = values[np.isfinite(values) & (np.abs(values) > 1e-300) & (np.abs(values) < 1e300)]
    out = normalised(finite)
    rel = np.abs(out - finite) / np.abs(finite)
    assert rel.max() <= 2.0**-enc.MANTISSA_BITS  # half a unit of a 34-bit mantissa in [0.5, 1)
    assert np.all(np.sign(out) == np.sign(finite))


def test_last_bit_noise_normalises_equal_in_the_common_case() -> None:
    rng = np.random.default_rng(7)
    x = rng.lognormal(4.0, 2.0, 50_000)
    for ulps in (1, 2, 16):
        y = x.copy()
        for _ in range(ulps):
            y = np.nextafter(y, np.inf if ulps % 2 else -np.inf)
        assert np.all(x != y)
        equal = normalised(x) == normalised(y)
        # a value moves to another 34-bit neighbour only right at a rounding boundary
        assert equal.mean() > 0.999, ulps
    # the classic: 0.1 + 0.2 and 0.3 differ in the last bit only
    assert 0.1 + 0.2 != 0.3
    assert enc.normalise(0.1 + 0.2) == enc.normalise(0.3)
    # but a real difference (11th significant digit and up) is kept
    assert enc.normalise(100.00000001) != enc.normalise(100.00000002)


# ----------------------------------------------------- the two encoders agree
SYMBOLS = ["SPY", "AAPL"]
INDICATORS = ["sma", "rsi", "bb.top"]
T0 = datetime(2021, 3, 1, 14, 30, tzinfo=UTC)


def hand_rows() -> list[dict[str, Any]]:
    """Stored-row dicts covering warm-up, orders, fills, logs, accesses, odd floats."""
    rows: list[dict[str, Any]] = []
    for i in range(12):
        rows.append(
            {
                "bar_number": 101 + i,
                "stage": "PRENEXT" if i < 3 else ("NEXTSTART" if i == 3 else "NEXT"),
                "timestamp": T0 + timedelta(days=i, microseconds=17 * i),
                "action": "INACTIVE" if i < 3 else "HOLD",
                "portfolio_value": 10_000.0 + i * 0.1 + (1e-12 if i % 2 else 0.0),
                "portfolio_cash": 10_000.0 - i * 101.37,
                "indicators": [
                    ("sma", math.nan if i < 3 else 100.0 + i / 3),
                    ("rsi", math.nan if i < 3 else 50.0 - i),
                    ("bb.top", -0.0 if i == 5 else 1e-9 * i),
                ],
                "positions": [],
                "actions_taken": [],
                "fills": [],
                "data_accessed": [],
                "log": [],
            }
        )
    rows[4]["action"] = "ORDERED"
    rows[4]["actions_taken"] = [
        {"side": "BUY", "symbol": "SPY", "size": 10.0, "type": "Market", "price": None, "ref": 1},
        {"side": "SELL", "symbol": "AAPL", "size": -5.0, "type": "StopLimit", "price": 1 / 3,
         "ref": 2},
    ]  # fmt: skip
    rows[4]["data_accessed"] = [
        {"symbol": "SPY", "fields": ["close", "high"], "lookback": 3, "lookahead": 0},
        {"symbol": "AAPL", "fields": ["volume"], "lookback": 0, "lookahead": 1},
    ]
    rows[4]["log"] = ["buy SPY", 'ünïcode ✓ and "quotes"', ""]
    rows[5]["action"] = "TRADED"
    rows[5]["fills"] = [
        {"symbol": "SPY", "size": 10.0, "price": 101.23456789012, "commission": 0.0,
         "pnl": 0.0, "ref": 1}
    ]  # fmt: skip
    for row in rows[5:]:
        row["positions"] = [
            {
                "symbol": "SPY",
                "size": 10.0,
                "price": 101.23456789012,
                "value": 1013.0 + row["bar_number"],
            }
        ]
    rows[8]["action"] = "TRADED"
    rows[8]["fills"] = [
        {"symbol": "AAPL", "size": -2.5, "price": 0.1 + 0.2, "commission": 0.01, "pnl": -3.5,
         "ref": 2},
        {"symbol": "AAPL", "size": -2.5, "price": 0.3, "commission": 0.01, "pnl": -3.25, "ref": 2},
    ]  # fmt: skip
    for row in rows[8:]:
        row["positions"] = [
            *row["positions"],
            {"symbol": "AAPL", "size": -5.0, "price": 0.3, "value": -1.5},
        ]
    rows[9]["log"] = ["tab\there"]
    rows[9]["data_accessed"] = rows[4]["data_accessed"][:1]
    rows[10]["portfolio_value"] = math.nan
    return rows


def as_recorder_inputs(rows: list[dict[str, Any]]) -> tuple[np.ndarray, list[bytes]]:
    """What the recorder hands hash_rows: the fixed matrix and the variable parts."""
    matrix = []
    variable = []
    for row in rows:
        ts_us = (row["timestamp"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        vec = [
            row["bar_number"],
            enc.STAGE_CODE[row["stage"]],
            ts_us,
            enc.ACTION_CODE[row["action"]],
            row["portfolio_value"],
            row["portfolio_cash"],
        ]
        ind = dict(row["indicators"])
        vec += [ind[name] for name in INDICATORS]
        held = {p["symbol"]: p for p in row["positions"]}
        for sym in SYMBOLS:
            p = held.get(sym)
            vec += [p["size"], p["price"], p["value"]] if p else [0.0, 0.0, 0.0]
        matrix.append(vec)
        variable.append(
            enc.access_part(
                [(a["symbol"], a["fields"], a["lookback"], a["lookahead"])
                 for a in row["data_accessed"]]
            )
            + enc.orders_part(
                [(o["side"], o["symbol"], o["size"], o["type"], o["price"], o["ref"])
                 for o in row["actions_taken"]]
            )
            + enc.fills_part(
                [(f["symbol"], f["size"], f["price"], f["commission"], f["pnl"], f["ref"])
                 for f in row["fills"]]
            )
            + enc.log_part(row["log"])
        )  # fmt: skip
    return np.asarray(matrix, dtype=np.float64), variable


def test_hash_rows_and_encode_row_agree() -> None:
    rows = hand_rows()
    matrix, variable = as_recorder_inputs(rows)
    prev = enc.genesis(SYMBOLS, INDICATORS)
    states_hex, chained_hex = enc.hash_rows(matrix, variable, prev)
    states, chained = enc.split_hex(states_hex), enc.split_hex(chained_hex)
    assert len(states) == len(chained) == len(rows)
    head = prev
    for row, state, link in zip(rows, states, chained, strict=True):
        encoded = enc.encode_row(row, SYMBOLS, INDICATORS)
        assert hashlib.sha256(encoded).hexdigest() == state, row["bar_number"]
        head = enc.chain(head, state)
        assert head == link, row["bar_number"]
    assert len(set(states)) == len(states)


def test_batches_chain_like_one_batch() -> None:
    rows = hand_rows()
    matrix, variable = as_recorder_inputs(rows)
    genesis = enc.genesis(SYMBOLS, INDICATORS)
    _, whole = enc.hash_rows(matrix, variable, genesis)
    head, parts = genesis, []
    for lo, hi in ((0, 5), (5, 6), (6, 12)):
        _, chained = enc.hash_rows(matrix[lo:hi], variable[lo:hi], head)
        head = chained[-64:].decode()
        parts.append(chained)
    assert b"".join(parts) == whole
    assert head == whole[-64:].decode()


def test_encode_row_takes_timestamps_as_datetimes_or_microseconds() -> None:
    row = hand_rows()[6]
    as_int = dict(row, timestamp=enc.datetime_to_us(row["timestamp"]))
    naive = dict(row, timestamp=row["timestamp"].replace(tzinfo=None))
    expected = enc.encode_row(row, SYMBOLS, INDICATORS)
    assert enc.encode_row(as_int, SYMBOLS, INDICATORS) == expected
    assert enc.encode_row(naive, SYMBOLS, INDICATORS) == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(portfolio_value=r["portfolio_value"] + 0.001),
        lambda r: r.update(stage="PRENEXT"),
        lambda r: r.update(action="HOLD"),
        lambda r: r.update(timestamp=r["timestamp"] + timedelta(microseconds=1)),
        lambda r: r.update(bar_number=r["bar_number"] + 1),
        lambda r: r.update(indicators=[("sma", 1.0), *r["indicators"][1:]]),
        lambda r: r.update(positions=[]),
        lambda r: r["actions_taken"][1].update(ref=3),
        lambda r: r["actions_taken"][0].update(price=0.0),
        lambda r: r["fills"][0].update(commission=0.0),
        lambda r: r["data_accessed"][0].update(lookback=2),
        lambda r: r["data_accessed"][0]["fields"].reverse(),
        lambda r: r.update(log=r["log"][:-1]),
        lambda r: r.update(actions_taken=[], fills=r["actions_taken"]),  # a part moved
    ],
)
def test_every_field_is_in_the_encoding(change: Any) -> None:
    row = hand_rows()[4]
    row["fills"] = hand_rows()[8]["fills"]
    row["positions"] = hand_rows()[8]["positions"]
    before = enc.encode_row(row, SYMBOLS, INDICATORS)
    change(row)
    try:
        after = enc.encode_row(row, SYMBOLS, INDICATORS)
    except (KeyError, TypeError):  # a part moved to where its fields do not fit
        return
    assert after != before


def test_genesis_and_chain() -> None:
    g = enc.genesis(SYMBOLS, INDICATORS)
    assert g == hashlib.sha256(b"FMEL1" + enc.header_bytes(SYMBOLS, INDICATORS)).hexdigest()
    assert g != enc.genesis(SYMBOLS[::-1], INDICATORS)
    assert g != enc.genesis(SYMBOLS, INDICATORS[:-1])
    state = hashlib.sha256(b"state").hexdigest()
    link = enc.chain(g, state)
    assert link == hashlib.sha256(bytes.fromhex(g) + bytes.fromhex(state)).hexdigest()
    assert enc.chain(link, state) != link


def test_bt_date_numbers_to_microseconds() -> None:
    import backtrader as bt

    stamps = [
        datetime(2000, 1, 3),
        datetime(2021, 3, 1, 9, 30),
        datetime(2021, 3, 1, 9, 30, 0, 250_000),
        datetime(1900, 1, 1),
        datetime(2099, 12, 31, 23, 59, 59),
    ]
    nums = np.array([bt.date2num(s) for s in stamps])
    got = enc.bt_num_to_us(nums)
    assert got.tolist() == [enc.datetime_to_us(s) for s in stamps]
