"""The console's monthly grid and trade tables, as the CLI, the shell and Slack show them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bot.console import (
    format_fmel,
    format_result,
    format_trades,
    monthly_grid,
    trades_table,
)
from bot.desk import FmelReport


def trade(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "SPY",
        "direction": "long" if n % 2 else "short",
        "entry_date": f"2021-03-{n:02d}",
        "exit_date": f"2021-03-{n + 1:02d}",
        "size": 5,
        "entry_price": 400.0 + n,
        "exit_price": 1_401.5 + n,
        "pnl": -7.5 * n,
        "pnl_net": -8.0 * n,
        "bars_held": 1,
        **extra,
    }


def test_monthly_grid_one_line_per_year() -> None:
    monthly = {"2020-11": 1.234, "2020-12": None, "2021-01": -0.05, "2021-02": 150.0}
    annual = {"2020": 1.1, "2021": 149.9}
    head, y2020, y2021 = monthly_grid(monthly, annual)
    assert " ".join(head.split()) == "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec Year"
    assert y2020.split() == ["2020", "+1.2", "n/a", "+1.1"]  # no bars before November
    assert y2020.index("+1.2") + 4 == head.index("Nov") + 3  # right-aligned under its month
    assert y2021.split() == ["2021", "-0.1", "+150", "+150"]  # five characters at most
    assert len(head) == len(y2020) == len(y2021)


def test_monthly_grid_keeps_the_last_years_when_asked() -> None:
    monthly = {f"{y}-06": 1.0 for y in range(2001, 2011)}
    lines = monthly_grid(monthly, {}, years=3)
    assert lines[1] == "… 7 earlier years"
    assert [ln.split()[0] for ln in lines[2:]] == ["2008", "2009", "2010"]
    assert lines[2].split() == ["2008", "+1.0", "n/a"]  # no annual figure given
    assert monthly_grid({"2009-06": 1.0, "2010-06": 2.0}, {}, years=1)[1] == "… 1 earlier year"
    assert len(monthly_grid(monthly, {})) == 11  # all of them by default


def test_trades_table_numbers_and_aligns_the_figures() -> None:
    head, first, second = trades_table([trade(9), trade(10, size=None)], first=41).splitlines()
    shown = "41 SPY long 2021-03-09 2021-03-10 5 409.00 1,410.50 -67.50 -72.00 1"
    assert " ".join(first.split()) == shown
    assert second.split()[5] == "n/a"
    assert first.index("409.00") + 6 == head.index("entry price") + 11  # right-aligned
    assert first.rstrip().endswith("1") and len(first) == len(second)


def test_format_trades_says_how_many_it_lists() -> None:
    assert format_trades("r1", [], 0) == "Run r1 closed no trades."
    text = format_trades("r1", [trade(n) for n in range(1, 4)], 1234)
    assert text.splitlines()[0] == (
        "Closed trades of run r1 (the last 3 of 1234; net P&L after commission):"
    )
    assert [ln.split()[0] for ln in text.splitlines()[2:]] == ["1232", "1233", "1234"]
    assert "(all 3;" in format_trades("r1", [trade(n) for n in range(1, 4)], 3)


def result(**results: Any) -> dict[str, Any]:
    undefined = (
        "portfolio_return_pct buy_and_hold_return_pct final_value initial_value sharpe_ratio "
        "sortino_ratio calmar_ratio sqn max_drawdown_pct max_drawdown_money win_rate_pct "
        "profit_factor expectancy exposure_pct"
    )
    figures: dict[str, Any] = dict.fromkeys(undefined.split())
    figures |= {
        "max_drawdown_duration_bars": 0,
        "trades_closed": 0,
        "trades_open": 0,
        "annual_returns": {"2021": 2.0},
        "per_symbol": {},
    }
    return {
        "run_id": "r1",
        "agent_id": "a",
        "parameters": {
            "symbols": ["SPY"],
            "start_date": "2021-01-04",
            "end_date": "2021-12-31",
            "timeframe": "1d",
        },
        "results": figures | results,
        "error": None,
    }


def test_the_result_shows_monthly_returns_and_the_last_five_trades() -> None:
    trades = [trade(n) for n in range(1, 21)]
    text = format_result(
        result(monthly_returns={"2021-01": 1.0, "2021-02": 0.99}, trades=trades, trades_closed=20)
    )
    lines = text.splitlines()
    at = lines.index("  Monthly returns (%)")
    assert lines[at + 2].split() == ["2021", "+1.0", "+1.0", "+2.0"]
    at = lines.index("  Last 5 of 20 closed trades (tradeops fmel r1 --trades)")
    assert [ln.split()[0] for ln in lines[at + 2 : at + 7]] == ["16", "17", "18", "19", "20"]
    few = format_result(result(trades=trades[:2], trades_closed=2)).splitlines()
    assert few[few.index("  Closed trades") + 3].split()[0] == "2"
    old = format_result(result())  # a result from before either was recorded
    assert "Monthly returns" not in old and "closed trades (all" not in old


def test_fmel_trades_in_the_console() -> None:
    report = FmelReport("r1", None, [], None, trades=[trade(1)], trades_closed=1)
    lines = format_fmel(report).splitlines()
    assert lines[1] == "Closed trades of run r1 (all 1; net P&L after commission):"
    assert lines[3].split()[:3] == ["1", "SPY", "long"]
    assert format_fmel(FmelReport("r1", None, [], None, trades=[], trades_closed=0)).endswith(
        "Run r1 closed no trades."
    )


def test_a_reader_that_stops_reading_ends_the_command_quietly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`tradeops fmel last --trades | head`: the pipe closes while the command still writes."""
    from bot import cli

    def writes_into_a_closed_pipe(args: Any, settings: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "runs", writes_into_a_closed_pipe)
    monkeypatch.setenv("TRADEOPS_HOME", str(tmp_path / "home"))
    with (tmp_path / "stdout").open("w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        assert cli.main(["runs"]) == 0
