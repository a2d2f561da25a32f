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
    return _format_paper(event) or _format_other(event)


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
