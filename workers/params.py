"""A strategy's own parameters, set from a command: ``/backtest sma fast=5 slow=20``.

Front-ends hand over the words as typed (``{"fast": "5"}``). This side reads each value as
the literal it looks like (a whole number, a number, true/false, else text) and checks it
against what the agent's validation report found in the strategy's ``params`` (its names,
and the defaults written as literals), so a wrong name or type is refused in one line before
anything is queued. The runtime checks again against the class itself (``runtime.agent``):
the report cannot see a default computed at import time.

A sweep's values are a list (``slow=20,40,60``) or an inclusive range with a step
(``fast=5..20/5``); :func:`combinations` spreads them into one mapping per run.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from runtime.params import BadParam, as_default_type, show

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_PARAMS = 20  # parameters set on one run
MAX_TEXT = 200  # characters of one text value
MAX_VALUES = 1000  # values one sweep range may spread into (the combination cap is lower)
RANGE_LIMIT = 10**15  # a range's bounds and step stay below this

Scalar = bool | int | float | str

# what a sweep may rank by (``rank=``), and whether more is better (workers.sweep.METRICS
# says which figure of a result each is)
RANKS: dict[str, bool] = {
    "sharpe": True,
    "return": True,
    "drawdown": False,
    "win_rate": True,
    "profit_factor": True,
    "sqn": True,
    "calmar": True,
}


class ParamError(ValueError):
    """A parameter that cannot be set: the message is one line for the user."""


def read_value(text: str) -> Scalar:
    """The literal ``text`` looks like: ``5`` → 5, ``0.5`` → 0.5, ``true`` → True, else text."""
    word = text.strip()
    low = word.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if re.fullmatch(r"[+-]?\d{1,40}", word):
        whole = int(word)
        if abs(whole) >= 2**63:  # what a store's integer holds; rounding it would be silent
            raise ParamError(f"{word} is too large a whole number")
        return whole
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", word):
        number = float(word)
        if math.isfinite(number):
            return number
    if len(word) > MAX_TEXT:
        raise ParamError(f"a parameter value is longer than {MAX_TEXT} characters")
    if any(not c.isprintable() for c in word):
        raise ParamError("a parameter value holds a character that cannot be shown")
    return word


def known_params(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The strategy's parameters and defaults as its validation report found them."""
    found = (report or {}).get("params")
    return dict(found) if isinstance(found, Mapping) else {}


def listing(known: Mapping[str, Any]) -> str:
    """``fast=10, slow=30`` (or a note when the strategy has none)."""
    if not known:
        return "it has no parameters"
    shown = ", ".join(f"{k}={_show(v)}" for k, v in list(known.items())[:12])
    more = f" and {len(known) - 12} more" if len(known) > 12 else ""
    return f"its parameters: {shown}{more}"


def _show(value: Any) -> str:
    return show(value)


def coerce(name: str, value: Scalar, default: Any) -> Scalar:
    """``value`` as the type of the parameter's ``default``, or :class:`ParamError`.

    Only literal defaults are held to: the report keeps a default it could not read as the
    source text, which looks like text, so a text default accepts anything (the runtime
    checks against the class's real default with the same rule).
    """
    try:
        coerced: Scalar = as_default_type(name, value, default)
    except BadParam as exc:
        raise ParamError(str(exc)) from None
    return coerced


def check(given: Mapping[str, Any], known: Mapping[str, Any], *, agent: str) -> dict[str, Scalar]:
    """``given`` (name → text or value) checked against the strategy's ``known`` params."""
    if len(given) > MAX_PARAMS:
        raise ParamError(f"at most {MAX_PARAMS} strategy parameters on one run")
    out: dict[str, Scalar] = {}
    for name, raw in given.items():
        if not NAME.fullmatch(name):
            raise ParamError(f"{name!r} is not a parameter name")
        if name not in known:
            raise ParamError(f"{agent} has no parameter {name}: {listing(known)}")
        value = read_value(raw) if isinstance(raw, str) else raw
        out[name] = coerce(name, value, known[name])
    return out


# ----------------------------------------------------------------------- sweeps
def read_values(name: str, text: str) -> list[Scalar]:
    """A sweep's values for ``name``: ``5..20/5`` (inclusive, step 1 when left out),
    ``20,40,60``, or a single value."""
    ranged = re.fullmatch(r"\s*([^.,/]+|[+-]?\d*\.\d+)\.\.([^/,]+)(?:/([^/,]+))?\s*", text)
    if ranged:
        return _range(name, *ranged.groups())
    values = [read_value(v) for v in text.split(",") if v.strip()]
    if not values:
        raise ParamError(f"{name}= has no values")
    if len(values) > MAX_VALUES:
        raise ParamError(f"{name}= has more than {MAX_VALUES} values")
    return distinct(values)  # a value given twice is one run


def _range(name: str, first: str, last: str, step: str | None) -> list[Scalar]:
    try:
        lo, hi = Decimal(first.strip()), Decimal(last.strip())
        by = Decimal(step.strip()) if step else Decimal(1)
    except InvalidOperation:
        raise ParamError(f"{name}= range is FROM..TO/STEP with numbers, like 5..20/5") from None
    if not all(x.is_finite() for x in (lo, hi, by)):
        raise ParamError(f"{name}= range needs finite numbers")
    if not all(x.copy_abs() < RANGE_LIMIT for x in (lo, hi, by)):  # copy_abs: exact, no context
        raise ParamError(f"{name}= range needs numbers below {RANGE_LIMIT:,}")
    if by <= 0:
        raise ParamError(f"{name}= range step must be above 0")
    if hi < lo:
        raise ParamError(f"{name}= range goes from {lo} down to {hi}: write it low..high")
    try:
        count = int((hi - lo) / by) + 1
    except ArithmeticError:  # a step so small the quotient overflows
        raise ParamError(f"{name}= range step is too small") from None
    if count > MAX_VALUES:
        raise ParamError(f"{name}= range spreads into {count} values (at most {MAX_VALUES})")
    whole = all(x == x.to_integral_value() for x in (lo, by))
    return [int(lo + i * by) if whole else float(lo + i * by) for i in range(count)]


def grid_of(
    given: Mapping[str, str], known: Mapping[str, Any], *, agent: str
) -> dict[str, list[Scalar]]:
    """Each swept parameter's values, read and checked like a single run's."""
    if len(given) > MAX_PARAMS:
        raise ParamError(f"at most {MAX_PARAMS} strategy parameters on one sweep")
    grid: dict[str, list[Scalar]] = {}
    for name, text in given.items():
        if not NAME.fullmatch(name):
            raise ParamError(f"{name!r} is not a parameter name")
        if name not in known:
            raise ParamError(f"{agent} has no parameter {name}: {listing(known)}")
        grid[name] = distinct([coerce(name, v, known[name]) for v in read_values(name, text)])
    return grid


def distinct(values: Sequence[Scalar]) -> list[Scalar]:
    """``values`` without repeats, in order: ``5`` and ``5.0`` are one value, ``true`` and
    ``1`` two (Python holds ``True == 1``)."""
    seen: set[tuple[str, Scalar]] = set()
    out: list[Scalar] = []
    for v in values:
        key = ("bool" if isinstance(v, bool) else "str" if isinstance(v, str) else "num", v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def count(grid: Mapping[str, Sequence[Any]]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 0


def combinations(grid: Mapping[str, Sequence[Scalar]]) -> list[dict[str, Scalar]]:
    """One mapping per run: every value of each parameter with every value of the others,
    the last parameter varying fastest."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def swept(grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """The parameters that take more than one value (a heatmap's axes)."""
    return [name for name, values in grid.items() if len(values) > 1]


def describe(params: Mapping[str, Any]) -> str:
    """``fast=5 slow=20``: how a run's parameters are shown and typed."""
    return " ".join(f"{k}={_word(v)}" for k, v in params.items())


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
