"""Parameter sweeps: one backtest per combination of strategy parameters, ranked.

``/sweep sma fast=5..20/5 slow=20,40,60 rank=sharpe oos=30%`` is three kinds of job:

- :func:`sweep_start` checks the grid against the strategy's parameters (and the cap on
  combinations), records the sweep as a run of kind ``sweep``, and hands out one
  :func:`sweep_member` job per combination on the backtest queue, so every worker takes
  some, plus a :func:`sweep_collect` job that RQ starts once all of them have ended;
- each member is an ordinary backtest run (its result, its decisions), and tells the
  sweep's one progress message how many are done;
- the collector ranks them. With ``oos`` the bars are split by time: the grid runs on the
  first part, and the collector runs the best :data:`HELD_OUT_BEST` again on the held-out
  bars (through members and a second collector), so a combination that only fits the bars
  it was chosen on shows. It then draws the heatmap and sends the ranked table.

Every event of a sweep carries the starting job's id, so a front-end follows one job.
Without a queue (or with no worker on it) the same functions run one after another here.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from workers import events as ev
from workers import params as strategy_params
from workers.jobs import Services, Unrunnable, backtest_spec, known_version, run_recorded
from workers.payloads import (
    ErrorDoc,
    RunParameters,
    SweepBest,
    SweepDoc,
    SweepMember,
    SweepOos,
    SweepWindow,
)
from workers.ports import Run, RunStatus

RANKS = strategy_params.RANKS

MAX_COMBINATIONS = 100
HELD_OUT_BEST = 3  # best in-sample combinations run again on the held-out bars
MIN_IN_SAMPLE_BARS = 30
MIN_HELD_OUT_BARS = 10
QUEUE = "backtest"
MEMBER_TIMEOUT_S = 1200 + 120
COLLECT_TIMEOUT_S = 300

# the result's figures a sweep keeps per combination, by the names `rank=` takes
METRICS: dict[str, str] = {
    "sharpe": "sharpe_ratio",
    "return": "portfolio_return_pct",
    "drawdown": "max_drawdown_pct",
    "trades": "trades_closed",
    "win_rate": "win_rate_pct",
    "profit_factor": "profit_factor",
    "sqn": "sqn",
    "calmar": "calmar_ratio",
}
HINT = "Check the parameter names and values (see the agent's params), then sweep again."


# ------------------------------------------------------------------------ start
def sweep_start(
    s: Services,
    /,
    *,
    job_id: str,
    sweep_id: str,
    owner: str,
    agent: str,
    version: int | None = None,
    grid: Mapping[str, str] | None = None,
    parameters: RunParameters | None = None,
    rank: str = "sharpe",
    oos: float | None = None,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Check the sweep, record it, and hand out its combinations."""
    route = dict(reply_to or {})
    params: RunParameters = dict(parameters or {})  # type: ignore[assignment]
    existing = s.registry.get_run(sweep_id)
    if existing is not None:  # a retried start: hand its members out again (once each)
        if existing.status is not RunStatus.RUNNING or _best(existing):
            return _progress(s, job_id, owner, route, existing, "in_sample")
        return _hand_out(s, existing, _members(existing), "in_sample", owner, route)
    try:
        found = known_version(s, agent, version)
        values = _grid(found.report, dict(grid or {}), params, agent, rank)
        windows = _windows(s, params, oos)
        combos = strategy_params.combinations(values)
        first: RunParameters = {**params, "params": {**(params.get("params") or {}), **combos[0]}}
        backtest_spec(found, run_id=_member_id(sweep_id, 0), owner=owner, params=first)
    except Unrunnable as exc:
        return s.emit(ev.SweepFailed(job_id=job_id, user_id=owner, reply_to=route, sweep_id="",
                                     agent_id=agent, error=exc.error))  # fmt: skip
    s.registry.create_run(
        run_id=sweep_id, agent=agent, version=found.version, owner=owner, kind="sweep",
        parameters={**params, "grid": values, "order": list(values), "rank": rank, "oos": oos,
                    "windows": windows, "combinations": len(combos), "job_id": job_id},
        channel=route.get("channel") or None,
    )  # fmt: skip
    sweep = s.registry.update_run(sweep_id, status=RunStatus.RUNNING)
    return _hand_out(s, sweep, _members(sweep), "in_sample", owner, route)


def _members(sweep: Run) -> list[dict[str, Any]]:
    """The sweep's combinations as runs: each one's id and parameters, in the grid's order."""
    p = sweep.parameters
    grid = _grid_of(p)
    base = _in_window(_shared(p), p.get("windows"), "in_sample")
    fixed = base.get("params") or {}
    combos = strategy_params.combinations(grid)
    return [{"run_id": _member_id(sweep.run_id, i),
             "parameters": {**base, "params": {**fixed, **c}}}
            for i, c in enumerate(combos)]  # fmt: skip


def _grid_of(p: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The grid in the order it was given (a JSON store may sort a mapping's keys)."""
    grid = p["grid"]
    order = [k for k in p.get("order") or [] if k in grid]
    return {k: list(grid[k]) for k in order + [k for k in grid if k not in order]}


def _grid(
    report: Mapping[str, Any],
    grid: dict[str, str],
    params: RunParameters,
    agent: str,
    rank: str,
) -> dict[str, list[Any]]:
    if rank not in RANKS:
        raise Unrunnable(f"rank= is one of {', '.join(RANKS)}, got {rank!r}", HINT)
    if not grid:
        raise Unrunnable("a sweep needs a parameter with values, like fast=5..20/5", HINT)
    known = strategy_params.known_params(report)
    fixed = params.get("params") or {}
    if twice := sorted(set(fixed) & set(grid)):
        raise Unrunnable(f"{twice[0]} is both fixed and swept", HINT)
    try:
        values = strategy_params.grid_of(grid, known, agent=agent)
    except strategy_params.ParamError as exc:
        raise Unrunnable(str(exc), HINT) from None
    n = strategy_params.count(values)
    if n > MAX_COMBINATIONS:
        sizes = " × ".join(f"{len(v)} {k}" for k, v in values.items())
        raise Unrunnable(
            f"{sizes} is {n} combinations; a sweep runs at most {MAX_COMBINATIONS}",
            "Narrow a range or widen its step, or sweep fewer parameters at once.",
        )
    return values


def _windows(s: Services, params: RunParameters, oos: float | None) -> dict[str, Any] | None:
    """With ``oos``, the in-sample and held-out windows (by bar, across the symbols)."""
    if oos is None:
        return None
    if not 0 < oos < 1:
        raise Unrunnable(f"oos= holds out a share of the bars below 100%, got {oos:g}", HINT)
    from runtime.data import DataError

    start, end = _date(params.get("start")), _date(params.get("end"))
    try:
        bars = s.market.bars(params.get("symbols") or ["SPY"], start, end)
    except DataError as exc:
        raise Unrunnable(str(exc), "Check the symbols and dates, then sweep again.") from None
    days = sorted({str(d)[:10] for b in bars for d in b.dates})
    held = max(1, round(len(days) * oos))
    if len(days) - held < MIN_IN_SAMPLE_BARS or held < MIN_HELD_OUT_BARS:
        raise Unrunnable(
            f"{len(days)} bars are too few to hold out {oos:.0%} (at least "
            f"{MIN_IN_SAMPLE_BARS} to choose on and {MIN_HELD_OUT_BARS} held out)",
            "Sweep over a longer window, or hold out a different share.",
        )
    cut = len(days) - held
    return {
        "fraction": oos,
        "in_sample": {"start": days[0], "end": days[cut - 1], "bars": cut},
        "held_out": {"start": days[cut], "end": days[-1], "bars": held},
    }


def _in_window(
    params: RunParameters, windows: Mapping[str, Any] | None, phase: str
) -> RunParameters:
    if not windows:
        return dict(params)  # type: ignore[return-value]
    window = windows[phase]
    return {**params, "start": window["start"], "end": window["end"]}


def _member_id(sweep_id: str, i: int) -> str:
    return f"{sweep_id}-{i:03d}"


def _held_out_id(sweep_id: str, i: int) -> str:
    return f"{sweep_id}-h{i}"


def _date(text: Any) -> date | None:
    return date.fromisoformat(str(text)) if text else None


# ------------------------------------------------------------------------ fan-out
def _hand_out(
    s: Services,
    sweep: Run,
    members: Sequence[Mapping[str, Any]],
    phase: str,
    owner: str,
    route: dict[str, str],
) -> ev.Event:
    """The members as jobs for every worker and the collector after them; with no queue (or
    nobody on it), run here one after another."""
    job_id = str(sweep.parameters["job_id"])
    common: dict[str, Any] = {"sweep_job_id": job_id, "sweep_id": sweep.run_id, "owner": owner,
              "phase": phase, "reply_to": route}  # fmt: skip
    jobs = [
        (f"{job_id}-{phase[0]}{i:03d}", {**common, "run_id": m["run_id"],
                                         "parameters": m["parameters"]})
        for i, m in enumerate(members)
    ]  # fmt: skip
    collect_id = f"{job_id}-c{phase[0]}"
    queue = s.queue
    if queue is not None and queue.workers(QUEUE) > 0:
        for member_id, kwargs in jobs:
            queue.submit(QUEUE, "workers.sweep.sweep_member", job_id=member_id,
                         kwargs={"job_id": member_id, **kwargs},
                         timeout_s=MEMBER_TIMEOUT_S)  # fmt: skip
        queue.submit(QUEUE, "workers.sweep.sweep_collect", job_id=collect_id,
                     kwargs={"job_id": collect_id, **common}, timeout_s=COLLECT_TIMEOUT_S,
                     depends_on=[member_id for member_id, _ in jobs])  # fmt: skip
        return _progress(s, job_id, owner, route, sweep, phase)
    _progress(s, job_id, owner, route, sweep, phase)
    for member_id, kwargs in jobs:
        sweep_member(s, job_id=member_id, **kwargs)
    return sweep_collect(s, job_id=collect_id, **common)


def sweep_member(
    s: Services,
    /,
    *,
    job_id: str,
    sweep_job_id: str,
    sweep_id: str,
    run_id: str,
    owner: str,
    phase: str,
    parameters: RunParameters,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """One combination: a backtest run of its own; then the sweep's progress."""
    route = dict(reply_to or {})
    sweep = s.registry.get_run(sweep_id)
    if sweep is None:
        raise RuntimeError(f"sweep {sweep_id} is not in the registry")
    marked = {**parameters, "sweep": sweep_id}
    try:
        found = known_version(s, sweep.agent, sweep.version)
        # no chart: the sweep's heatmap and table are its picture (a chart is most of a
        # short run's time); /backtest one combination for its chart
        spec = backtest_spec(found, run_id=run_id, owner=owner, params=parameters, chart=False)
    except Unrunnable as exc:
        _failed_run(s, sweep, run_id, owner, marked, exc.error)
    else:
        if not _ended(s.registry.get_run(run_id)):  # a retried member does not run again
            run_recorded(s, spec, marked, channel=None)
    return _progress(s, sweep_job_id, owner, route, sweep, phase)


def _failed_run(
    s: Services, sweep: Run, run_id: str, owner: str, params: Mapping[str, Any], error: ErrorDoc
) -> None:
    if s.registry.get_run(run_id) is None:
        s.registry.create_run(run_id=run_id, agent=sweep.agent, version=sweep.version,
                              owner=owner, kind="backtest", parameters=dict(params),
                              channel=None)  # fmt: skip
    s.registry.update_run(run_id, status=RunStatus.FAILED, error=error)


def _ended(run: Run | None) -> bool:
    return run is not None and run.status in (RunStatus.FINISHED, RunStatus.FAILED)


def _phase_ids(sweep: Run, phase: str) -> list[str]:
    if phase == "in_sample":
        return [_member_id(sweep.run_id, i) for i in range(int(sweep.parameters["combinations"]))]
    return [_held_out_id(sweep.run_id, i) for i in range(len(_best(sweep)))]


def _best(sweep: Run) -> list[str]:
    """The in-sample runs chosen to run again on the held-out bars."""
    return list((sweep.result or {}).get("best") or [])


def _progress(
    s: Services, job_id: str, owner: str, route: dict[str, str], sweep: Run, phase: str
) -> ev.Event:
    runs = [s.registry.get_run(run_id) for run_id in _phase_ids(sweep, phase)]
    ended = [r for r in runs if _ended(r)]
    return s.emit(ev.SweepProgress(
        job_id=job_id, user_id=owner, reply_to=route, sweep_id=sweep.run_id,
        agent_id=sweep.agent, phase=phase, done=len(ended), total=len(runs),
        failed=sum(1 for r in ended if r is not None and r.status is RunStatus.FAILED),
    ))  # fmt: skip


# ------------------------------------------------------------------------ collect
def sweep_collect(
    s: Services,
    /,
    *,
    job_id: str,
    sweep_job_id: str,
    sweep_id: str,
    owner: str,
    phase: str,
    reply_to: dict[str, str] | None = None,
) -> ev.Event:
    """Rank the combinations; with a held-out share, run the best again on it first."""
    route = dict(reply_to or {})
    sweep = s.registry.get_run(sweep_id)
    if sweep is None:
        raise RuntimeError(f"sweep {sweep_id} is not in the registry")
    if sweep.status in (RunStatus.FINISHED, RunStatus.FAILED):  # a retried collector
        return _told(s, sweep, sweep_job_id, owner, route)
    p = sweep.parameters
    rank = str(p["rank"])
    members = ranked([_member(s.registry.get_run(i), i) for i in _phase_ids(sweep, "in_sample")],
                     rank)  # fmt: skip
    if not any(m["status"] == RunStatus.FINISHED.value for m in members):
        return _all_failed(s, sweep, members, sweep_job_id, owner, route)
    windows = p.get("windows")
    if windows and phase == "in_sample":
        best = [m for m in members if m["status"] == RunStatus.FINISHED.value][:HELD_OUT_BEST]
        # the chosen ones, kept while the sweep runs (its result until it ends)
        sweep = s.registry.update_run(sweep_id, status=RunStatus.RUNNING,
                                      result={"best": [m["run_id"] for m in best]})  # fmt: skip
        base = _in_window(_shared(p), windows, "held_out")
        held = [{"run_id": _held_out_id(sweep_id, i),
                 "parameters": {**base, "params": {**(base.get("params") or {}), **m["params"]}}}
                for i, m in enumerate(best)]  # fmt: skip
        return _hand_out(s, sweep, held, "held_out", owner, route)
    doc = _doc(s, sweep, members)
    s.registry.update_run(sweep_id, status=RunStatus.FINISHED, result=dict(doc))
    return s.emit(ev.SweepFinished(job_id=sweep_job_id, user_id=owner, reply_to=route,
                                   sweep_id=sweep_id, result=doc))  # fmt: skip


def _shared(p: Mapping[str, Any]) -> RunParameters:
    """What every combination shares, from the sweep's recorded parameters."""
    keys = ("symbols", "start", "end", "cash", "commission", "strategy", "params")
    return {k: p[k] for k in keys if k in p}  # type: ignore[return-value]


def _member(run: Run | None, run_id: str) -> SweepMember:
    if run is None:  # its job was lost for good (the platform told the user at the time)
        return {"run_id": run_id, "params": {}, "status": RunStatus.FAILED.value,
                "metrics": None, "error": "its job ended before it ran"}  # fmt: skip
    given = run.parameters.get("params") or {}
    if run.status is not RunStatus.FINISHED:
        message = (run.error or {}).get("message") or f"it is {run.status.value}"
        return {"run_id": run_id, "params": dict(given), "status": RunStatus.FAILED.value,
                "metrics": None, "error": " ".join(str(message).split())[:300]}  # fmt: skip
    return {"run_id": run_id, "params": dict(given), "status": RunStatus.FINISHED.value,
            "metrics": metrics_of(run.result), "error": None}  # fmt: skip


def metrics_of(result: Mapping[str, Any] | None) -> dict[str, float | int | None]:
    figures = (result or {}).get("results") or {}
    out: dict[str, float | int | None] = {}
    for name, key in METRICS.items():
        value = figures.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = value
        else:
            out[name] = None
    return out


def ranked(members: Sequence[SweepMember], rank: str) -> list[SweepMember]:
    """Best first by ``rank``; combinations without the figure (no trades: no Sharpe), then
    failed ones, last, each group in the grid's order."""
    higher = RANKS[rank]

    def key(m: SweepMember) -> tuple[int, float]:
        value = (m["metrics"] or {}).get(rank)
        if m["status"] != RunStatus.FINISHED.value:
            return (2, 0.0)
        if value is None:
            return (1, 0.0)
        return (0, -float(value) if higher else float(value))

    return sorted(members, key=key)


def _doc(s: Services, sweep: Run, members: list[SweepMember]) -> SweepDoc:
    p = sweep.parameters
    grid = _grid_of(p)
    windows = p.get("windows")
    oos: SweepOos | None = None
    if windows:
        by_id = {m["run_id"]: m for m in members}
        best: list[SweepBest] = []
        for i, run_id in enumerate(_best(sweep)):
            chosen = by_id[run_id]
            held = _member(s.registry.get_run(_held_out_id(sweep.run_id, i)),
                           _held_out_id(sweep.run_id, i))  # fmt: skip
            best.append({"params": chosen["params"], "in_sample_run_id": run_id,
                         "in_sample": chosen["metrics"] or {},
                         "held_out_run_id": held["run_id"], "held_out": held["metrics"],
                         "error": held["error"]})  # fmt: skip
        oos = {"fraction": float(windows["fraction"]),
               "in_sample": _window(windows["in_sample"]),
               "held_out": _window(windows["held_out"]), "best": best}  # fmt: skip
    return {
        "sweep_id": sweep.run_id,
        "agent_id": sweep.agent,
        "agent_version": sweep.version,
        "parameters": _shared(p),
        "grid": grid,
        "order": list(grid),
        "rank": str(p["rank"]),
        "combinations": len(members),
        "members": members,
        "failed": sum(1 for m in members if m["status"] != RunStatus.FINISHED.value),
        "oos": oos,
        "heatmap_artifact": _heatmap(s, sweep, grid, members),
        "took_s": round(time.time() - sweep.created_at, 1),
    }


def _window(w: Mapping[str, Any]) -> SweepWindow:
    return {"start": str(w["start"]), "end": str(w["end"]), "bars": int(w["bars"])}


def _heatmap(
    s: Services, sweep: Run, grid: Mapping[str, list[Any]], members: Sequence[SweepMember]
) -> str | None:
    """The rank metric over the first two swept parameters (the best over any others), as
    a PNG in the artifact store; None with fewer than two swept."""
    axes = strategy_params.swept(grid)
    if len(axes) < 2:
        return None
    x_name, y_name = axes[0], axes[1]
    rank = str(sweep.parameters["rank"])
    higher = RANKS[rank]
    xs, ys = grid[x_name], grid[y_name]
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for m in members:
        value = (m["metrics"] or {}).get(rank)
        if value is None or m["params"].get(x_name) not in xs or m["params"].get(y_name) not in ys:
            continue
        row, col = ys.index(m["params"][y_name]), xs.index(m["params"][x_name])
        old = z[row][col]
        if old is None or (value > old if higher else value < old):
            z[row][col] = float(value)
    cells = [(r, c) for r in range(len(ys)) for c in range(len(xs)) if z[r][c] is not None]
    if not cells:
        return None
    pick = max if higher else min
    best = pick(cells, key=lambda rc: z[rc[0]][rc[1]] or 0.0)
    from workers.sweep_chart import render_heatmap

    with tempfile.TemporaryDirectory() as scratch:
        path = render_heatmap(
            Path(scratch) / "heatmap.png", x_name=x_name, x_values=xs, y_name=y_name,
            y_values=ys, z=z, metric=rank, higher_is_better=higher, best=best,
            title=f"{sweep.agent} v{sweep.version} · {rank} by {x_name} and {y_name}",
        )  # fmt: skip
        return s.artifacts.put(path.read_bytes(), kind="chart")


def _all_failed(
    s: Services,
    sweep: Run,
    members: Sequence[SweepMember],
    job_id: str,
    owner: str,
    route: dict[str, str],
) -> ev.Event:
    first = next((m for m in members if m["error"]), None)
    error: ErrorDoc = {
        "kind": "agent",
        "message": f"every combination failed; the first: {first['error'] if first else '?'}",
        "hint": "Backtest one combination to see its error in full, fix the agent, sweep again.",
    }
    s.registry.update_run(sweep.run_id, status=RunStatus.FAILED, error=error)
    return s.emit(ev.SweepFailed(job_id=job_id, user_id=owner, reply_to=route,
                                 sweep_id=sweep.run_id, agent_id=sweep.agent,
                                 error=error))  # fmt: skip


def _told(s: Services, sweep: Run, job_id: str, owner: str, route: dict[str, str]) -> ev.Event:
    """A collector run again after the sweep ended: the same news once more."""
    if sweep.status is RunStatus.FINISHED and sweep.result:
        doc: SweepDoc = sweep.result  # type: ignore[assignment]
        return s.emit(ev.SweepFinished(job_id=job_id, user_id=owner, reply_to=route,
                                       sweep_id=sweep.run_id, result=doc))  # fmt: skip
    error: ErrorDoc = sweep.error or {"kind": "agent", "message": "the sweep failed", "hint": ""}  # type: ignore[assignment]
    return s.emit(ev.SweepFailed(job_id=job_id, user_id=owner, reply_to=route,
                                 sweep_id=sweep.run_id, agent_id=sweep.agent,
                                 error=error))  # fmt: skip
