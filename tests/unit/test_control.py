"""Paper and digest jobs against the in-memory fakes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from infra.local.market import LocalMarketData
from runtime.paths import DEFAULT_DATA_DIR
from tests.fakes import (
    InMemoryArtifactStore,
    InMemoryFmelStore,
    InMemoryPaperCluster,
    InMemoryRegistry,
)
from workers import control, jobs
from workers import events as ev
from workers.ports import PaperSession, PaperSpec, RunStatus, SessionStatus

T0 = 1_700_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ev.Event] = []
        self.fail_next = False

    def send(self, event: ev.Event) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("notifier down")
        self.sent.append(event)


@dataclass
class World:
    services: jobs.Services
    registry: InMemoryRegistry
    cluster: InMemoryPaperCluster
    notifier: Recorder
    clock: Clock


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def make_world(tmp_path: Path) -> Callable[..., World]:
    def make(*, with_cluster: bool = True) -> World:
        clock = Clock()
        registry, cluster, notifier = (
            InMemoryRegistry(clock=clock),
            InMemoryPaperCluster(),
            Recorder(),
        )
        services = jobs.Services(
            artifacts=InMemoryArtifactStore(),
            registry=registry,
            fmel=InMemoryFmelStore(),
            runner=None,  # type: ignore[arg-type]  # these jobs never backtest
            notifier=notifier,
            market=LocalMarketData(DEFAULT_DATA_DIR),
            cluster=cluster if with_cluster else None,
        )
        registry.add_version(owner="U1", name="sma", sha256=sha("sma-1"), report={})
        registry.add_version(owner="U1", name="sma", sha256=sha("sma-2"), report={})
        registry.add_version(owner="U2", name="rsi", sha256=sha("rsi-1"), report={})
        return World(services, registry, cluster, notifier, clock)

    return make


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def start(world: World, agent: str = "sma", job_id: str = "j-start", **kw: Any) -> ev.Event:
    return control.paper_start(world.services, job_id=job_id, owner="U1", agent=agent, **kw)


def failed(event: ev.Event, kind: str) -> dict[str, Any]:
    assert isinstance(event, ev.PaperFailed), event
    assert event.error["kind"] == kind, event.error
    assert event.error["message"] and event.error["hint"]
    return event.error


def round_trips(event: ev.Event) -> None:
    """What a front-end or the stored record gets back is the event itself."""
    assert ev.Event.from_json(event.to_json()) == event


# ------------------------------------------------------------------ paper_start
def test_start_runs_the_latest_version_and_records_a_paper_run(world: World) -> None:
    out = start(
        world, parameters={"symbols": ["SPY", "QQQ"], "cash": 5000}, reply_to={"channel": "C1"}
    )
    assert isinstance(out, ev.PaperStarted)
    assert (out.agent_id, out.user_id, out.reply_to) == ("sma", "U1", {"channel": "C1"})
    spec = world.cluster.specs["sma"]
    assert (spec.version, spec.sha256, spec.owner) == (2, sha("sma-2"), "U1")
    assert (spec.symbols, spec.cash, spec.feed, spec.start) == (
        ("SPY", "QQQ"),
        5000.0,
        "replay",
        None,
    )
    assert spec.bar_seconds == control.DEFAULT_BAR_SECONDS
    run = world.registry.get_run(spec.run_id)
    assert run is not None
    assert (run.kind, run.status, run.agent, run.version, run.owner) == (
        "paper", RunStatus.RUNNING, "sma", 2, "U1",
    )  # fmt: skip
    assert run.parameters == {
        "symbols": ["SPY", "QQQ"], "cash": 5000.0, "feed": "replay", "start": None,
        "bar_seconds": control.DEFAULT_BAR_SECONDS,
    }  # fmt: skip
    assert out.session["run_id"] == spec.run_id
    assert out.session["status"] == "starting" and out.session["version"] == 2
    assert world.notifier.sent == [out]
    round_trips(out)


def test_start_a_given_version_with_defaults(world: World) -> None:
    out = start(
        world, version=1, parameters={"start": "2021-03-01", "feed": "alpaca", "bar_seconds": 5}
    )
    assert isinstance(out, ev.PaperStarted)
    spec = world.cluster.specs["sma"]
    assert (spec.version, spec.sha256) == (1, sha("sma-1"))
    assert (spec.symbols, spec.cash) == (("SPY",), control.DEFAULT_CASH)
    assert (spec.feed, spec.start, spec.bar_seconds) == ("alpaca", "2021-03-01", 5.0)


@pytest.mark.parametrize(
    ("agent", "version", "named"),
    [("nope", None, "nope"), ("sma", 9, "sma has no version 9 (its latest is v")],
)
def test_start_an_unknown_agent_or_version_fails(
    world: World, agent: str, version: int | None, named: str
) -> None:
    error = failed(start(world, agent, version=version), "validation")
    assert named in error["message"]
    assert world.cluster.sessions == {} and world.registry.runs == {}


@pytest.mark.parametrize(
    "parameters",
    [
        {"feed": "ibkr"},
        {"cash": -5},
        {"cash": "lots"},
        {"cash": float("inf")},
        {"start": "yesterday"},
        {"bar_seconds": -1},
    ],
)
def test_start_with_bad_parameters_fails(world: World, parameters: dict[str, Any]) -> None:
    failed(start(world, parameters=parameters), "validation")
    assert world.cluster.sessions == {} and world.registry.runs == {}


def test_start_an_agent_already_running_fails(world: World) -> None:
    first = start(world, job_id="j1")
    assert isinstance(first, ev.PaperStarted)
    error = failed(start(world, job_id="j2"), "conflict")
    assert first.session["run_id"] in error["message"]
    assert [r.run_id for r in world.registry.list_runs()] == [first.session["run_id"]]
    assert world.cluster.sessions["sma"].run_id == first.session["run_id"]


def test_start_a_crashed_agent_fails_until_it_is_stopped(world: World) -> None:
    start(world, job_id="j1")
    world.cluster.crash("sma")
    assert "crashed" in failed(start(world, job_id="j2"), "conflict")["message"]
    assert isinstance(
        control.paper_stop(world.services, job_id="s", owner="U1", agent="sma"), ev.PaperStopped
    )
    assert isinstance(start(world, job_id="j3"), ev.PaperStarted)


def test_a_start_that_raced_another_is_a_conflict(world: World) -> None:
    class Racing(InMemoryPaperCluster):
        def status(self, agent: str | None = None) -> list[PaperSession]:
            return []  # looked before the other request's session appeared

    world.services.cluster = racing = Racing()
    racing.start(PaperSpec(agent="sma", version=1, sha256=sha("sma-1"), owner="U2",
                           run_id="other", symbols=("SPY",), cash=1.0))  # fmt: skip
    failed(start(world), "conflict")
    assert world.registry.runs == {}


def test_a_retried_start_finds_its_own_session(world: World) -> None:
    first = start(world, job_id="j1")
    again = start(world, job_id="j1")  # the worker died after starting, before the job finished
    assert isinstance(again, ev.PaperStarted)
    assert again.session["run_id"] == first.session["run_id"]  # type: ignore[attr-defined]
    assert len(world.registry.runs) == 1
    assert world.cluster.lines["sma"] == [f"started run {again.session['run_id']}"]


def test_a_job_id_used_again_after_a_stop_gets_a_new_run(world: World) -> None:
    first = start(world, job_id="cli-sma")
    control.paper_stop(world.services, job_id="s1", owner="U1", agent="sma")
    second = start(world, job_id="cli-sma")
    assert isinstance(first, ev.PaperStarted) and isinstance(second, ev.PaperStarted)
    assert second.session["run_id"] != first.session["run_id"]
    assert world.registry.get_run(first.session["run_id"]).status is RunStatus.FINISHED  # type: ignore[union-attr]
    assert world.registry.get_run(second.session["run_id"]).status is RunStatus.RUNNING  # type: ignore[union-attr]


def test_an_infrastructure_failure_raises_and_leaves_no_run(world: World) -> None:
    class Down(InMemoryPaperCluster):
        def start(self, spec: PaperSpec) -> PaperSession:
            raise ConnectionError("api server unreachable")

    world.services.cluster = Down()
    with pytest.raises(ConnectionError):
        start(world, job_id="j1")
    assert world.registry.runs == {} and world.notifier.sent == []
    world.services.cluster = world.cluster  # RQ retries once it is back
    assert isinstance(start(world, job_id="j1"), ev.PaperStarted)


def test_every_paper_job_fails_politely_without_a_cluster(make_world: Callable[..., World]) -> None:
    world = make_world(with_cluster=False)
    outs = [
        start(world),
        control.paper_stop(world.services, job_id="j", owner="U1", agent="sma"),
        control.paper_status(world.services, job_id="j", owner="U1"),
    ]
    for out in outs:
        assert failed(out, "unavailable")["message"] == (
            "paper trading is not available on this backend yet"
        )
    assert [e.agent_id for e in outs] == ["sma", "sma", ""]  # type: ignore[attr-defined]
    assert world.registry.runs == {} and world.notifier.sent == outs


# ------------------------------------------------------------------ paper_stop
def test_stop_reports_pnl_and_finishes_the_run(world: World) -> None:
    started = start(world, parameters={"cash": 10_000})
    run_id = started.session["run_id"]  # type: ignore[attr-defined]
    world.cluster.set_health("sma", {"status": "healthy", "equity": 10_250.0, "decisions": 42})
    out = control.paper_stop(
        world.services, job_id="j-stop", owner="U1", agent="sma", reply_to={"channel": "C1"}
    )
    assert isinstance(out, ev.PaperStopped)
    assert (out.agent_id, out.reply_to) == ("sma", {"channel": "C1"})
    assert out.summary["status"] == "stopped" and out.summary["run_id"] == run_id
    assert out.summary["pnl"] == {
        "equity": 10_250.0,
        "cash": 10_000.0,
        "pnl": 250.0,
        "pnl_pct": 2.5,
    }
    assert out.summary["decisions"] == 42
    run = world.registry.get_run(run_id)
    assert run is not None and run.status is RunStatus.FINISHED
    assert run.result == out.summary
    assert world.cluster.sessions["sma"].status is SessionStatus.STOPPED
    round_trips(out)


def test_stop_a_crashed_session(world: World) -> None:
    start(world)
    world.cluster.crash("sma")
    out = control.paper_stop(world.services, job_id="j", owner="U1", agent="sma")
    assert isinstance(out, ev.PaperStopped) and out.summary["restarts"] == 3
    assert world.registry.list_runs()[0].status is RunStatus.FINISHED


def test_stop_an_agent_that_is_not_running_fails(world: World) -> None:
    assert (
        "sma"
        in failed(
            control.paper_stop(world.services, job_id="j", owner="U1", agent="sma"), "not_running"
        )["message"]
    )
    start(world)
    assert isinstance(
        control.paper_stop(world.services, job_id="j1", owner="U1", agent="sma"), ev.PaperStopped
    )
    failed(control.paper_stop(world.services, job_id="j2", owner="U1", agent="sma"), "not_running")


def test_stop_an_unknown_agent_fails(world: World) -> None:
    failed(control.paper_stop(world.services, job_id="j", owner="U1", agent="nope"), "validation")


def test_a_retried_stop_finishes_the_run_it_left(world: World) -> None:
    started = start(world)
    world.cluster.stop("sma")  # the first attempt stopped it, then its worker died
    out = control.paper_stop(world.services, job_id="j", owner="U1", agent="sma")
    assert isinstance(out, ev.PaperStopped)
    run = world.registry.get_run(started.session["run_id"])  # type: ignore[attr-defined]
    assert run is not None and run.status is RunStatus.FINISHED


# ------------------------------------------------------------------ paper_status
def test_status_of_all_sessions_and_of_one(world: World) -> None:
    start(world, "sma", parameters={"cash": 1000})
    control.paper_start(world.services, job_id="j-rsi", owner="U2", agent="rsi")
    world.cluster.set_health("sma", {"equity": 900.0, "decisions": 7})
    out = control.paper_status(world.services, job_id="j", owner="U1", reply_to={"channel": "C1"})
    assert isinstance(out, ev.PaperStatus) and out.reply_to == {"channel": "C1"}
    assert [(x["agent"], x["owner"], x["status"]) for x in out.sessions] == [
        ("rsi", "U2", "running"), ("sma", "U1", "running"),
    ]  # fmt: skip
    rsi, sma = out.sessions
    assert sma["pnl"] == {"equity": 900.0, "cash": 1000.0, "pnl": -100.0, "pnl_pct": -10.0}
    assert sma["decisions"] == 7
    assert (rsi["pnl"], rsi["decisions"], rsi["health"]) == (None, None, None)
    one = control.paper_status(world.services, job_id="j", owner="U1", agent="rsi")
    assert isinstance(one, ev.PaperStatus) and [x["agent"] for x in one.sessions] == ["rsi"]
    round_trips(out)


def test_status_of_a_registered_agent_without_a_session_is_empty(world: World) -> None:
    out = control.paper_status(world.services, job_id="j", owner="U1", agent="sma")
    assert isinstance(out, ev.PaperStatus) and out.sessions == []


def test_status_of_an_unknown_agent_fails(world: World) -> None:
    out = control.paper_status(world.services, job_id="j", owner="U1", agent="nope")
    failed(out, "validation")
    assert out.agent_id == "nope"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "health",
    [{}, {"equity": None}, {"equity": "10"}, {"equity": True}, {"equity": float("nan")}],
)
def test_no_pnl_without_a_usable_equity(world: World, health: dict[str, Any]) -> None:
    start(world)
    world.cluster.set_health("sma", health)
    out = control.paper_status(world.services, job_id="j", owner="U1")
    assert out.sessions[0]["pnl"] is None  # type: ignore[attr-defined]


# ------------------------------------------------------------------ digest
def backtest(
    world: World,
    run_id: str,
    at: float,
    *,
    agent: str = "sma",
    fail: bool = False,
    channel: str | None = "C1",
) -> None:
    world.clock.now = at
    world.registry.create_run(run_id=run_id, agent=agent, version=1, owner="U1",
                              kind="backtest", parameters={}, channel=channel)  # fmt: skip
    world.registry.update_run(run_id, status=RunStatus.RUNNING)
    if fail:
        error = {"kind": "agent", "message": "ZeroDivisionError", "hint": "h", "line": 7}
        world.registry.update_run(run_id, status=RunStatus.FAILED, error=error)
    else:
        result = {"results": {"portfolio_return_pct": 3.5, "sharpe_ratio": 1.25, "sqn": 2.0}}
        world.registry.update_run(run_id, status=RunStatus.FINISHED, result=result)


def test_first_digest_covers_the_last_day(world: World) -> None:
    now = T0 + 100 * HOUR
    backtest(world, "too-old", now - 25 * HOUR)
    backtest(world, "ok", now - 23 * HOUR)
    backtest(world, "bad", now - 2 * HOUR, fail=True)
    backtest(world, "elsewhere", now - 2 * HOUR, channel="C9")  # another channel's news
    backtest(world, "by-hand", now - 2 * HOUR, channel=None)  # the command line's
    world.clock.now = now - HOUR
    start(world, parameters={"cash": 10_000}, reply_to={"channel": "C1", "thread_ts": "1.1"})
    start(world, "rsi", job_id="j-rsi", reply_to={"channel": "C9"})  # not C1's
    world.cluster.set_health("sma", {"equity": 9_900.0, "decisions": 12})
    out = control.digest(world.services, job_id="d1", channel="C1", until=now)
    assert isinstance(out, ev.Digest)
    assert (out.since, out.until, out.reply_to, out.user_id) == (
        now - 24 * HOUR,
        now,
        {"channel": "C1"},
        "",
    )
    sections = out.sections
    assert set(sections) == {"paper", "backtests", "failures"}
    assert [(b["run_id"], b["status"]) for b in sections["backtests"]] == [
        ("bad", "failed"), ("ok", "finished"),
    ]  # fmt: skip
    ok = sections["backtests"][1]
    assert (ok["agent"], ok["version"], ok["return_pct"], ok["sharpe"]) == ("sma", 1, 3.5, 1.25)
    assert sections["backtests"][0]["return_pct"] is None
    assert sections["failures"] == [
        {"run_id": "bad", "agent": "sma", "version": 1, "owner": "U1", "kind": "backtest",
         "error": {"kind": "agent", "message": "ZeroDivisionError"}},
    ]  # fmt: skip
    (paper,) = sections["paper"]
    assert (paper["agent"], paper["status"], paper["decisions"]) == ("sma", "running", 12)
    assert paper["pnl"]["pnl"] == -100.0
    assert world.registry.last_digest("C1") == now
    assert world.notifier.sent[-1] == out
    round_trips(out)


def test_second_digest_covers_only_what_came_after_the_first(world: World) -> None:
    backtest(world, "before", T0 + HOUR)
    first = control.digest(world.services, job_id="d1", channel="C1", until=T0 + 2 * HOUR)
    backtest(world, "after", T0 + 3 * HOUR, fail=True)
    second = control.digest(world.services, job_id="d2", channel="C1", until=T0 + 4 * HOUR)
    assert isinstance(first, ev.Digest) and isinstance(second, ev.Digest)
    assert [b["run_id"] for b in first.sections["backtests"]] == ["before"]
    assert second.since == first.until
    assert [b["run_id"] for b in second.sections["backtests"]] == ["after"]
    assert [f["run_id"] for f in second.sections["failures"]] == ["after"]
    backtest(world, "theirs", T0 + 3 * HOUR, channel="C2")
    other = control.digest(
        world.services, job_id="d3", channel="C2", until=T0 + 4 * HOUR
    )  # its own first
    assert [b["run_id"] for b in other.sections["backtests"]] == ["theirs"]  # type: ignore[attr-defined]
    assert world.registry.last_digest("C1") == T0 + 4 * HOUR


def test_digest_flags_a_backtest_built_on_look_ahead(world: World) -> None:
    backtest(world, "peeks", T0)
    warning = "look-ahead: the strategy read future bars on 9 of 10 bars (…)"
    result = {"results": {"portfolio_return_pct": 39.0, "sharpe_ratio": 6.9}, "warnings": [warning]}
    world.registry.runs["peeks"] = replace(world.registry.runs["peeks"], result=result)
    out = control.digest(world.services, job_id="d", channel="C1", until=T0 + HOUR)
    (line,) = out.sections["backtests"]  # type: ignore[attr-defined]
    assert line["lookahead"] is True and line["warnings"] == 1


def test_digest_window_includes_its_start_and_excludes_its_end(world: World) -> None:
    backtest(world, "at-since", T0)
    backtest(world, "at-until", T0 + HOUR)
    world.registry.mark_digest("C1", T0)
    out = control.digest(world.services, job_id="d", channel="C1", until=T0 + HOUR)
    assert [b["run_id"] for b in out.sections["backtests"]] == ["at-since"]  # type: ignore[attr-defined]


def test_digest_lists_failed_paper_runs_but_not_as_backtests(world: World) -> None:
    world.registry.create_run(run_id="p1", agent="sma", version=1, owner="U1", kind="paper",
                              parameters={}, channel="C1")  # fmt: skip
    error = {"kind": "platform", "message": "node lost"}
    world.registry.update_run("p1", status=RunStatus.FAILED, error=error)
    out = control.digest(world.services, job_id="d", channel="C1", until=T0 + 1)
    assert out.sections["backtests"] == []  # type: ignore[attr-defined]
    assert [(f["kind"], f["error"]["message"]) for f in out.sections["failures"]] == [  # type: ignore[attr-defined]
        ("paper", "node lost"),
    ]


def test_digest_uses_the_given_route_and_has_no_paper_without_a_cluster(
    make_world: Callable[..., World],
) -> None:
    world = make_world(with_cluster=False)
    route = {"channel": "C1", "thread_ts": "1.2"}
    out = control.digest(world.services, job_id="d", channel="C1", reply_to=route)
    assert isinstance(out, ev.Digest) and out.reply_to == route
    assert out.sections == {"paper": [], "backtests": [], "failures": []}


def test_a_digest_that_could_not_be_sent_keeps_the_mark(world: World) -> None:
    backtest(world, "r1", T0)
    world.notifier.fail_next = True
    with pytest.raises(ConnectionError):
        control.digest(world.services, job_id="d", channel="C1", until=T0 + HOUR)
    assert world.registry.last_digest("C1") is None
    retried = control.digest(
        world.services, job_id="d", channel="C1", until=T0 + HOUR
    )  # RQ's retry
    assert [b["run_id"] for b in retried.sections["backtests"]] == ["r1"]  # type: ignore[attr-defined]


def test_digest_leaves_out_the_runs_of_sweeps_and_parity_checks(world: World) -> None:
    backtest(world, "plain", T0)
    for run_id, mark in (("swept", {"sweep": "sweep-1"}), ("checked", {"parity": "parity-1"})):
        world.registry.create_run(run_id=run_id, agent="sma", version=1, owner="U1",
                                  kind="backtest", parameters=mark, channel="C1")  # fmt: skip
        world.registry.update_run(run_id, status=RunStatus.RUNNING)
        world.registry.update_run(run_id, status=RunStatus.FAILED, error={"message": "x"})
    out = control.digest(world.services, job_id="d", channel="C1", until=T0 + HOUR)
    assert [b["run_id"] for b in out.sections["backtests"]] == ["plain"]  # type: ignore[attr-defined]
    assert out.sections["failures"] == []  # type: ignore[attr-defined]
