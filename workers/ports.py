"""The storage ports: where agent code, outputs and bookkeeping live (DESIGN.md section 2).

The application core talks only to these Protocols; ``infra/`` implements them (local files
and SQLite, Cloud Storage and Firebase), ``tests/fakes.py`` holds in-memory versions, and one
contract suite per port (``tests/contract``) runs against each, so they all behave alike.

The dataclasses here are the application's own records, not any backend's rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ARTIFACT_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


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


class ArtifactCorrupted(RuntimeError):
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
        """The stored bytes; ``KeyError`` if absent, ``ArtifactCorrupted`` if damaged."""
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
        parameters: dict[str, Any],
    ) -> Run:
        """A new QUEUED run of a registered version.

        ``KeyError`` if the agent version does not exist, ``ValueError`` if ``run_id`` is taken.
        """
        ...

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> Run:
        """Move a run to ``status``; ``result``/``error`` replace the stored ones when given.

        ``KeyError`` for an unknown run, ``ValueError`` for a refused transition
        (see ``RunStatus.check_transition``).
        """
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def list_runs(self, agent: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs first (creation order breaks ties), only ``agent``'s when given."""
        ...


class BacktestRunner(Protocol):
    """Runs one backtest somewhere walled off (the local sandbox, Cloud Build).

    Always returns the result document; ``error`` is filled when the run failed for any
    reason. Raises only when the infrastructure itself failed (the job is then retried).
    """

    def run(
        self,
        req: Any,  # runtime.backtest.BacktestRequest
        work_dir: Any,  # pathlib.Path: the run's folder
        on_progress: Any = None,  # Callable[[int, int | None], None]
    ) -> dict[str, Any]: ...


class Notifier(Protocol):
    """Delivers events to the people concerned (a Slack thread, the console)."""

    def send(self, event: Any) -> None:  # workers.events.Event
        ...
