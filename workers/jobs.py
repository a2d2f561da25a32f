"""Job functions: what workers run. They return (and send) Events, never text.

Each takes the adapters it works with as its first argument, :class:`Services`, built by
the composition root (``infra.bootstrap``): RQ imports a job by dotted path and the worker
hands it its services; a front-end running a job in its own process does the same.

An agent's own failure (invalid code, an exception in its strategy, a timeout) is news for
its author and becomes a failure event: the job itself succeeds and is never retried. Only
infrastructure failures raise, and RQ retries those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from workers import events as ev
from workers import params as strategy_params
from workers.payloads import ErrorDoc, ResultDoc, RunParameters
from workers.ports import (
    AgentVersion,
    ArtifactStore,
    BacktestRunner,
    BacktestSpec,
    FmelStore,
    MarketData,
    Notifier,
    PaperCluster,
    Registry,
    RunStatus,
    WorkQueue,
)
from workers.validation import DEFAULT_POLICY, Policy, validate_source


@dataclass
class Services:
    artifacts: ArtifactStore
    registry: Registry
    fmel: FmelStore  # the decision records, read by /fmel and the result's summary
    runner: BacktestRunner
    notifier: Notifier
    market: MarketData  # the bars runs may ask for
    policy: Policy = DEFAULT_POLICY
    progress_every_s: float = 2.0
    meta_sink: Callable[[dict[str, Any]], None] | None = field(default=None)
    cluster: PaperCluster | None = None  # None: this backend has no paper trading yet
    # where a job hands out more jobs (a sweep's combinations); None: they run in this process
    queue: WorkQueue | None = None

    def emit(self, event: ev.Event) -> ev.Event:
        """Send ``event`` to the user (through the notifier) and return it."""
        self.notifier.send(event)
        return event


# --------------------------------------------------------------------- uploads
def register_agent(
    s: Services,
    /,
    *,
    job_id: str,
    owner: str,
    name: str,
    source: bytes,
    reply_to: dict[str, str] | None = None,
    strategy: str | None = None,
) -> ev.Event:
    """Validate an uploaded file and register it as the agent's next version; ``strategy``
    picks the class to run in a file with several (the version keeps the choice)."""
    report = validate_source(source, filename=f"{name}.py", policy=s.policy, strategy=strategy)
    route = dict(reply_to or {})
    if not report.ok:
        return s.emit(
            ev.AgentRejected(
                job_id=job_id,
                user_id=owner,
                reply_to=route,
                agent_name=name,
                report=report.to_dict(),
            )
        )
    sha = s.artifacts.put(source, kind="agent")
    version = s.registry.add_version(owner=owner, name=name, sha256=sha, report=report.to_dict())
    return s.emit(
        ev.AgentRegistered(
            job_id=job_id,
            user_id=owner,
            reply_to=route,
            agent_id=name,
            version=version.version,
            report=report.to_dict(),
        )
    )


# -------------------------------------------------------------------- backtests
def run_backtest(
    s: Services,
    /,
    *,
    job_id: str,
    run_id: str,
    owner: str,
    agent: str,
    version: int | None = None,
    parameters: RunParameters | None = None,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Backtest a registered agent version in the sandbox; the result is stored and sent."""
    route = dict(reply_to or {})
    params: RunParameters = parameters or {}
    try:
        found = known_version(s, agent, version)
        spec = backtest_spec(found, run_id=run_id, owner=owner, params=params)
    except Unrunnable as exc:
        return s.emit(
            ev.BacktestFailed(
                job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, error=exc.error
            )
        )
    report = progress_reporter(s, job_id, owner, route, run_id)
    doc = run_recorded(s, spec, params, channel=route.get("channel"), on_progress=report)
    if (failure := doc["error"]) is not None:
        return s.emit(
            ev.BacktestFailed(
                job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, error=failure
            )
        )
    return s.emit(
        ev.BacktestFinished(job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, result=doc)
    )


class Unrunnable(Exception):
    """A run that cannot be started (no such agent or version, a parameter it does not
    have): the user's to fix, told in one line, never retried."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.error: ErrorDoc = {"kind": "validation", "message": message, "hint": hint,
                                "line": None}  # fmt: skip


def known_version(s: Services, agent: str, version: int | None) -> AgentVersion:
    found = s.registry.get_version(agent, version)
    if found is None:
        raise Unrunnable(unknown_version(s, agent, version),
                         "Upload the agent file, then run the backtest again.")  # fmt: skip
    return found


def backtest_spec(
    found: AgentVersion,
    *,
    run_id: str,
    owner: str,
    params: RunParameters,
    engine: str = "backtest",
    chart: bool = True,
) -> BacktestSpec:
    """The spec of one run of ``found``; its strategy parameters checked against the ones
    the agent's validation report lists (:class:`Unrunnable` when it has no such one)."""
    try:
        chosen = strategy_params.check(params.get("params") or {},
                                       strategy_params.known_params(found.report),
                                       agent=found.name)  # fmt: skip
    except strategy_params.ParamError as exc:
        raise Unrunnable(str(exc), "Set only the parameters its strategy has "
                         "(see its params), with values of their type.") from None  # fmt: skip
    return BacktestSpec(
        run_id=run_id,
        agent=found.name,
        version=found.version,
        agent_sha256=found.sha256,
        owner=owner,
        symbols=tuple(params.get("symbols") or ("SPY",)),
        start=_date(params.get("start")),
        end=_date(params.get("end")),
        cash=float(params.get("cash") or 10_000.0),
        commission=float(params.get("commission") or 0.0),
        # the class chosen when this version was registered, unless the run names one
        strategy=params.get("strategy") or found.report.get("strategy") or None,
        params=chosen,
        engine=engine,
        chart=chart,
    )


def run_recorded(
    s: Services,
    spec: BacktestSpec,
    params: RunParameters | dict[str, Any],
    *,
    channel: str | None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ResultDoc:
    """Run ``spec`` as a run of the registry (made unless a retried job finds it there);
    the run is marked finished or failed with its result document, which is returned."""
    if s.registry.get_run(spec.run_id) is None:  # a retried job finds its run already there
        s.registry.create_run(
            run_id=spec.run_id,
            agent=spec.agent,
            version=spec.version,
            owner=spec.owner,
            kind="backtest",
            parameters=dict(params),
            channel=channel or None,
        )
    s.registry.update_run(spec.run_id, status=RunStatus.RUNNING)
    doc = s.runner.run(spec, on_progress)
    doc["agent_version"] = spec.version
    if (failure := doc["error"]) is not None:
        s.registry.update_run(spec.run_id, status=RunStatus.FAILED, error=failure, result=doc)
    else:
        s.registry.update_run(spec.run_id, status=RunStatus.FINISHED, result=doc)
    return doc


def unknown_version(s: Services, agent: str, version: int | None) -> str:
    """Why ``agent[@vN]`` is not there: no such agent, or no such version of one."""
    latest = s.registry.get_version(agent, None) if version else None
    if latest is not None:
        return f"{agent} has no version {version} (its latest is v{latest.version})"
    return f"no agent {agent}: upload it first"


def _date(text: Any) -> date | None:
    return date.fromisoformat(text) if text else None


def progress_reporter(
    s: Services, job_id: str, owner: str, route: dict[str, str], run_id: str
) -> Callable[[int, int | None], None]:
    """Progress into the job's meta (bars done / total) and, now and then, an event."""
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        if s.meta_sink is not None:
            s.meta_sink({"done": done, "total": total})
        now = time.monotonic()
        if now - last[0] >= s.progress_every_s:
            last[0] = now
            s.emit(
                ev.BacktestProgress(
                    job_id=job_id,
                    user_id=owner,
                    reply_to=route,
                    run_id=run_id,
                    done=done,
                    total=total,
                )
            )

    return report


# ------------------------------------------------------------ platform failures
def job_failed(
    s: Services,
    /,
    *,
    work: str,
    kwargs: dict[str, Any],
    reason: str,
    attempts_left: int = 0,
    hint: str | None = None,
) -> ev.Event:
    """Tell the user that the platform, not their agent, interrupted a job.

    Called by the queue adapter when a job raised or its worker vanished mid-job.
    ``work`` is the job function's name and ``kwargs`` the job's own keyword arguments
    (their ``job_id``, ``owner`` and ``reply_to`` say where the news goes). With attempts
    left the job runs again and this says so; otherwise a backtest's run is marked failed.
    """
    from runtime.errors import HINTS, ErrorKind

    error: ErrorDoc = {
        "kind": ErrorKind.PLATFORM.value,
        "message": reason,
        "hint": hint or HINTS[ErrorKind.PLATFORM],
        "line": None,
    }
    common: dict[str, Any] = {
        "job_id": str(kwargs.get("job_id") or ""),
        "user_id": str(kwargs.get("owner") or ""),
        "reply_to": dict(kwargs.get("reply_to") or {}),
    }
    run_id = str(kwargs.get("run_id") or "")
    if work == "run_backtest" and run_id and not attempts_left:
        run = s.registry.get_run(run_id)
        if run is not None and run.status not in (RunStatus.FINISHED, RunStatus.FAILED):
            s.registry.update_run(run_id, status=RunStatus.FAILED, error=error)
        return s.emit(ev.BacktestFailed(run_id=run_id, error=error, **common))
    return s.emit(
        ev.JobFailed(
            work=work,
            error=error,
            retrying=attempts_left > 0,
            attempts_left=attempts_left,
            **common,
        )
    )


def ping(s: Services, /) -> float:
    """A job that does nothing: measures the queue itself (enqueue-to-start latency)."""
    return time.time()
