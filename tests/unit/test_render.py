"""Slack Block Kit rendering: content, escaping, buttons and Slack's limits, for every kind.

Each message is parsed back with slack_sdk's block classes (which check some lengths) and
checked against our own reading of Slack's limits, and huge inputs must come out summarised:
whole items dropped with a "… and N more" note, never a word cut in half.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot import render
from bot.commands import HELP, USAGE, parse
from bot.desk import FmelReport
from workers import events as ev
from workers.ports import Agent, Run, RunStatus

RUN_ID = "20261124T004443-4d87e7d5"
CHAIN = "59256aaf1b1ee5c03628908a6ad0934e90feb2e26676cbd959d01827f6ee96d9"
ROUTE = {"channel": "C123", "thread_ts": "1700000000.000100"}
PINGS = ("<!channel>", "<!here>", "<!everyone>", "<@U1>")
EVIL = "<!channel> & <@U1>"

# `tradeops backtest runtime/examples/sma_cross.py --symbols SPY,QQQ --json`, trimmed
RESULT: dict[str, Any] = {
    "run_id": RUN_ID,
    "agent_id": "sma_cross",
    "agent_version": "3",
    "agent_sha256": "c977d467d48e53bfd4ee2beda1162ff25a02cb7be713513d0086870f62958816",
    "parameters": {
        "symbols": ["SPY", "QQQ"],
        "start_date": "2020-07-27",
        "end_date": "2025-04-04",
        "initial_cash": 10000.0,
        "timeframe": "1d",
        "commission": 0.0,
    },
    "strategy": {"name": "SmaCross", "params": {"fast": 10, "slow": 30, "rsi_period": 14}},
    "results": {
        "initial_value": 10000.0,
        "final_value": 10643.900000000001,
        "portfolio_return_pct": 6.439000000000017,
        "portfolio_net_pnl": 643.9000000000015,
        "annualized_return_pct": 1.3415693580714372,
        "sharpe_ratio": 0.6523704614879023,
        "sortino_ratio": 0.9086079103317797,
        "calmar_ratio": 0.41450546190024345,
        "sqn": 1.746876903607417,
        "max_drawdown_pct": 3.236554114199597,
        "max_drawdown_money": 333.77999999999884,
        "max_drawdown_duration_bars": 381,
        "total_trades": 39,
        "trades_open": 0,
        "trades_closed": 39,
        "win_trades": 20,
        "loss_trades": 19,
        "win_rate_pct": 51.28205128205128,
        "total_net_pnl": 643.9000000000004,
        "average_win_pnl": 60.748000000000005,
        "average_loss_pnl": -30.055789473684207,
        "profit_factor": 2.1275522712149337,
        "expectancy": 16.51025641025642,
        "max_consecutive_wins": 5,
        "max_consecutive_losses": 6,
        "average_trade_duration_bars": 38.30769230769231,
        "exposure_pct": 67.85411365564038,
        "buy_and_hold_return_pct": 67.82145286322839,
        "annual_returns": {"2020": 0.1034, "2021": 2.9158, "2022": -2.9382, "2023": 3.5705},
        "per_symbol": {
            "SPY": {
                "net_pnl": 269.98,
                "trades_closed": 18,
                "win_trades": 10,
                "loss_trades": 8,
                "final_position": 0,
                "buy_and_hold_return_pct": 67.6486181986878,
            },
            "QQQ": {
                "net_pnl": 373.92,
                "trades_closed": 21,
                "win_trades": 10,
                "loss_trades": 11,
                "final_position": 0,
                "buy_and_hold_return_pct": 67.99428752776898,
            },
        },
    },
    "data_checks": [
        {
            "symbol": "SPY",
            "kind": "stray_rows",
            "count": 1,
            "message": "SPY: 1 stray row before 2020-07-27 dropped (2018-11-01)",
        },
    ],
    "fmel": {
        "decisions": 1180,
        "actions": {"INACTIVE": 30, "HOLD": 1015, "ORDERED": 63, "TRADED": 72},
        "chain_head": CHAIN,
    },
    "chart": f"/tmp/render-h/runs/{RUN_ID}/chart.png",
    "monitoring": {
        "execution_time_s": 0.33,
        "peak_memory_mb": 201.1,
        "cpu_avg_pct": 100.4,
        "decision_count": 1180,
        "orders_rejected": 0,
        "errors": 0,
    },
    "error": None,
}

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/sandbox/agent.py", line 12, in next\n'
    "    x = 1 / 0\n"
    "SECRET_FRAME_MARKER ZeroDivisionError: division by zero"
)
AGENT_ERROR = {
    "kind": "agent",
    "message": "ZeroDivisionError: division by zero",
    "hint": "Your agent raised an exception; fix the line shown and run again.",
    "line": 12,
    "traceback": TRACEBACK,
}


def fmel_row(
    bar: int,
    *,
    symbol: str = "QQQ",
    buy: bool = True,
    filled: bool = False,
    indicator: str = "fast",
) -> dict[str, Any]:
    """One FMEL decision that ordered (or, with ``filled``, got a fill), as the store gives."""
    size = 2.0 if buy else -2.0
    order = {
        "side": "BUY" if buy else "SELL",
        "size": size,
        "symbol": symbol,
        "type": "Market",
        "price": 507.34,
        "ref": bar,
    }
    fill = {
        "symbol": symbol,
        "size": size,
        "price": 521.73,
        "commission": 0.0,
        "pnl": 0.0,
        "ref": bar,
    }
    return {
        "run_id": RUN_ID,
        "bar_number": bar,
        "timestamp": datetime(2020, 7, 27, 4, tzinfo=UTC) + timedelta(days=bar),
        "mode": "BACKTEST",
        "action": "TRADED" if filled else "ORDERED",
        "actions_taken": [] if filled else [order],
        "fills": [fill] if filled else [],
        "portfolio_value": 10668.11,
        "portfolio_cash": 9028.35,
        "indicators": [
            (f"{indicator}[SPY]", 599.667),
            (f"{indicator}[{symbol}]", 521.872),
            (f"rsi[{symbol}]", 51.07283511200718),
        ],
    }


def closed_trade(n: int, *, symbol: str = "QQQ", intraday: bool = False) -> dict[str, Any]:
    """A closed trade as the result document lists it (``runtime.metrics``)."""
    entry = datetime(2021, 1, 4, 15, 30) + timedelta(days=n)
    form = "%Y-%m-%dT%H:%M:%S" if intraday else "%Y-%m-%d"
    return {
        "symbol": symbol,
        "direction": "short" if n % 3 == 0 else "long",
        "entry_date": entry.strftime(form),
        "exit_date": (entry + timedelta(days=2)).strftime(form),
        "size": 10 + n % 7,
        "entry_price": 100.0 + n,
        "exit_price": 101.25 + n,
        "pnl": 12.5 + n,
        "pnl_net": -2.75 if n % 2 else 12.0 + n,
        "bars_held": 2,
    }


def months(first_year: int, last_year: int) -> dict[str, float]:
    return {
        f"{y}-{m:02d}": (m - 6.5) / 3 + (y - 2000) / 10
        for y in range(first_year, last_year + 1)
        for m in range(1, 13)
    }


def session(agent: str = "sma", status: str = "running", **extra: Any) -> dict[str, Any]:
    """A paper session as ``workers.control.session_doc`` makes it."""
    return {
        "agent": agent,
        "owner": "U1",
        "status": status,
        "run_id": f"paper-{agent}-0123456789ab",
        "pid": 4242,
        "restarts": 1,
        "health_url": "http://127.0.0.1:8765/health",
        "health": {"status": "healthy", "equity": 10250.0, "decisions": 42},
        "started_at": 1_700_000_000.0,
        "stopped_at": None,
        "parameters": {
            "symbols": ["SPY"],
            "cash": 10000.0,
            "feed": "replay",
            "start": None,
            "bar_seconds": 60.0,
            "params": {"fast": 5, "slow": 20},
        },
        "version": 2,
        "pnl": {"equity": 10250.0, "cash": 10000.0, "pnl": 250.0, "pnl_pct": 2.5},
        "decisions": 42,
        **extra,
    }


def agent(name: str, n: int = 1) -> Agent:
    return Agent(name=name, owner="U1", created_at=1_700_000_000.0 + n, latest_version=n)


def run(run_id: str, *, error: dict[str, Any] | None = None) -> Run:
    return Run(
        run_id=run_id,
        agent="sma_cross",
        version=3,
        owner="U1",
        kind="backtest",
        parameters={},
        status=RunStatus.FAILED if error else RunStatus.FINISHED,
        result=None if error else RESULT,
        error=error,
        created_at=1_700_000_000.0,
        updated_at=1_700_000_100.0,
    )


def digest_sections() -> dict[str, Any]:
    return {
        "paper": [session()],
        "backtests": [
            {
                "run_id": RUN_ID,
                "agent": "sma_cross",
                "version": 3,
                "owner": "U1",
                "status": "finished",
                "created_at": 1.0,
                "return_pct": 6.44,
                "sharpe": 0.65,
            },
            {
                "run_id": "r2",
                "agent": "rsi",
                "version": 1,
                "owner": "U1",
                "status": "running",
                "created_at": 2.0,
                "return_pct": None,
                "sharpe": None,
            },
        ],
        "failures": [
            {
                "run_id": "r3",
                "agent": "broken",
                "version": 1,
                "owner": "U1",
                "kind": "backtest",
                "error": {"kind": "agent", "message": "ZeroDivisionError: division by zero"},
            },
        ],
    }


# the full range of sweep and parity messages is in test_render_sweep.py
SWEEP_SAMPLE: dict[str, Any] = {
    "sweep_id": "sweep-1", "agent_id": "sma", "agent_version": 2,
    "parameters": {"symbols": ["SPY"]}, "grid": {"fast": [5, 10], "slow": [20, 40]},
    "order": ["fast", "slow"], "rank": "sharpe", "combinations": 4, "failed": 1,
    "members": [
        {"run_id": f"sweep-1-00{i}", "params": {"fast": f, "slow": sl}, "status": "finished",
         "metrics": {"sharpe": 1.0 - i / 10, "return": 5.0, "drawdown": 3.0, "trades": 9},
         "error": None}
        for i, (f, sl) in enumerate([(5, 20), (5, 40), (10, 20)])
    ] + [{"run_id": "sweep-1-003", "params": {"fast": 10, "slow": 40}, "status": "failed",
          "metrics": None, "error": "ZeroDivisionError"}],
    "oos": None, "heatmap_artifact": None, "took_s": 3.2,
}  # fmt: skip
PARITY_SAMPLE: dict[str, Any] = {
    "parity_id": "parity-1", "agent_id": "sma", "agent_version": 2, "parameters": {},
    "backtest_run_id": "parity-1-bt", "paper_run_id": "parity-1-paper", "verdict": "different",
    "bars": 250, "orders": 14, "fills": 13, "differing_bars": 3, "error": None,
    "first_difference": {"bar": 117, "timestamp": "2024-06-14T00:00:00+00:00",
                         "field": "orders", "backtest": "[]", "paper": "[BUY 10 SPY]"},
}  # fmt: skip

EVENTS: dict[str, ev.Event] = {
    e.kind: e
    for e in [
        ev.AgentRegistered(
            job_id="j1",
            user_id="U1",
            reply_to=ROUTE,
            agent_id="sma_cross",
            version=3,
            report={
                "ok": True,
                "errors": [],
                "strategy": "SmaCross",
                "params": {"fast": 10, "slow": 30},
                "indicators": ["SMA", "CrossOver", "RSI"],
                "warnings": [
                    {
                        "code": "print-in-loop",
                        "message": "print inside next()",
                        "hint": "log less",
                        "line": 21,
                        "column": 9,
                    }
                ],
                "sha256": "c977" * 16,
                "size": 1588,
            },
        ),
        ev.AgentRejected(
            job_id="j2",
            agent_name="evil",
            report={
                "ok": False,
                "warnings": [],
                "errors": [
                    {
                        "code": "import",
                        "message": "import of os is not allowed",
                        "line": 3,
                        "column": 1,
                        "hint": "Only pre-approved packages are available: backtrader",
                    },
                    {
                        "code": "call",
                        "message": "eval() is not available to agents",
                        "line": 9,
                        "column": 5,
                        "hint": "use backtrader's API instead",
                    },
                ],
            },
        ),
        ev.BacktestQueued(
            job_id="j3",
            run_id=RUN_ID,
            agent_id="sma_cross",
            version=3,
            parameters={"symbols": ["SPY", "QQQ"], "start": "2021-01-04", "cash": 25000.0},
            position=2,
        ),
        ev.BacktestProgress(job_id="j3", run_id=RUN_ID, done=614, total=1180),
        ev.BacktestFinished(job_id="j3", run_id=RUN_ID, result=RESULT),
        ev.BacktestFailed(job_id="j4", run_id=RUN_ID, error=AGENT_ERROR),
        ev.JobFailed(
            job_id="j5",
            work="run_backtest",
            error={
                "kind": "platform",
                "message": "the worker running it died",
                "hint": "try again",
            },
            retrying=True,
            attempts_left=2,
        ),
        ev.PaperStarted(job_id="j6", agent_id="sma", session=session(status="starting")),
        ev.PaperHealth(
            job_id="j7",
            agent_id="sma",
            health={
                "status": "healthy",
                "equity": 10250.0,
                "decisions": 42,
                "last_bar": "2025-04-04",
                "positions": [{"symbol": "SPY"}],
            },
        ),
        ev.PaperStopped(job_id="j8", agent_id="sma", summary=session(status="stopped")),
        ev.PaperFailed(
            job_id="j9",
            agent_id="sma",
            error={
                "kind": "conflict",
                "message": "sma is already paper trading",
                "hint": "Stop its paper session first.",
            },
        ),
        ev.PaperStatus(job_id="j10", sessions=[session(), session("rsi", "stopped")]),
        ev.Digest(
            job_id="j11", since=1_700_000_000.0, until=1_700_086_400.0, sections=digest_sections()
        ),
        ev.SweepProgress(job_id="j12", reply_to=ROUTE, sweep_id="s1", agent_id="sma",
                         phase="in_sample", done=3, total=24, failed=1),
        ev.SweepFinished(job_id="j12", reply_to=ROUTE, sweep_id="s1",
                         result=SWEEP_SAMPLE),  # type: ignore[arg-type]
        ev.SweepFailed(job_id="j13", reply_to=ROUTE, sweep_id="", agent_id="sma",
                       error={"kind": "validation", "message": "sma has no parameter x",
                              "hint": "Set only its parameters."}),
        ev.ParityChecked(job_id="j14", reply_to=ROUTE,
                         report=PARITY_SAMPLE),  # type: ignore[arg-type]
    ]
}


# ------------------------------------------------------------------ checks
def texts(message: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) for every text in a message: mrkdwn and plain_text objects."""
    for block in message["blocks"]:
        kind = block["type"]
        if "text" in block:
            yield kind, block["text"]["text"]
        for f in block.get("fields", ()):
            yield "field", f["text"]
        for e in block.get("elements", ()):
            yield kind + "-element", e["text"]["text"] if e.get("type") == "button" else e["text"]
        if "accessory" in block:
            yield "button", block["accessory"]["text"]["text"]


def shown(message: dict[str, Any]) -> str:
    """Everything a reader sees, entities decoded."""
    joined = "\n".join(t for _, t in texts(message))
    return joined.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return found + [b["accessory"] for b in message["blocks"] if "accessory" in b]


def assert_valid(message: dict[str, Any], *, max_blocks: int = 50) -> None:
    """Slack's limits, and each block parsed back by slack_sdk unchanged (it validates)."""
    assert isinstance(message["blocks"], list) and 0 < len(message["blocks"]) <= max_blocks
    if "type" not in message:  # a chat message, not a view
        assert isinstance(message["text"], str) and 0 < len(message["text"]) <= 3000
    for block in message["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None and parsed.type == block["type"]
        assert parsed.to_dict() == block  # to_dict validates; nothing we sent was dropped
        assert len(block.get("fields", ())) <= 10
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    limits = {
        "header": 150,
        "section": 3000,
        "field": 2000,
        "context-element": 2000,
        "actions-element": 75,
        "button": 75,
    }
    for where, text in texts(message):
        assert len(text) <= limits[where], (where, len(text))
        assert len(text.encode("utf-16-le")) // 2 <= limits[where]
    for b in buttons(message):
        assert len(b["value"]) <= 2000
        assert isinstance(json.loads(b["value"]), dict)
    for block in message["blocks"]:
        for obj in [block.get("text"), *block.get("fields", ()), *block.get("elements", ())]:
            if obj and obj.get("type") == "mrkdwn":
                assert obj["verbatim"] is True  # no auto-parsing of @channel and the like


def assert_no_pings(message: dict[str, Any]) -> None:
    dumped = json.dumps(message)
    for ping in PINGS:
        assert ping not in dumped


def assert_whole_words(message: dict[str, Any]) -> None:
    """Every ``w12345x`` token the input had is shown whole, or not at all."""
    for token in re.findall(r"w\d+x?", shown(message)):
        assert re.fullmatch(r"w\d{5}x", token), f"a word was cut: {token!r}"


def words(count: int) -> str:
    return " ".join(f"w{i:05d}x" for i in range(count))


def more_count(message: dict[str, Any], noun: str) -> int:
    """N of the "… and N more {noun}s" note (fails when there is none)."""
    found = re.findall(rf"… and ([\d,]+) more {noun}", shown(message))
    assert len(found) == 1, shown(message)[-400:]
    return int(found[0].replace(",", ""))


# ------------------------------------------------------------------ every event kind
def test_every_kind_has_a_sample() -> None:
    assert set(EVENTS) == set(ev.KINDS)


@pytest.mark.parametrize("kind", sorted(ev.KINDS))
def test_every_event_renders_a_valid_message(kind: str) -> None:
    event = EVENTS[kind]
    message = render.render_event(event)
    assert message is not None
    assert_valid(message)
    assert_no_pings(message)
    assert "Traceback" not in json.dumps(message)
    # pure: the same event, also after a JSON round trip, gives the same message
    assert render.render_event(ev.Event.from_json(event.to_json())) == message


def test_unknown_event_kind_renders_nothing() -> None:
    class Other(ev.Event):
        kind = "something_new"

    assert render.render_event(Other(job_id="j")) is None


def test_agent_registered_says_what_runs_and_where_the_warnings_are() -> None:
    message = render.render_event(EVENTS["agent_registered"])
    assert message is not None
    text = shown(message)
    assert "`sma_cross`" in text and "v3" in text and "`SmaCross`" in text
    assert "fast=10" in text and "slow=30" in text
    assert "SMA" in text and "CrossOver" in text and "RSI" in text
    assert "line 21, col 9" in text and "print inside next()" in text
    assert "/backtest sma_cross" in text
    assert "sma_cross" in message["text"] and "1 warning" in message["text"]


def test_agent_rejected_gives_each_error_line_message_and_hint() -> None:
    message = render.render_event(EVENTS["agent_rejected"])
    assert message is not None
    text = shown(message)
    assert "2 errors" in text
    for line, msg, hint in [
        ("line 3, col 1", "import of os is not allowed", "Only pre-approved packages"),
        ("line 9, col 5", "eval() is not available to agents", "use backtrader's API"),
    ]:
        assert line in text and msg in text and hint in text


def test_backtest_queued_names_agent_symbols_run_and_place_in_queue() -> None:
    message = render.render_event(EVENTS["backtest_queued"])
    assert message is not None
    text = shown(message)
    assert "`sma_cross` v3" in text and "SPY, QQQ" in text
    assert f"`{RUN_ID}`" in text and "2 ahead" in text
    assert "start 2021-01-04" in text and "cash 25,000.00" in text


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (614, 1180, "▓▓▓▓▓▓▓▓▓▓░░░░░░░░░░ 52%"),
        (0, 1180, "░" * 20 + " 0%"),
        (1180, 1180, "▓" * 20 + " 100%"),
        (5000, 1180, "▓" * 20 + " 100%"),  # never more than full
    ],
)
def test_progress_bar(done: int, total: int, bar: str) -> None:
    assert render.progress_bar(done, total) == bar
    message = render.render_event(
        ev.BacktestProgress(job_id="j", run_id="r", done=done, total=total)
    )
    assert message is not None and bar in shown(message)
    assert f"bar {done:,} of {total:,}" in shown(message)


def test_progress_without_a_total_counts_bars() -> None:
    message = render.render_event(ev.BacktestProgress(job_id="j", run_id="r", done=77))
    assert message is not None
    assert "bar 77" in shown(message) and "%" not in shown(message)


@pytest.mark.parametrize(
    "message",
    [
        render.render_event(EVENTS["backtest_failed"]),
        render.render_result({**RESULT, "results": None, "error": AGENT_ERROR}),
    ],
    ids=["event", "result document"],
)
def test_a_failed_backtest_shows_kind_message_hint_and_line_never_the_traceback(
    message: dict[str, Any] | None,
) -> None:
    assert message is not None
    assert_valid(message)
    text = shown(message)
    assert "agent error at line 12" in text
    assert "ZeroDivisionError: division by zero" in text
    assert "fix the line shown" in text
    dumped = json.dumps(message)
    assert "Traceback" not in dumped and "SECRET_FRAME_MARKER" not in dumped
    assert "/sandbox/agent.py" not in dumped


def test_a_failed_backtest_points_at_the_decisions_it_recorded_before_failing() -> None:
    failed = {**RESULT, "results": None, "error": AGENT_ERROR}
    kept = render.render_result({**failed, "fmel": {**RESULT["fmel"], "decisions": 119}})
    assert_valid(kept)
    assert f"119 decisions before the failure are recorded: `/fmel {RESULT['run_id']}`" in shown(
        kept
    )
    assert "before the failure" not in shown(render.render_result({**failed, "fmel": None}))


def test_job_failed_retrying_and_final() -> None:
    retrying = render.render_event(EVENTS["job_failed"])
    assert retrying is not None
    assert "the worker running it died" in shown(retrying)
    assert "2 attempts left" in shown(retrying)
    final = render.render_event(
        ev.JobFailed(
            job_id="j",
            work="paper_start",
            error={"kind": "platform", "message": "the store failed", "hint": "tell an operator"},
        )
    )
    assert final is not None
    text = shown(final)
    assert "Starting paper trading failed" in text and "the store failed" in text
    assert "tell an operator" in text and "again" not in text


def test_paper_events_show_status_pnl_and_decisions() -> None:
    started = render.render_event(EVENTS["paper_started"])
    stopped = render.render_event(EVENTS["paper_stopped"])
    health = render.render_event(EVENTS["paper_health"])
    failed = render.render_event(EVENTS["paper_failed"])
    assert started and stopped and health and failed
    assert "`sma` v2" in shown(started) and "starting" in shown(started)
    assert "SPY · cash 10,000.00 · replay feed · 60 s bars · `fast=5, slow=20`" in shown(started)
    assert [b["action_id"] for b in buttons(started)] == ["tradeops_paper_stop"]
    assert "P&L +250.00 (+2.50%)" in shown(stopped) and "42 decisions" in shown(stopped)
    assert buttons(stopped) == []
    assert "healthy" in shown(health) and "equity 10,250.00" in shown(health)
    assert "last_bar 2025-04-04" in shown(health)
    assert "conflict error" in shown(failed) and "Stop its paper session first." in shown(failed)


def test_digest_lists_sessions_backtests_and_failures() -> None:
    message = render.render_event(EVENTS["digest"])
    assert message is not None
    text = shown(message)
    assert message["blocks"][0]["type"] == "header"
    assert "2023-11-14 22:13 → 2023-11-15 22:13 UTC" in text
    assert "1 paper session · 2 backtests · 1 failure" in text
    assert "`sma` v2" in text and "P&L +250.00" in text and "(health healthy)" in text
    assert "return +6.44% · Sharpe 0.65" in text and "running" in text
    assert "`broken` v1" in text and "agent: ZeroDivisionError: division by zero" in text


def test_look_ahead_is_flagged_in_digests_run_lists_and_the_home_tab() -> None:
    from dataclasses import replace

    sections = digest_sections()
    sections["backtests"][0] |= {"lookahead": True, "warnings": 1}
    digest = render.render_event(ev.Digest(job_id="j", since=0.0, until=1.0, sections=sections))
    assert digest is not None and "Sharpe 0.65 · ⚠️ look-ahead" in shown(digest)
    peeked = replace(run("r-peek"), result={**RESULT, "warnings": ["look-ahead: the strategy …"]})
    noted = replace(run("r-note"), result={**RESULT, "warnings": ["chart not shown: …"]})
    listed = shown(render.render_runs([peeked, noted, run("r-clean")]))
    assert listed.count("⚠️ look-ahead") == 1 and listed.count("⚠️ 1 warning") == 1
    home = render.render_home(user_id="U1", agents=[], runs=[peeked], sessions=[])
    assert "⚠️ look-ahead" in shown(home)


def test_an_empty_digest_says_so() -> None:
    message = render.render_event(ev.Digest(job_id="j", since=0.0, until=1.0, sections={}))
    assert message is not None
    assert "Nothing new since the last digest." in shown(message)


# ------------------------------------------------------------------ the result
def result_fields(message: dict[str, Any]) -> dict[str, str]:
    found = [f["text"] for b in message["blocks"] for f in b.get("fields", ())]
    pairs = (t.replace("&amp;", "&").split("\n", 1) for t in found)
    return {k.strip("*"): v for k, v in pairs}


def test_result_metrics_table() -> None:
    message = render.render_result(RESULT)
    assert_valid(message)
    fields = result_fields(message)
    assert fields["Return"] == "+6.44% (buy & hold +67.82%)"
    assert fields["Sharpe"] == "0.65"
    assert fields["Sortino"] == "0.91"
    assert fields["Max drawdown"] == "3.24% (333.78) · 381 bars"
    assert fields["Trades"] == "39 closed, 0 open"
    assert fields["Win rate"] == "51.28% (20 won, 19 lost)"
    assert fields["Profit factor"] == "2.13"
    assert fields["Final value"] == "10,643.90 from 10,000.00"
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Backtest · sma_cross · SmaCross", "emoji": True},
    }
    assert "+6.44%" in message["text"] and "Sharpe 0.65" in message["text"]


def test_result_shows_data_checks_monitoring_and_fmel() -> None:
    text = shown(render.render_result(RESULT))
    assert "SPY: 1 stray row before 2020-07-27 dropped (2018-11-01)" in text
    assert "0.33 s · peak 201.1 MB · CPU 100.4% · 1,180 decisions · 0 errors" in text
    assert "1,180 decisions (INACTIVE 30 · HOLD 1,015 · ORDERED 63 · TRADED 72)" in text
    assert f"chain `{CHAIN[:12]}…`" in text and CHAIN not in text
    assert f"/fmel {RUN_ID} verify" in text
    assert "`SPY` +269.98 · 18 trades" in text and "`QQQ` +373.92 · 21 trades" in text
    assert "2022 -2.94%" in text
    assert "chart.png" not in text  # the chart goes into the thread as a file


def test_result_without_rows_lists_no_trades_and_with_rows_the_state_behind_them() -> None:
    assert "Last trades" not in shown(render.render_result(RESULT))
    rows = [fmel_row(1133), fmel_row(1134, filled=True), {**fmel_row(1135), "actions_taken": []}]
    text = shown(render.render_result(RESULT, fmel_rows=rows))
    day = rows[0]["timestamp"].date()
    assert f"`1133` {day} · *ORDERED* · ordered BUY 2 QQQ Market · value 10,668.11" in text
    day = rows[1]["timestamp"].date()
    assert f"`1134` {day} · *TRADED* · filled +2 QQQ @521.73 · value 10,668.11" in text
    assert "↳ fast[QQQ]=521.9 rsi[QQQ]=51.07" in text  # the traded symbol's indicators
    assert "fast[SPY]" not in text
    assert "1135" not in text  # neither ordered nor filled: not a trade


def test_result_buttons_run_again_as_the_command_would_and_start_paper() -> None:
    message = render.render_result(RESULT)
    again, paper = buttons(message)
    assert again["action_id"] == "tradeops_backtest_again"
    assert paper["action_id"] == "tradeops_paper_start"
    value = json.loads(again["value"])
    assert value["agent"] == "sma_cross" and value["version"] == 3
    typed = parse("backtest", "sma_cross SPY,QQQ start=2020-07-27 end=2025-04-04 cash=10000")
    assert value["parameters"] == typed.parameters()  # what the job takes, as /backtest says
    started = parse("paper-start", "sma_cross SPY,QQQ cash=10000").parameters()
    assert json.loads(paper["value"]) == {"agent": "sma_cross", "version": 3,
                                          "parameters": started}  # the backtest's, for paper
    assert " " not in again["value"]  # compact


def test_result_buttons_without_a_version_ask_for_the_latest() -> None:
    doc = {k: v for k, v in RESULT.items() if k != "agent_version"}
    again, paper = buttons(render.render_result(doc))
    assert json.loads(again["value"])["version"] is None
    assert json.loads(paper["value"])["version"] is None


def test_a_sparse_result_renders_with_n_a() -> None:
    doc = {
        "run_id": "r",
        "agent_id": "a",
        "parameters": {"symbols": ["SPY"]},
        "results": {"sharpe_ratio": None, "total_trades": 0},
        "error": None,
    }
    message = render.render_result(doc)
    assert_valid(message)
    assert result_fields(message)["Sharpe"] == "n/a"


def with_report(**results: Any) -> dict[str, Any]:
    return {**RESULT, "results": {**RESULT["results"], **results}}


def code_blocks(message: dict[str, Any]) -> list[str]:
    return re.findall(r"```\n(.*?)\n```", shown(message), re.DOTALL)


def test_result_shows_monthly_returns_as_a_year_by_month_grid() -> None:
    monthly = {k: v for k, v in months(2020, 2023).items() if k >= "2020-07"}
    message = render.render_result(with_report(monthly_returns=monthly))
    assert_valid(message)
    (grid,) = code_blocks(message)
    head, *years = grid.splitlines()
    assert " ".join(head.split()) == "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec Year"
    assert [y.split()[0] for y in years] == ["2020", "2021", "2022", "2023"]
    jul_to_dec = [f"{monthly[f'2020-{m:02d}']:+.1f}" for m in range(7, 13)]
    assert years[0].split()[1:] == [*jul_to_dec, "+0.1"]  # no bars before July; the year's
    column = slice(head.index("Jul") - 3, head.index("Jul") + 3)
    assert years[0][column].strip() == jul_to_dec[0]  # under its month
    assert years[2].split()[1] == f"{monthly['2022-01']:+.1f}" and years[2].endswith("-2.9")
    assert len(set(map(len, [head, *years[1:]]))) == 1  # columns line up
    assert "Annual returns:" not in shown(message)  # the grid's last column says it
    plain = shown(render.render_result(RESULT))  # a result from before: the annual line
    assert "```" not in plain and "2022 -2.94%" in plain


def test_a_long_run_shows_the_last_years_of_months_and_says_how_many_are_left_out() -> None:
    annual = {str(y): float(y - 2000) for y in range(1990, 2026)}
    message = render.render_result(
        with_report(monthly_returns=months(1990, 2025), annual_returns=annual)
    )
    assert_valid(message)
    (grid,) = code_blocks(message)
    lines = grid.splitlines()
    assert lines[1] == "… 31 earlier years"
    assert [ln.split()[0] for ln in lines[2:]] == ["2021", "2022", "2023", "2024", "2025"]
    assert "Annual returns: 1990 -10.00%" in shown(message)  # the years left out, somewhere


def test_result_shows_the_last_five_closed_trades() -> None:
    trades = [closed_trade(n) for n in range(39)]
    message = render.render_result(with_report(trades=trades, trades_closed=39))
    assert_valid(message)
    text = shown(message)
    assert f"*Last 5 of 39 closed trades* · all of them: `/fmel {RUN_ID} trades`" in text
    (table,) = code_blocks(message)
    head, *rows = table.splitlines()
    columns = "# symbol side entry exit size entry price exit price P&L net P&L bars"
    assert " ".join(head.split()) == columns
    assert [r.split()[0] for r in rows] == ["35", "36", "37", "38", "39"]
    the_39th = "39 QQQ long 2021-02-11 2021-02-13 13 138.00 139.25 +50.50 +50.00 2"
    assert " ".join(rows[-1].split()) == the_39th
    assert rows[-2].split()[-2] == "-2.75"
    few = shown(render.render_result(with_report(trades=trades[:3], trades_closed=3)))
    assert "*The closed trades* · all of them" in few and "Last" not in few


def test_fmel_trades_lists_the_last_50_and_says_how_many_there_are() -> None:
    listed = [closed_trade(n, intraday=True) for n in range(734, 1234)]  # the last 500
    message = render.render_fmel(
        FmelReport(RUN_ID, None, [fmel_row(1)], None, trades=listed, trades_closed=1234)
    )
    assert_valid(message)
    text = shown(message)
    assert f"*Closed trades* of run `{RUN_ID}` (the last 50 of 1,234)" in text
    assert "`1`" not in text  # decisions are not shown
    tables = code_blocks(message)
    assert len(tables) > 1  # 50 wide rows do not fit one section: cut between rows
    rows = [ln for t in tables for ln in t.splitlines()[1:]]
    assert [int(r.split()[0]) for r in rows] == list(range(1185, 1235))
    assert all(t.splitlines()[0].startswith("   #  symbol") for t in tables)  # each has a head
    assert closed_trade(1184, intraday=True)["entry_date"] in rows[0]  # with the time
    assert message["text"] == f"Run {RUN_ID}: 1,234 closed trades"


def test_fmel_trades_of_a_run_without_trades_is_one_line() -> None:
    message = render.render_fmel(FmelReport(RUN_ID, None, [], None, trades=[], trades_closed=0))
    assert_valid(message)
    assert shown(message) == f"Run `{RUN_ID}` closed no trades."


def test_a_huge_result_with_trades_and_a_century_of_months_stays_within_limits() -> None:
    checks = [{"message": f"SPY: gap number {i} w{i:05d}x"} for i in range(300)]
    trades = [closed_trade(n, intraday=True) for n in range(500)]
    doc = with_report(trades=trades, trades_closed=10_000, monthly_returns=months(1925, 2024))
    message = render.render_result({**doc, "data_checks": checks})
    assert_valid(message)
    assert "*Last 5 of 10,000 closed trades*" in shown(message)
    assert len(buttons(message)) == 2


# ------------------------------------------------------------------ the other answers
def test_fmel_report_with_decisions_and_verification() -> None:
    rows = [fmel_row(1133), fmel_row(1134, filled=True)]
    ok = {
        "run_id": RUN_ID,
        "ok": True,
        "rows": 1180,
        "chain_head": CHAIN,
        "first_bad_bar": None,
        "reason": None,
    }
    summary = {
        "agent_id": "sma_cross",
        "decisions": 1180,
        "actions": {"HOLD": 1015},
        "chain_head": CHAIN,
    }
    message = render.render_fmel(FmelReport(RUN_ID, summary, rows, ok, trades_only=True))
    assert_valid(message)
    text = shown(message)
    assert "Last 2 decisions that ordered or traded" in text
    assert "`1134`" in text and "↳ fast[QQQ]=521.9" in text
    assert "the hash chain of 1,180 decisions is intact" in text
    bad = {**ok, "ok": False, "first_bad_bar": 17, "reason": "state_hash differs"}
    text = shown(render.render_fmel(FmelReport(RUN_ID, None, [], bad)))
    assert "did not finish" in text and "Mismatch* at bar 17: state_hash differs" in text


def test_agents_and_runs_lists() -> None:
    text = shown(render.render_agents([agent("sma_cross", 3), agent("rsi", 1)]))
    assert "`sma_cross` v3 · <@U1>" in text and "`rsi` v1" in text
    assert "No agents yet" in shown(render.render_agents([]))
    error = {"kind": "agent", "message": "boom"}
    text = shown(render.render_runs([run(RUN_ID), run("r2", error=error)]))
    assert f"`{RUN_ID}` · `sma_cross` v3 · backtest · finished" in text
    assert "return +6.44% · Sharpe 0.65" in text and "agent: boom" in text
    assert "No runs yet" in shown(render.render_runs([]))


def test_help_usage_error_refusal_and_thread_root() -> None:
    helped = render.render_help(USAGE, HELP)
    assert_valid(helped)
    for name in USAGE:
        assert USAGE[name] in shown(helped) and HELP[name] in shown(helped)
    usage = render.render_usage_error("'x!' is not an agent name; usage: /paper-stop <agent>")
    assert_valid(usage)
    assert "'x!' is not an agent name" in shown(usage) and "`/paper-stop <agent>`" in shown(usage)
    assert "&lt;agent&gt;" in json.dumps(usage)
    refused = render.render_refusal("only traders may paper-trade")
    assert "only traders may paper-trade" in shown(refused)
    root = render.render_thread_root("U123", "/backtest sma SPY")
    assert root["text"] == "<@U123> ran `/backtest sma SPY`"
    assert root["blocks"][0]["text"]["text"] == root["text"]


def test_paper_status_has_a_stop_button_for_each_session_holding_its_slot() -> None:
    sessions = [session("a"), session("b", "crashed"), session("c", "stopped")]
    message = render.render_paper_status(sessions)
    assert_valid(message)
    stops = buttons(message)
    assert [b["action_id"] for b in stops] == ["tradeops_paper_stop"] * 2
    assert [json.loads(b["value"]) for b in stops] == [{"agent": "a"}, {"agent": "b"}]
    assert "No paper sessions" in shown(render.render_paper_status([]))


def test_paper_status_shows_open_positions_with_unrealised_pnl() -> None:
    held = {"SPY": {"size": 12.0, "price": 412.3, "last": 420.1, "unrealised": 93.6},
            "QQQ": {"size": -3.0, "price": 300.0, "last": None, "unrealised": None}}  # fmt: skip
    message = render.render_paper_status([session(positions=held), session("flat")])
    assert_valid(message)
    text = shown(message)
    assert "Open: SPY 12 @ 412.30, last 420.10, unrealised +93.60 · QQQ -3 @ 300.00" in text
    assert text.count("Open:") == 1  # a flat session has no positions line


def test_home_view() -> None:
    view = render.render_home(
        user_id="U1", agents=[agent("sma")], runs=[run(RUN_ID)], sessions=[session()]
    )
    assert view["type"] == "home" and "text" not in view
    assert_valid(view, max_blocks=100)
    text = shown(view)
    assert "<@U1>" in text and "`sma` v1" in text and f"`{RUN_ID}`" in text
    assert [b["action_id"] for b in buttons(view)] == ["tradeops_paper_stop"]


# ------------------------------------------------------------------ escaping
def evil_messages() -> list[dict[str, Any] | None]:
    evil_row = {**fmel_row(1, symbol=EVIL, indicator=EVIL), "action": EVIL}
    error = {"kind": EVIL, "message": EVIL, "hint": EVIL, "line": 3}
    return [
        render.render_event(
            ev.AgentRegistered(
                job_id="j",
                agent_id=EVIL,
                version=1,
                report={
                    "strategy": EVIL,
                    "params": {EVIL: EVIL},
                    "indicators": [EVIL],
                    "warnings": [{"message": EVIL, "hint": EVIL, "line": 1}],
                },
            )
        ),
        render.render_event(
            ev.AgentRejected(job_id="j", agent_name=EVIL, report={"errors": [error]})
        ),
        render.render_event(
            ev.BacktestQueued(
                job_id="j",
                run_id=EVIL,
                agent_id=EVIL,
                version=1,
                parameters={"symbols": [EVIL], "start": EVIL},
            )
        ),
        render.render_event(ev.BacktestFailed(job_id="j", run_id=EVIL, error=error)),
        render.render_event(ev.JobFailed(job_id="j", work=EVIL, error=error)),
        render.render_event(
            ev.PaperHealth(job_id="j", agent_id=EVIL, health={"status": EVIL, EVIL: EVIL})
        ),
        render.render_event(ev.PaperFailed(job_id="j", agent_id=EVIL, error=error)),
        render.render_event(
            ev.Digest(
                job_id="j",
                since=0.0,
                until=1.0,
                sections={
                    "paper": [session(EVIL, status=EVIL)],
                    "backtests": [{"run_id": EVIL, "agent": EVIL, "version": 1, "status": EVIL}],
                    "failures": [{"agent": EVIL, "version": 1, "kind": EVIL, "error": error}],
                },
            )
        ),
        render.render_result(
            {
                **RESULT,
                "agent_id": EVIL,
                "strategy": {"name": EVIL},
                "data_checks": [{"message": EVIL}],
                "parameters": {**RESULT["parameters"], "symbols": [EVIL]},
            },
            fmel_rows=[evil_row],
        ),
        render.render_result({**RESULT, "error": error}),
        render.render_fmel(FmelReport(EVIL, None, [evil_row], None)),
        render.render_fmel(
            FmelReport(EVIL, None, [], None, trades=[closed_trade(1, symbol=EVIL)], trades_closed=1)
        ),
        render.render_agents([Agent(name=EVIL, owner=EVIL, created_at=0.0, latest_version=1)]),
        render.render_runs([run(EVIL, error=error)]),
        render.render_usage_error(EVIL),
        render.render_refusal(EVIL),
        render.render_thread_root(EVIL, EVIL),
        render.render_paper_status([session(EVIL)]),
        render.render_home(user_id=EVIL, agents=[], runs=[], sessions=[]),
    ]


@pytest.mark.parametrize("message", evil_messages())
def test_user_text_cannot_ping_anyone(message: dict[str, Any] | None) -> None:
    assert message is not None
    assert_valid(message, max_blocks=100)
    assert_no_pings(message)
    assert "&lt;!channel&gt;" in json.dumps(message)  # shown, escaped, not dropped


def test_escaping_does_not_change_what_is_shown() -> None:
    message = render.render_refusal("a & b < c > d")
    assert message["blocks"][0]["text"]["text"] == "🚫 a &amp; b &lt; c &gt; d"
    assert shown(message) == "🚫 a & b < c > d"


def test_button_values_carry_names_as_json_not_markup() -> None:
    (stop,) = buttons(render.render_paper_status([session(EVIL)]))
    assert json.loads(stop["value"]) == {"agent": EVIL}  # the handler gets the real name


# ------------------------------------------------------------------ limits
def test_500_data_checks_are_summarised() -> None:
    checks = [
        {
            "symbol": "SPY",
            "kind": "gaps",
            "count": i,
            "message": f"SPY: gap number {i} w{i:05d}x between two dates",
        }
        for i in range(500)
    ]
    message = render.render_result({**RESULT, "data_checks": checks})
    assert_valid(message)
    kept = len(re.findall(r"gap number \d+ ", shown(message)))
    assert 10 < kept < 500
    assert kept + more_count(message, "data check") == 500
    assert "gap number 0 " in shown(message)  # the first ones are kept
    assert_whole_words(message)
    assert len(buttons(message)) == 2  # the buttons survive


@pytest.mark.parametrize("how", ["result", "fmel"])
def test_2000_fmel_trades_keep_the_newest(how: str) -> None:
    rows = [fmel_row(b, filled=b % 2 == 0) for b in range(1, 2001)]
    if how == "result":
        message = render.render_result(RESULT, fmel_rows=rows)
        noun = "trade"
    else:
        message = render.render_fmel(FmelReport(RUN_ID, None, rows, None, trades_only=True))
        noun = "decision"
    assert_valid(message)
    bars = [int(b) for b in re.findall(r"`(\d+)` 20\d\d-", shown(message))]
    assert bars and bars[-1] == 2000 and 1 not in bars
    assert bars == list(range(2001 - len(bars), 2001))  # whole rows, the newest, in order
    assert len(bars) + more_count(message, noun) == 2000
    assert "before these" in shown(message)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: render.render_event(
            ev.BacktestFailed(job_id="j", run_id="r", error={**AGENT_ERROR, "message": m})
        ),
        lambda m: render.render_result({**RESULT, "error": {**AGENT_ERROR, "message": m}}),
        lambda m: render.render_event(
            ev.JobFailed(
                job_id="j", work="digest", error={"kind": "platform", "message": m, "hint": m}
            )
        ),
        lambda m: render.render_event(
            ev.PaperFailed(
                job_id="j", agent_id="a", error={"kind": "conflict", "message": m, "hint": "h"}
            )
        ),
        lambda m: render.render_event(
            ev.AgentRejected(
                job_id="j",
                agent_name="a",
                report={"errors": [{"message": m, "hint": m, "line": 1}] * 30},
            )
        ),
        lambda m: render.render_refusal(m),
        lambda m: render.render_usage_error(m),
        lambda m: render.render_thread_root("U1", m),
    ],
    ids=[
        "backtest_failed",
        "result",
        "job_failed",
        "paper_failed",
        "rejected",
        "refusal",
        "usage",
        "thread_root",
    ],
)
def test_a_10000_char_message_is_shortened_at_a_word(make: Any) -> None:
    text = words(1250)  # 10,000 characters
    assert len(text) >= 9999
    message = make(text)
    assert_valid(message)
    assert_whole_words(message)
    assert "w00000x w00001x" in shown(message)  # it starts as it did
    assert "…" in shown(message)
    assert len(message["text"]) <= 3000


def test_300_agents_are_summarised() -> None:
    message = render.render_agents([agent(f"agent_{i:03d}", i) for i in range(300)])
    assert_valid(message)
    kept = len(re.findall(r"`agent_\d{3}`", shown(message)))
    assert 10 < kept < 300
    assert kept + more_count(message, "agent") == 300
    assert "`agent_000`" in shown(message)


def test_300_paper_sessions_are_summarised_with_their_buttons() -> None:
    sessions = [session(f"agent_{i:03d}") for i in range(300)]
    message = render.render_paper_status(sessions)
    assert_valid(message)
    assert len(message["blocks"]) == 50
    stops = buttons(message)
    assert 10 < len(stops) < 300
    assert len(stops) + more_count(message, "paper session") == 300
    view = render.render_home(
        user_id="U1",
        agents=[agent(f"agent_{i:03d}") for i in range(300)],
        runs=[run(f"run_{i:03d}") for i in range(300)],
        sessions=sessions,
    )
    assert_valid(view, max_blocks=100)
    assert len(view["blocks"]) == 100
    assert more_count(view, "agent") and more_count(view, "run")
    assert more_count(view, "paper session") + len(buttons(view)) == 300


def test_a_huge_digest_stays_within_limits() -> None:
    fail = {
        "agent": "broken",
        "version": 1,
        "kind": "backtest",
        "error": {"kind": "agent", "message": words(300)},
    }
    sections = {
        "paper": [session(f"a{i}") for i in range(400)],
        "backtests": digest_sections()["backtests"] * 400,
        "failures": [fail] * 400,
    }
    message = render.render_event(ev.Digest(job_id="j", since=0.0, until=1.0, sections=sections))
    assert message is not None
    assert_valid(message)
    assert_whole_words(message)
    for noun in ("paper session", "backtest", "failure"):
        assert more_count(message, noun) > 0


# ------------------------------------------------------------------ fit and shorten
@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("alpha beta gamma", 100, "alpha beta gamma"),
        ("alpha beta gamma", 11, "alpha beta…"),  # the next character is the boundary
        ("alpha beta gamma", 10, "alpha…"),
        ("one\ntwo three", 9, "one\ntwo…"),
        ("a&amp;" * 10, 8, "a&amp;a…"),  # one long word: a hard cut, but not inside &amp;
        ("`x y z w`", 6, "`x y…`"),  # an open code span is closed
        ("```\nx y z w\n```", 12, "```\nx y…\n```"),  # and a code block
    ],
)
def test_shorten(text: str, limit: int, expected: str) -> None:
    assert render.shorten(text, limit) == expected
    assert len(render.shorten(text, limit)) <= limit


def test_shorten_counts_emoji_as_slack_may_and_never_splits_one() -> None:
    short = render.shorten("😀 " * 3000, 3000)
    assert render.size(short) <= 3000
    short.encode("utf-8")  # no lone surrogate
    assert short.endswith("😀…")


def test_fit_caps_blocks_but_keeps_the_buttons() -> None:
    blocks = [render._section(f"block {i}") for i in range(80)]
    actions = render._actions(render._button("Go", "x", {"agent": "a"}))
    assert actions is not None
    message = render.fit([*blocks, actions], "t")
    assert len(message["blocks"]) == 50
    assert message["blocks"][-1] == actions
    assert more_count(message, "part") == 80 - 48


def test_fit_leaves_out_a_button_whose_value_is_too_long() -> None:
    huge = render._button("Go", "x", {"agent": "a" * 3000})
    fine = render._button("Ok", "y", {"agent": "a"})
    message = render.fit([render._section("s"), {"type": "actions", "elements": [huge, fine]}], "t")
    assert [b["action_id"] for b in buttons(message)] == ["y"]


@pytest.mark.parametrize(
    ("log_url", "linked"),
    [
        ("https://console.cloud.google.com/cloud-build/builds/b-123?project=p", True),
        ("javascript:alert(1)", False),
        ("https://evil.example/x|click here>", False),
    ],
)
def test_a_cloud_build_run_links_its_build_log(log_url: str, linked: bool) -> None:
    doc = {**RESULT, "runner": {"name": "cloudbuild", "build_id": "b-123", "log_url": log_url}}
    failed = {**doc, "error": {"kind": "timeout", "message": "too long"}}
    for result in (doc, failed):
        event = ev.BacktestFinished(job_id="j", run_id=RUN_ID, result=result)
        message = render.render_event(event)
        assert message is not None
        assert_valid(message)
        text = shown(message)
        assert "Cloud Build" in text
        assert (f"<{log_url}|b-123>" in text) is linked
        assert "click here" not in text or not linked
