"""The console's sweep and parity text: what ``tradeops sweep`` and ``tradeops parity`` print."""

from __future__ import annotations

from typing import Any

import pytest

from bot.console import format_event, format_parity, format_sweep, overfit, param_text, short_run_id
from tests.unit.test_render_sweep import SWEEP, best, member, oos, parity_doc, run_id, sweep_doc
from workers import events as ev


def table(text: str, title: str) -> list[list[str]]:
    """The cells of the table printed under the line starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(title)) + 1
    rows: list[list[str]] = []
    for line in lines[start:]:
        if not line.startswith("  ") or line.startswith("  in sample"):
            if rows:
                break
            continue
        rows.append(line.split())
    return rows


def test_sweep_heads_with_the_setting_and_ranking() -> None:
    head = format_sweep(sweep_doc()).splitlines()[0]
    assert head.startswith(f"Sweep {SWEEP} · sma_cross v3 · SPY, QQQ · ")
    for said in (
        "2020-01-02 → 2024-12-31",
        "fixed rsi_period=14, exit=close",
        "ranked by sharpe (higher is better)",
        "24 combinations in 12.3 s",
    ):
        assert said in head


def test_sweep_ranked_table() -> None:
    text = format_sweep(sweep_doc())
    head, *rows = table(text, "Top 10 of 22 finished")
    assert head == ["#", "fast", "slow", "sharpe", "return", "%", "drawdown", "%", "trades", "run"]
    assert len(rows) == 10
    assert rows[0] == ["1", "5", "20", "2.00", "+17.00", "4.50", "20", "000"]
    assert "2 of 24 combinations failed; first: fast=20, slow=60: ZeroDivisionError: x/0" in text
    best = f"{SWEEP}-000"
    assert f"Best run {best}: tradeops fmel {best} · the others are {SWEEP}-RUN" in text


def test_sweep_held_out_comparison() -> None:
    text = format_sweep(sweep_doc())
    assert "Held-out check (last 30% of bars: 2023-07-03 → 2024-12-31)" in text
    assert "in sample 2020-01-02 → 2023-06-30 (879 bars) · held out 377 bars" in text
    head, first, second, third = table(text, "Held-out check")[:4]
    assert head[:3] == ["#", "fast", "slow"]
    assert first[3:] == ["2.00", "1.50", "+20.00", "+15.00"]
    assert second[3:] == ["1.93", "0.50", "+19.30", "+5.00", "⚠", "overfit?"]
    assert third[3:] == ["1.86", "failed", "+18.60", "failed"]
    assert "#3: its held-out run failed: the held-out run failed: no bars" in text
    assert "⚠ overfit?: the held-out Sharpe is below half the in-sample one" in text


def test_sweep_without_held_out_or_failures() -> None:
    members = [member(i, {"period": p}, 1.0 - i / 10) for i, p in enumerate((7, 14))]
    doc = sweep_doc(grid={"period": [7, 14]}, members=members, combinations=2, failed=0, oos=None)
    text = format_sweep(doc)
    assert "Held-out" not in text and "failed" not in text
    head, *rows = table(text, "All finished")
    assert head[:2] == ["#", "period"] and [r[1] for r in rows] == ["7", "14"]


def test_sweep_where_every_combination_failed() -> None:
    doc = sweep_doc(members=[], failed=3, combinations=3, oos=None)
    text = format_sweep(doc)
    assert "No combination finished." in text and "3 of 3 combinations failed" in text


def test_sweep_held_out_flag_only_when_it_falls() -> None:
    assert "overfit" not in format_sweep(
        sweep_doc(oos=oos(best({"fast": 5, "slow": 20}, 1.0, 0.6)))
    )
    assert "overfit" in format_sweep(sweep_doc(oos=oos(best({"fast": 5, "slow": 20}, 1.0, -0.1))))


@pytest.mark.parametrize(
    ("inside", "out", "flagged"),
    [
        (2.0, 1.0, False),
        (2.0, 0.99, True),
        (0.3, -0.01, True),
        (-1.0, -3.0, False),
        (None, 0.0, False),
        (1.0, None, False),
    ],
)
def test_overfit(inside: float | None, out: float | None, flagged: bool) -> None:
    assert overfit(inside, out) is flagged


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0.5, "0.5"),
        (20, "20"),
        (1e-05, "1e-05"),
        (0.1 + 0.2, "0.30000000000000004"),  # never rounded: it is what ran
        ("ema\nx", "ema x"),
    ],
)
def test_param_text(value: Any, text: str) -> None:
    assert param_text(value) == text


def test_short_run_id() -> None:
    assert short_run_id("20261124T004443-4d87e7d5") == "4d87e7d5"
    assert short_run_id("paper-0123456789abcdef") == "01234567"
    assert short_run_id("run-1") == "run-1"
    assert short_run_id(f"{SWEEP}-007", SWEEP) == "007"
    assert short_run_id(f"{SWEEP}-h1", SWEEP) == "h1"
    assert short_run_id("other-1234abcd", SWEEP) == "1234abcd"
    assert short_run_id("") == "-"


def test_parity_verdicts() -> None:
    same = format_parity(parity_doc("identical"))
    assert "identical over 250 bars (14 orders, 13 fills)" in same
    assert f"backtest run {run_id(1)} · paper run paper-0123456789abcdef" in same
    different = format_parity(parity_doc("different")).splitlines()
    assert different[0].endswith("differ")
    assert different[1] == "  first at bar 117 (2024-06-14T00:00:00), in orders:"
    assert different[2:5] == [
        "    backtest: BUY 10 SPY Market",
        "    paper:    none",
        "  37 of 250 bars differ in all",
    ]
    failed = format_parity(parity_doc("failed")).splitlines()
    assert failed[0].endswith("failed: paper replay failed: ZeroDivisionError")
    assert failed[1] == "  Hint: Fix the agent."


def test_events() -> None:
    progress = ev.SweepProgress(
        job_id="j", sweep_id="s", agent_id="sma", phase="in_sample", done=7, total=24, failed=1
    )
    assert format_event(progress) == "… sweep of sma: 7 of 24 combinations done (1 failed)"
    held = ev.SweepProgress(
        job_id="j", sweep_id="s", agent_id="sma", phase="held_out", done=1, total=3
    )
    assert (
        format_event(held)
        == "… sweep of sma: re-running the best on the held-out bars, 1 of 3 done"
    )
    doc = sweep_doc()
    assert format_event(ev.SweepFinished(job_id="j", sweep_id="s", result=doc)) == format_sweep(doc)
    error = {
        "kind": "validation",
        "message": "too many combinations",
        "hint": "Sweep fewer values.",
    }
    failed = format_event(ev.SweepFailed(job_id="j", sweep_id="", agent_id="sma", error=error))
    assert failed == "Sweep of sma failed: too many combinations\n  Hint: Sweep fewer values."
    report = parity_doc("identical")
    assert format_event(ev.ParityChecked(job_id="j", report=report)) == format_parity(report)
