"""The shapes of what events carry, as TypedDicts: a renamed or misspelt key is a type
error, not a blank in a Slack message (freqtrade's ``rpc_types.py`` habit).

They are plain dicts at run time, so events still round-trip through JSON unchanged.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ErrorDoc(TypedDict):
    """What went wrong, for a reader: whose fault (``kind``), what, and what to do next."""

    kind: str  # runtime.errors.ErrorKind, or a paper refusal ("conflict", "not_running"…)
    message: str
    hint: str
    line: NotRequired[int | None]  # the agent's line, when it is the agent's fault
    traceback: NotRequired[str | None]  # agent frames only; never shown in chat


class PaperParameters(TypedDict):
    symbols: list[str]
    cash: float
    feed: str  # "replay" or "alpaca"
    start: str | None  # ISO date the replay starts from
    bar_seconds: float


class Pnl(TypedDict):
    equity: float
    cash: float  # the starting cash it is measured from
    pnl: float
    pnl_pct: float


class Position(TypedDict):
    size: float
    price: float | None  # average entry price
    last: float | None  # last close seen
    unrealised: float | None  # size * (last - price), worked out on the trusted side


class SessionDoc(TypedDict):
    """A paper session as status, digests and the App Home show it."""

    agent: str
    owner: str
    status: str  # workers.ports.SessionStatus
    run_id: str
    pid: int | None
    restarts: int
    health_url: str | None
    health: dict[str, Any] | None
    started_at: float
    stopped_at: float | None
    parameters: dict[str, Any]  # PaperParameters as the cluster keeps them
    final: dict[str, Any] | None
    version: int | None
    pnl: Pnl | None
    decisions: int | None
    positions: dict[str, Position]


class BacktestLine(TypedDict):
    run_id: str
    agent: str
    version: int
    owner: str
    status: str
    created_at: float
    return_pct: float | None
    sharpe: float | None
    warnings: int
    lookahead: bool  # its figures rest on bars not yet known


class FailureError(TypedDict):
    kind: str | None
    message: str | None


class FailureLine(TypedDict):
    run_id: str
    agent: str
    version: int
    owner: str
    kind: str  # "backtest" or "paper"
    error: FailureError


class DigestSections(TypedDict, total=False):
    paper: list[SessionDoc]
    backtests: list[BacktestLine]
    failures: list[FailureLine]
