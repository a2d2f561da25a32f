"""The storage ports: where agent code, outputs and bookkeeping live (DESIGN.md section 2).

The application core talks only to these Protocols; ``infra/`` implements them (local files
and SQLite, Cloud Storage and Firebase), ``tests/fakes.py`` holds in-memory versions, and one
contract suite per port (``tests/contract``) runs against each, so they all behave alike.

The dataclasses here are the application's own records, not any backend's rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.fmel.store import Verification
    from runtime.prepared import PreparedSymbol
    from workers.collect import Record
    from workers.events import Event
    from workers.payloads import ResultDoc

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ARTIFACT_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
AGENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def check_sha256(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits, else ``ValueError``.

    Adapters build keys and paths from it, so anything else (``../x``, ``*``) is refused
    before it gets near a file system or a database path.
    """
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest (64 lowercase hex digits): {sha256!r}")
    return sha256


def check_kind(kind: str) -> str:
    """``kind`` if it is a short lowercase word (``agent``, ``run-output``), else ``ValueError``."""
    if not isinstance(kind, str) or not ARTIFACT_KIND.fullmatch(kind):
        raise ValueError(f"artifact kind must match {ARTIFACT_KIND.pattern}: {kind!r}")
    return kind


# What a port raises says what happens next (freqtrade's exceptions.py habit):
class NotFound(KeyError):
    """What was asked for does not exist: the caller tells whoever asked. (A ``KeyError``,
    so a caller written for the builtin still catches it.)"""

    def __str__(self) -> str:  # KeyError's own str() quotes its argument
        return str(self.args[0]) if self.args else "not found"


class Temporary(RuntimeError):
    """The backend failed in a way that may pass (a timeout, a 503, a lost connection):
    the job is retried while it has attempts left."""


class NeedsOperator(RuntimeError):
    """The backend is misconfigured or its data damaged: retrying cannot help. The job is
    not retried; its author is told it is ours to fix, and the operator's log says what."""


class ArtifactCorrupted(NeedsOperator):
    """A stored artifact no longer matches its sha256: an operator must look at the store."""


class ArtifactStore(Protocol):
    """Content-addressed bytes: agent code, charts, run outputs.

    Addressing by sha256 makes writes idempotent (the same upload twice is one object) and
    lets any reader check that what it got back is what was stored.
    """

    def put(self, data: bytes, *, kind: str) -> str:
        """Store ``data`` and return its sha256 hex digest.

        ``kind`` (``"agent"``, ``"chart"``…) says what the bytes are, for operators; it is not
        part of the address.
        """
        ...

    def get(self, sha256: str) -> bytes:
        """The stored bytes; :class:`NotFound` if absent, :class:`ArtifactCorrupted` if
        damaged."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def path_hint(self, sha256: str) -> str:
        """Where the object lives (or would live), for logs and operators."""
        ...


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"

    def check_transition(self, new: RunStatus) -> RunStatus:
        """``new`` if a run may go from this status to it, else ``ValueError``.

        RUNNING -> RUNNING is allowed: a job retried after its worker died starts again.
        FINISHED and FAILED are final, so a late or duplicated message cannot undo an outcome.
        """
        if new not in _NEXT[self]:
            allowed = ", ".join(sorted(_NEXT[self])) or "none: it is final"
            raise ValueError(f"run status cannot go from {self} to {new} (allowed: {allowed})")
        return new


_NEXT: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED}),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
}


@dataclass(frozen=True, kw_only=True)
class Agent:
    name: str
    owner: str  # who registered the first version
    created_at: float  # UTC seconds since the epoch
    latest_version: int


@dataclass(frozen=True, kw_only=True)
class AgentVersion:
    name: str
    version: int  # 1, 2, … per agent
    sha256: str  # the agent's code in the artifact store
    owner: str  # who uploaded this version
    report: dict[str, Any]  # the validation report
    created_at: float


@dataclass(frozen=True, kw_only=True)
class Run:
    run_id: str
    agent: str
    version: int
    owner: str
    kind: str  # "backtest", "paper"…
    parameters: dict[str, Any]
    status: RunStatus
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: float
    updated_at: float
    # the chat channel it was asked from (None: the command line): digests report a
    # channel's own runs
    channel: str | None = None


class Registry(Protocol):
    """Agents, their versions and their runs: the bookkeeping every front-end shows.

    Dict fields must be JSON-encodable (no NaN): they are stored as JSON, and what is read
    back is the JSON round trip (tuples come back as lists).
    """

    def add_version(
        self, *, owner: str, name: str, sha256: str, report: dict[str, Any]
    ) -> AgentVersion:
        """Register ``sha256`` as the next version of agent ``name`` (created on first use).

        Re-uploading the code of the latest version returns that version unchanged, so a
        retried upload does not make a new version. The agent's owner stays the first one.
        """
        ...

    def get_agent(self, name: str) -> Agent | None: ...

    def list_agents(self, owner: str | None = None) -> list[Agent]:
        """Agents by name, only ``owner``'s when given."""
        ...

    def get_version(self, name: str, version: int | None = None) -> AgentVersion | None:
        """One version of an agent; ``None`` asks for the latest."""
        ...

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
        """A new QUEUED run of a registered version, asked from ``channel`` (if a chat's).

        :class:`NotFound` if the agent version does not exist, ``ValueError`` if ``run_id`` is
        taken.
        """
        ...

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> Run:
        """Move a run to ``status``; ``result``/``error`` replace the stored ones when given.

        :class:`NotFound` for an unknown run, ``ValueError`` for a refused transition
        (see ``RunStatus.check_transition``).
        """
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def list_runs(
        self,
        agent: str | None = None,
        limit: int = 20,
        *,
        since: float | None = None,
        channel: str | None = None,
    ) -> list[Run]:
        """The newest runs first (creation order breaks ties), only ``agent``'s when given,
        only those changed (created, started, ended) at or after ``since`` when given (a
        run created before a digest that failed after it belongs in the next digest), only
        those asked from ``channel`` when given."""
        ...

    def last_digest(self, channel: str) -> float | None:
        """When ``channel``'s last digest was cut off (``None``: it never had one).

        Digests report what happened since the previous one, so each channel remembers its
        own, and a digest asked for by hand moves it too.
        """
        ...

    def mark_digest(self, channel: str, at: float) -> None:
        """Record that ``channel``'s digest covered everything up to ``at``.

        The mark never moves back, so an older digest finishing late cannot make the next
        one repeat what was already reported.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class BacktestSpec:
    """One backtest, in ids and values only: any runner (this machine's sandbox, a Cloud
    Build) can take it, fetching the code from the artifact store by its digest."""

    run_id: str
    agent: str
    version: int
    agent_sha256: str  # the agent's code in the artifact store
    owner: str
    symbols: tuple[str, ...]
    start: date | None = None
    end: date | None = None
    cash: float = 10_000.0
    commission: float = 0.0
    strategy: str | None = None  # the class to run, in a file with several
    params: Mapping[str, Any] = field(default_factory=dict)  # the strategy's own parameters
    # "backtest", or "paper": the paper runtime's live feeds and broker over the same bars
    # (a parity check), whose decisions are recorded in mode PAPER
    engine: str = "backtest"
    chart: bool = True  # draw the equity chart (a sweep's combinations and parity runs: no)

    def __post_init__(self) -> None:
        # runners name folders, objects and builds after these: refuse anything else early
        if not RUN_ID.fullmatch(self.run_id):
            raise ValueError(f"not a run id: {self.run_id!r}")
        if not AGENT_NAME.fullmatch(self.agent):
            raise ValueError(f"not an agent name: {self.agent!r}")
        check_sha256(self.agent_sha256)


class BacktestRunner(Protocol):
    """Runs one backtest somewhere walled off (the local sandbox, Cloud Build).

    Always returns the result document; ``error`` is filled when the run failed for any
    reason. Its chart is a reference into the artifact store (``chart_artifact``), its
    decisions are in the FMEL store under the run id. Raises only when the infrastructure
    itself failed (:class:`Temporary`: retried; :class:`NeedsOperator`: not).
    """

    def run(
        self,
        spec: BacktestSpec,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> ResultDoc: ...


class Notifier(Protocol):
    """Delivers events to the people concerned (a Slack thread, the console)."""

    def send(self, event: Event) -> None: ...


# ------------------------------------------------------------------ events and the queue
@dataclass(frozen=True)
class Delivery:
    """One event taken from the log for a consumer group: ``key`` acknowledges it;
    ``event`` is None when the entry cannot be read (junk, or a newer worker's kind)."""

    key: str
    event: Event | None


class EventLog(Notifier, Protocol):
    """Where jobs' events go: each job's own list (a front-end follows the job it asked
    for) and one log that consumer groups read (the Slack bot delivers from it).

    A group sees every event once and acknowledges each; an event not acknowledged (a
    failed post, a consumer that died) is taken again by :meth:`reclaim` after a while.
    """

    def events(self, job_id: str, start: int = 0) -> list[Event]:
        """The job's events from the ``start``-th, oldest first."""
        ...

    def open_group(self, group: str) -> None:
        """Make ``group`` if it is new, reading from the log's start (events sent before its
        first consumer are delivered too)."""
        ...

    def take(self, group: str, consumer: str, *, count: int, block_s: float) -> list[Delivery]:
        """Up to ``count`` events the group has not seen, waiting up to ``block_s``."""
        ...

    def reclaim(
        self, group: str, consumer: str, *, idle_s: float, count: int
    ) -> list[Delivery]:
        """Events taken by the group but not acknowledged for ``idle_s``, now ``consumer``'s."""
        ...

    def ack(self, group: str, key: str) -> None: ...

    def park(self, event: Event) -> None:
        """Set aside an event no consumer could deliver, for an operator (:meth:`unpark`)."""
        ...

    def unpark(self) -> int:
        """Put every parked event back into the log; how many."""
        ...


#: The kinds of work, one queue each: a slow backtest never holds up a validation.
QUEUES = ("validate", "backtest", "paper", "digest")


def job_id_for(kind: str, *identity: str) -> str:
    """A job id from what identifies the request, e.g. Slack's team, channel and event id:
    a retried chat event or a double click gives the same id, so it runs once."""
    digest = hashlib.sha256("\0".join((kind, *identity)).encode()).hexdigest()
    return f"{kind}-{digest[:32]}"


class JobState(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"  # raised, stopped or cancelled: its failure news was sent
    GONE = "gone"  # expired, or never there


@dataclass(frozen=True)
class Submitted:
    job_id: str
    duplicate: bool  # the same request was already taken: nothing new runs
    kwargs: dict[str, Any]  # the job's arguments (a duplicate's are the first request's)


class WorkQueue(Protocol):
    """Jobs by kind of work (``validate``, ``backtest``, ``paper``, ``digest``), taken by
    workers; a job id names one request, so a repeated request is one job."""

    names: tuple[str, ...]

    def reachable(self) -> bool:
        """The queue is there to talk to (without starting anything)."""
        ...

    def submit(
        self,
        queue: str,
        func: str,
        *,
        job_id: str,
        kwargs: dict[str, Any],
        timeout_s: int,
        depends_on: Sequence[str] = (),
    ) -> Submitted:
        """Enqueue ``func`` (a job function's dotted path) once; retried on a platform
        failure while it has attempts left. With ``depends_on`` it runs once each of those
        jobs has ended, however it ended."""
        ...

    def depth(self, queue: str) -> int:
        """Jobs waiting on ``queue``."""
        ...

    def workers(self, queue: str) -> int:
        """Live workers taking jobs from ``queue``."""
        ...

    def state(self, job_id: str) -> JobState: ...

    def sweep(self, queue: str) -> None:
        """Find jobs whose worker died on ``queue``; their failure news is sent."""
        ...


# ------------------------------------------------------------------ paper trading
class SessionStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    CRASHED = "crashed"  # gave up restarting; still holds the agent's slot until stopped


class PaperConflict(RuntimeError):
    """The agent already has a paper session (starting, running or crashed): stop it first."""


@dataclass(frozen=True, kw_only=True)
class PaperSpec:
    """Everything a paper session needs, so the cluster never reads the registry itself."""

    agent: str
    version: int
    sha256: str  # the agent's code in the artifact store
    owner: str
    run_id: str  # the registry's run of kind "paper"; also the FMEL run id
    symbols: tuple[str, ...]
    cash: float
    feed: Literal["replay", "alpaca"] = "replay"
    start: str | None = None  # ISO date the replay feed starts from; None: the data's start
    bar_seconds: float = 60.0  # wall-clock seconds per bar (how fast a replay plays)
    strategy: str | None = None  # the class to run, in a file with several
    params: Mapping[str, Any] = field(default_factory=dict)  # the strategy's own parameters
    # where news of the session goes (a crash, a restart): the thread that started it
    reply_to: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PaperSession:
    agent: str
    owner: str
    status: SessionStatus
    run_id: str
    pid: int | None  # the local supervisor's process; None on Kubernetes
    restarts: int  # times the cluster restarted it after a crash
    health_url: str | None
    # the session's last /health document; "equity" (portfolio value) and "decisions"
    # (FMEL rows so far) are what digests and status read from it
    health: dict[str, Any] | None
    started_at: float
    stopped_at: float | None
    parameters: dict[str, Any]  # symbols, cash, feed, start, bar_seconds of its spec
    # when it is not running: its last saved state ("equity", "cash", "decisions",
    # "last_bar", "positions"), so a stopped session still shows how it ended
    final: dict[str, Any] | None = None


class PaperCluster(Protocol):
    """Paper-trading sessions, one per agent, with Kubernetes StatefulSet semantics.

    Each agent has at most one replica, named ``paper-{agent}``, whether it is a local
    supervised process or a pod: a stable name is what lets a restart pick up the agent's
    state (its FMEL chain, its positions) instead of starting a second, competing session.
    The cluster restarts a session that crashes (``restarts`` counts it) until it gives up
    (``crashed``). It keeps the latest session of each agent after it stopped, so status can
    still say how it ended.
    """

    def start(self, spec: PaperSpec) -> PaperSession:
        """Start ``spec.agent``'s session and return it (usually ``starting``).

        ``PaperConflict`` if the agent has a session that is not stopped; a stopped one is
        replaced. Raises other errors only when the cluster itself failed.
        """
        ...

    def stop(self, agent: str) -> PaperSession:
        """Stop the agent's session and return its final state (``stopped``).

        Stopping a stopped session returns it unchanged, like scaling a StatefulSet to zero
        twice. :class:`NotFound` if the cluster has never had a session for ``agent``.
        """
        ...

    def status(self, agent: str | None = None) -> list[PaperSession]:
        """The latest session of each agent by agent name, only ``agent``'s when given.

        An agent the cluster does not know gives an empty list, not an error.
        """
        ...

    def logs(self, agent: str, tail: int = 100) -> str:
        """The last ``tail`` lines the agent's session wrote; :class:`NotFound` if unknown."""
        ...


#: The actions of decisions that did something: placed orders, or got fills.
ACTING = ("ORDERED", "TRADED")


class FmelStore(Protocol):
    """Runs' decision records (FMEL): one row a bar, a summary a run, a hash chain.

    Records arrive verified (``workers.collect.read_record``); readers ask for what they
    show, and the store does the filtering (a Parquet scan here, a query on BigQuery), so no
    caller reads a whole run to show its last rows.
    """

    def ingest(self, run_id: str, record: Record) -> None:
        """Store a run's verified record, replacing any earlier one of the run (a retry's)."""
        ...

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """The run's summary row (decisions, actions, chain head…); None without one."""
        ...

    def decisions(
        self, run_id: str, *, last: int | None = None, acting_only: bool = False
    ) -> list[dict[str, Any]]:
        """The run's rows in bar order: all, or the last ``last``; with ``acting_only`` only
        those whose action is in :data:`ACTING`. Empty for a run without rows."""
        ...

    def verify(self, run_id: str) -> Verification:
        """Recompute the run's hashes and chain from what is stored."""
        ...

    def recorded(self) -> list[str]:
        """The ids of the runs with decisions, the most recently recorded first."""
        ...


class FmelStream(Protocol):
    """A store a running paper session's record is appended to as it grows (BigQuery; the
    local store links to the session's own files instead)."""

    def ingest_rows(
        self,
        run_id: str,
        rows: Sequence[Mapping[str, Any]],
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Append checked rows of the run (its next bars), then its latest summary if given."""
        ...


class MarketData(Protocol):
    """Bars by symbol: what runs may ask for, loaded and checked on the trusted side (the
    sandbox gets arrays, never a data folder)."""

    def symbols(self) -> list[str]:
        """The symbols there are bars for, sorted."""
        ...

    def bars(
        self, symbols: Sequence[str], start: date | None = None, end: date | None = None
    ) -> list[PreparedSymbol]:
        """The symbols' bars within ``start``..``end`` (inclusive), checked (gaps, stray rows:
        each symbol's ``checks``); ``runtime.data.DataError`` in one line when they cannot
        be had (an unknown symbol, no bars in the window)."""
        ...
