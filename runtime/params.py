"""A strategy parameter's value as the type of its default: the one rule both sides apply.

The trusted side holds a command's values to the defaults the agent's validation report read
(``workers.params``), before anything is queued; the runtime holds them to the class's own
defaults (``runtime.agent.strategy_params``), which the report cannot always read. Kept
here, free of backtrader, so both import the same function.
"""

from __future__ import annotations

import math
from typing import Any


class BadParam(ValueError):
    """A value a parameter cannot take: the message is one line for the user."""


def as_default_type(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``: a whole number for an int (5.0 is 5), a number
    for a float (5 is 5.0), true or false for a bool, anything plain for text or None.

    A default that is none of these (a class, a tuple) cannot be set from a command.
    """
    if not _plain(value):
        raise BadParam(f"{name}= must be a number, true/false or text")
    if default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise BadParam(f"{name}= expects true or false (its default is {show(default)}), "
                       f"got {show(value)}")  # fmt: skip
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BadParam(f"{name}= expects a whole number (its default is {default}), "
                       f"got {show(value)}")  # fmt: skip
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise BadParam(f"{name}= expects a number (its default is {default}), got {show(value)}")
    raise BadParam(f"{name} cannot be set from a command: its default is not a number, "
                   "text or true/false")  # fmt: skip


def _plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, bool | int | str)


def show(value: Any) -> str:
    """A value as a message quotes it: text in quotes, long ones cut."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 24 else text[:23] + "…"
