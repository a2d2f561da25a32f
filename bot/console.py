"""Plain-text rendering for the terminal: the command line, ``tradeops shell`` and the demo.

What Slack shows as Block Kit, the console shows as text, from the same Events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runtime.defaults import stored_warnings

if TYPE_CHECKING:
    from workers.validation import Finding, ValidationReport

log = logging.getLogger(__name__)


def _pct(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.2f}%" if sign else f"{x:.2f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.2f}"


def format_error(doc: Mapping[str, Any]) -> str:
    err = doc["error"]
    where = f" at line {err['line']}" if err.get("line") else ""
    lines = [f"Backtest {doc['run_id']} failed: {err['kind']} error{where}"]
    lines.append(f"  {err['message']}")
    lines.append(f"  Hint: {err['hint']}")
    if err.get("traceback"):
        lines += ["  " + ln for ln in err["traceback"].splitlines()]
    kept = (doc.get("fmel") or {}).get("decisions")
    if kept:
        lines.append(f"  Its {kept} decision(s) before the failure are recorded: "
                     f"tradeops fmel {doc['run_id']}")  # fmt: skip
    lines += ran_on(doc)
    return "\n".join(lines)


def format_result(doc: Mapping[str, Any]) -> str:
    """The readable summary of a backtest result document."""
    if doc.get("error"):
        return format_error(doc)
    p, r = doc["parameters"], doc["results"]
    strategy = (doc.get("strategy") or {}).get("name", "?")
    head = (
        f"Backtest {doc['run_id']} · {strategy} ({doc['agent_id']}) · "
        f"{', '.join(p['symbols'])} · {p['start_date']} → {p['end_date']} · {p['timeframe']}"
    )
    if given := given_params(p):
        head += f" · {given}"
    trades = (
        f"{r['trades_closed']} closed, {r['trades_open']} open · "
        f"win rate {_pct(r['win_rate_pct'], False)} · "
        f"profit factor {_num(r['profit_factor'])} · expectancy {_num(r['expectancy'])}"
    )
    rows = [
        ("Return", f"{_pct(r['portfolio_return_pct'])}  (buy & hold "
                   f"{_pct(r['buy_and_hold_return_pct'])})"),
        ("Final value", f"{_num(r['final_value'])}  from {_num(r['initial_value'])}"),
        ("Ratios", f"Sharpe {_num(r['sharpe_ratio'])} · Sortino {_num(r['sortino_ratio'])} · "
                   f"Calmar {_num(r['calmar_ratio'])} · SQN {_num(r['sqn'])}"),
        ("Max drawdown", f"{_pct(r['max_drawdown_pct'], False)} ({_num(r['max_drawdown_money'])})"
                         f" · {r['max_drawdown_duration_bars']} bars"),
        ("Trades", trades),
        ("Exposure", _pct(r["exposure_pct"], False)),
        ("Annual returns", " · ".join(f"{y} {_pct(v)}" for y, v in r["annual_returns"].items())),
        ("Per symbol", " · ".join(
            f"{s} {v['net_pnl']:+,.2f} ({v['trades_closed']} trades)"
            for s, v in r["per_symbol"].items()
        )),
    ]  # fmt: skip
    for check in doc.get("data_checks") or ():
        rows.append(("Data check", check["message"]))
    warnings = [f"  ⚠ {w}" for w in doc.get("warnings") or ()]  # first: they change the reading
    lines = [head, *warnings] + [f"  {k:<15} {v}" for k, v in rows]
    lines += _report_lines(doc["run_id"], r)
    lines += _fmel_lines(doc)
    if doc.get("chart"):
        lines.append(f"Chart  {doc['chart']}")
    m = doc.get("monitoring") or {}
    lines.append(
        f"Took {m.get('execution_time_s')} s · peak {m.get('peak_memory_mb')} MB · "
        f"CPU {m.get('cpu_avg_pct')}%"
    )
    lines += ran_on(doc)
    return "\n".join(lines)


def ran_on(doc: Mapping[str, Any]) -> list[str]:
    """Where the run ran, when not in this machine's sandbox (a Cloud Build build)."""
    runner = doc.get("runner")
    if not isinstance(runner, Mapping) or runner.get("name") != "cloudbuild":
        return []
    log = f" · log {runner['log_url']}" if runner.get("log_url") else ""
    return [f"Ran on Cloud Build, build {runner.get('build_id')}{log}"]


def _fmel_lines(doc: Mapping[str, Any]) -> list[str]:
    f = doc.get("fmel")
    if not f:
        return []
    actions = " · ".join(f"{k} {v}" for k, v in f["actions"].items())
    return [
        f"FMEL   {f['decisions']} decisions ({actions}) · chain {f['chain_head'][:12]}…",
        f"       tradeops fmel {doc['run_id']} --verify",
    ]


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell; those numbered in ``right`` aligned right."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    flush = set(right)

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if i in flush else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *map(line, rows)])


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LAST_TRADES = 5  # closed trades in a result's summary


def monthly_grid(
    monthly: Mapping[str, float | None],
    annual: Mapping[str, float | None],
    *,
    years: int | None = None,
) -> list[str]:
    """Monthly returns in percent as a year × month grid, one line per year ending in the
    year's own return; with ``years``, the last ones only and a line saying how many earlier
    ones are left out. A month without bars is blank, an undefined return ``n/a``."""
    by_year: dict[str, dict[int, float | None]] = {}
    for key, pct in monthly.items():
        by_year.setdefault(key[:4], {})[int(key[5:7])] = pct
    shown = sorted(by_year)
    left = len(shown) - years if years is not None and len(shown) > years else 0
    lines = ["    " + "".join(f"{m:>6}" for m in MONTHS) + f"{'Year':>7}"]
    if left:
        lines.append(f"… {left} earlier year{'' if left == 1 else 's'}")
    for year in shown[left:]:
        cells = "".join(f"{_grid_cell(by_year[year], m):>6}" for m in range(1, 13))
        lines.append(f"{year}{cells}{_grid_pct(annual.get(year)):>7}")
    return lines


def _grid_cell(months: Mapping[int, float | None], month: int) -> str:
    return _grid_pct(months[month]) if month in months else ""


def _grid_pct(pct: float | None) -> str:
    """At most five characters: one decimal, none from 100 % on."""
    if pct is None:
        return "n/a"
    return f"{pct:+.0f}" if abs(pct) >= 99.95 else f"{pct:+.1f}"


def trades_table(trades: Sequence[Mapping[str, Any]], *, first: int = 1) -> str:
    """Closed trades, one a line, numbered from ``first`` (their place among the run's)."""
    headers = [
        "#",
        "symbol",
        "side",
        "entry",
        "exit",
        "size",
        "entry price",
        "exit price",
        "P&L",
        "net P&L",
        "bars",
    ]
    rows = [
        (
            str(first + i),
            str(t["symbol"]),
            str(t["direction"]),
            str(t["entry_date"]),
            str(t["exit_date"]),
            "n/a" if t["size"] is None else f"{t['size']:g}",
            _num(t["entry_price"]),
            _num(t["exit_price"]),
            _signed(t["pnl"]),
            _signed(t["pnl_net"]),
            str(t["bars_held"]),
        )
        for i, t in enumerate(trades)
    ]
    return format_table(headers, rows, right=(0, 5, 6, 7, 8, 9, 10))


def closed_count(closed: object, trades: Sequence[object]) -> int:
    """How many trades a run closed: its count, or the length of its list (which holds the
    last of them) when the count is missing or smaller."""
    count = closed if isinstance(closed, int | float) and not isinstance(closed, bool) else 0
    return int(max(count, len(trades)))


def format_trades(run_id: str, trades: Sequence[Mapping[str, Any]], closed: int | None) -> str:
    """A run's closed trades (its result's list: the last ones when there were many)."""
    if not trades:
        return f"Run {run_id} closed no trades."
    total = closed_count(closed, trades)
    what = f"all {total}" if total == len(trades) else f"the last {len(trades)} of {total}"
    head = f"Closed trades of run {run_id} ({what}; net P&L after commission):"
    return head + "\n" + trades_table(trades, first=total - len(trades) + 1)


def _report_lines(run_id: str, r: Mapping[str, Any]) -> list[str]:
    """Monthly returns and the last closed trades (results from before they were recorded
    have neither)."""
    lines = []
    if r.get("monthly_returns"):
        lines.append("  Monthly returns (%)")
        grid = monthly_grid(r["monthly_returns"], r.get("annual_returns") or {})
        lines += ["    " + ln for ln in grid]
    trades = r.get("trades") or []
    if trades:
        total = closed_count(r.get("trades_closed"), trades)
        shown = trades[-LAST_TRADES:]
        every = f"tradeops fmel {run_id} --trades"
        cut = len(shown) < total
        lines.append(
            f"  Last {len(shown)} of {total} closed trades ({every})" if cut else "  Closed trades"
        )
        table = trades_table(shown, first=total - len(shown) + 1)
        lines += ["    " + ln for ln in table.splitlines()]
    return lines


def format_decisions(rows: Sequence[Mapping[str, Any]], *, state: bool = False) -> str:
    """FMEL rows as a table: bar, time, action, orders, fills, value (and, with ``state``,
    the indicator values the agent saw for the symbols it acted on)."""

    def orders(r: Mapping[str, Any]) -> str:
        return "; ".join(
            f"{o['side']} {abs(o['size']):g} {o['symbol']} {o['type']}"
            + (f" @{o['price']:.2f}" if o["price"] is not None and o["type"] != "Market" else "")
            for o in r["actions_taken"] or ()
        )

    def fills(r: Mapping[str, Any]) -> str:
        return "; ".join(
            f"{f['size']:+g} {f['symbol']} @{f['price']:.2f}" for f in r["fills"] or ()
        )

    table = [
        (
            r["bar_number"],
            r["timestamp"].strftime("%Y-%m-%d %H:%M"),
            r["action"],
            orders(r) or "-",
            fills(r) or "-",
            f"{r['portfolio_value']:,.2f}",
            *([_state(r)] if state else []),
        )
        for r in rows
    ]
    headers = ["bar", "time", "action", "orders", "fills", "value", *(["state"] if state else [])]
    return format_table(headers, table)


def _state(row: Mapping[str, Any], limit: int = 6) -> str:
    """Indicator values behind a decision, those of the symbols it touched first."""
    touched = {o["symbol"] for o in [*(row["actions_taken"] or ()), *(row["fills"] or ())]}
    values = list(row["indicators"] or ())
    mine = [(k, v) for k, v in values if any(f"[{s}]" in k for s in touched)]
    shown = (mine or values)[:limit]
    text = " ".join(f"{k}={v:.4g}" for k, v in shown if v is not None)
    return text + (" …" if len(mine or values) > limit else "") or "-"


def format_validation(report: ValidationReport) -> str:
    """The readable validation report: what would run, or each error with its hint."""
    if report.ok:
        lines = [
            f"Valid agent · strategy {report.strategy} · {report.size:,} bytes · "
            f"sha256 {report.sha256[:12]}…",
            f"  {'Params':<11} {_params_text(report.params)}",
            f"  {'Indicators':<11} {' · '.join(report.indicators) or 'none'}",
        ]
    else:
        count = len(report.errors)
        lines = [f"Invalid agent · {count} error{'' if count == 1 else 's'}"]
        lines += _finding_lines(report.errors)
    if report.warnings:
        lines.append(f"Warnings ({len(report.warnings)}):")
        lines += _finding_lines(report.warnings)
    return "\n".join(lines)


def _params_text(params: Mapping[str, Any]) -> str:
    return " · ".join(f"{k}={v}" for k, v in params.items()) or "none"


def _finding_lines(findings: Iterable[Finding]) -> Iterator[str]:
    for f in findings:
        where = f"line {f.line}" if f.line else ""
        where += f", col {f.column}" if f.line and f.column else ""
        yield f"  {where}: {f.message}" if where else f"  {f.message}"
        yield f"    Hint: {f.hint}"


def _when(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def format_agents(agents: Sequence[Any]) -> str:
    if not agents:
        return "No agents yet: add one with `tradeops agents add FILE`."
    rows = [(a.name, f"v{a.latest_version}", a.owner, _when(a.created_at)) for a in agents]
    return format_table(["agent", "latest", "owner", "since (UTC)"], rows)


def format_runs(runs: Sequence[Any]) -> str:
    if not runs:
        return "No runs yet."

    def outcome(r: Any) -> str:
        if r.error:
            return f"{r.error.get('kind')}: {r.error.get('message', '')}"[:60]
        if r.result and r.result.get("results"):
            res = r.result["results"]
            said = f"return {_pct(res['portfolio_return_pct'])}"
            said += f" · Sharpe {_num(res['sharpe_ratio'])}"
            warnings, lookahead = stored_warnings(r.result)
            if lookahead:
                return said + " · look-ahead!"
            return said + (f" · {warnings} warning(s)" if warnings else "")
        return "-"

    rows = [
        (r.run_id, f"{r.agent}@v{r.version}", r.kind, r.status, _when(r.created_at), outcome(r))
        for r in runs
    ]
    return format_table(["run", "agent", "kind", "status", "created (UTC)", "outcome"], rows)


def format_event_or_say(event: Any) -> str:
    """:func:`format_event`, or one line saying it could not be shown (logged): a bad
    field in one event never stops the console."""
    try:
        return format_event(event)
    except Exception:
        log.exception("could not show a %s event", getattr(event, "kind", "?"))
        run = getattr(event, "run_id", "") or ""
        what = str(getattr(event, "kind", "event")).replace("_", " ")
        return f"tradeops could not show this {what}" + (f" for run {run}" if run else "")


def format_event(event: Any) -> str:
    """One line (or a few) for an event, as the console front-end shows it."""
    kind = event.kind
    if kind == "agent_registered":
        r = event.report
        warnings = r.get("warnings") or []
        lines = [
            f"Registered agent {event.agent_id} version {event.version} · strategy "
            f"{r.get('strategy')} · params {_params_text(r.get('params') or {})} · "
            f"indicators {', '.join(r.get('indicators') or []) or 'none'}"
        ]
        for w in warnings:
            where = f"line {w['line']}: " if w.get("line") else ""
            lines.append(f"  warning: {where}{w['message']}")
        return "\n".join(lines)
    if kind == "agent_rejected":
        errors = event.report.get("errors") or []
        lines = [f"Rejected {event.agent_name}: {len(errors)} error(s)"]
        for e in errors:
            where = f"line {e['line']}: " if e.get("line") else ""
            lines.append(f"  {where}{e['message']}\n    Hint: {e['hint']}")
        return "\n".join(lines)
    if kind == "backtest_queued":
        p = event.parameters
        where = ", ".join(p.get("symbols") or ["SPY"])
        version = f" v{event.version}" if event.version else ""
        ahead = f" · {event.position} ahead" if event.position else ""
        return f"Backtest queued · {event.agent_id}{version} on {where} · run {event.run_id}{ahead}"
    if kind == "backtest_finished":
        return format_result(event.result)
    if kind == "backtest_failed":
        err = event.error
        where = f" at line {err['line']}" if err.get("line") else ""
        head = f"Backtest {event.run_id} failed: {err['kind']} error{where}"
        return f"{head}\n  {err['message']}\n  Hint: {err['hint']}"
    if kind == "backtest_progress":
        share = f"/{event.total} ({100 * event.done // event.total}%)" if event.total else ""
        return f"… backtest {event.run_id}: bar {event.done}{share}"
    if kind == "job_failed":
        err = event.error
        if event.retrying:
            return f"{err['message']}: running it again ({event.attempts_left} attempt(s) left)"
        return f"{event.work} failed: {err['message']}\n  Hint: {err['hint']}"
    return _format_sweep_or_parity(event) or _format_paper(event) or _format_other(event)


def _format_paper(event: Any) -> str | None:
    kind = event.kind
    if kind in ("paper_started", "paper_stopped"):
        x = event.session if kind == "paper_started" else event.summary
        return _session_sentence("Paper started" if kind == "paper_started" else "Paper stopped", x)
    if kind == "paper_failed":
        err = event.error
        who = f" {event.agent_id}" if event.agent_id else ""
        return f"Paper trading{who}: {err['message']}\n  Hint: {err['hint']}"
    if kind == "paper_status":
        if not event.sessions:
            return "No paper sessions."
        table = format_table(
            ["agent", "version", "status", "restarts", "decisions", "P&L", "run"],
            [_session_row(x) for x in event.sessions],
        )
        held = [[x["agent"], symbol, f"{p['size']:g}", _num(p.get("price")),
                 _num(p.get("last")), _signed(p.get("unrealised"))]
                for x in event.sessions
                for symbol, p in (x.get("positions") or {}).items()]  # fmt: skip
        if not held:
            return table
        return table + "\n\nOpen positions\n" + format_table(
            ["agent", "symbol", "size", "avg price", "last", "unrealised P&L"], held
        )
    if kind == "digest":
        sec = event.sections
        lines = [f"Digest {_when(event.since)} → {_when(event.until)} UTC · "
                 f"{len(sec.get('paper') or [])} paper session(s) · "
                 f"{len(sec.get('backtests') or [])} backtest(s) · "
                 f"{len(sec.get('failures') or [])} failure(s)"]  # fmt: skip
        for x in sec.get("paper") or ():
            lines.append("  paper  " + "  ".join(_session_row(x)))
        for b in sec.get("backtests") or ():
            outcome = (f"return {_pct(b['return_pct'])} · Sharpe {_num(b['sharpe'])}"
                       if b.get("return_pct") is not None else b["status"])  # fmt: skip
            outcome += " · look-ahead!" if b.get("lookahead") else ""
            lines.append(f"  backtest  {b['agent']}@v{b['version']}  {outcome}  {b['run_id']}")
        for f in sec.get("failures") or ():
            err = f.get("error") or {}
            lines.append(f"  failed  {f['agent']}@v{f['version']} {f['kind']}: "
                         f"{err.get('kind')}: {err.get('message')}")  # fmt: skip
        return "\n".join(lines)
    return None


def _session_sentence(what: str, x: Mapping[str, Any]) -> str:
    """``Paper stopped · sma v1 · SPY · P&L -28.56 (-0.29%) · 65 decisions · run …``."""
    p = x.get("parameters") or {}
    pnl = x.get("pnl")
    bits = [f"{what} · {x.get('agent')} v{x.get('version') or '?'}",
            ", ".join(p.get("symbols") or []) or "-",
            f"{p.get('feed') or 'replay'} feed"
            + (f" from {p['start']}" if p.get("start") else "")
            + (f", a bar every {p['bar_seconds']:g} s" if p.get("bar_seconds") else ""),
            f"cash {_num(p.get('cash'))}"]  # fmt: skip
    bits += [given] if (given := given_params(p)) else []
    if pnl:
        bits.append(f"P&L {pnl['pnl']:+,.2f} ({pnl['pnl_pct']:+.2f}%)")
    if x.get("decisions") is not None:
        bits.append(f"{x['decisions']} decisions")
    bits.append(f"run {x.get('run_id') or '-'}")
    return " · ".join(bits)


def _session_row(x: Mapping[str, Any]) -> list[str]:
    pnl = x.get("pnl")
    money = f"{pnl['pnl']:+,.2f} ({pnl['pnl_pct']:+.2f}%)" if pnl else "n/a"
    return [x["agent"], f"v{x.get('version') or '?'}", x["status"], str(x.get("restarts", 0)),
            str(x.get("decisions") if x.get("decisions") is not None else "n/a"), money,
            x.get("run_id") or "-"]  # fmt: skip


def _format_other(event: Any) -> str:
    """Paper and digest news: a heading and the event's content, key by key."""
    title = event.kind.replace("_", " ").capitalize()
    agent = getattr(event, "agent_id", "")
    lines = [f"{title}{' · ' + agent if agent else ''}"]
    body = {k: v for k, v in event.to_dict().items()
            if k not in ("kind", "job_id", "user_id", "reply_to", "at", "agent_id")}  # fmt: skip
    for key, value in body.items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def format_fmel(report: Any) -> str:
    """A run's FMEL summary, its last decisions and, when asked, the chain check."""
    lines = []
    s = report.summary
    if s:
        actions = " · ".join(f"{k} {v}" for k, v in s["actions"].items())
        lines.append(f"FMEL {report.run_id} · {s['agent_id']} · {s['decisions']} decisions "
                     f"({actions}) · chain {s['chain_head'][:12]}…")  # fmt: skip
    else:
        lines.append(f"FMEL {report.run_id} (no summary: the run did not finish)")
    if report.trades is not None:  # `/fmel RUN trades`: the run's closed trades, not decisions
        lines.append(format_trades(report.run_id, report.trades, report.trades_closed))
    elif report.rows:
        what = "that ordered or traded" if report.trades_only else ""
        lines.append(f"Last {len(report.rows)} decisions {what}".rstrip() + ":")
        lines.append(format_decisions(report.rows, state=True))
    v = report.verification
    if v is not None:
        if v["ok"]:
            lines.append(f"Verified: the hash chain of {v['rows']} decisions is intact "
                         f"(head {str(v['chain_head'])[:12]}…)")  # fmt: skip
        else:
            lines.append(f"MISMATCH at bar {v['first_bad_bar']}: {v['reason']}")
    return "\n".join(lines)


def format_help(usage: Mapping[str, str], help_text: Mapping[str, str]) -> str:
    width = max(len(u) for u in usage.values())
    lines = ["Commands (the same as in Slack):"]
    lines += [f"  {usage[name]:<{width}}  {help_text[name]}" for name in usage]
    return "\n".join(lines)


# ---------------------------------------------------------------------- sweeps and parity
SWEEP_TOP = 10  # combinations in a sweep's ranked table
CELL_CHARS = 16  # of a parameter's name or text value in a table cell
LOWER_IS_BETTER = frozenset({"drawdown"})
METRIC_LABELS = {
    "sharpe": "sharpe",
    "return": "return %",
    "drawdown": "drawdown %",
    "trades": "trades",
    "win_rate": "win rate %",
    "profit_factor": "profit factor",
    "sqn": "sqn",
    "calmar": "calmar",
}
_TABLE_METRICS = ("sharpe", "return", "drawdown", "trades")  # always shown, ranked by or not


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def param_text(value: Any) -> str:
    """A parameter value as a command takes it (``true``, ``0.5``, ``20``, ``ema``), on one
    line: what a user types to ask for that combination again."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)  # never a rounded value
    return " ".join(str(value).split())


def _cell(text: str, limit: int = CELL_CHARS) -> str:
    """A table cell of at most ``limit`` characters: one long name must not widen the whole
    table past a screen."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def assignments(params: Mapping[str, Any], names: Iterable[str] | None = None) -> str:
    """``fast=10, slow=30``: the values of ``names`` (all of them by default)."""
    keys = list(params) if names is None else list(names)
    return ", ".join(f"{k}={param_text(params.get(k, '-'))}" for k in keys)


def given_params(parameters: Mapping[str, Any]) -> str:
    """The strategy parameters a run was given (its ``parameters.params``) as
    ``fast=5, slow=20``; empty when none were."""
    params = parameters.get("params")
    return assignments(params) if isinstance(params, Mapping) and params else ""


def metric_text(name: str, value: Any) -> str:
    """A sweep metric for a table cell: ``n/a`` when missing (or not a number at all)."""
    if not _is_number(value):
        return "n/a"
    if name == "trades":
        return f"{value:,.0f}"
    return f"{value:+.2f}" if name == "return" else f"{value:.2f}"


def short_run_id(run_id: str, within: str = "") -> str:
    """A run id's distinctive part: what follows the sweep's id ``within`` in a member's id
    (``SWEEP-007`` → ``007``), else the random suffix of ``20261124T004443-4d87e7d5``. The
    members of a sweep start alike: their ids' starts tell them apart no better."""
    if within and run_id.startswith(within + "-") and len(run_id) > len(within) + 1:
        return run_id[len(within) + 1 :]
    tail = run_id.rsplit("-", 1)[-1]
    return tail[:8] if len(tail) >= 4 else run_id[-8:] or "-"


def members_within(doc: Mapping[str, Any]) -> bool:
    """Whether every member's id is the sweep's and a suffix (what its short form drops)."""
    sweep = str(doc.get("sweep_id") or "")
    ids = [str(m.get("run_id") or "") for m in doc.get("members") or []]
    return bool(sweep and ids) and all(i.startswith(sweep + "-") for i in ids)


def overfit(in_sample: Any, held_out: Any) -> bool:
    """Whether a held-out Sharpe ratio says the in-sample one was luck: below half of it (and
    so any negative one) when the in-sample one was positive. A combination that was not
    good in sample is not flagged: there was nothing to overfit; nor is a missing figure."""
    if not (_is_number(in_sample) and _is_number(held_out)):
        return False
    return bool(in_sample > 0 and held_out < in_sample / 2)


def swept_names(doc: Mapping[str, Any]) -> list[str]:
    """The parameters that take more than one value (all of the grid's when none does: the
    table still says what ran)."""
    grid = doc.get("grid") or {}
    given = [k for k in doc.get("order") or [] if k in grid]  # as typed; JSON sorts keys
    ordered = given + [k for k in grid if k not in given]
    names = [str(k) for k in ordered if not isinstance(grid[k], list) or len(grid[k]) != 1]
    return names or [str(k) for k in ordered]


def fixed_params(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What every combination set alike: the fixed parameters, and the grid's single values."""
    given = (doc.get("parameters") or {}).get("params")
    swept = set(swept_names(doc))
    fixed = {k: v for k, v in given.items() if k not in swept} if isinstance(given, Mapping) else {}
    single = {k: v[0] for k, v in (doc.get("grid") or {}).items()
              if k not in swept and isinstance(v, list) and len(v) == 1}  # fmt: skip
    return {**fixed, **single}


def _table_metrics(rank: str) -> list[str]:
    """The figures a sweep's table shows: the ranking metric first when it is not one of the
    usual four."""
    extra = [rank] if rank in METRIC_LABELS and rank not in _TABLE_METRICS else []
    return extra + list(_TABLE_METRICS)


def finished_members(doc: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """(rank, member) of the members that finished with figures, best first."""
    members = doc.get("members") or []
    return [(i + 1, m) for i, m in enumerate(members)
            if m.get("status") != "failed" and isinstance(m.get("metrics"), Mapping)]  # fmt: skip


def sweep_table(doc: Mapping[str, Any], *, top: int = SWEEP_TOP) -> list[str]:
    """The ``top`` ranked combinations that finished, one a line under a header: rank, each
    swept parameter, the figures, and the run (its short id)."""
    names = swept_names(doc)
    metrics = _table_metrics(str(doc.get("rank") or ""))
    headers = ["#", *(_cell(n) for n in names), *(METRIC_LABELS[m] for m in metrics), "run"]
    rows = [
        [str(rank),
         *(_cell(param_text((m.get("params") or {}).get(n, "-"))) for n in names),
         *(metric_text(k, m["metrics"].get(k)) for k in metrics),
         short_run_id(str(m.get("run_id") or ""), str(doc.get("sweep_id") or ""))]
        for rank, m in finished_members(doc)[:top]
    ]  # fmt: skip
    first = len(names) + 1
    right = [0, *range(first, first + len(metrics))]
    return format_table(headers, rows, right=right).splitlines()


def held_out_title(oos: Mapping[str, Any]) -> str:
    """``Held-out check (last 30% of bars: 2024-01-02 → 2025-04-04)``."""
    fraction: Any = oos.get("fraction")
    share = f"{fraction * 100:.0f}%" if _is_number(fraction) else "part"
    window = oos.get("held_out") or {}
    span = f"{window.get('start') or '…'} → {window.get('end') or '…'}"
    return f"Held-out check (last {share} of bars: {span})"


def held_out_table(doc: Mapping[str, Any], *, flag: str = "⚠ overfit?") -> list[str]:
    """Each best combination's in-sample and held-out Sharpe and return side by side, the
    held-out ones that look like overfitting flagged with ``flag``."""
    names = swept_names(doc)
    best = (doc.get("oos") or {}).get("best") or []
    headers = ["#", *(_cell(n) for n in names), "sharpe in-sample", "sharpe held-out",
               "return % in-sample", "return % held-out", ""]  # fmt: skip
    rows = [[str(i + 1), *(_cell(param_text((b.get("params") or {}).get(n, "-"))) for n in names),
             *_side_by_side(b, flag)] for i, b in enumerate(best)]  # fmt: skip
    first = len(names) + 1
    return format_table(headers, rows, right=[0, *range(first, first + 4)]).splitlines()


def _side_by_side(best: Mapping[str, Any], flag: str) -> list[str]:
    inside = best.get("in_sample") or {}
    out = best.get("held_out")
    if not isinstance(out, Mapping):
        return [metric_text("sharpe", inside.get("sharpe")), "failed",
                metric_text("return", inside.get("return")), "failed", ""]  # fmt: skip
    warn = flag if overfit(inside.get("sharpe"), out.get("sharpe")) else ""
    return [metric_text("sharpe", inside.get("sharpe")), metric_text("sharpe", out.get("sharpe")),
            metric_text("return", inside.get("return")), metric_text("return", out.get("return")),
            warn]  # fmt: skip


def any_overfit(doc: Mapping[str, Any]) -> bool:
    best = (doc.get("oos") or {}).get("best") or []
    return any(overfit((b.get("in_sample") or {}).get("sharpe"),
                       (b.get("held_out") or {}).get("sharpe")) for b in best)  # fmt: skip


def held_out_failures(doc: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(place, error) of the best combinations whose held-out run failed."""
    best = (doc.get("oos") or {}).get("best") or []
    return [(i + 1, " ".join(str(b.get("error") or "it failed").split()))
            for i, b in enumerate(best) if not isinstance(b.get("held_out"), Mapping)]  # fmt: skip


def first_failure(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """(its values, its one-line error) of the first failed combination, if any."""
    for m in doc.get("members") or []:
        if m.get("status") == "failed" or m.get("metrics") is None:
            error = " ".join(str(m.get("error") or "it failed").split())
            return assignments(m.get("params") or {}, swept_names(doc)), error
    return None


def sweep_setting(doc: Mapping[str, Any]) -> list[str]:
    """What every combination shared: symbols, dates, cash, commission (the parameters they
    set alike are :func:`fixed_params`)."""
    p = doc.get("parameters") or {}
    bits = [", ".join(str(s) for s in p.get("symbols") or ["SPY"])]
    if p.get("start") or p.get("end"):
        bits.append(f"{p.get('start') or '…'} → {p.get('end') or '…'}")
    bits += [f"cash {_num(p['cash'])}"] if _is_number(p.get("cash")) else []
    bits += [f"commission {p['commission']:g}"] if _is_number(p.get("commission")) else []
    return bits


def format_sweep(doc: Mapping[str, Any]) -> str:
    """A sweep's outcome for ``tradeops sweep``: the ranked table, the failures, the held-out
    check."""
    rank = str(doc.get("rank") or "?")
    took = doc.get("took_s")
    head = (f"Sweep {doc.get('sweep_id')} · {doc.get('agent_id')} v{doc.get('agent_version')} · "
            + " · ".join(sweep_setting(doc))
            + (f" · fixed {assignments(fixed)}" if (fixed := fixed_params(doc)) else "")
            + f" · ranked by {rank} ({'lower' if rank in LOWER_IS_BETTER else 'higher'} is better)"
            + f" · {doc.get('combinations')} combinations"
            + (f" in {took:.1f} s" if _is_number(took) else ""))  # fmt: skip
    lines = [head]
    done = finished_members(doc)
    if done:
        shown = min(len(done), SWEEP_TOP)
        which = f"Top {shown} of {len(done)} finished" if shown < len(done) else "All finished"
        lines.append(f"{which} (best first):")
        lines += ["  " + ln for ln in sweep_table(doc)]
    else:
        lines.append("No combination finished.")
    lines += _failed_lines(doc)
    lines += _held_out_lines(doc)
    if done:
        best = done[0][1].get("run_id")
        others = f" · the others are {doc.get('sweep_id')}-RUN" if members_within(doc) else ""
        lines.append(f"Best run {best}: tradeops fmel {best}{others}")
    return "\n".join(lines)


def _failed_lines(doc: Mapping[str, Any]) -> list[str]:
    failed = doc.get("failed") or 0
    first = first_failure(doc)
    if not failed and first is None:
        return []
    line = f"{failed} of {doc.get('combinations')} combinations failed"
    return [line + (f"; first: {first[0]}: {first[1]}" if first else "")]


def _held_out_lines(doc: Mapping[str, Any]) -> list[str]:
    oos = doc.get("oos")
    if not isinstance(oos, Mapping):
        return []
    inside = oos.get("in_sample") or {}
    lines = [held_out_title(oos),
             f"  in sample {inside.get('start')} → {inside.get('end')} ({inside.get('bars')} bars)"
             f" · held out {(oos.get('held_out') or {}).get('bars')} bars"]  # fmt: skip
    lines += ["  " + ln for ln in held_out_table(doc)]
    lines += [f"  #{i}: its held-out run failed: {err}" for i, err in held_out_failures(doc)]
    if any_overfit(doc):
        lines.append("  ⚠ overfit?: the held-out Sharpe is below half the in-sample one")
    return lines


def format_parity(doc: Mapping[str, Any]) -> str:
    """A parity check's outcome for ``tradeops parity``."""
    verdict = doc.get("verdict")
    who = f"Parity check {doc.get('parity_id')} · {doc.get('agent_id')} v{doc.get('agent_version')}"
    runs = f"  backtest run {doc.get('backtest_run_id')} · paper run {doc.get('paper_run_id')}"
    if verdict == "identical":
        said = (
            f"{who}: the backtest and the paper replay are identical over "
            f"{doc.get('bars')} bars ({doc.get('orders')} orders, {doc.get('fills')} fills)"
        )
        return "\n".join([said, runs])
    if verdict == "different":
        return "\n".join([f"{who}: the backtest and the paper replay differ",
                          *_difference_lines(doc), runs])  # fmt: skip
    err = doc.get("error") or {}
    lines = [f"{who} failed: {err.get('message') or 'unknown error'}"]
    lines += [f"  Hint: {err['hint']}"] if err.get("hint") else []
    return "\n".join([*lines, runs])


def _difference_lines(doc: Mapping[str, Any]) -> list[str]:
    d = doc.get("first_difference")
    total = f"  {doc.get('differing_bars')} of {doc.get('bars')} bars differ in all"
    if not isinstance(d, Mapping):
        return [total]
    when = f" ({d['timestamp']})" if d.get("timestamp") else ""
    return [f"  first at bar {d.get('bar')}{when}, in {d.get('field')}:",
            f"    backtest: {d.get('backtest')}", f"    paper:    {d.get('paper')}",
            total]  # fmt: skip


def _format_sweep_or_parity(event: Any) -> str | None:
    """Sweep and parity news; None for other kinds."""
    kind = event.kind
    if kind == "sweep_progress":
        failed = f" ({event.failed} failed)" if event.failed else ""
        if event.phase == "held_out":
            return (f"… sweep of {event.agent_id}: re-running the best on the held-out bars, "
                    f"{event.done} of {event.total} done{failed}")  # fmt: skip
        done = f"{event.done} of {event.total} combinations done"
        return f"… sweep of {event.agent_id}: {done}{failed}"
    if kind == "sweep_finished":
        return format_sweep(event.result)
    if kind == "sweep_failed":
        err = event.error
        who = f" of {event.agent_id}" if event.agent_id else ""
        hint = f"\n  Hint: {err['hint']}" if err.get("hint") else ""
        return f"Sweep{who} failed: {err.get('message')}{hint}"
    if kind == "parity_checked":
        return format_parity(event.report)
    return None


class Conversation:
    """Prints a chat as the console shows it: who speaks, then what they said."""

    def __init__(self, write: Any = print, width: int = 10) -> None:
        self.write = write
        self.width = width

    def say(self, who: str, text: str) -> None:
        pad = " " * (self.width + 3)
        first, *rest = text.splitlines() or [""]
        self.write(f"{who:>{self.width}} › {first}")
        for line in rest:
            self.write(f"{pad}{line}")
