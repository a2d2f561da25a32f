"""Canonical encoding of an FMEL row, and the hash chain over a run.

The state hash of a bar is ``sha256(fixed || variable)``:

* ``fixed`` is a little-endian float64 vector::

      [bar_number, stage_code, timestamp_us, action_code, portfolio_value, portfolio_cash,
       <each indicator value, in the run's indicator order>,
       <size, price, value of the position in each symbol, in the run's symbol order>]

  Every float from ``portfolio_value`` on is *normalised* first: its binary mantissa is
  rounded to 34 bits (about 10 significant digits), ``-0.0`` becomes ``0.0`` and every
  NaN the same quiet NaN. Rounding with ``frexp``/``ldexp`` is exact arithmetic, so the
  same value gives the same bytes on any IEEE-754 machine, and the last-bit noise that
  ``exactbars`` or another evaluation order can leave in an indicator does not change it.

* ``variable`` holds what is absent on most bars, each part only when not empty, in this
  order: ``b"d"`` + data accessed, ``b"a"`` + orders placed, ``b"f"`` + fills,
  ``b"l"`` + log lines; each part is compact JSON of lists with normalised floats.

The chain starts at ``genesis = sha256(b"FMEL1" + header)``, where the header is the
compact JSON of the run's symbols and indicator names, and goes on with
``complete_state_hash[i] = sha256(complete_state_hash[i-1] || state_hash[i])`` over the
32-byte digests (stored as 64 hex characters). Same agent, data and parameters give
the same chain head on any machine.

Two implementations produce these bytes: :func:`hash_rows` (vectorised, used while
recording) and :func:`encode_row` (one stored row at a time, used to verify). Tests keep
them equal.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

ENCODING_VERSION = 1
MANTISSA_BITS = 34
STAGES = ("PRENEXT", "NEXTSTART", "NEXT")
ACTIONS = ("INACTIVE", "HOLD", "ORDERED", "TRADED")
STAGE_CODE = {name: code for code, name in enumerate(STAGES)}
ACTION_CODE = {name: code for code, name in enumerate(ACTIONS)}
N_HEAD = 6  # bar_number, stage, timestamp_ms, action, value, cash
N_RAW = 4  # leading columns that are exact integers, never normalised

_SCALE = float(2**MANTISSA_BITS)
_DATE_EPOCH = 719163.0  # backtrader's date number of 1970-01-01T00:00
_US_PER_DAY = 86_400_000_000.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def normalise(x: float | None) -> float | None:
    """Scalar twin of :func:`normalise_array`."""
    if x is None:
        return None
    if math.isnan(x):
        return math.nan
    if math.isinf(x):
        return x
    m, e = math.frexp(x)
    try:
        return math.ldexp(round(m * _SCALE) / _SCALE, e) + 0.0
    except OverflowError:  # within half a unit of float max: rounds up to inf, as numpy does
        return math.copysign(math.inf, x)


def normalise_array(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # no warning text into the bar log
        m, e = np.frexp(a)  # numpy >= 2.4 warns on NaN/inf here, older only in ldexp
        out = np.ldexp(np.round(m * _SCALE) / _SCALE, e) + 0.0
    out[np.isnan(out)] = np.nan
    return out


def bt_num_to_us(num: np.ndarray) -> np.ndarray:
    """backtrader date numbers (days, float) to epoch microseconds.

    A date number carries about 10 us of float noise, so a value within 10 us of a
    whole millisecond is snapped to it (09:30:00.000003 is 09:30:00); backtrader's own
    end-of-session time for daily bars, 23:59:59.999989, is kept as it is.
    """
    day = np.floor(num)
    us = np.round((num - day) * _US_PER_DAY)
    snapped = np.round(us / 1000.0) * 1000.0
    us = np.where(np.abs(us - snapped) <= 10.0, snapped, us)
    return (day - _DATE_EPOCH) * _US_PER_DAY + us


def datetime_to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def header_bytes(symbols: Sequence[str], indicators: Sequence[str]) -> bytes:
    doc = {"indicators": list(indicators), "symbols": list(symbols), "v": ENCODING_VERSION}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def genesis(symbols: Sequence[str], indicators: Sequence[str]) -> str:
    return hashlib.sha256(b"FMEL1" + header_bytes(symbols, indicators)).hexdigest()


def chain(prev: str, state_hash: str) -> str:
    """The next link: sha256 over the two 32-byte digests (given and returned as hex)."""
    return hashlib.sha256(bytes.fromhex(prev) + bytes.fromhex(state_hash)).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode()


def _nums(values: Iterable[Any]) -> list[Any]:
    return [normalise(v) if isinstance(v, float) else v for v in values]


def access_part(accesses: Sequence[Sequence[Any]]) -> bytes:
    """``[[symbol, [fields], lookback, lookahead], ...]``."""
    return b"d" + _json([list(a) for a in accesses]) if accesses else b""


def orders_part(orders: Sequence[Sequence[Any]]) -> bytes:
    """``[[side, symbol, size, type, price, ref], ...]``."""
    return b"a" + _json([_nums(o) for o in orders]) if orders else b""


def fills_part(fills: Sequence[Sequence[Any]]) -> bytes:
    """``[[symbol, size, price, commission, pnl, ref], ...]``."""
    return b"f" + _json([_nums(f) for f in fills]) if fills else b""


def log_part(lines: Sequence[str]) -> bytes:
    return b"l" + _json(list(lines)) if lines else b""


def hash_rows(matrix: np.ndarray, variable: Sequence[bytes], prev: str) -> tuple[bytes, bytes]:
    """Hash consecutive rows (fixed vector in ``matrix``, variable parts) after ``prev``.

    Returns the state hashes and the chained hashes as two hex byte strings of 64
    characters a row, ready to be sliced or turned into an Arrow string column.
    """
    fixed = matrix.astype("<f8", copy=True)
    fixed[:, N_RAW:] = normalise_array(fixed[:, N_RAW:])
    buf = fixed.tobytes()
    width = fixed.shape[1] * 8
    sha = hashlib.sha256
    rows = [buf[o : o + width] for o in range(0, len(buf), width)]
    pairs = zip(rows, variable, strict=True)
    states = [sha(r + v).digest() if v else sha(r).digest() for r, v in pairs]
    head = bytes.fromhex(prev)
    chained: list[bytes] = []
    append = chained.append
    for state in states:
        head = sha(head + state).digest()
        append(head)
    return b"".join(states).hex().encode("ascii"), b"".join(chained).hex().encode("ascii")


def split_hex(joined: bytes) -> list[str]:
    text = joined.decode("ascii")
    return [text[i : i + 64] for i in range(0, len(text), 64)]


def encode_row(row: Mapping[str, Any], symbols: Sequence[str], indicators: Sequence[str]) -> bytes:
    """Canonical state bytes of one stored row (a dict with the FMEL columns)."""
    ts = row["timestamp"]
    ts_us = datetime_to_us(ts) if isinstance(ts, datetime) else int(ts)
    vec: list[float] = [
        float(row["bar_number"]),
        float(STAGE_CODE[row["stage"]]),
        float(ts_us),
        float(ACTION_CODE[row["action"]]),
        _float(row["portfolio_value"]),
        _float(row["portfolio_cash"]),
    ]
    ind = dict(row.get("indicators") or {})
    vec += [_float(ind.get(name)) for name in indicators]
    held = {p["symbol"]: p for p in row.get("positions") or ()}
    for sym in symbols:
        p = held.get(sym)
        vec += [_float(p["size"]), _float(p["price"]), _float(p["value"])] if p else [0.0] * 3
    fixed = np.asarray([vec], dtype="<f8")
    fixed[:, N_RAW:] = normalise_array(fixed[:, N_RAW:])
    variable = (
        access_part(
            [
                (a["symbol"], list(a["fields"]), a["lookback"], a["lookahead"])
                for a in row.get("data_accessed") or ()
            ]
        )
        + orders_part(
            [
                (o["side"], o["symbol"], o["size"], o["type"], o["price"], o["ref"])
                for o in row.get("actions_taken") or ()
            ]
        )
        + fills_part(
            [
                (f["symbol"], f["size"], f["price"], f["commission"], f["pnl"], f["ref"])
                for f in row.get("fills") or ()
            ]
        )
        + log_part(list(row.get("log") or ()))
    )
    return fixed.tobytes() + variable


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)
