"""What a user is told: one frozen, JSON round-trippable message per kind of news.

Jobs return events and never format text; the Slack renderer, the console and the stored
record each render the same object (STYLE.md 1). ``reply_to`` is the front-end's own
routing (a Slack channel and thread, a console session) carried through untouched.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from workers.payloads import (
    DigestSections,
    ErrorDoc,
    ParityDoc,
    ResultDoc,
    SessionDoc,
    SweepDoc,
)


class UnknownEvent(ValueError):
    """A stored or received event of a kind this version does not know."""


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    job_id: str
    user_id: str = ""
    reply_to: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def final(self) -> bool:
        """Whether this is the last event of its job: a front-end following it can stop."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, sort_keys=True)

    @staticmethod
    def from_dict(doc: dict[str, Any]) -> Event:
        cls = KINDS.get(doc.get("kind", ""))
        if cls is None:
            raise UnknownEvent(f"unknown event kind {doc.get('kind')!r}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @staticmethod
    def from_json(text: str) -> Event:
        return Event.from_dict(json.loads(text))


@dataclass(frozen=True, kw_only=True)
class AgentRegistered(Event):
    kind: ClassVar[str] = "agent_registered"
    agent_id: str
    version: int
    report: dict[str, Any]  # the validation report (what was found, warnings)


@dataclass(frozen=True, kw_only=True)
class AgentRejected(Event):
    kind: ClassVar[str] = "agent_rejected"
    agent_name: str
    report: dict[str, Any]  # the validation report (each error's line and hint)


@dataclass(frozen=True, kw_only=True)
class BacktestQueued(Event):
    kind: ClassVar[str] = "backtest_queued"
    run_id: str
    agent_id: str
    version: int
    parameters: dict[str, Any]
    position: int | None = None  # jobs ahead of this one

    @property
    def final(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class BacktestProgress(Event):
    kind: ClassVar[str] = "backtest_progress"
    run_id: str
    done: int
    total: int | None = None

    @property
    def final(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class BacktestFinished(Event):
    kind: ClassVar[str] = "backtest_finished"
    run_id: str
    result: ResultDoc  # the result document (DESIGN.md section 7)


@dataclass(frozen=True, kw_only=True)
class BacktestFailed(Event):
    kind: ClassVar[str] = "backtest_failed"
    run_id: str
    error: ErrorDoc  # kind, message, hint, line


@dataclass(frozen=True, kw_only=True)
class JobFailed(Event):
    """Not the agent's fault: the platform interrupted a job (its worker died, a store failed).

    With ``retrying`` the job runs again by itself and a later event tells how it went;
    without, this is the last word on it (a backtest's last word is ``BacktestFailed``).
    """

    kind: ClassVar[str] = "job_failed"
    work: str  # what was interrupted: "register_agent", "run_backtest", "paper_start"…
    error: ErrorDoc  # kind "platform", message, hint
    retrying: bool = False
    attempts_left: int = 0

    @property
    def final(self) -> bool:
        return not self.retrying


@dataclass(frozen=True, kw_only=True)
class PaperStarted(Event):
    kind: ClassVar[str] = "paper_started"
    agent_id: str
    session: SessionDoc


@dataclass(frozen=True, kw_only=True)
class PaperHealth(Event):
    kind: ClassVar[str] = "paper_health"
    agent_id: str
    health: dict[str, Any]

    @property
    def final(self) -> bool:
        return False  # sent now and then while a session runs, not the end of a job


@dataclass(frozen=True, kw_only=True)
class PaperStopped(Event):
    kind: ClassVar[str] = "paper_stopped"
    agent_id: str
    summary: SessionDoc


@dataclass(frozen=True, kw_only=True)
class PaperFailed(Event):
    """A paper command that could not be done: unknown agent, already running, not running,
    or no paper cluster on this backend. Nothing was started or stopped."""

    kind: ClassVar[str] = "paper_failed"
    agent_id: str  # "" when the command named no agent (a status of all sessions)
    error: ErrorDoc  # kind, message, hint


@dataclass(frozen=True, kw_only=True)
class PaperStatus(Event):
    kind: ClassVar[str] = "paper_status"
    sessions: list[SessionDoc]  # one per agent: the session, its P&L and decisions


@dataclass(frozen=True, kw_only=True)
class Digest(Event):
    kind: ClassVar[str] = "digest"
    since: float
    until: float
    sections: DigestSections  # paper sessions, backtests since the last digest, failures


@dataclass(frozen=True, kw_only=True)
class SweepProgress(Event):
    """A parameter sweep under way: its combinations done so far (one message, updated)."""

    kind: ClassVar[str] = "sweep_progress"
    sweep_id: str
    agent_id: str
    phase: str  # "in_sample" (the grid), then "held_out" (the best, on the held-out bars)
    done: int
    total: int
    failed: int = 0

    @property
    def final(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class SweepFinished(Event):
    kind: ClassVar[str] = "sweep_finished"
    sweep_id: str
    result: SweepDoc  # the ranked combinations, the held-out figures, the heatmap


@dataclass(frozen=True, kw_only=True)
class SweepFailed(Event):
    """A sweep refused before any run (bad grid, too many combinations, unknown agent) or
    whose every combination failed to be run."""

    kind: ClassVar[str] = "sweep_failed"
    sweep_id: str  # "" when refused before it was recorded
    agent_id: str
    error: ErrorDoc


@dataclass(frozen=True, kw_only=True)
class ParityChecked(Event):
    """A backtest and the paper runtime's replay of the same bars, compared."""

    kind: ClassVar[str] = "parity_checked"
    report: ParityDoc


KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        AgentRegistered,
        AgentRejected,
        BacktestQueued,
        BacktestProgress,
        BacktestFinished,
        BacktestFailed,
        JobFailed,
        PaperStarted,
        PaperHealth,
        PaperStopped,
        PaperFailed,
        PaperStatus,
        Digest,
        SweepProgress,
        SweepFinished,
        SweepFailed,
        ParityChecked,
    )
}
