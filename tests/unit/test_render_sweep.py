"""Slack messages for parameter sweeps and backtest–paper parity checks.

Every message is checked the way ``test_render`` checks the others (slack_sdk parses each
block back unchanged, Slack's lengths hold, every mrkdwn object is verbatim, nothing pings),
then read for what it must say: the best combination, the held-out comparison and its
overfitting flag, where a parity check's runs part.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from bot import render
from tests.unit.test_render import assert_no_pings, assert_valid, code_blocks, shown, texts
from workers import events as ev

EVIL = "<!channel> & <@U1>"
HOSTILE = ("<!channel>", "a`b`c", "*bold*", "_it_", "~s~", "<https://x.y|click>", "x" * 300)
ROUTE = {"channel": "C123", "thread_ts": "1700000000.000100"}


SWEEP = (
    "20261124T004443-4d87e7d5"  # members are SWEEP-000…, held-out runs SWEEP-h0… (workers.sweep)
)


def run_id(n: int) -> str:
    return f"20261124T0044{n % 60:02d}-{n:08x}"


def member_id(n: int) -> str:
    return f"{SWEEP}-{n:03d}"


def member(n: int, params: dict[str, Any], sharpe: float | None, **over: Any) -> dict[str, Any]:
    metrics = {
        "sharpe": sharpe,
        "return": None if sharpe is None else sharpe * 10 - 3.0,
        "drawdown": 4.5 + n / 10,
        "trades": 20 + n,
        "win_rate": 51.0,
        "profit_factor": 1.4,
        "sqn": 1.1,
        "calmar": 0.3,
    }
    return {
        "run_id": member_id(n),
        "params": params,
        "status": "finished",
        "metrics": metrics,
        "error": None,
        **over,
    }


def failed_member(
    n: int, params: dict[str, Any], error: str = "ZeroDivisionError: x/0"
) -> dict[str, Any]:
    return {
        "run_id": member_id(n),
        "params": params,
        "status": "failed",
        "metrics": None,
        "error": error,
    }


def best(params: dict[str, Any], inside: float, out: float | None, n: int = 1) -> dict[str, Any]:
    return {
        "params": params,
        "in_sample_run_id": member_id(n),
        "in_sample": {"sharpe": inside, "return": inside * 10, "drawdown": 3.0, "trades": 12},
        "held_out_run_id": f"{SWEEP}-h{n}",
        "held_out": None if out is None else {"sharpe": out, "return": out * 10, "trades": 4},
        "error": None if out is not None else "the held-out run failed: no bars",
    }


def oos(*bests: dict[str, Any]) -> dict[str, Any]:
    return {
        "fraction": 0.3,
        "in_sample": {"start": "2020-01-02", "end": "2023-06-30", "bars": 879},
        "held_out": {"start": "2023-07-03", "end": "2024-12-31", "bars": 377},
        "best": list(bests),
    }


def sweep_doc(**over: Any) -> dict[str, Any]:
    """Two swept parameters, 4 × 6 = 24 combinations, 2 failed, held-out check on the best 3."""
    fasts, slows = [5, 10, 15, 20], [20, 30, 40, 50, 60, 70]
    combos = [{"fast": f, "slow": s} for f in fasts for s in slows]
    scores = [round(2.0 - 0.07 * i, 2) for i in range(len(combos) - 2)]
    members = [member(i, c, s) for i, (c, s) in enumerate(zip(combos, scores, strict=False))]
    members += [failed_member(22, combos[22]), failed_member(23, combos[23], "no trades: bad")]
    doc = {
        "sweep_id": SWEEP,
        "agent_id": "sma_cross",
        "agent_version": 3,
        "parameters": {
            "symbols": ["SPY", "QQQ"],
            "start": "2020-01-02",
            "end": "2024-12-31",
            "cash": 10_000.0,
            "commission": 0.001,
            "params": {"rsi_period": 14},
        },
        "grid": {"fast": fasts, "slow": slows, "exit": ["close"]},  # one value: not swept
        "rank": "sharpe",
        "combinations": 24,
        "members": members,
        "failed": 2,
        "oos": oos(
            best(combos[0], 2.0, 1.5, 0),  # holds up
            best(combos[1], 1.93, 0.5, 1),  # below half: flagged
            best(combos[2], 1.86, None, 2),  # its held-out run failed
        ),
        "heatmap_artifact": "ab" * 32,
        "took_s": 12.34,
    }
    return {**doc, **over}


def finished(doc: dict[str, Any]) -> dict[str, Any]:
    message = render.render_event(
        ev.SweepFinished(job_id="j", reply_to=ROUTE, sweep_id=doc["sweep_id"], result=doc)
    )
    assert message is not None
    assert_valid(message)
    assert_no_pings(message)
    return message


def table_rows(message: dict[str, Any], which: int = 0) -> list[list[str]]:
    """The cells of the ``which``-th code block (a table), header first."""
    return [line.split() for line in code_blocks(message)[which].splitlines()]


def outside_code(message: dict[str, Any]) -> str:
    """The raw mrkdwn outside code blocks and code spans: where markup would take effect."""
    raw = "\n".join(t for where, t in texts(message) if where != "header")  # plain_text
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", raw, flags=re.DOTALL))


# ------------------------------------------------------------------ progress
def test_progress_counts_combinations_and_failures() -> None:
    event = ev.SweepProgress(
        job_id="j",
        sweep_id="s",
        agent_id="sma_cross",
        phase="in_sample",
        done=7,
        total=24,
        failed=1,
    )
    message = render.render_event(event)
    assert message is not None
    assert_valid(message)
    assert len(message["blocks"]) == 1
    assert shown(message) == "⏳ Sweep of `sma_cross`: 7 of 24 combinations done (1 failed)"
    again = ev.Event.from_json(event.to_json())
    assert render.render_event(again) == message


def test_progress_without_failures_and_in_the_held_out_phase() -> None:
    grid = render.render_event(
        ev.SweepProgress(job_id="j", sweep_id="s", agent_id="a", phase="in_sample", done=0, total=3)
    )
    assert grid is not None and "failed" not in shown(grid)
    held = render.render_event(
        ev.SweepProgress(job_id="j", sweep_id="s", agent_id="a", phase="held_out", done=1, total=3)
    )
    assert held is not None
    assert_valid(held)
    text = shown(held)
    assert "held-out bars" in text and "1 of 3 done" in text and "best combinations" in text


# ------------------------------------------------------------------ finished
def test_finished_names_agent_setting_and_ranking() -> None:
    message = finished(sweep_doc())
    header = message["blocks"][0]
    assert header["type"] == "header" and header["text"]["text"] == "Sweep · sma_cross v3"
    context = shown({"blocks": [message["blocks"][1]]})
    for said in (
        "SPY, QQQ",
        "2020-01-02 → 2024-12-31",
        "`rsi_period=14, exit=close`",
        "ranked by *sharpe*",
        "24 combinations",
        "higher is better",
    ):
        assert said in context, context


def test_finished_ranks_the_top_ten_best_first() -> None:
    message = finished(sweep_doc())
    head, *rows = table_rows(message)
    assert head == ["#", "fast", "slow", "sharpe", "return", "%", "drawdown", "%", "trades", "run"]
    assert len(rows) == 10
    assert rows[0][:4] == ["1", "5", "20", "2.00"] and rows[0][-1] == "000"
    assert rows[0][4] == "+17.00"  # return %
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    assert "Top 10 of 22 finished combinations" in shown(message)
    assert (
        message["text"]
        == "Sweep of sma_cross v3: 24 combinations, best fast=5, slow=20 (sharpe 2.00)"
    )
    context = shown({"blocks": message["blocks"][-1:]})
    assert f"/fmel {member_id(0)}" in context  # the best run in full, to look into
    assert f"the others are `{SWEEP}-RUN`" in context


def test_failed_combinations_are_counted_with_the_first_error() -> None:
    text = shown(finished(sweep_doc()))
    assert (
        "❌ 2 of 24 combinations failed · first: `fast=20, slow=60`: ZeroDivisionError: x/0" in text
    )


def test_held_out_check_compares_and_flags_overfitting() -> None:
    message = finished(sweep_doc())
    text = shown(message)
    assert "Held-out check (last 30% of bars: 2023-07-03 → 2024-12-31)" in text
    head, *rows = table_rows(message, 1)
    assert head[:3] == ["#", "fast", "slow"]
    first, second, third = rows
    assert first[3:7] == ["2.00", "1.50", "+20.00", "+15.00"] and "overfit?" not in first
    assert second[3:7] == ["1.93", "0.50", "+19.30", "+5.00"] and second[-2:] == ["⚠️", "overfit?"]
    assert third[3:7] == ["1.86", "failed", "+18.60", "failed"]
    assert "#3: its held-out run failed: the held-out run failed: no bars" in text
    assert text.count("⚠️ overfit?") == 2  # the flagged row and the legend


@pytest.mark.parametrize(
    ("inside", "out", "flagged"),
    [
        (2.0, 1.0, False),  # exactly half: not below
        (2.0, 0.99, True),
        (0.4, -0.1, True),  # negative after a positive in-sample one
        (-0.5, -2.0, False),  # nothing to overfit: it was not good in sample
        (0.0, -1.0, False),
        (1.0, 3.0, False),
    ],
)
def test_overfit_flag(inside: float, out: float, flagged: bool) -> None:
    doc = sweep_doc(oos=oos(best({"fast": 5, "slow": 20}, inside, out)))
    text = shown(finished(doc))
    assert ("overfit?" in text) is flagged


def test_without_held_out_there_is_no_held_out_section() -> None:
    message = finished(sweep_doc(oos=None))
    assert "Held-out" not in shown(message) and "overfit" not in shown(message)
    assert len(code_blocks(message)) == 1


def test_one_swept_parameter() -> None:
    members = [member(i, {"period": p}, 1.5 - i / 10) for i, p in enumerate((14, 7, 21))]
    doc = sweep_doc(
        grid={"period": [7, 14, 21]},
        members=members,
        combinations=3,
        failed=0,
        oos=oos(best({"period": 14}, 1.5, 0.2)),
    )
    message = finished(doc)
    head, *rows = table_rows(message)
    assert head[:3] == ["#", "period", "sharpe"]
    assert [r[1] for r in rows] == ["14", "7", "21"]
    assert "All 3 finished combinations" in shown(message)
    assert "failed" not in shown({"blocks": message["blocks"][:4]})
    assert table_rows(message, 1)[1][1] == "14"


def test_a_ranking_metric_outside_the_usual_four_gets_its_column() -> None:
    message = finished(sweep_doc(rank="sqn"))
    head = table_rows(message)[0]
    assert head[3:5] == ["sqn", "sharpe"]
    drawdown = finished(sweep_doc(rank="drawdown"))
    assert "ranked by *drawdown* (lower is better)" in shown(drawdown)
    assert table_rows(drawdown)[0] == table_rows(finished(sweep_doc()))[0]  # already shown


def test_none_metrics_show_as_n_a() -> None:
    doc = sweep_doc()
    doc["members"][0]["metrics"] = dict.fromkeys(doc["members"][0]["metrics"])
    doc["oos"]["best"][0]["held_out"] = {"sharpe": None, "return": None}
    message = finished(doc)
    assert table_rows(message)[1][3:8] == ["n/a", "n/a", "n/a", "n/a", "000"]
    assert table_rows(message, 1)[1][3:7] == ["2.00", "n/a", "+20.00", "n/a"]


def test_100_members_show_the_top_ten() -> None:
    members = [
        member(i, {"fast": i, "slow": 2 * i, "mode": "ema" if i % 2 else "sma"}, 3.0 - i / 50)
        for i in range(100)
    ]
    grid = {"fast": list(range(100)), "slow": [2 * i for i in range(100)], "mode": ["sma", "ema"]}
    message = finished(sweep_doc(grid=grid, members=members, combinations=100, failed=0))
    rows = table_rows(message)[1:]
    assert len(rows) == 10 and rows[-1][:4] == ["10", "9", "18", "ema"]
    assert "Top 10 of 100 finished combinations" in shown(message)


def test_every_combination_failed() -> None:
    members = [failed_member(i, {"fast": i, "slow": 20}) for i in range(4)]
    message = finished(sweep_doc(members=members, failed=4, combinations=4, oos=None))
    text = shown(message)
    assert "No combination finished" in text and "❌ 4 of 4 combinations failed" in text
    assert "Best run" not in text


def test_a_sparse_document_still_renders() -> None:
    message = render.render_event(
        ev.SweepFinished(job_id="j", sweep_id="s", result={"members": []})
    )
    assert message is not None
    assert_valid(message)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_and_values_are_escaped_and_inert(name: str) -> None:
    members = [member(i, {name: f"{name}{i}", "slow": i}, 2.0 - i / 10) for i in range(12)]
    members.append(failed_member(12, {name: name, "slow": 1}, error=f"boom {name}"))
    doc = sweep_doc(
        agent_id=name,
        grid={name: [m["params"][name] for m in members], "slow": list(range(13))},
        members=members,
        combinations=13,
        failed=1,
        parameters={"symbols": [EVIL], "start": "2020-01-02", "params": {name: name}},
        oos=oos(best({name: name, "slow": 0}, 2.0, 0.1)),
    )
    message = finished(doc)
    raw = json.dumps(message)
    assert "&lt;!channel&gt;" in raw or "<!channel>" not in name
    rest = outside_code(message)
    if name in ("*bold*", "_it_", "~s~"):  # names stay inside code: no markup takes effect
        assert name not in rest.replace(f"boom {name}", ""), rest
    if name.startswith("<https"):
        assert "<https" not in raw
    progress = render.render_event(
        ev.SweepProgress(
            job_id="j", sweep_id="s", agent_id=name, phase="in_sample", done=1, total=2
        )
    )
    failed = render.render_event(
        ev.SweepFailed(
            job_id="j",
            sweep_id="s",
            agent_id=name,
            error={"kind": name, "message": name, "hint": name},
        )
    )
    for other in (progress, failed):
        assert other is not None
        assert_valid(other)
        assert_no_pings(other)


def test_the_outcome_line() -> None:
    doc = sweep_doc()
    done = render.render_outcome(ev.SweepFinished(job_id="j", sweep_id="s", result=doc))
    assert shown(done) == "✅ Sweep finished · 24 combinations · results below"
    one = render.render_outcome(
        ev.SweepFinished(job_id="j", sweep_id="s", result={**doc, "combinations": 1})
    )
    assert shown(one) == "✅ Sweep finished · 1 combination · results below"
    error = {"kind": "validation", "message": "m", "hint": "h"}
    failed = render.render_outcome(
        ev.SweepFailed(job_id="j", sweep_id="", agent_id="a", error=error)
    )
    assert shown(failed) == "❌ Sweep failed · details below"
    interrupted = ev.JobFailed(job_id="j", work="sweep_start", error={**error, "kind": "platform"})
    assert shown(render.render_outcome(interrupted)) == "❌ The sweep failed · details below"
    assert render.WORK_NAMES["sweep_start"] == "The sweep"
    assert render.WORK_NAMES["parity"] == "The parity check"
    said = render.render_event(
        ev.JobFailed(job_id="j", work="parity", error={**error, "kind": "platform"})
    )
    assert said is not None and "The parity check failed" in shown(said)


# ------------------------------------------------------------------ failed
def test_sweep_failed_is_the_message_then_the_hint() -> None:
    error = {
        "kind": "validation",
        "message": "too many combinations:\n2,400 > 500",
        "hint": "Sweep fewer values.",
    }
    message = render.render_event(
        ev.SweepFailed(job_id="j", sweep_id="", agent_id="sma", error=error)
    )
    assert message is not None
    assert_valid(message)
    first, hint = message["blocks"]
    assert (
        shown({"blocks": [first]}) == "❌ Sweep of `sma` failed: too many combinations: 2,400 > 500"
    )
    assert shown({"blocks": [hint]}) == "💡 Sweep fewer values."
    recorded = render.render_event(
        ev.SweepFailed(job_id="j", sweep_id="sw1", agent_id="", error={**error, "hint": ""})
    )
    assert recorded is not None
    assert shown(recorded) == "❌ Sweep failed: too many combinations: 2,400 > 500\nsweep `sw1`"


# ------------------------------------------------------------------ parity
def parity_doc(verdict: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "parity_id": "parity-1",
        "agent_id": "sma_cross",
        "agent_version": 3,
        "parameters": {"symbols": ["SPY"], "start": "2024-01-02", "end": "2024-12-31"},
        "backtest_run_id": run_id(1),
        "paper_run_id": "paper-0123456789abcdef",
        "verdict": verdict,
        "bars": 250,
        "orders": 14,
        "fills": 13,
        "differing_bars": 0,
        "first_difference": None,
        "error": None,
    }
    if verdict == "different":
        doc |= {
            "differing_bars": 37,
            "first_difference": {
                "bar": 117,
                "timestamp": "2024-06-14T00:00:00",
                "field": "orders",
                "backtest": "BUY 10 SPY Market",
                "paper": "none",
            },
        }
    if verdict == "failed":
        doc |= {
            "error": {
                "kind": "agent",
                "message": "paper replay failed: ZeroDivisionError",
                "hint": "Fix the agent.",
            }
        }
    return {**doc, **over}


def parity(doc: dict[str, Any]) -> dict[str, Any]:
    message = render.render_event(ev.ParityChecked(job_id="j", reply_to=ROUTE, report=doc))
    assert message is not None
    assert_valid(message)
    assert_no_pings(message)
    ids = shown({"blocks": message["blocks"][-1:]})
    assert message["blocks"][-1]["type"] == "context"
    assert f"backtest `{doc['backtest_run_id']}`" in ids and f"paper `{doc['paper_run_id']}`" in ids
    return message


def test_parity_identical() -> None:
    message = parity(parity_doc("identical"))
    assert shown(message).startswith(
        "✅ Backtest and paper replay are identical over 250 bars (14 orders, 13 fills)"
    )
    outcome = render.render_outcome(ev.ParityChecked(job_id="j", report=parity_doc("identical")))
    assert shown(outcome).startswith("✅ Parity check")


def test_parity_different_says_where_they_part() -> None:
    message = parity(parity_doc("different"))
    text = shown(message)
    assert (
        "⚠️ Backtest and paper replay part at *bar 117* (2024-06-14T00:00:00): *orders* differ"
        in text
    )
    assert "• backtest: `BUY 10 SPY Market`" in text and "• paper: `none`" in text
    assert "37 of 250 bars differ in all." in text
    assert "bar 117" in message["text"]
    outcome = render.render_outcome(ev.ParityChecked(job_id="j", report=parity_doc("different")))
    assert shown(outcome).startswith("⚠️ Parity check")


def test_parity_different_without_a_first_difference() -> None:
    message = parity(parity_doc("different", first_difference=None))
    assert "differ on 37 of 250 bars" in shown(message)


def test_parity_failed() -> None:
    message = parity(parity_doc("failed"))
    text = shown(message)
    assert text.startswith(
        "❌ Parity check of `sma_cross` failed: paper replay failed: ZeroDivisionError"
    )
    assert "💡 Fix the agent." in text
    outcome = render.render_outcome(ev.ParityChecked(job_id="j", report=parity_doc("failed")))
    assert shown(outcome) == "❌ Parity check failed · details below"


def test_parity_values_are_escaped_and_stay_in_code() -> None:
    hostile = "<!channel> `rm` *x*\n" + "y" * 400
    first = {"bar": 3, "timestamp": EVIL, "field": EVIL, "backtest": hostile, "paper": hostile}
    doc = parity_doc("different", first_difference=first, agent_id=EVIL, backtest_run_id=EVIL)
    message = parity(doc)
    assert "*x*" not in outside_code(message)
    failed = parity(parity_doc("failed", error={"kind": EVIL, "message": EVIL, "hint": EVIL}))
    assert "&lt;!channel&gt;" in json.dumps(failed)


def test_a_sparse_parity_report_still_renders() -> None:
    message = render.render_event(ev.ParityChecked(job_id="j", report={"verdict": "identical"}))
    assert message is not None
    assert_valid(message)
    assert "0 bars" in shown(message)


def test_rendering_is_pure() -> None:
    doc = sweep_doc()
    before = copy.deepcopy(doc)
    event = ev.SweepFinished(job_id="j", sweep_id="s", result=doc)
    assert render.render_event(event) == render.render_event(ev.Event.from_json(event.to_json()))
    assert doc == before
