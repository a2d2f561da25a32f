"""Backtest–paper parity: does the paper runtime do what the backtest did, bar by bar?

One job runs the agent twice on the same bars: a backtest, and the paper runtime (its live
feeds, its dispatcher, backtrader's live loop, the simulated paper broker) replaying those
bars at full speed. Both runs are ordinary runs of the registry with verified decision
records; this side then compares the records row by row.

Each FMEL row's ``state_hash`` covers everything the strategy saw, held and did on that bar
(the bar's time, stage and action, portfolio value and cash, indicators, positions, the data
read, orders placed, fills, log lines; see ``runtime.fmel.encoding``), and neither the run
id nor the mode: two runs that decided alike have equal hashes, bar for bar. Where they
part, the fields are compared one by one to say what differed. The rows come from the FMEL
store, whose records were verified on ingest, so the hashes are the rows' own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runtime.fmel.encoding import normalise
from workers import events as ev
from workers.jobs import (
    Services,
    Unrunnable,
    backtest_spec,
    known_version,
    progress_reporter,
    run_recorded,
)
from workers.payloads import ErrorDoc, ParityDifference, ParityDoc, RunParameters

# what a difference is named after, most telling first (a different order explains the
# different fills, positions and value that follow it)
FIELDS: tuple[tuple[str, str], ...] = (
    ("bar time", "timestamp"),
    ("stage", "stage"),
    ("orders", "actions_taken"),
    ("fills", "fills"),
    ("positions", "positions"),
    ("cash", "portfolio_cash"),
    ("portfolio value", "portfolio_value"),
    ("action", "action"),
    ("indicators", "indicators"),
    ("data read", "data_accessed"),
)
SHOWN_CHARS = 300  # of each side's value in a difference


def compare(
    backtest: Sequence[Mapping[str, Any]], paper: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The two records' rows (bar order) compared: bars, orders, fills, how many bars
    differ and the first difference (None when identical).

    The agent's log lines are not part of the verdict: backtrader's live loop delivers
    order notifications as they happen (``quicknotify``), so a notification can be logged
    before or after ``next`` in the other run while every order and fill is the same.
    Bars whose only difference is their log are counted apart (``log_only_bars``).
    """
    first: ParityDifference | None = None
    differing = log_only = 0
    for mine, theirs in zip(backtest, paper, strict=False):
        if (
            mine["state_hash"] == theirs["state_hash"]
            and mine["bar_number"] == theirs["bar_number"]
        ):
            continue
        found = difference(mine, theirs)
        if found is None:
            log_only += 1
            continue
        differing += 1
        first = first or found
    if len(backtest) != len(paper):
        differing += abs(len(backtest) - len(paper))
        first = first or _missing(backtest, paper)
    return {
        "bars": len(backtest),
        "orders": sum(len(r["actions_taken"] or ()) for r in backtest),
        "fills": sum(len(r["fills"] or ()) for r in backtest),
        "differing_bars": differing,
        "log_only_bars": log_only,
        "first_difference": first,
    }


def difference(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> ParityDifference | None:
    """What differs between two rows of the same bar, named by the first field in
    :data:`FIELDS` that does; None when only their log lines differ."""
    if mine["bar_number"] != theirs["bar_number"]:
        return _diff(mine, "bar number", str(mine["bar_number"]), str(theirs["bar_number"]))
    for label, column in FIELDS:
        a, b = mine.get(column), theirs.get(column)
        if canonical(a) != canonical(b):
            return _diff(mine, label, shown(column, a), shown(column, b))
    if canonical(mine.get("log")) != canonical(theirs.get("log")):
        return None
    # equal field by field, yet not by hash: the hash's rounding saw what this did not
    return _diff(mine, "decision state", mine["state_hash"][:16], theirs["state_hash"][:16])


def _diff(row: Mapping[str, Any], label: str, a: str, b: str) -> ParityDifference:
    when = row.get("timestamp")
    return {
        "bar": int(row["bar_number"]),
        "timestamp": when.isoformat() if isinstance(when, datetime) else None,
        "field": label,
        "backtest": _short(a),
        "paper": _short(b),
    }


def shown(column: str, value: Any) -> str:
    """A field's value as a trader reads it: ``BUY 10 SPY Market @ 429.13`` for an order,
    ``SPY 10 @ 429.13`` for a fill or position, numbers to 6 significant digits."""
    items = list(value or ()) if column in ("actions_taken", "fills", "positions") else None
    if items is not None:
        return "; ".join(_item(column, x) for x in items) or "none"
    if isinstance(value, float):
        return _num(value)
    if column == "indicators":
        return ", ".join(f"{k} {_num(v)}" for k, v in (value or ())) or "none"
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _item(column: str, x: Mapping[str, Any]) -> str:
    at = f" @ {_num(x.get('price'))}"
    if column == "actions_taken":
        size = _num(abs(x.get("size") or 0.0))
        return f"{x.get('side')} {size} {x.get('symbol')} {x.get('type')}{at}"
    return f"{x.get('symbol')} {_num(x.get('size'))}{at}"


def _num(x: Any) -> str:
    if not isinstance(x, int | float):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:,.2f}" if abs(x) >= 1e5 else f"{x:.6g}"


def _missing(
    backtest: Sequence[Mapping[str, Any]], paper: Sequence[Mapping[str, Any]]
) -> ParityDifference:
    longer, side = (backtest, "backtest") if len(backtest) > len(paper) else (paper, "paper")
    row = longer[min(len(backtest), len(paper))]
    shown = {"backtest": f"{len(backtest)} bars", "paper": f"{len(paper)} bars"}
    return {**_diff(row, "bars", shown["backtest"], shown["paper"]),
            "field": f"bars (only the {side} run saw this one)"}  # fmt: skip


def canonical(value: Any) -> Any:
    """``value`` with floats as the hash sees them (about 10 significant digits, one NaN),
    maps as sorted pairs: equal when the record's encoding would be."""
    if isinstance(value, float):
        x = normalise(value)
        return "nan" if x is None or math.isnan(x) else x
    if isinstance(value, Mapping):
        return sorted((str(k), canonical(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


# ------------------------------------------------------------------------ the job
def run_parity(
    s: Services,
    /,
    *,
    job_id: str,
    parity_id: str,
    owner: str,
    agent: str,
    version: int | None = None,
    parameters: RunParameters | None = None,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Backtest ``agent`` and replay the same bars through the paper runtime, then compare."""
    route = dict(reply_to or {})
    params: RunParameters = parameters or {}
    ids = {"backtest": f"{parity_id}-bt", "paper": f"{parity_id}-paper"}
    report: ParityDoc = {
        "parity_id": parity_id, "agent_id": agent, "agent_version": version or 0,
        "parameters": params, "backtest_run_id": ids["backtest"], "paper_run_id": ids["paper"],
        "verdict": "failed", "bars": 0, "orders": 0, "fills": 0, "differing_bars": 0,
        "first_difference": None, "error": None,
    }  # fmt: skip
    try:
        found = known_version(s, agent, version)
        report["agent_version"] = found.version
        specs = {engine: backtest_spec(found, run_id=ids[engine], owner=owner, params=params,
                                       engine=engine, chart=False) for engine in ids}  # fmt: skip
    except Unrunnable as exc:
        report["error"] = exc.error
        return _checked(s, job_id, owner, route, report)
    channel = route.get("channel")
    docs = {}
    for engine, spec in specs.items():
        progress = progress_reporter(s, job_id, owner, route, spec.run_id)
        docs[engine] = run_recorded(s, spec, {**params, "parity": parity_id}, channel=channel,
                                    on_progress=progress)  # fmt: skip
    for engine, doc in docs.items():
        if doc["error"] is not None:
            error: ErrorDoc = dict(doc["error"])  # type: ignore[assignment]
            error["message"] = f"the {engine} run failed: {error['message']}"
            report["error"] = error
            return _checked(s, job_id, owner, route, report)
    compared = compare(s.fmel.decisions(ids["backtest"]), s.fmel.decisions(ids["paper"]))
    report.update(compared)  # type: ignore[typeddict-item]
    report["verdict"] = "identical" if compared["first_difference"] is None else "different"
    return _checked(s, job_id, owner, route, report)


def _checked(
    s: Services, job_id: str, owner: str, route: dict[str, str], report: ParityDoc
) -> ev.Event:
    return s.emit(ev.ParityChecked(job_id=job_id, user_id=owner, reply_to=route, report=report))
