"""The front desk: where every front-end hands in work and follows it to its end.

A front-end (the Slack app, ``tradeops shell``, ``tradeops demo``, ``tradeops backtest``)
turns what a user did into a call here: an upload, a parsed command. The desk enqueues the
job (or, from the command line with no worker running, runs the same job function in this
process) and gives back a :class:`Ticket`. ``follow`` then delivers the job's events, as
the worker sends them, to a callback, until the job's final event.

Quick reads (agents, runs, a run's FMEL rows) are answered here directly: they are a
lookup, not work.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings import Settings
from runtime.defaults import DEFAULT_TIMEOUT_S
from workers import events as ev
from workers import policy
from workers.ports import JobState, job_id_for

if TYPE_CHECKING:
    import redis

    from infra.bootstrap import Platform
    from workers.jobs import Services
    from workers.payloads import RunParameters

OnEvent = Callable[[ev.Event], None]

# queue, timeout (s) and attempts for each kind of work
WORK: dict[str, tuple[str, str, int]] = {
    "register_agent": ("validate", "workers.jobs.register_agent", 60),
    "run_backtest": ("backtest", "workers.jobs.run_backtest", DEFAULT_TIMEOUT_S + 120),
    "paper_start": ("paper", "workers.control.paper_start", 120),
    "paper_stop": ("paper", "workers.control.paper_stop", 120),
    "paper_status": ("paper", "workers.control.paper_status", 60),
    "digest": ("digest", "workers.control.digest", 120),
    # the sweep's start hands out one job per combination, then a collector, on this queue
    "sweep_start": ("backtest", "workers.sweep.sweep_start", 300),
    "parity": ("backtest", "workers.parity.run_parity", 2 * DEFAULT_TIMEOUT_S + 120),
}
WAITING_NOTE_S = 5.0  # say that no worker has taken the job after this long
POLL_S = 0.02


class DeskError(RuntimeError):
    """A request the desk cannot take (e.g. the queue is unreachable): one line for the user."""


@dataclass(frozen=True)
class Ticket:
    job_id: str
    work: str  # a key of WORK
    kwargs: dict[str, Any]
    inline: bool  # no worker: follow() runs the job function in this process
    duplicate: bool = False  # the same request was already taken: this follows that job
    run_id: str | None = None


@dataclass
class Desk:
    settings: Settings
    user: str
    use_queue: bool | None = None  # None: the queue when a worker is alive, else inline
    roles: policy.Roles | None = None  # None: no checks (this machine's own user)
    # the ports (from ``infra.bootstrap``); None: this desk makes them from ``settings``
    platform: Platform | None = field(default=None, repr=False)
    _services: Services | None = field(default=None, init=False, repr=False)
    _on_event: OnEvent | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.platform is None:
            from infra.bootstrap import bootstrap

            self.platform = bootstrap(self.settings)

    @property
    def ports(self) -> Platform:
        assert self.platform is not None
        return self.platform

    def with_user(self, user: str) -> Desk:
        """The same desk (the same ports, one registry) for another user."""
        other = Desk(self.settings, user, use_queue=self.use_queue, roles=self.roles,
                     platform=self.platform)  # fmt: skip
        other._services = self._local_services()
        return other

    def authorize(self, work: str, agent: str | None) -> None:
        """Raise ``policy.Refused`` now if this user may not have ``work`` done (front-ends
        ask before acknowledging, so a refusal is the answer and nothing is queued)."""
        rules = {"register_agent": policy.check_upload, "run_backtest": policy.check_run,
                 "paper_start": policy.check_paper, "paper_stop": policy.check_paper}  # fmt: skip
        if work in rules:
            self._check(rules[work], agent)

    def _check(self, rule: Any, agent: str | None) -> None:
        """Raise ``policy.Refused`` (one line) unless ``rule`` allows it."""
        if self.roles is None:
            return
        found = self.ports.registry.get_agent(agent) if agent else None
        if agent and found is None and rule is not policy.check_upload:
            # a mistake answers only its sender: no thread is opened, nothing is queued
            raise policy.Refused(f"no agent {agent}: upload it first (see /agents)")
        rule(self.roles, self.user, found)

    # ------------------------------------------------------------------ the queue
    @property
    def conn(self) -> redis.Redis:
        """The Redis behind the queue: front-ends keep their own small state there (which
        Slack events were seen, which message shows a job's progress)."""
        return self.ports.redis

    def queue_running(self) -> bool:
        """The queue is there to talk to (REDIS_URL, or this home's embedded Redis is up)."""
        return self.ports.queue.reachable()

    def workers_on(self, queue: str) -> int:
        """How many live workers take jobs from ``queue`` (0 when the queue is not up)."""
        return self.ports.queue.workers(queue)

    def _inline(self, queue: str) -> bool:
        if self.use_queue is None:
            return self.workers_on(queue) == 0
        return not self.use_queue

    # ------------------------------------------------------------------ taking work
    def upload(
        self,
        *,
        name: str,
        source: bytes,
        request_id: str | None = None,
        reply_to: dict[str, str] | None = None,
        strategy: str | None = None,
    ) -> Ticket:
        """A file to validate and register as agent ``name``'s next version (``strategy``:
        the class to run, in a file with several)."""
        self.authorize("register_agent", name)
        kwargs = {"owner": self.user, "name": name, "source": source, "reply_to": reply_to or {}}
        if strategy:
            kwargs["strategy"] = strategy
        return self._take("register_agent", kwargs, request_id)

    def backtest(
        self,
        *,
        agent: str,
        version: int | None = None,
        parameters: RunParameters | None = None,
        request_id: str | None = None,
        reply_to: dict[str, str] | None = None,
    ) -> Ticket:
        from runtime.fmel import new_run_id

        self.authorize("run_backtest", agent)
        run_id = new_run_id()
        params = dict(parameters or {})
        kwargs: dict[str, Any] = {
            "run_id": run_id,
            "owner": self.user,
            "agent": agent,
            "version": version,
            "parameters": params,
            "reply_to": reply_to or {},
        }
        ticket = self._take("run_backtest", kwargs, request_id, run_id=run_id)
        if not ticket.inline and not ticket.duplicate:
            self._announce(ticket, agent, version, params)
        return ticket

    def sweep(
        self,
        *,
        agent: str,
        version: int | None = None,
        grid: Mapping[str, str],
        parameters: RunParameters | None = None,
        rank: str | None = None,
        oos: float | None = None,
        request_id: str | None = None,
        reply_to: dict[str, str] | None = None,
    ) -> Ticket:
        """A parameter sweep: ``grid`` maps each parameter to its values as typed
        (``5..20/5``, ``20,40,60``); its combinations run as backtests on every worker."""
        from runtime.fmel import new_run_id

        self.authorize("run_backtest", agent)
        sweep_id = "sweep-" + new_run_id()
        kwargs: dict[str, Any] = {
            "sweep_id": sweep_id, "owner": self.user, "agent": agent, "version": version,
            "grid": dict(grid), "parameters": dict(parameters or {}),
            "rank": rank or "sharpe", "oos": oos, "reply_to": reply_to or {},
        }  # fmt: skip
        return self._take("sweep_start", kwargs, request_id, run_id=sweep_id)

    def parity(
        self,
        *,
        agent: str,
        version: int | None = None,
        parameters: RunParameters | None = None,
        request_id: str | None = None,
        reply_to: dict[str, str] | None = None,
    ) -> Ticket:
        """A backtest and the paper runtime's replay of the same bars, compared."""
        from runtime.fmel import new_run_id

        self.authorize("run_backtest", agent)
        parity_id = "parity-" + new_run_id()
        kwargs: dict[str, Any] = {
            "parity_id": parity_id, "owner": self.user, "agent": agent, "version": version,
            "parameters": dict(parameters or {}), "reply_to": reply_to or {},
        }  # fmt: skip
        return self._take("parity", kwargs, request_id, run_id=parity_id)

    def paper(self, work: str, *, request_id: str | None = None, **kwargs: Any) -> Ticket:
        """``paper_start`` / ``paper_stop`` / ``paper_status`` with the job's own arguments."""
        if work not in ("paper_start", "paper_stop", "paper_status"):
            raise ValueError(work)
        self.authorize(work, kwargs.get("agent"))
        return self._take(work, {"owner": self.user, **kwargs}, request_id)

    def digest(
        self, *, channel: str, request_id: str | None = None, reply_to: dict[str, str] | None = None
    ) -> Ticket:
        return self._take("digest", {"channel": channel, "reply_to": reply_to or {}}, request_id)

    def _take(
        self,
        work: str,
        kwargs: dict[str, Any],
        request_id: str | None,
        run_id: str | None = None,
    ) -> Ticket:
        queue, func, timeout_s = WORK[work]
        job_id = job_id_for(queue, work, request_id or uuid.uuid4().hex)
        kwargs = {"job_id": job_id, **kwargs}
        if self._inline(queue):
            return Ticket(job_id, work, kwargs, inline=True, run_id=run_id)
        done = self.ports.queue.submit(
            queue, func, job_id=job_id, kwargs=kwargs, timeout_s=timeout_s
        )
        if done.duplicate:  # follow the job that is already there
            kwargs = done.kwargs
            run_id = kwargs.get("run_id", run_id)
        return Ticket(job_id, work, kwargs, inline=False, duplicate=done.duplicate, run_id=run_id)

    def _announce(
        self, ticket: Ticket, agent: str, version: int | None, parameters: dict[str, Any]
    ) -> None:
        """The 'queued' news, with how many jobs are ahead, for every front-end to show."""
        ahead = max(0, self.ports.queue.depth("backtest") - 1)
        self.ports.events.send(
            ev.BacktestQueued(
                job_id=ticket.job_id,
                user_id=self.user,
                reply_to=ticket.kwargs.get("reply_to") or {},
                run_id=ticket.run_id or "",
                agent_id=agent,
                version=version or 0,
                parameters=parameters,
                position=ahead,
            )
        )

    # ------------------------------------------------------------------ following
    def follow(
        self,
        ticket: Ticket,
        on_event: OnEvent,
        *,
        timeout_s: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> ev.Event:
        """Deliver the job's events to ``on_event`` as they come; return the final one."""
        if ticket.inline:
            return self._run_here(ticket, on_event)
        return self._watch(ticket, on_event, timeout_s, on_wait)

    def _run_here(self, ticket: Ticket, on_event: OnEvent) -> ev.Event:
        import importlib

        self._on_event = on_event
        _, func, _ = WORK[ticket.work]
        module, name = func.rsplit(".", 1)
        fn = getattr(importlib.import_module(module), name)
        result: ev.Event = fn(self._local_services(), **ticket.kwargs)
        return result

    def _local_services(self) -> Services:
        if self._services is None:
            desk = self

            class Forward:
                def send(self, event: ev.Event) -> None:
                    if desk._on_event is not None:
                        desk._on_event(event)

            self._services = self.ports.services(notifier=Forward())
        return self._services

    def _watch(
        self,
        ticket: Ticket,
        on_event: OnEvent,
        timeout_s: float | None,
        on_wait: Callable[[str], None] | None,
    ) -> ev.Event:
        log = self.ports.events
        seen = 0
        t0 = time.monotonic()
        next_check = t0 + 1.0
        waiting = _Waiting(on_wait)
        while True:
            for event in log.events(ticket.job_id, start=seen):
                seen += 1
                on_event(event)
                if event.final:
                    return event
            now = time.monotonic()
            if timeout_s is not None and now - t0 > timeout_s:
                raise DeskError(f"no result after {timeout_s:g} s (job {ticket.job_id})")
            if now >= next_check:
                next_check = now + 1.0
                self._check_job(ticket, now - t0, waiting)
            time.sleep(POLL_S)

    def _check_job(self, ticket: Ticket, waited_s: float, waiting: _Waiting) -> None:
        """Now and then: is anyone working on it, and is the job still alive?"""
        queue = WORK[ticket.work][0]
        state = self.ports.queue.state(ticket.job_id)
        if state is JobState.GONE:
            raise DeskError(f"job {ticket.job_id} is gone from the queue")
        if state is JobState.STARTED:
            # Find a job whose worker died even when no other worker is left to: its
            # failure callback then sends the news this loop waits for.
            self.ports.queue.sweep(queue)
        elif state is JobState.QUEUED and waited_s > WAITING_NOTE_S and not waiting.told:
            if self.workers_on(queue) == 0:
                waiting.tell(f"waiting for a worker on the {queue} queue: "
                             "start one with `tradeops worker`")  # fmt: skip
        elif state is JobState.FAILED:
            waiting.ended += 1
            if waiting.ended > 3:  # its failure news would have arrived by now
                raise DeskError(f"job {ticket.job_id} failed without a result")

    # ------------------------------------------------------------------ quick reads
    def chart_file(self, doc: Mapping[str, Any], path: Path | None = None) -> Path | None:
        """The run's chart (a reference into the artifact store) as a file on this machine,
        for a console reader to open: ``path``, by default in the home's run folder."""
        sha = doc.get("chart_artifact")
        if not sha:
            return None
        where = path or self.settings.runs_dir / str(doc["run_id"]) / "chart.png"
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(self.ports.artifacts.get(str(sha)))
        return where.resolve()

    def services(self) -> Services:
        return self._local_services()

    def registry(self) -> Any:
        return self.ports.registry

    def artifacts(self) -> Any:
        return self.ports.artifacts

    def agents(self) -> list[Any]:
        return self.ports.registry.list_agents()

    def runs(self, agent: str | None = None, limit: int = 15) -> list[Any]:
        return self.ports.registry.list_runs(agent, limit=limit)

    def fmel(
        self, target: str, *, last: int = 10, verify: bool = False, trades: bool = False
    ) -> FmelReport:
        """A run's FMEL summary, its last ``last`` decisions that placed orders or got
        fills (with the state behind each), and the chain check when asked; with ``trades``,
        the run's closed trades (from its stored result) instead of decisions. ``target`` is
        a run id, a unique prefix of one, or an agent (its latest run with a record)."""
        run_id = self.fmel_run_id(target)
        registry, fmel = self.ports.registry, self.ports.fmel
        run = registry.get_run(run_id) if self.roles is not None or trades else None
        if self.roles is not None:  # a run's decisions are its agent owner's (and admins')
            if run is None and not self.roles.is_admin(self.user):
                raise policy.Refused(
                    f"run {run_id} is not in the registry: only admins may read it"
                )
            if run is not None:
                self._check(policy.check_run, run.agent)
        listed: list[dict[str, Any]] | None = None
        closed: int | None = None
        if trades:
            results = ((run.result if run is not None else None) or {}).get("results") or {}
            if "trades" not in results:
                raise DeskError(
                    f"run {run_id} has no list of trades (a failed run, a paper session, "
                    "or a backtest from before tradeops kept one)"
                )
            listed, closed = results["trades"], results.get("trades_closed")
        acting = fmel.decisions(run_id, last=last, acting_only=True)
        return FmelReport(
            run_id=run_id,
            summary=fmel.summary(run_id),
            rows=acting or fmel.decisions(run_id, last=last),
            trades_only=bool(acting),
            verification=fmel.verify(run_id).to_dict() if verify else None,
            trades=listed,
            trades_closed=closed,
        )

    def fmel_run_id(self, target: str) -> str:
        """The run ``target`` names: an agent (its latest recorded run), a run id or its
        unambiguous start."""
        recorded = set(self.ports.fmel.recorded())
        registry = self.ports.registry
        if registry.get_agent(target) is not None:
            runs = registry.list_runs(target, limit=50)
            for run in runs:
                if run.run_id in recorded:
                    return run.run_id
            if runs:  # it ran, and recorded nothing: say how its latest run ended
                last = runs[0]
                why = f": {(last.error or {}).get('message', '')}" if last.error else ""
                raise DeskError(f"agent {target} has no recorded decisions: its latest run "
                                f"{last.run_id} is {last.status.value}{why}"[:400])  # fmt: skip
            raise DeskError(f"agent {target} has no recorded run yet: /backtest {target} first")
        if target in recorded:
            return target
        matches = sorted(r for r in recorded if r.startswith(target))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise DeskError(f"run id {target!r} is ambiguous: {', '.join(matches[:3])}…")
        raise DeskError(f"no agent or run {target!r}")


@dataclass
class _Waiting:
    on_wait: Callable[[str], None] | None
    told: bool = False
    ended: int = 0

    def tell(self, text: str) -> None:
        self.told = True
        if self.on_wait is not None:
            self.on_wait(text)


@dataclass(frozen=True)
class FmelReport:
    run_id: str
    summary: dict[str, Any] | None
    rows: list[dict[str, Any]]  # the last decisions that ordered or traded (else the last)
    verification: dict[str, Any] | None
    trades_only: bool = False
    # `/fmel RUN trades`: the run's closed trades (its result's list, the last MAX_TRADES of
    # them) and how many it closed in all; None when not asked
    trades: list[dict[str, Any]] | None = None
    trades_closed: int | None = None
