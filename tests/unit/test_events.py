"""The Event model: one kind per piece of news, frozen, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import json

import pytest

from workers import events as ev

ROUTE = {"channel": "C123", "thread_ts": "1700000000.000100"}

SAMPLES: list[ev.Event] = [
    ev.AgentRegistered(job_id="j1", agent_id="sma", version=2, report={"ok": True}),
    ev.AgentRejected(job_id="j2", agent_name="bad", report={"ok": False, "errors": [{"line": 3}]}),
    ev.BacktestQueued(
        job_id="j3",
        run_id="r1",
        agent_id="sma",
        version=2,
        parameters={"symbols": ["SPY"]},
        position=1,
    ),
    ev.BacktestProgress(job_id="j3", run_id="r1", done=120, total=500),
    ev.BacktestFinished(job_id="j3", run_id="r1", result={"results": {"sharpe_ratio": 1.2}}),
    ev.BacktestFailed(job_id="j4", run_id="r2", error={"kind": "agent", "line": 12}),
    ev.JobFailed(
        job_id="j9", work="run_backtest", error={"kind": "platform"}, retrying=True, attempts_left=1
    ),
    ev.PaperStarted(job_id="j5", agent_id="sma", session={"pid": 10}),
    ev.PaperHealth(job_id="j6", agent_id="sma", health={"status": "healthy"}),
    ev.PaperStopped(job_id="j7", agent_id="sma", summary={"decisions": 40}),
    ev.PaperFailed(
        job_id="j10", agent_id="sma", error={"kind": "conflict", "message": "m", "hint": "h"}
    ),
    ev.PaperStatus(job_id="j11", sessions=[{"agent": "sma", "status": "running"}]),
    ev.Digest(job_id="j8", since=1.0, until=2.0, sections={"failures": []}),
    ev.SweepProgress(job_id="j12", sweep_id="s1", agent_id="sma", phase="in_sample", done=3,
                     total=24, failed=1),
    ev.SweepFinished(job_id="j12", sweep_id="s1", result={"members": []}),  # type: ignore[typeddict-item]
    ev.SweepFailed(job_id="j13", sweep_id="", agent_id="sma",
                   error={"kind": "validation", "message": "m", "hint": "h"}),
    ev.ParityChecked(job_id="j14", report={"verdict": "identical"}),  # type: ignore[typeddict-item]
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_round_trip_through_json(event: ev.Event) -> None:
    routed = dataclasses.replace(event, reply_to=ROUTE, user_id="U1")
    back = ev.Event.from_json(routed.to_json())
    assert back == routed
    assert type(back) is type(routed)
    assert json.loads(routed.to_json())["kind"] == routed.kind


def test_every_kind_is_registered_once() -> None:
    assert set(ev.KINDS) == {e.kind for e in SAMPLES}
    assert len({cls.kind for cls in ev.KINDS.values()}) == len(ev.KINDS)


def test_events_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAMPLES[0].job_id = "other"  # type: ignore[misc]


def test_unknown_kinds_are_refused_by_name() -> None:
    with pytest.raises(ev.UnknownEvent, match="'telepathy'"):
        ev.Event.from_dict({"kind": "telepathy", "job_id": "x"})


def test_extra_fields_from_a_newer_version_are_ignored() -> None:
    doc = SAMPLES[3].to_dict() | {"eta_s": 4}
    assert ev.Event.from_dict(doc) == SAMPLES[3]


def test_no_markup_in_the_model() -> None:
    text = " ".join(e.to_json() for e in SAMPLES)
    assert "*" not in text and "<" not in text  # front-ends format, not jobs


def test_paper_start_and_stop_read_as_one_sentence_not_a_dict() -> None:
    from bot.console import format_event

    session = {"agent": "sma", "version": 2, "status": "stopped", "run_id": "paper-1",
               "parameters": {"symbols": ["SPY", "QQQ"], "cash": 5000.0, "feed": "replay",
                              "start": "2024-01-02", "bar_seconds": 1.0,
                              "params": {"fast": 5}},
               "pnl": {"equity": 5100.0, "cash": 5000.0, "pnl": 100.0, "pnl_pct": 2.0},
               "decisions": 42}  # fmt: skip
    stopped = format_event(ev.PaperStopped(job_id="j", agent_id="sma", summary=session))
    assert stopped == (
        "Paper stopped · sma v2 · SPY, QQQ · replay feed from 2024-01-02, a bar every 1 s · "
        "cash 5,000.00 · fast=5 · P&L +100.00 (+2.00%) · 42 decisions · run paper-1"
    )
    started = format_event(ev.PaperStarted(job_id="j", agent_id="sma", session=session))
    assert started.startswith("Paper started · sma v2") and "{" not in started
