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
from workers.payloads import ErrorDoc, RunParameters
from workers.ports import (
    ArtifactStore,
    BacktestRunner,
    BacktestSpec,
    FmelStore,
    MarketData,
    Notifier,
    PaperCluster,
    Registry,
    RunStatus,
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
    found = s.registry.get_version(agent, version)
    if found is None:
        error: ErrorDoc = {
            "kind": "validation",
            "message": unknown_version(s, agent, version),
            "hint": "Upload the agent file, then run the backtest again.",
            "line": None,
        }
        return s.emit(
            ev.BacktestFailed(
                job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, error=error
            )
        )
    if s.registry.get_run(run_id) is None:  # a retried job finds its run already there
        s.registry.create_run(
            run_id=run_id,
            agent=agent,
            version=found.version,
            owner=owner,
            kind="backtest",
            parameters=params,
            channel=route.get("channel") or None,
        )
    s.registry.update_run(run_id, status=RunStatus.RUNNING)
    spec = BacktestSpec(
        run_id=run_id,
        agent=agent,
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
    )
    doc = s.runner.run(spec, _progress_reporter(s, job_id, owner, route, run_id))
    doc["agent_version"] = found.version
    if (failure := doc["error"]) is not None:
        s.registry.update_run(run_id, status=RunStatus.FAILED, error=failure, result=doc)
        return s.emit(
            ev.BacktestFailed(
                job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, error=failure
            )
        )
    s.registry.update_run(run_id, status=RunStatus.FINISHED, result=doc)
    return s.emit(
        ev.BacktestFinished(job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, result=doc)
    )


def unknown_version(s: Services, agent: str, version: int | None) -> str:
    """Why ``agent[@vN]`` is not there: no such agent, or no such version of one."""
    latest = s.registry.get_version(agent, None) if version else None
    if latest is not None:
        return f"{agent} has no version {version} (its latest is v{latest.version})"
    return f"no agent {agent}: upload it first"


def _date(text: Any) -> date | None:
    return date.fromisoformat(text) if text else None


def _progress_reporter(
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
