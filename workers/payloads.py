"""The shapes of what events carry, as TypedDicts: a renamed or misspelt key is a type
error, not a blank in a Slack message (freqtrade's ``rpc_types.py`` habit).

They are plain dicts at run time, so events still round-trip through JSON unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

if TYPE_CHECKING:
    from runtime.errors import RunError


class ErrorDoc(TypedDict):
    """What went wrong, for a reader: whose fault (``kind``), what, and what to do next."""

    kind: str  # runtime.errors.ErrorKind, or a paper refusal ("conflict", "not_running"…)
    message: str
    hint: str
    line: NotRequired[int | None]  # the agent's line, when it is the agent's fault
    traceback: NotRequired[str | None]  # agent frames only; never shown in chat


def error_doc(error: RunError) -> ErrorDoc:
    """``error`` as a document carries it (``RunError.to_dict`` has exactly these keys)."""
    return cast(ErrorDoc, error.to_dict())


class RunParameters(TypedDict, total=False):
    """What a backtest is asked with (a chat command, the command line); what is left out
    takes its default (SPY, the data's whole range, 10,000 cash, no commission)."""

    symbols: list[str]
    start: str | None  # ISO dates
    end: str | None
    cash: float
    commission: float
    strategy: str | None  # the class to run, in a file with several
    params: dict[str, Any]  # the strategy's own parameters (its ``params``), as given


class ResultParameters(TypedDict):
    """A run's parameters as its result document states them (DESIGN.md section 7)."""

    symbols: list[str]
    start_date: str | None
    end_date: str | None
    initial_cash: float
    timeframe: str | None
    commission: float
    params: NotRequired[dict[str, Any]]  # the strategy parameters the run set


class ResultDoc(TypedDict):
    """A backtest's result document (DESIGN.md section 7), as the trusted side writes it
    after checking what the run handed back (``workers.collect``)."""

    run_id: str
    agent_id: str
    agent_sha256: str | None
    parameters: ResultParameters
    strategy: dict[str, Any] | None  # the class that ran and its params
    results: dict[str, Any] | None  # the metrics, per symbol, trades, monthly returns
    data_checks: list[dict[str, Any]]
    warnings: list[str]
    fmel: dict[str, Any] | None  # the decision record's summary; its rows are in the store
    # the box drew one (True) until the runner stores it; a file on this machine when a
    # command wrote one there for its reader; None otherwise
    chart: str | bool | None
    monitoring: dict[str, Any] | None
    error: ErrorDoc | None
    sandbox: NotRequired[dict[str, Any] | None]  # the isolation it ran in
    # where it ran when not in this machine's sandbox: {"name": "cloudbuild", "build_id",
    # "log_url"}
    runner: NotRequired[dict[str, Any]]
    chart_artifact: NotRequired[str | None]  # the chart's sha256 in the artifact store
    agent_version: NotRequired[int]
    validation: NotRequired[dict[str, Any]]  # the command line adds the validation report


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


class SweepMember(TypedDict):
    """One combination of a sweep: a backtest run of its own, with its decisions."""

    run_id: str
    params: dict[str, Any]  # this combination's values
    status: str  # "finished" or "failed" (RunStatus)
    metrics: dict[str, float | int | None] | None  # SWEEP_METRICS of its result
    error: str | None  # one line, for a failed one


class SweepBest(TypedDict):
    """One of the best in-sample combinations, run again on the held-out bars."""

    params: dict[str, Any]
    in_sample_run_id: str
    in_sample: dict[str, float | int | None]
    held_out_run_id: str | None
    held_out: dict[str, float | int | None] | None  # None: its held-out run failed
    error: str | None


class SweepWindow(TypedDict):
    start: str  # ISO dates, both inclusive
    end: str
    bars: int


class SweepOos(TypedDict):
    fraction: float  # of the bars held out, from the end
    in_sample: SweepWindow
    held_out: SweepWindow
    best: list[SweepBest]  # best first, as ranked in sample


class SweepDoc(TypedDict):
    """A parameter sweep's outcome (the registry's run of kind "sweep" keeps it)."""

    sweep_id: str
    agent_id: str
    agent_version: int
    parameters: RunParameters  # what every combination shares (symbols, dates, cash…)
    grid: dict[str, list[Any]]  # each swept parameter's values
    order: list[str]  # the parameters in the order given (JSON may sort the grid's keys)
    rank: str  # the metric ranked by (a key of workers.sweep.RANKS)
    combinations: int
    members: list[SweepMember]  # ranked: best first, failed ones last
    failed: int
    oos: SweepOos | None
    heatmap_artifact: str | None  # a PNG in the artifact store (two swept parameters)
    took_s: float | None


class ParityDifference(TypedDict):
    bar: int  # the bar number (1 = the first bar the strategy saw)
    timestamp: str | None  # ISO
    field: str  # what differed: "orders", "fills", "positions", "portfolio_value"…
    backtest: str  # each side's value, as short text
    paper: str


class ParityDoc(TypedDict):
    """A parity check's outcome: the backtest and the paper replay of the same bars."""

    parity_id: str
    agent_id: str
    agent_version: int
    parameters: RunParameters
    backtest_run_id: str
    paper_run_id: str
    verdict: str  # "identical", "different" or "failed" (one of the runs failed)
    bars: int  # decisions compared
    orders: int  # orders the backtest placed
    fills: int  # fills it got
    differing_bars: int
    log_only_bars: NotRequired[int]  # bars alike but for the order of their log lines
    first_difference: ParityDifference | None
    error: ErrorDoc | None  # verdict "failed": which run failed and why
