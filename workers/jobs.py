"""Job functions: what workers run. They return (and send) Events, never text.

RQ imports these by dotted path in the worker; the worker's composition root calls
:func:`configure` with the adapters once. An agent's own failure (invalid code, an
exception in its strategy, a timeout) is news for its author and becomes a failure event:
the job itself succeeds and is never retried. Only infrastructure failures raise, and RQ
retries those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import events as ev
from workers.payloads import ErrorDoc
from workers.ports import (
    ArtifactStore,
    BacktestRunner,
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
    runs_dir: Path
    policy: Policy = DEFAULT_POLICY
    progress_every_s: float = 2.0
    meta_sink: Callable[[dict[str, Any]], None] | None = field(default=None)
    cluster: PaperCluster | None = None  # None: this backend has no paper trading yet


_services: Services | None = None


def configure(services: Services) -> None:
    global _services
    _services = services


def services() -> Services:
    if _services is None:
        raise RuntimeError("workers.jobs is not configured: the worker must call configure()")
    return _services


def emit(event: ev.Event) -> ev.Event:
    """Send ``event`` to the user (through the configured notifier) and return it."""
    services().notifier.send(event)
    return event


# --------------------------------------------------------------------- uploads
def register_agent(
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
    s = services()
    report = validate_source(source, filename=f"{name}.py", policy=s.policy, strategy=strategy)
    route = dict(reply_to or {})
    if not report.ok:
        return emit(
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
    return emit(
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
    *,
    job_id: str,
    run_id: str,
    owner: str,
    agent: str,
    version: int | None = None,
    parameters: dict[str, Any] | None = None,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Backtest a registered agent version in the sandbox; the result is stored and sent."""
    from runtime.backtest import BacktestRequest

    s = services()
    route = dict(reply_to or {})
    params = dict(parameters or {})
    found = s.registry.get_version(agent, version)
    if found is None:
        error: ErrorDoc = {
            "kind": "validation",
            "message": unknown_version(s, agent, version),
            "hint": "Upload the agent file, then run the backtest again.",
            "line": None,
        }
        return emit(
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
    work = s.runs_dir / run_id
    work.mkdir(parents=True, exist_ok=True)
    agent_file = work / f"{agent}.py"
    agent_file.write_bytes(s.artifacts.get(found.sha256))
    req = BacktestRequest(
        agent_file=agent_file,
        run_id=run_id,
        symbols=tuple(params.get("symbols") or ("SPY",)),
        start=_date(params.get("start")),
        end=_date(params.get("end")),
        cash=float(params.get("cash") or 10_000.0),
        commission=float(params.get("commission") or 0.0),
        # the class chosen when this version was registered, unless the run names one
        strategy=params.get("strategy") or found.report.get("strategy") or None,
        agent_id=agent,
        agent_version=str(found.version),
        user_id=owner,
        chart_path=work / "chart.png",
    )
    doc = s.runner.run(req, work, _progress_reporter(s, job_id, owner, route, run_id))
    doc["agent_version"] = found.version
    chart = Path(doc["chart"]) if doc.get("chart") else None
    if chart is not None and chart.is_file():  # front-ends on other hosts fetch it from here
        doc["chart_artifact"] = s.artifacts.put(chart.read_bytes(), kind="chart")
    if doc.get("error"):
        s.registry.update_run(run_id, status=RunStatus.FAILED, error=doc["error"], result=doc)
        return emit(
            ev.BacktestFailed(
                job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, error=doc["error"]
            )
        )
    s.registry.update_run(run_id, status=RunStatus.FINISHED, result=doc)
    return emit(
        ev.BacktestFinished(job_id=job_id, user_id=owner, reply_to=route, run_id=run_id, result=doc)
    )


def unknown_version(s: Services, agent: str, version: int | None) -> str:
    """Why ``agent[@vN]`` is not there: no such agent, or no such version of one."""
    latest = s.registry.get_version(agent, None) if version else None
    if latest is not None:
        return f"{agent} has no version {version} (its latest is v{latest.version})"
    return f"no agent {agent}: upload it first"


def _date(text: Any) -> Any:
    from datetime import date

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
            emit(
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

    s = services()
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
        return emit(ev.BacktestFailed(run_id=run_id, error=error, **common))
    return emit(
        ev.JobFailed(
            work=work,
            error=error,
            retrying=attempts_left > 0,
            attempts_left=attempts_left,
            **common,
        )
    )


def ping() -> float:
    """A job that does nothing: measures the queue itself (enqueue-to-start latency)."""
    return time.time()
