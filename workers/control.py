"""Job functions that control running agents: paper sessions and the status digest.

The rules of :mod:`workers.jobs` hold here too: jobs return (and send) Events, never text.
A request that cannot be done (an unknown agent, an agent already paper trading, one that
is not, a backend without a paper cluster) is news for the user and becomes a
``PaperFailed`` event; the job succeeds and is not retried. Only infrastructure failures
raise, and RQ retries those, so each job is written to be run twice: a retried start finds
its own session instead of reporting a conflict, a retried stop finishes the run it left.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import replace
from datetime import date
from typing import Any, Literal

from runtime.defaults import stored_warnings
from workers import events as ev
from workers import params as strategy_params
from workers.jobs import Services, unknown_version
from workers.payloads import BacktestLine, DigestSections, ErrorDoc, FailureLine, Pnl, SessionDoc
from workers.ports import (
    AgentVersion,
    PaperCluster,
    PaperConflict,
    PaperSession,
    PaperSpec,
    Run,
    RunStatus,
    SessionStatus,
)

DAY_S = 24 * 3600.0  # what a channel's first digest covers
DIGEST_MAX_RUNS = 500  # runs one digest reads; a channel's day rarely comes near it
DEFAULT_CASH = 10_000.0  # backtrader's default, as for backtests
DEFAULT_BAR_SECONDS = 60.0  # one-minute bars: live Alpaca's pace, and a replay's default
FEEDS = ("replay", "alpaca")


class _Refused(Exception):
    """Why a paper request cannot be done; becomes the ``error`` of a ``PaperFailed``."""

    def __init__(self, kind: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.error: ErrorDoc = {"kind": kind, "message": message, "hint": hint}


def _refused_event(
    s: Services, refused: _Refused, *, job_id: str, owner: str, route: dict[str, str], agent: str
) -> ev.Event:
    return s.emit(
        ev.PaperFailed(
            job_id=job_id, user_id=owner, reply_to=route, agent_id=agent, error=refused.error
        )
    )


# ------------------------------------------------------------------ paper sessions
def paper_start(
    s: Services,
    /,
    *,
    job_id: str,
    owner: str,
    agent: str,
    version: int | None = None,
    parameters: dict[str, Any] | None = None,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Start paper trading a registered agent version, recorded as a run of kind "paper"."""
    route = dict(reply_to or {})
    try:
        cluster = _cluster(s)
        found = _known_version(s, agent, version)
        spec = _spec(found, owner, _paper_run_id(s, job_id, agent), dict(parameters or {}))
        spec = replace(spec, reply_to=route)
        _check_data(s, spec)
        session = _own_session(cluster, spec) or _start(cluster, spec)
    except _Refused as refused:
        return _refused_event(s, refused, job_id=job_id, owner=owner, route=route, agent=agent)
    run = _record_start(s, spec)
    return s.emit(
        ev.PaperStarted(
            job_id=job_id,
            user_id=owner,
            reply_to=route,
            agent_id=agent,
            session=session_doc(session, run),
        )
    )


def paper_stop(
    s: Services,
    /,
    *, job_id: str, owner: str, agent: str, reply_to: dict[str, str] | None = None
) -> ev.Event:
    """Stop an agent's paper session; its run is marked finished with the final state."""
    route = dict(reply_to or {})
    try:
        session = _stop(s, _cluster(s), agent)
    except _Refused as refused:
        return _refused_event(s, refused, job_id=job_id, owner=owner, route=route, agent=agent)
    run = s.registry.get_run(session.run_id)
    summary = session_doc(session, run)
    if run is not None:
        _finish(s, run, summary)
    return s.emit(
        ev.PaperStopped(
            job_id=job_id, user_id=owner, reply_to=route, agent_id=agent, summary=summary
        )
    )


def paper_status(
    s: Services,
    /,
    *, job_id: str, owner: str, agent: str | None = None, reply_to: dict[str, str] | None = None
) -> ev.Event:
    """The paper sessions (one agent's, or all), each with its P&L and decision count."""
    route = dict(reply_to or {})
    try:
        cluster = _cluster(s)
        if agent and s.registry.get_agent(agent) is None:
            raise _unknown_agent(s, agent)
    except _Refused as refused:
        return _refused_event(
            s, refused, job_id=job_id, owner=owner, route=route, agent=agent or ""
        )
    sessions = [session_doc(x, s.registry.get_run(x.run_id)) for x in cluster.status(agent)]
    return s.emit(ev.PaperStatus(job_id=job_id, user_id=owner, reply_to=route, sessions=sessions))


def _cluster(s: Services) -> PaperCluster:
    if s.cluster is None:
        raise _Refused(
            "unavailable",
            "paper trading is not available on this backend yet",
            "Ask an operator to set up the paper cluster.",
        )
    return s.cluster


def _unknown_agent(s: Services, agent: str, version: int | None = None) -> _Refused:
    return _Refused(
        "validation",
        unknown_version(s, agent, version),
        "Upload the agent file (or name a version it has), then start paper trading again.",
    )


def _known_version(s: Services, agent: str, version: int | None) -> AgentVersion:
    found = s.registry.get_version(agent, version)
    if found is None:
        raise _unknown_agent(s, agent, version)
    return found


def _paper_run_id(s: Services, job_id: str, agent: str) -> str:
    """Derived from the job id, so a retried job finds its own session and run again.

    A job id used again for a new request (the CLI's are fixed per agent) finds that run
    over, and gets a fresh id instead of reviving it.
    """
    run_id = "paper-" + hashlib.sha256(f"{agent}\0{job_id}".encode()).hexdigest()[:16]
    run = s.registry.get_run(run_id)
    if run is not None and run.status in (RunStatus.FINISHED, RunStatus.FAILED):
        return f"{run_id}-{uuid.uuid4().hex[:8]}"
    return run_id


def _spec(found: AgentVersion, owner: str, run_id: str, params: dict[str, Any]) -> PaperSpec:
    """The session's spec; parameters a front-end let through malformed are refused here."""
    feed = params.get("feed") or "replay"
    start = params.get("start") or None
    wanted = params.get("symbols") or ("SPY",)
    try:
        symbols = tuple(wanted.split(",") if isinstance(wanted, str) else map(str, wanted))
        cash = float(params.get("cash") or DEFAULT_CASH)
        bar_seconds = float(params.get("bar_seconds") or DEFAULT_BAR_SECONDS)
        if start is not None:
            start = date.fromisoformat(str(start)).isoformat()
    except (TypeError, ValueError) as exc:
        raise _bad_parameters(f"bad paper parameters: {exc}") from None
    if feed not in FEEDS:
        raise _bad_parameters(f"unknown feed {feed!r} (feeds: {', '.join(FEEDS)})")
    try:
        chosen_params = strategy_params.check(params.get("params") or {},
                                              strategy_params.known_params(found.report),
                                              agent=found.name)  # fmt: skip
    except strategy_params.ParamError as exc:
        raise _bad_parameters(str(exc)) from None
    if not (math.isfinite(cash) and cash > 0 and math.isfinite(bar_seconds) and bar_seconds > 0):
        raise _bad_parameters("cash and bar_seconds must be positive numbers")
    chosen: Literal["replay", "alpaca"] = "alpaca" if feed == "alpaca" else "replay"
    return PaperSpec(
        agent=found.name, version=found.version, sha256=found.sha256, owner=owner,
        run_id=run_id, symbols=symbols, cash=cash, feed=chosen, start=start,
        bar_seconds=bar_seconds, strategy=found.report.get("strategy") or None,
        params=chosen_params,
    )  # fmt: skip


def _check_data(s: Services, spec: PaperSpec) -> None:
    """A replay session plays the data folder: what it could not play is refused now, in
    one line, as a backtest's request is (not after a start that only crashes)."""
    if spec.feed != "replay":
        return
    from runtime.data import DataError

    start = date.fromisoformat(spec.start) if spec.start else None
    try:
        s.market.bars(spec.symbols, start, None)
    except DataError as exc:
        raise _bad_parameters(str(exc)) from None


def _bad_parameters(message: str) -> _Refused:
    return _Refused("validation", message,
                    "Check the symbols, cash, start date and parameters, then retry.")  # fmt: skip


def _own_session(cluster: PaperCluster, spec: PaperSpec) -> PaperSession | None:
    """The agent's live session if this very request started it (a retried job), else
    ``None`` when the agent has none; a session of another request is a conflict."""
    live = [x for x in cluster.status(spec.agent) if x.status is not SessionStatus.STOPPED]
    if not live:
        return None
    if live[0].run_id == spec.run_id:
        return live[0]
    raise _conflict(spec.agent, f"its session is {live[0].status} (run {live[0].run_id})")


def _start(cluster: PaperCluster, spec: PaperSpec) -> PaperSession:
    try:
        return cluster.start(spec)
    except PaperConflict as exc:  # another request started it since we looked
        raise _conflict(spec.agent, str(exc)) from None


def _conflict(agent: str, detail: str) -> _Refused:
    return _Refused(
        "conflict",
        f"{agent} is already paper trading: {detail}",
        "Stop its paper session first, then start it again.",
    )


def _record_start(s: Services, spec: PaperSpec) -> Run:
    """The run, recorded after the session started so a failed start leaves no run behind."""
    if s.registry.get_run(spec.run_id) is None:
        s.registry.create_run(
            run_id=spec.run_id,
            agent=spec.agent,
            version=spec.version,
            owner=spec.owner,
            kind="paper",
            parameters=_spec_parameters(spec),
            channel=spec.reply_to.get("channel") or None,
        )
    return s.registry.update_run(spec.run_id, status=RunStatus.RUNNING)


def _spec_parameters(spec: PaperSpec) -> dict[str, Any]:
    return {
        "symbols": list(spec.symbols),
        "cash": spec.cash,
        "feed": spec.feed,
        "start": spec.start,
        "bar_seconds": spec.bar_seconds,
        **({"params": dict(spec.params)} if spec.params else {}),
    }


def _stop(s: Services, cluster: PaperCluster, agent: str) -> PaperSession:
    found = cluster.status(agent)
    if not found:
        known = s.registry.get_agent(agent) is not None
        raise _not_running(agent) if known else _unknown_agent(s, agent)
    if found[0].status is not SessionStatus.STOPPED:  # running, starting, or crashed
        try:
            return cluster.stop(agent)
        except KeyError:  # gone since we looked
            raise _not_running(agent) from None
    run = s.registry.get_run(found[0].run_id)
    if run is not None and run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return found[0]  # a retried stop: the session stopped but its run was not finished
    raise _not_running(agent)


def _not_running(agent: str) -> _Refused:
    return _Refused(
        "not_running",
        f"{agent} is not paper trading",
        "Check the paper status for the agents that are.",
    )


def _finish(s: Services, run: Run, summary: SessionDoc) -> None:
    if run.status is RunStatus.QUEUED:  # its start was interrupted before it was marked
        s.registry.update_run(run.run_id, status=RunStatus.RUNNING)
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        s.registry.update_run(run.run_id, status=RunStatus.FINISHED, result=summary)


def session_doc(session: PaperSession, run: Run | None) -> SessionDoc:
    """The session as data, with what a reader asks first: its version, P&L and decisions."""
    health = session.health or session.final or {}
    return {
        "agent": session.agent,
        "owner": session.owner,
        "status": session.status.value,
        "run_id": session.run_id,
        "pid": session.pid,
        "restarts": session.restarts,
        "health_url": session.health_url,
        "health": session.health,
        "started_at": session.started_at,
        "stopped_at": session.stopped_at,
        "parameters": session.parameters,
        "final": session.final,
        "version": None if run is None else run.version,
        "pnl": _pnl(health.get("equity"), None if run is None else run.parameters.get("cash")),
        "decisions": health.get("decisions"),
        # open positions: size, average price, last close, unrealised P&L (the adapter's)
        "positions": dict(health.get("positions") or {}),
    }


def _pnl(equity: Any, cash: Any) -> Pnl | None:
    """Profit and loss from the session's equity and its starting cash, when both are known."""
    if not (_number(equity) and _number(cash) and cash > 0):
        return None
    pnl = float(equity) - float(cash)
    return {"equity": float(equity), "cash": float(cash), "pnl": pnl, "pnl_pct": pnl / cash * 100}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------ digest
def digest(
    s: Services,
    /,
    *,
    job_id: str,
    channel: str,
    reply_to: dict[str, str] | None = None,
    until: float | None = None,
) -> ev.Event:
    """What happened since this channel's previous digest: the paper sessions, backtests and
    failures asked from it (another channel's, a DM's or the command line's are not its news).

    The first digest of a channel covers the last day. The channel's mark moves only after
    the digest was sent, so a digest that failed to go out is repeated whole by its retry.
    """
    end = time.time() if until is None else float(until)
    last = s.registry.last_digest(channel)
    since = end - DAY_S if last is None else min(last, end)
    runs = [
        r
        for r in s.registry.list_runs(since=since, limit=DIGEST_MAX_RUNS, channel=channel)
        if r.created_at < end
    ]
    # a sweep's combinations and a parity check's two runs are their sweep's and check's
    # news (told in their thread), not one line each in the channel's digest
    runs = [r for r in runs if not ({"sweep", "parity"} & set(r.parameters))]
    sections: DigestSections = {
        "paper": _paper_section(s, channel),
        "backtests": [_backtest_line(r) for r in runs if r.kind == "backtest"],
        "failures": [_failure_line(r) for r in runs if r.status is RunStatus.FAILED],
    }
    event = s.emit(
        ev.Digest(
            job_id=job_id,
            reply_to=dict(reply_to or {"channel": channel}),
            since=since,
            until=end,
            sections=sections,
        )
    )
    s.registry.mark_digest(channel, end)
    return event


def _paper_section(s: Services, channel: str) -> list[SessionDoc]:
    """The sessions started from ``channel`` (their runs say where they were asked from)."""
    if s.cluster is None:
        return []
    runs = [(x, s.registry.get_run(x.run_id)) for x in s.cluster.status()]
    return [session_doc(x, run) for x, run in runs if run is not None and run.channel == channel]


def _backtest_line(run: Run) -> BacktestLine:
    results = (run.result or {}).get("results") or {}
    warnings, lookahead = stored_warnings(run.result)
    return {
        "warnings": warnings,
        "lookahead": lookahead,
        "run_id": run.run_id,
        "agent": run.agent,
        "version": run.version,
        "owner": run.owner,
        "status": run.status.value,
        "created_at": run.created_at,
        "return_pct": results.get("portfolio_return_pct"),
        "sharpe": results.get("sharpe_ratio"),
    }


def _failure_line(run: Run) -> FailureLine:
    error = run.error or {}
    return {
        "run_id": run.run_id,
        "agent": run.agent,
        "version": run.version,
        "owner": run.owner,
        "kind": run.kind,
        "error": {"kind": error.get("kind"), "message": error.get("message")},
    }
