"""In-memory fakes of our ports (STYLE.md 6), held to the same contract tests as the adapters."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workers.events import Event
from workers.ports import (
    ACTING,
    Agent,
    AgentVersion,
    ArtifactStore,
    BacktestSpec,
    Delivery,
    FmelStore,
    NotFound,
    PaperConflict,
    PaperSession,
    PaperSpec,
    Run,
    RunStatus,
    SessionStatus,
    check_kind,
    check_sha256,
)

if TYPE_CHECKING:
    from workers.collect import Record
    from workers.payloads import ErrorDoc, ResultDoc


class InMemoryArtifactStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.kinds: dict[str, str] = {}

    def put(self, data: bytes, *, kind: str) -> str:
        check_kind(kind)
        sha256 = hashlib.sha256(data).hexdigest()
        self.objects[sha256] = bytes(data)
        self.kinds.setdefault(sha256, kind)
        return sha256

    def get(self, sha256: str) -> bytes:
        found = self.objects.get(check_sha256(sha256))
        if found is None:
            raise NotFound(sha256)
        return found

    def exists(self, sha256: str) -> bool:
        return check_sha256(sha256) in self.objects

    def path_hint(self, sha256: str) -> str:
        return f"memory://{check_sha256(sha256)}"


def _json_copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a JSON column gives back, with the same refusals (NaN, odd types) as SQLite's."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(doc, allow_nan=False))
    except TypeError as exc:
        raise ValueError(f"not JSON-encodable: {exc}") from exc
    return copied


class InMemoryRegistry:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.agents: dict[str, Agent] = {}
        self.versions: dict[tuple[str, int], AgentVersion] = {}
        self.runs: dict[str, Run] = {}  # in creation order
        self.digests: dict[str, float] = {}  # channel -> end of its last digest

    def add_version(
        self, *, owner: str, name: str, sha256: str, report: dict[str, Any]
    ) -> AgentVersion:
        report = _json_copy(report)
        agent = self.agents.get(name)
        if agent is not None and self.versions[name, agent.latest_version].sha256 == sha256:
            return self.versions[name, agent.latest_version]
        now = self._clock()
        number = 1 if agent is None else agent.latest_version + 1
        if agent is None:
            agent = Agent(name=name, owner=owner, created_at=now, latest_version=number)
        self.agents[name] = dataclasses.replace(agent, latest_version=number)
        version = AgentVersion(
            name=name, version=number, sha256=sha256, owner=owner, report=report, created_at=now
        )
        self.versions[name, number] = version
        return version

    def get_agent(self, name: str) -> Agent | None:
        return self.agents.get(name)

    def list_agents(self, owner: str | None = None) -> list[Agent]:
        found = [a for a in self.agents.values() if owner is None or a.owner == owner]
        return sorted(found, key=lambda a: a.name)

    def get_version(self, name: str, version: int | None = None) -> AgentVersion | None:
        if version is None:
            agent = self.agents.get(name)
            if agent is None:
                return None
            version = agent.latest_version
        return self.versions.get((name, version))

    def create_run(
        self,
        *,
        run_id: str,
        agent: str,
        version: int,
        owner: str,
        kind: str,
        parameters: Mapping[str, Any],
        channel: str | None = None,
    ) -> Run:
        parameters = _json_copy(parameters)
        if (agent, version) not in self.versions:
            raise NotFound(f"no agent version {agent}@v{version}")
        if run_id in self.runs:
            raise ValueError(f"run {run_id!r} already exists")
        now = self._clock()
        run = Run(
            run_id=run_id, agent=agent, version=version, owner=owner, kind=kind,
            parameters=parameters, status=RunStatus.QUEUED, result=None, error=None,
            created_at=now, updated_at=now, channel=channel,
        )  # fmt: skip
        self.runs[run_id] = run
        return run

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> Run:
        new = RunStatus(status)
        result = None if result is None else _json_copy(result)
        error = None if error is None else _json_copy(error)
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id!r}")
        run = self.runs[run_id]
        run.status.check_transition(new)
        run = dataclasses.replace(
            run,
            status=new,
            result=run.result if result is None else result,
            error=run.error if error is None else error,
            updated_at=self._clock(),
        )
        self.runs[run_id] = run
        return run

    def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    def list_runs(
        self,
        agent: str | None = None,
        limit: int = 20,
        *,
        since: float | None = None,
        channel: str | None = None,
    ) -> list[Run]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        found = [
            r
            for r in self.runs.values()
            if (agent is None or r.agent == agent)
            and (since is None or r.updated_at >= since)
            and (channel is None or r.channel == channel)
        ]
        newest_first = sorted(reversed(found), key=lambda r: r.created_at, reverse=True)
        return newest_first[:limit]

    def last_digest(self, channel: str) -> float | None:
        return self.digests.get(channel)

    def mark_digest(self, channel: str, at: float) -> None:
        self.digests[channel] = max(float(at), self.digests.get(channel, float(at)))


class InMemoryPaperCluster:
    """``PaperCluster`` as a dict: a session is ``starting`` when started and ``running``
    from the next status on (a real one is running once its process is up), then stays as
    the test sets it. ``set_health`` and ``crash`` stand in for what a real session does."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.sessions: dict[str, PaperSession] = {}
        self.specs: dict[str, PaperSpec] = {}
        self.lines: dict[str, list[str]] = {}
        self._next_pid = 1000

    def start(self, spec: PaperSpec) -> PaperSession:
        current = self.sessions.get(spec.agent)
        if current is not None and current.status is not SessionStatus.STOPPED:
            raise PaperConflict(f"paper-{spec.agent} is {current.status} (run {current.run_id})")
        self._next_pid += 1
        session = PaperSession(
            agent=spec.agent, owner=spec.owner, status=SessionStatus.STARTING,
            run_id=spec.run_id, pid=self._next_pid, restarts=0,
            health_url=f"memory://paper-{spec.agent}/health", health=None,
            started_at=self._clock(), stopped_at=None,
            parameters={"symbols": list(spec.symbols), "cash": spec.cash, "feed": spec.feed,
                        "start": spec.start, "bar_seconds": spec.bar_seconds},
        )  # fmt: skip
        self.sessions[spec.agent] = session
        self.specs[spec.agent] = spec
        self.lines.setdefault(spec.agent, []).append(f"started run {spec.run_id}")
        return session

    def stop(self, agent: str) -> PaperSession:
        session = self._known(agent)
        if session.status is SessionStatus.STOPPED:
            return session
        session = dataclasses.replace(
            session, status=SessionStatus.STOPPED, pid=None, stopped_at=self._clock()
        )
        self.sessions[agent] = session
        self.lines[agent].append(f"stopped run {session.run_id}")
        return session

    def status(self, agent: str | None = None) -> list[PaperSession]:
        for name, session in self.sessions.items():
            if session.status is SessionStatus.STARTING:
                self.sessions[name] = dataclasses.replace(session, status=SessionStatus.RUNNING)
        return [s for name, s in sorted(self.sessions.items()) if agent in (None, name)]

    def logs(self, agent: str, tail: int = 100) -> str:
        self._known(agent)
        lines = self.lines[agent]
        return "\n".join(lines[max(0, len(lines) - tail) :])

    def _known(self, agent: str) -> PaperSession:
        if agent not in self.sessions:
            raise NotFound(agent)
        return self.sessions[agent]

    def set_health(self, agent: str, health: dict[str, Any]) -> None:
        self.sessions[agent] = dataclasses.replace(self.sessions[agent], health=health)

    def crash(self, agent: str) -> None:
        self.sessions[agent] = dataclasses.replace(
            self.sessions[agent], status=SessionStatus.CRASHED, pid=None, restarts=3
        )


class InMemoryFmelStore:
    """The FMEL store in memory: each run's rows and summary as the record holds them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []

    def ingest(self, run_id: str, record: Any) -> None:
        self.rows[run_id] = record.decisions.sort_by("bar_number").to_pylist()
        self.summaries[run_id] = dict(record.summary_row)
        if run_id in self._order:
            self._order.remove(run_id)
        self._order.append(run_id)

    def summary(self, run_id: str) -> dict[str, Any] | None:
        found = self.summaries.get(run_id)
        return None if found is None else dict(found)

    def decisions(
        self, run_id: str, *, last: int | None = None, acting_only: bool = False
    ) -> list[dict[str, Any]]:
        rows = [r for r in self.rows.get(run_id, ()) if not acting_only or r["action"] in ACTING]
        return rows[max(0, len(rows) - last) :] if last is not None else rows

    def verify(self, run_id: str) -> Any:
        from runtime.fmel.store import verify_rows

        return verify_rows(run_id, self.decisions(run_id), self.summary(run_id))

    def recorded(self) -> list[str]:
        return list(reversed(self._order))


class InMemoryMarketData:
    """Bars held in memory, by symbol (``runtime.prepared.PreparedSymbol``), windowed on ask."""

    def __init__(self, bars: Sequence[Any]) -> None:
        self._bars = {b.symbol: b for b in bars}

    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def bars(self, symbols: Sequence[str], start: Any = None, end: Any = None) -> list[Any]:
        import numpy as np

        from runtime.data import DataError

        missing = [s for s in symbols if s.upper() not in self._bars]
        if missing:
            raise DataError(f"no data for symbol {missing[0]!r} (symbols: {', '.join(self._bars)})")
        out = []
        for symbol in dict.fromkeys(s.upper() for s in symbols):
            b = self._bars[symbol]
            day = b.dates.astype("datetime64[D]")
            keep = np.ones(day.size, dtype=bool)
            if start is not None:
                keep &= day >= np.datetime64(start, "D")
            if end is not None:
                keep &= day <= np.datetime64(end, "D")
            if not keep.any():
                raise DataError(f"no bars for {symbol} between {start} and {end}")
            out.append(dataclasses.replace(b, dates=b.dates[keep], values=b.values[keep]))
        return out


class InMemoryEventLog:
    """``EventLog`` as the Redis one keeps it: each job's list, one log of entries (key ->
    event JSON) that consumer groups read, each group's last delivered key and its pending
    entries (key -> consumer, when delivered), and the parked events. ``take`` never
    blocks; ``send_raw`` appends an entry that cannot be read, as junk on the stream is."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.jobs: dict[str, list[str]] = {}
        self.log: dict[str, str] = {}  # in key order
        self.groups: dict[str, str] = {}  # group -> last key delivered ("": none yet)
        self.pending: dict[str, dict[str, tuple[str, float]]] = {}  # group -> key -> ...
        self.parked: list[str] = []
        self._last = 0

    def send(self, event: Event) -> None:
        data = event.to_json()
        self.jobs.setdefault(event.job_id, []).append(data)
        self.send_raw(data)

    def send_raw(self, text: str) -> str:
        """Append ``text`` to the log as it is (junk, a newer worker's kind); its key."""
        self._last += 1
        key = f"{self._last:015d}-0"  # increasing as strings and as numbers
        self.log[key] = text
        return key

    def events(self, job_id: str, start: int = 0) -> list[Event]:
        return [Event.from_json(raw) for raw in self.jobs.get(job_id, [])[start:]]

    def open_group(self, group: str) -> None:
        self.groups.setdefault(group, "")
        self.pending.setdefault(group, {})

    def take(self, group: str, consumer: str, *, count: int, block_s: float) -> list[Delivery]:
        if group not in self.groups:
            raise NotFound(f"no consumer group {group!r}")
        keys = [k for k in self.log if k > self.groups[group]][: max(count, 0)]
        if keys:
            self.groups[group] = keys[-1]
        now = self._clock()
        for key in keys:
            self.pending[group][key] = (consumer, now)
        return [self._delivery(key) for key in keys]

    def reclaim(self, group: str, consumer: str, *, idle_s: float, count: int) -> list[Delivery]:
        if group not in self.groups:
            raise NotFound(f"no consumer group {group!r}")
        now = self._clock()
        pending = self.pending[group]
        idle = [k for k, (_, at) in pending.items() if now - at >= idle_s][: max(count, 0)]
        for key in idle:
            pending[key] = (consumer, now)
        return [self._delivery(key) for key in idle]

    def ack(self, group: str, key: str) -> None:
        self.pending.get(group, {}).pop(key, None)

    def park(self, event: Event) -> None:
        self.parked.append(event.to_json())

    def unpark(self) -> int:
        moved, self.parked = self.parked, []
        for data in moved:
            self.send_raw(data)
        return len(moved)

    def _delivery(self, key: str) -> Delivery:
        try:
            event: Event | None = Event.from_json(self.log[key])
        except (ValueError, AttributeError, TypeError):  # a newer worker's kind, or junk
            event = None
        return Delivery(key, event)


# a 1x1 greyscale PNG: what the fake runner stores as a run's chart
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


class InMemoryRunner:
    """``BacktestRunner`` without running code: it fetches the spec's code by digest (an
    unknown one raises ``NotFound``), reports progress, stores a tiny chart and returns the
    spec's document with the canned outcome: ``error`` (the run failed) or success, whose
    decisions are ``record`` (ingested under the spec's run id when both it and ``fmel``
    are given)."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        fmel: FmelStore | None = None,
        *,
        error: ErrorDoc | None = None,
        record: Record | None = None,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        self.artifacts, self.fmel, self.record = artifacts, fmel, record
        self.error, self.results = error, dict(results or {"total_trades": 0})
        self.specs: list[BacktestSpec] = []

    def run(
        self, spec: BacktestSpec, on_progress: Callable[[int, int | None], None] | None = None
    ) -> ResultDoc:
        self.specs.append(spec)
        code = self.artifacts.get(spec.agent_sha256)
        for done in (50, 100):
            if on_progress is not None:
                on_progress(done, 100)
        ok = self.error is None
        summary = None
        if ok and self.record is not None:
            summary = dict(self.record.summary_row)
            if self.fmel is not None:
                self.fmel.ingest(spec.run_id, self.record)
        return {
            "run_id": spec.run_id,
            "agent_id": spec.agent,
            "agent_sha256": hashlib.sha256(code).hexdigest(),
            "parameters": {
                "symbols": list(spec.symbols),
                "start_date": spec.start.isoformat() if spec.start else None,
                "end_date": spec.end.isoformat() if spec.end else None,
                "initial_cash": spec.cash,
                "timeframe": None,
                "commission": spec.commission,
            },
            "strategy": {"name": spec.strategy or spec.agent, "params": {}} if ok else None,
            "results": dict(self.results) if ok else None,
            "data_checks": [],
            "warnings": [],
            "fmel": summary,
            "chart": None,
            "chart_artifact": self.artifacts.put(TINY_PNG, kind="chart") if ok else None,
            "monitoring": None,
            "error": None if self.error is None else self.error.copy(),
            "sandbox": None,
        }
