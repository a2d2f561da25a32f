"""One backtest: agent file + market data in, the result document (DESIGN.md section 7) out.

Runs wherever ``runtime/`` is shipped (a subprocess, the sandbox, a Cloud Build step).
Every outcome, including the agent's own failure, is a result document: ``error`` is
``None`` on success and a :class:`~runtime.errors.RunError` dict otherwise.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np

from runtime import prepared
from runtime.agent import (
    LoadedAgent,
    file_sha256,
    fresh_counters,
    load_agent,
    strategy_params,
)
from runtime.defaults import DEFAULT_CASH as DEFAULT_CASH
from runtime.defaults import DEFAULT_SYMBOLS
from runtime.errors import ErrorKind, RunError, RunFailed, classify, make_error
from runtime.fmel import FMELRecorder, new_run_id
from runtime.metrics import RESULT_KEYS, MetricsAnalyzer
from runtime.paths import DEFAULT_DATA_DIR

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class BacktestRequest:
    """Everything a backtest needs; JSON round-trippable so it can cross a process wall."""

    agent_file: Path
    run_id: str = field(default_factory=new_run_id)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    start: date | None = None
    end: date | None = None
    cash: float = DEFAULT_CASH
    commission: float = 0.0
    data_dir: Path = DEFAULT_DATA_DIR
    prepared_data: Path | None = None  # bars already loaded and checked (see runtime.prepared)
    strategy: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's own parameters
    # "backtest": backtrader's preloaded run; "paper": the paper runtime's live feeds and
    # broker over the same bars, at full speed (a parity check's second run)
    engine: str = "backtest"
    agent_id: str = ""
    agent_version: str = ""
    user_id: str = ""
    fmel_dir: Path | None = None
    chart_path: Path | None = None

    def to_json(self) -> str:
        doc = asdict(self)
        for key, value in doc.items():
            if isinstance(value, Path | date):
                doc[key] = str(value)
        doc["symbols"] = list(self.symbols)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> BacktestRequest:
        doc = json.loads(text)
        for key in ("agent_file", "data_dir", "fmel_dir", "chart_path", "prepared_data"):
            if doc.get(key) is not None:
                doc[key] = Path(doc[key])
        for key in ("start", "end"):
            if doc.get(key):
                doc[key] = date.fromisoformat(doc[key])
        doc["symbols"] = tuple(doc["symbols"])
        return cls(**doc)

    @property
    def resolved_agent_id(self) -> str:
        return self.agent_id or self.agent_file.stem


class _Progress(bt.Analyzer):
    """Reports bars done / total at most every ``every`` seconds, and at the end; counts
    rejected orders."""

    params = (("callback", None), ("every", 0.5), ("total", None))

    def start(self) -> None:
        lens = [d.buflen() for d in self.strategy.datas]
        self.total = max(lens) if lens and all(n > 0 for n in lens) else self.p.total
        self.done = 0
        self.rejected = 0
        self._next_at = time.monotonic() + self.p.every

    def next(self) -> None:
        self.done += 1
        if self.p.callback is not None and time.monotonic() >= self._next_at:
            self._next_at = time.monotonic() + self.p.every
            self.p.callback(self.done, self.total)

    prenext = nextstart = next

    def stop(self) -> None:  # the last bars, whatever the interval: a run ends at 100%
        if self.p.callback is not None and self.done:
            self.p.callback(self.done, self.total)

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Margin, order.Rejected):
            self.rejected += 1

    def get_analysis(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total, "rejected": self.rejected}


def run_backtest(req: BacktestRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Run one backtest and return its result document; never raises for the agent's faults."""
    started = _clock()
    doc = _skeleton(req)
    agent_sha = file_sha256(req.agent_file) if req.agent_file.is_file() else None
    doc["agent_sha256"] = agent_sha
    recorder: list[FMELRecorder] = []
    try:
        if req.engine not in ENGINES:
            raise RunFailed(make_error(ErrorKind.VALIDATION, f"unknown engine {req.engine!r}"))
        agent = load_agent(req.agent_file, req.strategy)
        chosen = strategy_params(agent.strategy, req.params)
        doc["strategy"] = {"name": agent.name, "params": {**_params(agent.strategy), **chosen}}
        datas = _load_data(req)
        doc["data_checks"] = [c for d in datas for c in d.checks]
        doc["parameters"].update(_window(datas))
        strat = _run(req, agent, datas, chosen, progress, recorder)
        _fill(doc, req, strat)
        doc["warnings"] += money_warnings(req, datas, doc.get("_orders_rejected", 0))
    except (Exception, SystemExit) as exc:  # RunFailed carries its error; else classify says
        error = classify(exc, req.agent_file)  # whose fault (an agent's exit() is its own)
        if error.kind is ErrorKind.PLATFORM:  # ours: the whole story goes to the run's log
            traceback.print_exception(exc, file=sys.stderr)
        doc["error"] = error.to_dict()
    finally:
        for rec in recorder:
            rec.close()
    kept = recorder[0].summary() if recorder and recorder[0].kept_after_failure else None
    if doc["error"] and kept and kept["decisions"]:
        doc["fmel"] = _fmel_figures(kept)  # the decisions of the bars before the failure
    doc["monitoring"] = _monitoring(started, doc)
    return doc


def error_document(req: BacktestRequest, error: RunError) -> dict[str, Any]:
    """A result document for a run that failed outside the runtime (timeout, crash)."""
    return with_error(_skeleton(req), error)


def with_error(doc: dict[str, Any], error: RunError) -> dict[str, Any]:
    """``doc`` (a skeleton) as the document of a run that failed before it could say more."""
    doc["error"] = error.to_dict()
    doc["monitoring"] = {
        "execution_time_s": None,
        "peak_memory_mb": None,
        "cpu_avg_pct": None,
        "decision_count": 0,
        "errors": 1,
    }
    return doc


def _skeleton(req: BacktestRequest) -> dict[str, Any]:
    return {
        "run_id": req.run_id,
        "agent_id": req.resolved_agent_id,
        "agent_sha256": None,
        "parameters": {
            "symbols": list(req.symbols),
            "start_date": req.start.isoformat() if req.start else None,
            "end_date": req.end.isoformat() if req.end else None,
            "initial_cash": req.cash,
            "timeframe": None,
            "commission": req.commission,
            "params": dict(req.params),
        },
        "strategy": None,
        "results": None,
        "data_checks": [],
        "warnings": [],  # what the run could not do fully, said once (FMEL left a line out)
        "fmel": None,
        "chart": None,
        "monitoring": None,
        "error": None,
    }


def _params(cls: type[bt.Strategy]) -> dict[str, Any]:
    out = {}
    for name, value in cls.params._getitems():
        out[name] = (
            value if isinstance(value, int | float | str | bool | type(None)) else repr(value)
        )
    return out


def _load_data(req: BacktestRequest) -> list[prepared.PreparedSymbol]:
    if req.prepared_data is not None:
        return prepared.load(req.prepared_data)
    return load_and_check(req)


def load_and_check(req: BacktestRequest) -> list[prepared.PreparedSymbol]:
    """Read and check the request's CSV data (needs pandas: the trusted side's job)."""
    from runtime import data as market

    try:
        return market.prepare(market.load(req.data_dir, list(req.symbols), req.start, req.end))
    except market.DataError as exc:
        raise RunFailed(make_error(ErrorKind.DATA, str(exc))) from exc


def parameters(req: BacktestRequest, datas: list[prepared.PreparedSymbol]) -> dict[str, Any]:
    """The run's parameters as the result states them: the request's, with the window and
    bar size of the data actually loaded."""
    return {**_skeleton(req)["parameters"], **_window(datas)}


def _window(datas: list[prepared.PreparedSymbol]) -> dict[str, Any]:
    first = min(d.dates[0] for d in datas)
    last = max(d.dates[-1] for d in datas)
    spacing = np.median(np.diff(datas[0].dates)) if len(datas[0].dates) > 1 else None
    return {
        "symbols": [d.symbol for d in datas],
        "start_date": str(first)[:10],
        "end_date": str(last)[:10],
        "timeframe": _timeframe_label(spacing),
    }


def _timeframe_label(spacing: Any) -> str | None:
    if spacing is None:
        return None
    seconds = spacing / np.timedelta64(1, "s")
    for limit, label in ((60.5, "1m"), (3600.5, "1h"), (4 * 86400, "1d"), (11 * 86400, "1w")):
        if seconds < limit:
            return label if label != "1m" or seconds >= 59 else f"{int(seconds)}s"
    return "1mo"


ENGINES = ("backtest", "paper")


def _run(
    req: BacktestRequest,
    agent: LoadedAgent,
    datas: list[prepared.PreparedSymbol],
    params: dict[str, Any],
    progress: Progress | None,
    recorder: list[FMELRecorder],
) -> bt.Strategy:
    paper = req.engine == "paper"
    # the paper engine is set up as the paper session sets itself up (runtime.paper.session)
    cerebro = bt.Cerebro(stdstats=False) if paper else bt.Cerebro()
    cerebro.broker.setcash(req.cash)
    if req.commission:
        cerebro.broker.setcommission(commission=req.commission)
    dispatcher = None
    if paper:
        from runtime.paper.feed import Dispatcher, add_live_feeds
        from runtime.paper.replay import PreparedReplay

        symbols = tuple(d.symbol for d in datas)
        dispatcher = Dispatcher(PreparedReplay(datas), symbols)
        add_live_feeds(cerebro, dispatcher, symbols)
    else:
        for d in datas:
            cerebro.adddata(d.feed(), name=d.symbol)
    cerebro.addstrategy(agent.strategy, **params)
    fresh_counters()
    cerebro.addanalyzer(MetricsAnalyzer, _name="tradeops_metrics")
    cerebro.addanalyzer(_Progress, _name="tradeops_progress", callback=progress,
                        total=max(len(d.dates) for d in datas))  # fmt: skip
    cerebro.addanalyzer(
        _RecorderHandle,
        _name="fmel",
        out=str(req.fmel_dir) if req.fmel_dir else None,
        run_id=req.run_id,
        agent_id=req.resolved_agent_id,
        agent_version=req.agent_version,
        user_id=req.user_id,
        mode="PAPER" if paper else "BACKTEST",
        handles=recorder,
    )
    if dispatcher is None:
        return cerebro.run()[0]
    from runtime.paper.feed import live_run

    dispatcher.start(after=None)
    try:
        return cerebro.run(**live_run(simulated=True))[0]
    finally:
        dispatcher.stop()


class _RecorderHandle(FMELRecorder):
    """The recorder, made reachable by the runner so it can restore stdout on failure."""

    params = (("handles", None),)  # type: ignore[assignment]  # backtrader merges params

    def start(self) -> None:
        if self.p.handles is not None:
            self.p.handles.append(self)
        super().start()


def _fill(doc: dict[str, Any], req: BacktestRequest, strat: bt.Strategy) -> None:
    metrics = strat.analyzers.tradeops_metrics
    doc["results"] = {key: metrics.get_analysis()[key] for key in RESULT_KEYS}
    fmel = strat.analyzers.fmel.get_analysis()
    doc["fmel"] = _fmel_figures(fmel)
    doc["warnings"] += fmel["warnings"]
    rejected = strat.analyzers.tradeops_progress.get_analysis()["rejected"]
    doc["_orders_rejected"] = rejected
    if req.chart_path is not None:
        dates, values = metrics.equity_curve()
        title = f"{req.resolved_agent_id} · {', '.join(req.symbols)}"
        benchmark = metrics.buy_and_hold_curve()
        entries, exits = metrics.trade_marks()
        from runtime.chart import render_equity_chart  # matplotlib: only when a chart is asked

        render_equity_chart(
            dates,
            values,
            req.chart_path,
            title=title,
            benchmark=benchmark,
            cash=metrics.cash_curve(),
            entries=entries,
            exits=exits,
            invested_pct=doc["results"]["exposure_pct"],
        )
        doc["chart"] = str(req.chart_path)


#: a commission (a fraction of each trade's value) above this is said: brokers charge ~0.1%
HIGH_COMMISSION = 0.01


def money_warnings(
    req: BacktestRequest, datas: list[prepared.PreparedSymbol], rejected: int
) -> list[str]:
    """Cash and commission oddities that change how the figures read."""
    said = []
    if rejected:
        said.append(
            f"{rejected} order{'s were' if rejected > 1 else ' was'} refused for lack of cash "
            f"(cash {req.cash:,.2f}): the strategy asked for more than the portfolio held"
        )
    closes = {d.symbol: float(d.values[0, prepared.COLUMNS.index("close")]) for d in datas
              if len(d.values)}  # fmt: skip
    dear = sorted(s for s, first in closes.items() if first > req.cash)
    if dear:
        said.append(
            f"cash {req.cash:,.2f} buys not one share of {', '.join(dear)} at its first close "
            f"({', '.join(f'{closes[s]:,.2f}' for s in dear)})"
        )
    if req.commission >= HIGH_COMMISSION:
        said.append(
            f"commission {req.commission:.2%} of each trade's value: far above a broker's "
            "(about 0.1%); is it meant as a fraction (0.001 = 0.1%)?"
        )
    return said


def _fmel_figures(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("decisions", "actions", "chain_head")}


def _clock() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


def _monitoring(started: tuple[float, float], doc: dict[str, Any]) -> dict[str, Any]:
    wall0, cpu0 = started
    wall1, cpu1 = _clock()
    wall = max(wall1 - wall0, 1e-9)
    rejected = doc.pop("_orders_rejected", 0)
    return {
        "execution_time_s": round(wall, 3),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_avg_pct": round(100.0 * (cpu1 - cpu0) / wall, 1),
        "decision_count": (doc["fmel"] or {}).get("decisions", 0),
        "orders_rejected": rejected,
        "errors": 1 if doc["error"] else 0,
    }
