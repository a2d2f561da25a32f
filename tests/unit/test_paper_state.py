"""What the trusted side keeps of a paper session's own answers (its sandbox runs agent code)."""

from __future__ import annotations

import math

from infra.local.paper import _positions, _trusted_health


def test_health_keeps_known_bounded_figures_only() -> None:
    hostile = {
        "status": "ok" * 1000, "equity": math.inf, "cash": True, "decisions": 12.0,
        "uptime": "long", "extra": {"nested": 1}, "positions": ["not", "a", "mapping"],
        "last_bar": 7,
    }  # fmt: skip
    got = _trusted_health(hostile)
    assert got is not None
    assert len(got["status"]) == 80 and "extra" not in got and got["last_bar"] is None
    assert got["equity"] is None and got["cash"] is None and got["uptime"] is None
    assert got["decisions"] == 12 and got["positions"] == {}
    assert _trusted_health(None) is None and _trusted_health("junk") is None  # type: ignore[arg-type]


def test_positions_are_bounded_and_unrealised_pnl_is_recomputed() -> None:
    raw = {f"S{i}": {"size": 2, "price": 10.0, "last": 12.5, "unrealised": 1e9} for i in range(150)}
    raw["S0"] = {"size": "2", "price": 1.0}  # not a number: left out
    got = _positions(raw)
    assert len(got) == 99 and "S0" not in got
    assert got["S1"] == {"size": 2.0, "price": 10.0, "last": 12.5, "unrealised": 5.0}
    assert _positions({"X" * 50: {"size": -1, "price": None}}) == {
        "X" * 20: {"size": -1.0, "price": None, "last": None, "unrealised": None}
    }
