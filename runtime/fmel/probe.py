"""Which data the strategy reads, and how far back: probes on the data feeds' lines.

While one of the strategy's decision methods (``next``, ``prenext``, ``nextstart``) runs,
each line of each data feed (``open``, ``high``, ``low``, ``close``, ``volume``, …) is
replaced in its feed's line list by a :class:`LineProbe` that notes the indices read and
forwards everything to the real line; when the method returns, the real lines go back.
Lines the strategy stored in its own attributes in ``__init__`` (``self.dataclose =
self.datas[0].close``) are wrapped once, at the start.

Why not a subclass of ``LineBuffer``: assigning ``__class__`` (or patching the class)
makes CPython drop its inline attribute storage and specialised lookups for those
objects, and backtrader's own code, which touches every line many times a bar, then
runs slower for the whole run. The probes leave the line objects untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backtrader.linebuffer import LineBuffer

Key = tuple[int, str]  # (data index, field)


class Tracker:
    """The probes of one recorder and what they saw during the current bar."""

    __slots__ = ("by_line", "depth", "seen", "swaps")

    def __init__(self) -> None:
        self.depth = 0  # > 0 while a strategy decision method runs
        self.seen: dict[Key, list[int]] = {}  # key -> [lowest ago, highest ago]
        # per feed: (its line list, the real lines, the same with probes in place)
        self.swaps: list[tuple[list[Any], list[Any], list[Any]]] = []
        self.by_line: dict[int, LineProbe] = {}

    def add_feed(self, lines: list[Any], keys: dict[int, Key]) -> None:
        """Probe the lines at the given indices of a feed's line list."""
        probed = list(lines)
        for index, key in keys.items():
            probe = LineProbe(lines[index], key, self)
            probed[index] = probe
            self.by_line[id(lines[index])] = probe
        self.swaps.append((lines, list(lines), probed))

    def probe_held(self, value: Any) -> Any:
        """The same value with data lines swapped for their probes (one level deep)."""
        if isinstance(value, LineBuffer):
            return self.by_line.get(id(value), value)
        if isinstance(value, list):
            new = [self.probe_held(v) if isinstance(v, LineBuffer) else v for v in value]
            if any(a is not b for a, b in zip(new, value, strict=True)):
                value[:] = new
            return value
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, LineBuffer):
                    value[k] = self.by_line.get(id(v), v)
            return value
        return value

    def wrap(self, method: Callable[[], Any]) -> Callable[[], Any]:
        """``method`` with the probes in place while it runs."""
        swaps = self.swaps

        def probed() -> Any:
            if self.depth:  # nested: nextstart calling next
                return method()
            self.depth = 1
            for lines, _real, probes in swaps:
                lines[:] = probes
            try:
                return method()
            finally:
                self.depth = 0
                for lines, real, _probes in swaps:
                    lines[:] = real

        return probed

    def note(self, key: Key, lo: int, hi: int) -> None:
        if not self.depth:
            return
        span = self.seen.get(key)
        if span is None:
            self.seen[key] = [lo, hi]
        else:
            if lo < span[0]:
                span[0] = lo
            if hi > span[1]:
                span[1] = hi


def _unwrap_noting(x: Any) -> Any:
    """The real line behind a probe, its current value noted as read (``a > b``)."""
    if isinstance(x, LineProbe):
        x._tracker.note(x._key, 0, 0)
        return x._line
    return x


class LineProbe:
    """Stands in for a data line; reads are noted, everything else is the line's."""

    __slots__ = ("_key", "_line", "_tracker")

    def __init__(self, line: LineBuffer, key: Key, tracker: Tracker) -> None:
        self._line = line
        self._key = key
        self._tracker = tracker

    def __getitem__(self, ago: int) -> Any:
        # the hot read: Tracker.note inlined
        tracker = self._tracker
        if tracker.depth:
            span = tracker.seen.get(self._key)
            if span is None:
                tracker.seen[self._key] = [ago, ago]
            elif ago < span[0]:
                span[0] = ago
            elif ago > span[1]:
                span[1] = ago
        line = self._line
        return line.array[line.idx + ago]

    def get(self, ago: int = 0, size: int = 1) -> Any:
        self._tracker.note(self._key, ago - size + 1, ago)
        return self._line.get(ago, size)

    def __len__(self) -> int:
        return len(self._line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._line, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._line(*args, **kwargs)

    def __hash__(self) -> int:
        return hash(self._line)

    def __bool__(self) -> bool:
        self._tracker.note(self._key, 0, 0)
        return bool(self._line)

    def __float__(self) -> float:
        self._tracker.note(self._key, 0, 0)
        return float(self._line[0])

    def __repr__(self) -> str:
        return f"LineProbe({self._line!r})"


def _forward(name: str) -> Any:
    """An operator that reads the current value, as a line's own does in ``next``."""

    def op(self: LineProbe, *args: Any) -> Any:
        self._tracker.note(self._key, 0, 0)
        return getattr(self._line, name)(*(_unwrap_noting(a) for a in args))

    op.__name__ = name
    return op


for _name in (
    "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__",
    "__pow__", "__rpow__", "__mod__", "__rmod__", "__neg__", "__pos__", "__abs__",
):  # fmt: skip
    if hasattr(LineBuffer, _name):
        setattr(LineProbe, _name, _forward(_name))
