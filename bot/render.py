"""Slack Block Kit for everything the bot says: the only module that knows Slack markup.

Jobs return Events, the console prints them as text (``bot/console.py``); this turns the same
Events, result documents and lists into messages (``{"text", "blocks"}``, ready for
``chat.postMessage(**message)`` / ``chat.update``) and the App Home view. Two things are
done here once, for every message, so no caller has to remember them:

- Text that users or agents control (agent and indicator names, error messages) is escaped
  for mrkdwn, and every mrkdwn object is ``verbatim``: nothing an agent says can ping anyone.
- Slack's limits are met by :func:`fit`, which summarises instead of failing or cutting
  blindly: it drops whole items and says how many ("… and 12 more trades"), and shortens a
  single overlong text at a word boundary, with "…".

Builders return *parts*: finished blocks, :class:`Lines` (one section of items that ``fit``
may drop) and :class:`Repeated` (blocks per item, such as a session and its Stop button).
Everything here is pure and deterministic: no I/O, no clock, no client.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeAlias

from bot.console import (
    LAST_TRADES,
    LOWER_IS_BETTER,
    SWEEP_TOP,
    any_overfit,
    assignments,
    closed_count,
    finished_members,
    first_failure,
    fixed_params,
    given_params,
    held_out_failures,
    held_out_table,
    held_out_title,
    members_within,
    metric_text,
    monthly_grid,
    sweep_setting,
    sweep_table,
    swept_names,
    trades_table,
)
from runtime.defaults import stored_warnings
from workers import events as ev
from workers.payloads import BacktestLine, FailureLine, SessionDoc

Block: TypeAlias = dict[str, Any]
Message: TypeAlias = dict[str, Any]

# Slack's limits (https://api.slack.com/reference/block-kit)
MAX_BLOCKS = 50
MAX_HOME_BLOCKS = 100
SECTION_CHARS = 3000
HEADER_CHARS = 150
CONTEXT_CHARS = 2000
FIELD_CHARS = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS = 25
BUTTON_TEXT_CHARS = 75
BUTTON_VALUE_CHARS = 2000
TEXT_CHARS = 3000  # our bound for the notification / fallback text

ITEM_CHARS = 500  # one item of a list: a long one must not crowd out the others
GRID_YEARS = 5  # years of monthly returns in a result message
FMEL_TRADES = 50  # closed trades in the /fmel RUN trades answer
BAR_CELLS = 20
BACKTEST_AGAIN = "tradeops_backtest_again"
PAPER_START = "tradeops_paper_start"
PAPER_STOP = "tradeops_paper_stop"
PNL = "P&amp;L"
OVERFIT = "⚠️ overfit?"  # a held-out Sharpe below half the in-sample one
ACTIONS = ("INACTIVE", "HOLD", "ORDERED", "TRADED")  # FMEL actions, in the order they come
STATUS_ICON = {"running": "🟢", "starting": "🟡", "crashed": "🔴", "stopped": "⚪"}
WORK_NAMES = {
    "register_agent": "Registering the agent",
    "run_backtest": "The backtest",
    "paper_start": "Starting paper trading",
    "paper_stop": "Stopping paper trading",
    "paper_status": "The paper status",
    "digest": "The digest",
    "sweep_start": "The sweep",
    "parity": "The parity check",
}
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{1,20}")


@dataclass(frozen=True)
class Lines:
    """One section of items (each already mrkdwn, possibly several lines long).

    ``fit`` keeps as many whole items as the section holds and notes how many it left out.
    """

    items: Sequence[str]
    title: str = ""
    noun: str = "line"  # singular: "… and 12 more {noun}s"
    tail: bool = False  # newest last: keep the end, and say how many earlier ones are left out
    item_chars: int = ITEM_CHARS


@dataclass(frozen=True)
class Repeated:
    """Blocks per item; ``fit`` keeps whole items within the message's block budget."""

    items: Sequence[Sequence[Block]]
    noun: str


Part: TypeAlias = Block | Lines | Repeated
Draft: TypeAlias = tuple[list[Part], str]  # the parts, and the plain fallback text


# ====================================================================== public API
def render_event(event: ev.Event) -> Message | None:
    """The message for an event; ``None`` for a kind this renderer does not know."""
    draft = _EVENT_DRAFTS.get(event.kind)
    return fit(*draft(event)) if draft is not None else None


def render_result(
    doc: Mapping[str, Any], *, fmel_rows: Sequence[Mapping[str, Any]] | None = None
) -> Message:
    """A backtest result document (DESIGN.md section 7); the chart is uploaded apart."""
    return fit(*_result_draft(doc, fmel_rows))


def render_fmel(report: Any) -> Message:
    """The ``/fmel`` answer: a ``bot.desk.FmelReport``."""
    return fit(*_fmel_draft(report))


def render_agents(agents: Sequence[Any]) -> Message:
    return fit(*_agents_draft(agents))


def render_runs(runs: Sequence[Any]) -> Message:
    return fit(*_runs_draft(runs))


def render_help(usage: Mapping[str, str], help: Mapping[str, str]) -> Message:
    items = [f"{code(usage[name])} — {esc(help.get(name, ''))}" for name in usage]
    parts: list[Part] = [
        Lines(items, title="*Commands*", noun="command"),
        _context("Upload a `.py` backtrader strategy file to register it as an agent."),
    ]
    return fit(parts, "tradeops commands: " + ", ".join(f"/{esc(n)}" for n in usage))


def render_usage_error(message: str) -> Message:
    what, _, usage = message.partition("; usage: ")
    text = f"⚠️ {esc(what)}" + (f"\nUsage: {code(usage)}" if usage else "")
    return fit([_section(text)], f"⚠️ {esc(message)}")


def render_refusal(message: str) -> Message:
    return fit([_section(f"🚫 {esc(message)}")], f"🚫 {esc(message)}")


def render_unshowable(event: ev.Event) -> Message:
    """What the thread gets when an event cannot be shown (a rendering fault, a bad field):
    one line, nothing of the event's content, and delivery goes on for everybody else."""
    run = getattr(event, "run_id", "") or ""
    what = esc(event.kind.replace("_", " ")) + (f" for run {code(run)}" if run else "")
    text = f"⚠️ tradeops could not show this {what}; an operator has been told."
    return fit([_section(text)], text)


def render_thread_root(user_id: str, command_text: str) -> Message:
    """The channel message that opens a job's thread: ``<@U123> ran `/backtest sma SPY```."""
    text = f"{_user(user_id)} ran {code(command_text)}"
    return fit([_section(text)], text)


def render_paper_status(sessions: Sequence[SessionDoc]) -> Message:
    return fit(*_paper_status_draft(sessions))


def render_outcome(event: ev.Event) -> Message:
    """What a job's status message (queued, then progress) says once the job has ended."""
    text = _outcome_text(event)
    return fit([_section(text)], text)


def _outcome_text(event: ev.Event) -> str:
    if isinstance(event, ev.BacktestFinished):
        took = (event.result.get("monitoring") or {}).get("execution_time_s")
        text = "✅ Backtest finished" + (f" in {took} s" if took is not None else "")
        return text + " · results below"
    if isinstance(event, ev.JobFailed) and event.work in _OWN_OUTCOME:
        return f"❌ {WORK_NAMES[event.work]} failed · details below"
    if isinstance(event, ev.BacktestFailed | ev.JobFailed):
        return "❌ Backtest failed · details below"
    if isinstance(event, ev.SweepFinished):
        combinations = _int(event.result.get("combinations"))
        return f"✅ Sweep finished · {_plural(combinations, 'combination')} · results below"
    if isinstance(event, ev.SweepFailed):
        return "❌ Sweep failed · details below"
    if isinstance(event, ev.ParityChecked):
        return _PARITY_OUTCOME.get(event.report.get("verdict", ""), _PARITY_OUTCOME["failed"])
    return "Done · see below"


# jobs whose interruption is told in their own words, not as a failed backtest
_OWN_OUTCOME = ("sweep_start", "parity")
_PARITY_OUTCOME = {
    "identical": "✅ Parity check: the backtest and the paper replay are identical · details below",
    "different": "⚠️ Parity check: the backtest and the paper replay differ · details below",
    "failed": "❌ Parity check failed · details below",
}


def render_home(
    *,
    user_id: str,
    agents: Sequence[Any],
    runs: Sequence[Any],
    sessions: Sequence[SessionDoc],
) -> dict[str, Any]:
    """The App Home tab: the user's agents, recent runs and paper sessions."""
    parts: list[Part] = [
        _header("tradeops"),
        _section(f"Hi {_user(user_id)}: your agents, recent runs and paper sessions."),
        _divider(),
        Lines(_agent_items(agents) or ["none yet"], title="*Your agents*", noun="agent"),
        Lines(_run_items(runs) or ["none yet"], title="*Recent runs*", noun="run"),
        *_paper_status_draft(sessions)[0],
        _context("Upload a `.py` strategy file in a channel with me, or type `/help`."),
    ]
    return {"type": "home", "blocks": fit(parts, "", max_blocks=MAX_HOME_BLOCKS)["blocks"]}


# ====================================================================== fitting
def fit(parts: Sequence[Part], text: str, *, max_blocks: int = MAX_BLOCKS) -> Message:
    """The message for ``parts`` within Slack's limits, summarised where it would not fit."""
    laid = [p if isinstance(p, Repeated) else _one_block(p) for p in parts]
    present = [p for p in laid if p is not None]
    budget = max_blocks - sum(1 for p in present if not isinstance(p, Repeated))
    blocks: list[Block] = []
    for part in present:
        chosen = _take_items(part, budget) if isinstance(part, Repeated) else [part]
        budget -= len(chosen) if isinstance(part, Repeated) else 0
        blocks += chosen
    clamped = [b for b in map(_clamp, blocks) if b is not None]
    return {"text": shorten(text, TEXT_CHARS), "blocks": _cap_blocks(clamped, max_blocks)}


def _one_block(part: Block | Lines) -> Block | None:
    return _lines_block(part) if isinstance(part, Lines) else part


def _lines_block(part: Lines) -> Block | None:
    return _section(_fit_lines(part, SECTION_CHARS)) if part.items or part.title else None


def _fit_lines(part: Lines, limit: int) -> str:
    """As many whole items as fit in ``limit``, and a note saying how many did not."""
    title = shorten(part.title, limit // 4)
    order = list(reversed(part.items)) if part.tail else list(part.items)
    room = limit - size(title) - 1 - size(_more(part, len(order))) - 1
    kept: list[str] = []
    used = 0
    for item in order:
        piece = shorten(item, max(1, min(part.item_chars, room)))
        if used + size(piece) + 1 > room:
            break
        kept.append(piece)
        used += size(piece) + 1
    body = "\n".join(reversed(kept) if part.tail else kept)
    note = _more(part, len(order) - len(kept)) if len(kept) < len(order) else ""
    pieces = [title, note, body] if part.tail else [title, body, note]
    return "\n".join(p for p in pieces if p)


def _more(part: Lines, count: int) -> str:
    later = " before these" if part.tail else ""
    return f"_… and {count:,} more {_noun(count, part.noun)}{later}_"


def _take_items(part: Repeated, budget: int) -> list[Block]:
    """Whole items within ``budget`` blocks; one of them is a note when some are left out."""
    if sum(len(item) for item in part.items) <= budget:
        return [block for item in part.items for block in item]
    kept: list[Block] = []
    shown = 0
    for item in part.items:
        if len(kept) + len(item) > budget - 1:
            break
        kept += item
        shown += 1
    left = len(part.items) - shown
    note = _context(f"_… and {left:,} more {_noun(left, part.noun)}_")
    return [*kept, note] if budget >= 1 else []


def _cap_blocks(blocks: list[Block], limit: int) -> list[Block]:
    """The last resort: too many blocks even after lists were summarised. The buttons at the
    end are kept; blocks before them go, and a note says how many."""
    if len(blocks) <= limit:
        return blocks
    tail = blocks[-1:] if blocks[-1]["type"] == "actions" else []
    keep = limit - 1 - len(tail)
    left = len(blocks) - len(tail) - keep
    return [*blocks[:keep], _context(f"_… and {left:,} more {_noun(left, 'part')}_"), *tail]


def _clamp(block: Block) -> Block | None:
    """One block within its own limits (lengths, element counts)."""
    kind = block.get("type")
    if kind == "header":
        return {
            **block,
            "text": {**block["text"], "text": shorten(block["text"]["text"], HEADER_CHARS)},
        }
    if kind == "section":
        return _clamp_section(block)
    if kind == "context":
        elements = [_clamp_text(e, CONTEXT_CHARS) for e in block["elements"][:MAX_CONTEXT_ELEMENTS]]
        return {**block, "elements": elements}
    if kind == "actions":
        buttons = [b for b in map(_clamp_button, block["elements"]) if b is not None]
        return {**block, "elements": buttons[:MAX_ACTIONS]} if buttons else None
    return block


def _clamp_section(block: Block) -> Block | None:
    out = dict(block)
    if "text" in out:
        out["text"] = _clamp_text(out["text"], SECTION_CHARS)
    if "fields" in out:
        out["fields"] = [_clamp_text(f, FIELD_CHARS) for f in out["fields"][:MAX_FIELDS]]
    if "accessory" in out:
        button = _clamp_button(out["accessory"])
        if button is None:
            del out["accessory"]
        else:
            out["accessory"] = button
    return out


def _clamp_text(obj: Block, limit: int) -> Block:
    return {**obj, "text": shorten(obj["text"], limit)}


def _clamp_button(button: Block) -> Block | None:
    """A button whose value is too long cannot be shortened (it is JSON): it is left out."""
    if size(button.get("value", "")) > BUTTON_VALUE_CHARS:
        return None
    return {**button, "text": _clamp_text(button["text"], BUTTON_TEXT_CHARS)}


def size(text: str) -> int:
    """Length as Slack may count it (UTF-16 code units): never less than ``len(text)``."""
    return len(text.encode("utf-16-le")) // 2


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit``; else its longest start that ends at a space or line
    break, with "…" (and a code span or block the cut left open closed again)."""
    if size(text) <= limit:
        return text
    for reserve in (1, 5):  # "…", then "…" and a closing "\n```"
        short = _closed(_words_within(text, max(limit - reserve, 0)) + "…")
        if size(short) <= limit:
            return short
    return "…" if limit >= 1 else ""


def _words_within(text: str, units: int) -> str:
    """The longest start of ``text`` within ``units`` that ends with a whole word; a hard cut
    only when the first word alone is longer."""
    cut = _prefix(text, units + 1)  # one more: the boundary may be the very next character
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary > 0:
        return cut[:boundary].rstrip()
    return _whole_entities(_prefix(text, units))


def _closed(text: str) -> str:
    fences = text.count("```")
    if fences % 2:
        return text + "\n```"
    return text + "`" if (text.count("`") - 3 * fences) % 2 else text


def _prefix(text: str, units: int) -> str:
    """The longest start of ``text`` of at most ``units`` UTF-16 units (no half emoji)."""
    return text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", errors="ignore")


def _whole_entities(cut: str) -> str:
    """A hard cut (one word longer than the limit) must not leave half an ``&amp;``."""
    amp = cut.rfind("&")
    return cut[:amp] if amp != -1 and ";" not in cut[amp:] else cut


# ====================================================================== text and blocks
def esc(text: Any) -> str:
    """Text for mrkdwn: ``&``, ``<`` and ``>`` escaped, so ``<!channel>`` is shown, not sent."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: Any) -> str:
    """Inline code: escaped, on one line, with no backtick of its own to end it early."""
    inner = esc(text).replace("`", "'").replace("\n", " ").strip()
    return f"`{inner or '?'}`"


def _plain(text: Any) -> str:
    """plain_text (headers, button labels): shown as it is, with no ``<…>`` that reads as a
    mention anywhere it is shown as mrkdwn (notifications, previews)."""
    return str(text).replace("<", "‹").replace(">", "›")


def _user(user_id: str) -> str:
    return f"<@{user_id}>" if _SLACK_USER.fullmatch(user_id or "") else code(user_id or "?")


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": _mrkdwn(text)}
    return {**block, "accessory": accessory} if accessory else block


def _fields(pairs: Iterable[tuple[str, str]]) -> Block:
    return {"type": "section", "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in pairs]}


def _context(*texts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(t) for t in texts]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _plain(text), "emoji": True}}


def _divider() -> Block:
    return {"type": "divider"}


def _button(label: str, action_id: str, value: Mapping[str, Any], style: str = "") -> Block:
    button: Block = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": _plain(label), "emoji": True},
        "value": _json(value),
    }
    return {**button, "style": style} if style else button


def _json(value: Mapping[str, Any]) -> str:
    """Compact JSON for a button value, with ``<``, ``>`` and ``&`` as ``\\u`` escapes: the
    same data once parsed, and no ``<!channel>`` in anything we send, even where unrendered."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _actions(*buttons: Block | None) -> Block | None:
    present = [b for b in buttons if b is not None]
    return {"type": "actions", "elements": present} if present else None


def _noun(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {_noun(count, noun)}"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _num(x: Any, digits: int = 2) -> str:
    return f"{x:,.{digits}f}" if _is_number(x) else ("n/a" if x is None else esc(x))


def _pct(x: Any, sign: bool = True) -> str:
    if not _is_number(x):
        return _num(x)
    return f"{x:+.2f}%" if sign else f"{x:.2f}%"


def _g(x: Any) -> str:
    return f"{x:g}" if _is_number(x) else esc(x)


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if _is_number(ts) else "?"


def _compact(parts: Iterable[Part | None]) -> list[Part]:
    return [p for p in parts if p is not None]


# ====================================================================== events
def _registered(e: ev.AgentRegistered) -> Draft:
    r = e.report
    params = " · ".join(f"{esc(k)}={esc(v)}" for k, v in sorted((r.get("params") or {}).items()))
    indicators = " · ".join(esc(i) for i in r.get("indicators") or ())
    warnings = [_finding(w, hint=False) for w in r.get("warnings") or ()]
    strategy = code(r.get("strategy"))
    head = f"✅ Registered agent {code(e.agent_id)} *v{e.version}* · strategy {strategy}"
    parts = _compact([
        _section(head),
        _fields([("Params", params or "none"), ("Indicators", indicators or "none")]),
        Lines(warnings, title=f"*⚠️ {_plural(len(warnings), 'warning')}*", noun="warning")
        if warnings else None,
        _context(f"Backtest it with {code(f'/backtest {e.agent_id}')}"),
    ])  # fmt: skip
    text = f"Registered agent {esc(e.agent_id)} v{e.version}"
    return parts, text + (f" with {_plural(len(warnings), 'warning')}" if warnings else "")


def _rejected(e: ev.AgentRejected) -> Draft:
    errors = [_finding(x, hint=True) for x in e.report.get("errors") or ()]
    head = f"❌ Rejected {code(e.agent_name)}: {_plural(len(errors), 'error')}"
    parts: list[Part] = [
        _section(head),
        Lines(errors, noun="error"),
        _context("Fix the file and upload it again."),
    ]
    return parts, f"Rejected {esc(e.agent_name)}: {_plural(len(errors), 'error')}"


def _finding(f: Mapping[str, Any], *, hint: bool) -> str:
    line, column = f.get("line"), f.get("column")
    where = f"line {line}" + (f", col {column}" if column else "") if line else ""
    text = f"• *{where}*: {esc(f.get('message'))}" if where else f"• {esc(f.get('message'))}"
    return text + (f"\n    _Hint:_ {esc(f.get('hint'))}" if hint and f.get("hint") else "")


def _queued(e: ev.BacktestQueued) -> Draft:
    p = e.parameters
    symbols = ", ".join(esc(s) for s in p.get("symbols") or ["SPY"])
    version = f" v{e.version}" if e.version else ""
    ahead = {None: "", 0: " · next in line"}.get(e.position, f" · {e.position} ahead in the queue")
    text = f"⏳ Backtest queued · {code(e.agent_id)}{version} on {symbols}{ahead}"
    details = [f"run {code(e.run_id)}"]
    details += [f"{k} {esc(p[k])}" for k in ("start", "end") if p.get(k)]
    details += [f"cash {_num(p['cash'])}"] if p.get("cash") else []
    return [_section(text), _context(" · ".join(details))], f"Backtest of {esc(e.agent_id)} queued"


def _progress(e: ev.BacktestProgress) -> Draft:
    where = f"bar {e.done:,}"
    if e.total:
        where = f"{progress_bar(e.done, e.total)} · bar {e.done:,} of {e.total:,}"
    text = f"⏳ Backtest {code(e.run_id)} running\n{where}"
    return [_section(text)], f"Backtest {esc(e.run_id)} running: {where}"


def progress_bar(done: int, total: int) -> str:
    """``▓▓▓▓░░░░ 52%``: how far a run is, in ``BAR_CELLS`` cells."""
    share = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    filled = int(share * BAR_CELLS)
    return "▓" * filled + "░" * (BAR_CELLS - filled) + f" {int(share * 100)}%"


def _finished(e: ev.BacktestFinished) -> Draft:
    return _result_draft(e.result, None)


def _failed(e: ev.BacktestFailed) -> Draft:
    parts = _error_parts(f"Backtest {code(e.run_id)} failed", e.error)
    return parts, f"Backtest {esc(e.run_id)} failed: {esc(e.error.get('message', ''))}"


def _job_failed(e: ev.JobFailed) -> Draft:
    what = WORK_NAMES.get(e.work, esc(e.work.replace("_", " ").capitalize()))
    if e.retrying:
        left = _plural(e.attempts_left, "attempt")
        text = f"⚠️ {what} was interrupted: {esc(e.error.get('message', ''))}"
        return [_section(text), _context(f"Running it again ({left} left).")], text
    parts = _error_parts(f"{what} failed", e.error)
    return parts, f"{what} failed: {esc(e.error.get('message', ''))}"


def _error_parts(title: str, error: Mapping[str, Any]) -> list[Part]:
    """What went wrong, for a reader: kind, line, message, hint. Never the traceback."""
    line = error.get("line")
    head = f"❌ *{title}*: {esc(error.get('kind') or 'unknown')} error"
    head += f" at line {line}" if line else ""
    message = "\n".join(f"> {ln}" for ln in esc(error.get("message") or "").splitlines())
    hint = error.get("hint")
    return _compact([
        _section(f"{head}\n{message}" if message else head),
        _context(f"💡 {esc(hint)}") if hint else None,
    ])  # fmt: skip


# ---------------------------------------------------------------------- paper trading
def _session_line(x: SessionDoc) -> str:
    status = str(x.get("status") or "?")
    health = (x.get("health") or {}).get("status")
    pnl = x.get("pnl")
    money = f"{PNL} {_signed(pnl.get('pnl'))} ({_pct(pnl.get('pnl_pct'))})" if pnl else f"{PNL} n/a"
    decisions = x.get("decisions")
    bits = [
        f"{STATUS_ICON.get(status, '•')} {code(x.get('agent'))} v{esc(x.get('version') or '?')}",
        esc(status) + (f" (health {esc(health)})" if health else ""),
        money,
        "n/a decisions" if decisions is None else _plural(decisions, "decision"),
    ]
    bits += [_plural(x["restarts"], "restart")] if x.get("restarts") else []
    bits += [f"run {code(x['run_id'])}"] if x.get("run_id") else []
    return " · ".join(bits)


def _positions_line(x: SessionDoc) -> str:
    """``Open: SPY 12 @ 412.30, last 420.10, unrealised +93.60 · …`` (at most 10)."""
    held = x.get("positions") or {}
    if not isinstance(held, Mapping) or not held:
        return ""
    bits = []
    for symbol, p in list(held.items())[:10]:
        line = f"{esc(symbol)} {_g(p.get('size'))} @ {_num(p.get('price'))}"
        if _is_number(p.get("last")):
            line += f", last {_num(p['last'])}"
        if _is_number(p.get("unrealised")):
            line += f", unrealised {_signed(p['unrealised'])}"
        bits.append(line)
    more = f" · and {len(held) - 10:,} more" if len(held) > 10 else ""
    return "Open: " + " · ".join(bits) + more


def _stop_button(x: Mapping[str, Any]) -> Block | None:
    """Any session that still holds its agent's slot (starting, running, crashed)."""
    if x.get("status") == "stopped" or not x.get("agent"):
        return None
    return _button("Stop", PAPER_STOP, {"agent": x["agent"]}, style="danger")


def _paper_status_draft(sessions: Sequence[SessionDoc]) -> Draft:
    if not sessions:
        text = "No paper sessions. Start one with `/paper-start &lt;agent&gt;`."
        return [_section(text)], "No paper sessions."
    rows = [[_section(_session_line(x), accessory=_stop_button(x))]
            + ([_context(held)] if (held := _positions_line(x)) else [])
            for x in sessions]  # fmt: skip
    running = sum(1 for x in sessions if x.get("status") == "running")
    head = f"*Paper sessions* · {_plural(len(sessions), 'session')}, {running:,} running"
    parts: list[Part] = [_section(head), Repeated(rows, noun="paper session")]
    return parts, f"{_plural(len(sessions), 'paper session')}, {running:,} running"


def _paper_params(p: Mapping[str, Any]) -> str:
    bits = [", ".join(esc(s) for s in p.get("symbols") or ())]
    bits += [f"cash {_num(p['cash'])}"] if p.get("cash") else []
    bits += [f"{esc(p['feed'])} feed"] if p.get("feed") else []
    bits += [f"{_g(p['bar_seconds'])} s bars"] if p.get("bar_seconds") else []
    bits += [f"from {esc(p['start'])}"] if p.get("start") else []
    bits += [code(given)] if (given := given_params(p)) else []
    return " · ".join(b for b in bits if b)


def _paper_started(e: ev.PaperStarted) -> Draft:
    x = e.session
    text = f"▶️ Paper trading started · {_session_line({**x, 'agent': e.agent_id})}"
    parts = _compact([
        _section(text),
        _context(_paper_params(x.get("parameters") or {}) or "default parameters"),
        _actions(_stop_button({**x, "agent": e.agent_id})),
    ])  # fmt: skip
    return parts, f"Paper trading started for {esc(e.agent_id)}"


def _paper_health(e: ev.PaperHealth) -> Draft:
    h = e.health
    status = str(h.get("status") or "unknown")
    head = f"🩺 {code(e.agent_id)} paper session: *{esc(status)}*"
    in_a_row = h.get("in_a_row")
    if isinstance(in_a_row, int) and in_a_row > 1:
        head += f" {_plural(in_a_row, 'time')} in a row"
    bits = [head]
    if status == "failed":
        bits += ["not restarted: it fails the same way at every start"]
    elif _is_number(h.get("restart_in_s")):
        bits += [f"restarting in {_g(h['restart_in_s'])} s"]
    bits += [f"equity {_num(h['equity'])}"] if "equity" in h else []
    bits += [_plural(h["decisions"], "decision")] if _is_number(h.get("decisions")) else []
    shown = {"status", "equity", "decisions", "in_a_row", "streak", "restart_in_s", "reason"}
    others = [f"{esc(k)} {_scalar(v)}" for k, v in sorted(h.items())
              if k not in shown and _is_scalar(v)]  # fmt: skip
    reason = f"Why: {esc(h['reason'])}" if isinstance(h.get("reason"), str) else None
    parts = _compact([_section(" · ".join(bits)), _context(reason) if reason else None,
                      _context(" · ".join(others)) if others else None])  # fmt: skip
    return parts, f"Paper session {esc(e.agent_id)}: {esc(status)}"


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, str | int | float | bool)


def _scalar(x: Any) -> str:
    return _num(x, 2) if isinstance(x, float) else esc(x)


def _paper_stopped(e: ev.PaperStopped) -> Draft:
    line = _session_line({**e.summary, "agent": e.agent_id, "status": "stopped"})
    text = f"⏹️ Paper trading stopped · {line}"
    return [_section(text)], f"Paper trading stopped for {esc(e.agent_id)}"


def _paper_failed(e: ev.PaperFailed) -> Draft:
    who = f" {code(e.agent_id)}" if e.agent_id else ""
    parts = _error_parts(f"Paper trading{who}", e.error)
    return parts, f"Paper trading: {esc(e.error.get('message', ''))}"


def _paper_status(e: ev.PaperStatus) -> Draft:
    return _paper_status_draft(e.sessions)


# ---------------------------------------------------------------------- digest
def _digest(e: ev.Digest) -> Draft:
    sec = e.sections
    paper, backtests = sec.get("paper") or [], sec.get("backtests") or []
    failures = sec.get("failures") or []
    counts = (f"{_plural(len(paper), 'paper session')} · {_plural(len(backtests), 'backtest')}"
              f" · {_plural(len(failures), 'failure')}")  # fmt: skip
    parts = _compact([
        _header(f"Digest · {_when(e.since)} → {_when(e.until)} UTC"),
        _context(counts),
        Lines([_session_line(x) for x in paper], title="*Paper sessions*", noun="paper session")
        if paper else None,
        Lines([_backtest_line(b) for b in backtests], title="*Backtests*", noun="backtest")
        if backtests else None,
        Lines([_failure_line(f) for f in failures], title="*Failures*", noun="failure")
        if failures else None,
        None if paper or backtests or failures else _section("Nothing new since the last digest."),
    ])  # fmt: skip
    return parts, f"Digest: {counts.replace(' · ', ', ')}"


def _backtest_line(b: BacktestLine) -> str:
    outcome = (f"return {_pct(b['return_pct'])} · Sharpe {_num(b.get('sharpe'))}"
               if b.get("return_pct") is not None else esc(b.get("status") or "?"))  # fmt: skip
    who = f"{code(b.get('agent'))} v{esc(b.get('version'))}"
    flag = _warning_flag(bool(b.get("lookahead")), b.get("warnings"))
    return f"• {who} · {outcome}{flag} · run {code(b.get('run_id'))}"


def _warning_flag(lookahead: bool, warnings: Any) -> str:
    """`` · ⚠️ look-ahead`` (figures that cannot be traded), else how many warnings."""
    if lookahead:
        return " · ⚠️ look-ahead"
    if _is_number(warnings) and warnings:
        return f" · ⚠️ {_plural(warnings, 'warning')}"
    return ""


def _failure_line(f: FailureLine) -> str:
    err = f.get("error") or {}
    what = f"{esc(err.get('kind') or '?')}: {esc(err.get('message') or '')}"
    return f"• ❌ {code(f.get('agent'))} v{esc(f.get('version'))} {esc(f.get('kind'))} · {what}"


# ---------------------------------------------------------------------- sweeps and parity
def _sweep_progress(e: ev.SweepProgress) -> Draft:
    agent = code(e.agent_id)
    failed = f" ({e.failed:,} failed)" if e.failed else ""
    if e.phase == "held_out":
        best = _plural(e.total, "best combination")
        text = (f"⏳ Sweep of {agent}: re-running the {best} on the held-out bars · "
                f"{e.done:,} of {e.total:,} done{failed}")  # fmt: skip
    else:
        text = f"⏳ Sweep of {agent}: {e.done:,} of {e.total:,} combinations done{failed}"
    return [_section(text)], text


def _sweep_finished(e: ev.SweepFinished) -> Draft:
    doc = e.result
    done = finished_members(doc)
    parts = _compact([
        _header(f"Sweep · {doc.get('agent_id')} v{doc.get('agent_version')}"),
        _context(_sweep_line(doc)),
        *_ranked_parts(doc, len(done)),
        _sweep_failures(doc),
        *_held_out_parts(doc),
        _best_run(doc, done[0][1]) if done else None,
    ])  # fmt: skip
    return parts, _sweep_text(doc, done)


def _sweep_line(doc: Mapping[str, Any]) -> str:
    """What every combination shared, what ranks them, how many there were."""
    bits = [esc(b) for b in sweep_setting(doc)]
    bits += [f"fixed {code(assignments(fixed))}"] if (fixed := fixed_params(doc)) else []
    rank = str(doc.get("rank") or "?")
    better = "lower" if rank in LOWER_IS_BETTER else "higher"
    bits += [f"ranked by *{esc(rank)}* ({better} is better)",
             _plural(_int(doc.get("combinations")), "combination")]  # fmt: skip
    took = doc.get("took_s")
    bits += [f"⏱ {took:.1f} s"] if _is_number(took) else []
    bits += [f"sweep {code(doc['sweep_id'])}"] if doc.get("sweep_id") else []
    return " · ".join(bits)


def _int(x: Any) -> int:
    return int(x) if _is_number(x) else 0


def _ranked_parts(doc: Mapping[str, Any], finished: int) -> list[Part]:
    if not finished:
        return [_section("No combination finished: each one failed.")]
    shown = min(finished, SWEEP_TOP)
    which = f"Top {shown} of {finished:,}" if shown < finished else f"All {finished:,}"
    head = f"*{which} finished combinations*, best first"
    return [_section(head), *_code_sections(sweep_table(doc, top=SWEEP_TOP))]


def _sweep_failures(doc: Mapping[str, Any]) -> Block | None:
    failed = _int(doc.get("failed"))
    first = first_failure(doc)
    if not failed and first is None:
        return None
    of = _int(doc.get("combinations"))
    text = f"❌ {failed:,} of {_plural(of, 'combination')} failed"
    if first is not None:
        text += f" · first: {code(first[0])}: {esc(shorten(first[1], ITEM_CHARS))}"
    return _context(text)


def _held_out_parts(doc: Mapping[str, Any]) -> list[Part]:
    """The best combinations on the bars they were not chosen on: a Sharpe that falls
    below half the in-sample one says the choice was luck."""
    oos = doc.get("oos")
    if not isinstance(oos, Mapping):
        return []
    inside, out = oos.get("in_sample") or {}, oos.get("held_out") or {}
    windows = (f"Chosen on {esc(inside.get('start'))} → {esc(inside.get('end'))} "
               f"({_plural(_int(inside.get('bars')), 'bar')}), checked on the "
               f"{_plural(_int(out.get('bars')), 'bar')} after")  # fmt: skip
    head = f"*{esc(held_out_title(oos))}*\n{windows}"
    table = held_out_table(doc, flag=OVERFIT)
    failures = [f"#{i}: its held-out run failed: {esc(err)}" for i, err in held_out_failures(doc)]
    legend = f"{OVERFIT}: the held-out Sharpe is below half the in-sample one"
    return _compact([
        _section(head),
        *(_code_sections(table) if oos.get("best") else [_section("No combination to check.")]),
        Lines(failures, noun="failure") if failures else None,
        _context(legend) if any_overfit(doc) else None,
    ])  # fmt: skip


def _best_run(doc: Mapping[str, Any], member: Mapping[str, Any]) -> Block:
    """The best run in full (``/fmel`` takes an id's start, not the table's short form), and
    how the others' ids are made when they are the sweep's and a suffix."""
    run = str(member.get("run_id") or "")
    text = f"🥇 Best run {code(run)} · its decisions: {code(f'/fmel {run}')}"
    if members_within(doc):
        pattern = f"{doc.get('sweep_id')}-RUN"
        text += f" · the others are {code(pattern)}, RUN from the table"
    return _context(text)


def _sweep_text(doc: Mapping[str, Any], done: Sequence[tuple[int, Mapping[str, Any]]]) -> str:
    head = (f"Sweep of {esc(doc.get('agent_id'))} v{esc(doc.get('agent_version'))}: "
            f"{_plural(_int(doc.get('combinations')), 'combination')}")  # fmt: skip
    if not done:
        return head + ", none finished"
    best = done[0][1]
    rank = str(doc.get("rank") or "sharpe")
    value = metric_text(rank, (best.get("metrics") or {}).get(rank))
    chosen = esc(assignments(best.get("params") or {}, swept_names(doc)))
    return head + f", best {chosen} ({esc(rank)} {value})"


def _sweep_failed(e: ev.SweepFailed) -> Draft:
    who = f" of {code(e.agent_id)}" if e.agent_id else ""
    message = " ".join(str(e.error.get("message") or "unknown error").split())
    text = f"❌ Sweep{who} failed: {esc(message)}"
    hint = e.error.get("hint")
    notes = [f"💡 {esc(hint)}"] if hint else []
    notes += [f"sweep {code(e.sweep_id)}"] if e.sweep_id else []
    parts = _compact([_section(text), _context(*notes) if notes else None])
    return parts, text


def _parity_checked(e: ev.ParityChecked) -> Draft:
    r = e.report
    verdict = r.get("verdict")
    if verdict == "identical":
        bars = _plural(_int(r.get("bars")), "bar")
        text = (f"✅ Backtest and paper replay are identical over {bars}"
                f" ({_plural(_int(r.get('orders')), 'order')},"
                f" {_plural(_int(r.get('fills')), 'fill')})")  # fmt: skip
        parts: list[Part] = [_section(text)]
    elif verdict == "different":
        said = _difference(r)
        text, parts = said.split("\n", 1)[0], [_section(said)]
    else:
        err: Mapping[str, Any] = r.get("error") or {}
        message = " ".join(str(err.get("message") or "unknown error").split())
        text = f"❌ Parity check of {code(r.get('agent_id') or '?')} failed: {esc(message)}"
        hint = err.get("hint")
        parts = _compact([_section(text), _context(f"💡 {esc(hint)}") if hint else None])
    return [*parts, _context(_parity_line(r))], text


def _difference(r: Mapping[str, Any]) -> str:
    """Where the two runs part: the first bar, what differed on it, both sides' values."""
    differing = f"{_int(r.get('differing_bars')):,} of {_plural(_int(r.get('bars')), 'bar')}"
    d = r.get("first_difference")
    if not isinstance(d, Mapping):
        return f"⚠️ Backtest and paper replay differ on {differing}."
    when = f" ({esc(d['timestamp'])})" if d.get("timestamp") else ""
    return (f"⚠️ Backtest and paper replay part at *bar {esc(d.get('bar'))}*{when}: "
            f"*{esc(d.get('field'))}* differ\n"
            f"• backtest: {code(d.get('backtest'))}\n• paper: {code(d.get('paper'))}\n"
            f"{differing} differ in all.")  # fmt: skip


def _parity_line(r: Mapping[str, Any]) -> str:
    p = r.get("parameters") or {}
    bits = [f"backtest {code(r.get('backtest_run_id') or '-')}",
            f"paper {code(r.get('paper_run_id') or '-')}",
            f"{code(r.get('agent_id') or '?')} v{esc(r.get('agent_version') or '?')}",
            ", ".join(esc(s) for s in p.get("symbols") or ())]  # fmt: skip
    if p.get("start") or p.get("end"):
        bits.append(f"{esc(p.get('start') or '…')} → {esc(p.get('end') or '…')}")
    bits += [f"parity {code(r['parity_id'])}"] if r.get("parity_id") else []
    return " · ".join(b for b in bits if b)


# ====================================================================== the result
def _result_draft(doc: Mapping[str, Any], fmel_rows: Sequence[Mapping[str, Any]] | None) -> Draft:
    if doc.get("error"):
        return _failed_result_draft(doc)
    r = doc.get("results") or {}
    strategy = (doc.get("strategy") or {}).get("name")
    parts = _compact([
        _header(f"Backtest · {doc.get('agent_id')}" + (f" · {strategy}" if strategy else "")),
        _context(_run_line(doc)),
        _warnings(doc),  # first: they change how every figure below reads
        _fields(_metrics(r)),
        *_breakdown(doc),
        _data_checks(doc),
        *_fmel_parts(doc, fmel_rows),
        _context(_monitoring_line(doc)),
        _actions(_again_button(doc), _paper_button(doc)),
    ])  # fmt: skip
    return parts, _result_text(doc)


def _result_text(doc: Mapping[str, Any]) -> str:
    r = doc.get("results") or {}
    return (
        f"Backtest {esc(doc.get('agent_id'))} finished:"
        f" return {_pct(r.get('portfolio_return_pct'))}"
        f" (buy &amp; hold {_pct(r.get('buy_and_hold_return_pct'))}),"
        f" Sharpe {_num(r.get('sharpe_ratio'))},"
        f" max drawdown {_pct(r.get('max_drawdown_pct'), False)},"
        f" {_plural(r.get('total_trades') or 0, 'trade')}"
    )


def _failed_result_draft(doc: Mapping[str, Any]) -> Draft:
    parts = _error_parts(f"Backtest {code(doc.get('run_id'))} failed", doc["error"])
    kept = (doc.get("fmel") or {}).get("decisions")
    if _is_number(kept) and kept:  # the bars before the failure: what led up to it
        command = code(f"/fmel {doc.get('run_id')}")
        parts += [_context(f"🧾 Its {_plural(kept, 'decision')} before the failure are recorded:"
                           f" {command}")]  # fmt: skip
    parts += [_context(_run_line(doc)), _context(_monitoring_line(doc))]
    return (
        parts,
        f"Backtest {esc(doc.get('run_id'))} failed: {esc(doc['error'].get('message', ''))}",
    )


def _run_line(doc: Mapping[str, Any]) -> str:
    p = doc.get("parameters") or {}
    bits = [f"run {code(doc.get('run_id'))}", ", ".join(esc(s) for s in p.get("symbols") or ())]
    if p.get("start_date") or p.get("end_date"):
        bits.append(f"{esc(p.get('start_date') or '…')} → {esc(p.get('end_date') or '…')}")
    bits += [esc(p["timeframe"])] if p.get("timeframe") else []
    bits += [f"cash {_num(p['initial_cash'])}"] if p.get("initial_cash") else []
    bits += [code(given)] if (given := given_params(p)) else []
    return " · ".join(b for b in bits if b)


def _metrics(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    dd_bars: Any = r.get("max_drawdown_duration_bars")
    return [
        ("Return", f"{_pct(r.get('portfolio_return_pct'))} (buy &amp; hold "
                   f"{_pct(r.get('buy_and_hold_return_pct'))})"),
        ("Final value", f"{_num(r.get('final_value'))} from {_num(r.get('initial_value'))}"),
        ("Sharpe", _num(r.get("sharpe_ratio"))),
        ("Sortino", _num(r.get("sortino_ratio"))),
        ("Max drawdown", f"{_pct(r.get('max_drawdown_pct'), False)} "
                         f"({_num(r.get('max_drawdown_money'))})"
                         + (f" · {_plural(dd_bars, 'bar')}" if _is_number(dd_bars) else "")),
        ("Trades", f"{_num(r.get('trades_closed'), 0)} closed, "
                   f"{_num(r.get('trades_open'), 0)} open"),
        ("Win rate", f"{_pct(r.get('win_rate_pct'), False)} ({_num(r.get('win_trades'), 0)} won, "
                     f"{_num(r.get('loss_trades'), 0)} lost)"),
        ("Profit factor", _num(r.get("profit_factor"))),
        ("Expectancy", f"{_num(r.get('expectancy'))} per trade"),
        ("Exposure", _pct(r.get("exposure_pct"), False)),
    ]  # fmt: skip


def _breakdown(doc: Mapping[str, Any]) -> list[Part | None]:
    """Per symbol (in the order asked for) and per year: only when there is more than one
    (the years in the monthly grid when it holds them all); the monthly returns and the last
    closed trades, when the result has them."""
    r = doc.get("results") or {}
    per_symbol = r.get("per_symbol") or {}
    asked = (doc.get("parameters") or {}).get("symbols") or ()
    rows = [_symbol_line(s, per_symbol[s]) for s in _in_order(per_symbol, asked)]
    annual = r.get("annual_returns") or {}
    years = " · ".join(f"{esc(y)} {_pct(v)}" for y, v in sorted(annual.items()))
    monthly = r.get("monthly_returns") or {}
    grid = monthly_grid(monthly, annual, years=GRID_YEARS) if monthly else []
    whole = bool(grid) and len({m[:4] for m in monthly}) <= GRID_YEARS  # every year in it
    return [
        Lines(rows, title="*Per symbol*", noun="symbol") if len(rows) > 1 else None,
        _section("*Monthly returns* (%)\n" + _code_block(grid)) if grid else None,
        _context(f"Annual returns: {years}") if len(annual) > 1 and not whole else None,
        _last_trades(doc),
    ]


def _last_trades(doc: Mapping[str, Any]) -> Block | None:
    r = doc.get("results") or {}
    trades = r.get("trades") or []
    if not trades:
        return None
    total = closed_count(r.get("trades_closed"), trades)
    shown = trades[-LAST_TRADES:]
    every = code(f"/fmel {doc.get('run_id')} trades")
    which = f"Last {len(shown)} of {total:,}" if len(shown) < total else "The"
    head = f"*{which} closed trades* · all of them: {every}"
    table = trades_table(shown, first=total - len(shown) + 1)
    return _section(head + "\n" + _code_block(table.splitlines()))


def _code_block(lines: Sequence[str]) -> str:
    """Lines in a code block, escaped, with no backtick of their own to end it early."""
    return "```\n" + esc("\n".join(lines)).replace("`", "'") + "\n```"


def _code_sections(lines: Sequence[str], limit: int = SECTION_CHARS) -> list[Block]:
    """A table (its first line the header) in code blocks of at most ``limit`` characters
    each, cut between rows, the header repeated in each."""
    header, rows = lines[0], lines[1:]
    blocks: list[Block] = []
    chunk: list[str] = []
    for row in rows:
        if chunk and size(_code_block([header, *chunk, row])) > limit:
            blocks.append(_section(_code_block([header, *chunk])))
            chunk = []
        chunk.append(row)
    return [*blocks, _section(_code_block([header, *chunk]))]


def _symbol_line(symbol: str, v: Mapping[str, Any]) -> str:
    trades = _plural(v.get("trades_closed") or 0, "trade")
    hold = _pct(v.get("buy_and_hold_return_pct"))
    return f"• {code(symbol)} {_signed(v.get('net_pnl'))} · {trades} · buy &amp; hold {hold}"


def _in_order(keys: Iterable[str], first: Iterable[str]) -> list[str]:
    """``keys`` in a stable order: those in ``first`` as ordered there, then the rest sorted
    (result documents reach us with their keys sorted, or not: the message is the same)."""
    present = set(keys)
    leading = [k for k in dict.fromkeys(first) if k in present]
    return leading + sorted(present - set(leading))


def _signed(x: Any) -> str:
    return f"{x:+,.2f}" if _is_number(x) else _num(x)


def _data_checks(doc: Mapping[str, Any]) -> Lines | None:
    checks = doc.get("data_checks") or []
    items = [f"• {esc(c.get('message') if isinstance(c, dict) else str(c))}" for c in checks]
    title = f"*⚠️ Data checks* · {_plural(len(items), 'problem')} in the data"
    return Lines(items, title=title, noun="data check") if items else None


def _warnings(doc: Mapping[str, Any]) -> Lines | None:
    items = [f"• {esc(str(w))}" for w in doc.get("warnings") or []]
    return Lines(items, title="*⚠️ Warnings*", noun="warning") if items else None


def _monitoring_line(doc: Mapping[str, Any]) -> str:
    m = doc.get("monitoring") or {}
    bits = [
        f"⏱ {_g(m.get('execution_time_s'))} s",
        f"peak {_g(m.get('peak_memory_mb'))} MB",
        f"CPU {_g(m.get('cpu_avg_pct'))}%",
        _plural(m.get("decision_count") or 0, "decision"),
        _plural(m.get("errors") or 0, "error"),
    ]
    rejected = m.get("orders_rejected")
    bits += [_plural(rejected, "rejected order")] if rejected else []
    return " · ".join(bits + ([where] if (where := _runner_bit(doc)) else []))


_LOG_URL = re.compile(r"https?://[^\s<>|]{1,500}")


def _runner_bit(doc: Mapping[str, Any]) -> str:
    """Where the run ran when not in the local sandbox: Cloud Build, its build id linked to
    its log (the link only when it is a plain http(s) address)."""
    runner = doc.get("runner")
    if not isinstance(runner, Mapping) or runner.get("name") != "cloudbuild":
        return ""
    build = esc(str(runner.get("build_id") or "?")[:64])
    url = str(runner.get("log_url") or "")
    shown = f"<{url}|{build}>" if _LOG_URL.fullmatch(url) else code(build)
    return f"☁️ Cloud Build {shown}"


def _fmel_parts(
    doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None
) -> list[Part | None]:
    f = doc.get("fmel")
    if not f:
        return []
    verify = code(f"/fmel {doc.get('run_id')} verify")
    head = f"*FMEL* {_fmel_counts(f)}\nVerify it with {verify}"
    return [_section(head), _decisions_lines(rows or [], "Last trades", trades_only=True)]


def _fmel_counts(f: Mapping[str, Any]) -> str:
    counts = f.get("actions") or {}
    actions = " · ".join(f"{esc(k)} {_num(counts[k], 0)}" for k in _in_order(counts, ACTIONS))
    head = str(f.get("chain_head") or "")
    chain = f" · chain {code(head[:12] + '…')}" if head else ""
    return f"{_plural(f.get('decisions') or 0, 'decision')} ({actions}){chain}"


def _again_button(doc: Mapping[str, Any]) -> Block | None:
    """Run again: the same agent version with the same parameters, in the words of the
    ``/backtest`` command (``Command.parameters``), which is what the job takes."""
    if not doc.get("agent_id"):
        return None
    p = doc.get("parameters") or {}
    wanted = {"symbols": p.get("symbols"), "start": p.get("start_date"),
              "end": p.get("end_date"), "cash": p.get("initial_cash")}  # fmt: skip
    params = {k: v for k, v in wanted.items() if v not in (None, "", [])}
    value = {"agent": doc["agent_id"], "version": _version(doc), "parameters": params}
    return _button("Run again", BACKTEST_AGAIN, value)


def _paper_button(doc: Mapping[str, Any]) -> Block | None:
    if not doc.get("agent_id"):
        return None
    p = doc.get("parameters") or {}
    value = {"agent": doc["agent_id"], "version": _version(doc),
             "parameters": {"symbols": list(p.get("symbols") or [])[:20],
                            "cash": p.get("initial_cash")}}  # fmt: skip
    return _button("Start paper trading", PAPER_START, value, style="primary")


def _version(doc: Mapping[str, Any]) -> int | None:
    """The agent version the run used, when the document says (``agent_version``)."""
    v = doc.get("agent_version", doc.get("version"))
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return int(v) if isinstance(v, str) and v.isdigit() else None


# ====================================================================== FMEL decisions
def _decisions_lines(
    rows: Sequence[Mapping[str, Any]], title: str, *, trades_only: bool
) -> Lines | None:
    """Decisions, newest last, each with the indicator state behind it."""
    trades = [r for r in rows if r.get("actions_taken") or r.get("fills")]
    shown = trades if trades_only else rows
    if not shown:
        return None
    noun = "trade" if trades_only else "decision"
    return Lines([_decision(r) for r in shown], title=f"*{title}*", noun=noun, tail=True)


def _decision(row: Mapping[str, Any]) -> str:
    what = " · ".join(x for x in (_orders(row), _fills(row)) if x) or "no orders"
    head = (f"`{esc(row.get('bar_number'))}` {_bar_time(row)} · *{esc(row.get('action'))}* · "
            f"{what} · value {_num(row.get('portfolio_value'))}")  # fmt: skip
    state = _state(row)
    return head + (f"\n      ↳ {state}" if state else "")


def _orders(row: Mapping[str, Any]) -> str:
    def one(o: Mapping[str, Any]) -> str:
        size_ = abs(o["size"]) if _is_number(o.get("size")) else o.get("size")
        price = o.get("price")
        at = f" @{_num(price)}" if price is not None and o.get("type") != "Market" else ""
        return f"{esc(o.get('side'))} {_g(size_)} {esc(o.get('symbol'))} {esc(o.get('type'))}{at}"

    orders = row.get("actions_taken") or ()
    return "ordered " + "; ".join(map(one, orders)) if orders else ""


def _fills(row: Mapping[str, Any]) -> str:
    def one(f: Mapping[str, Any]) -> str:
        size_ = f"{f['size']:+g}" if _is_number(f.get("size")) else esc(f.get("size"))
        return f"{size_} {esc(f.get('symbol'))} @{_num(f.get('price'))}"

    fills = row.get("fills") or ()
    return "filled " + "; ".join(map(one, fills)) if fills else ""


def _bar_time(row: Mapping[str, Any]) -> str:
    ts: Any = row.get("timestamp")
    if isinstance(ts, date):  # a datetime too
        return ts.strftime("%Y-%m-%d %H:%M" if row.get("mode") == "PAPER" else "%Y-%m-%d")
    return esc(str(ts)[:16]) if ts is not None else "?"


def _state(row: Mapping[str, Any], limit: int = 6) -> str:
    """The indicator values behind a decision, those of the symbols it touched first."""
    touched = {
        o.get("symbol") for o in [*(row.get("actions_taken") or ()), *(row.get("fills") or ())]
    }
    raw = row.get("indicators") or ()
    pairs = list(raw.items()) if isinstance(raw, Mapping) else [tuple(p) for p in raw]
    mine = [(k, v) for k, v in pairs if any(f"[{s}]" in str(k) for s in touched)]
    chosen = mine or pairs
    text = " ".join(f"{esc(k)}={v:.4g}" if _is_number(v) else f"{esc(k)}={esc(v)}"
                    for k, v in chosen[:limit] if v is not None)  # fmt: skip
    return text + (" …" if len(chosen) > limit else "")


def _fmel_draft(report: Any) -> Draft:
    if report.trades is not None:
        return _fmel_trades_draft(report)
    s = report.summary
    run = code(report.run_id)
    head = (f"*FMEL* {run} · {code(s.get('agent_id'))} · {_fmel_counts(s)}" if s
            else f"*FMEL* {run} (no summary: the run did not finish)")  # fmt: skip
    what = f"Last {len(report.rows):,} decisions" + (
        " that ordered or traded" if report.trades_only else ""
    )
    parts = _compact([
        _section(head),
        _decisions_lines(report.rows, what, trades_only=False),
        _verification(report.verification),
    ])  # fmt: skip
    return parts, f"FMEL {esc(report.run_id)}: {len(report.rows):,} decisions"


def _fmel_trades_draft(report: Any) -> Draft:
    """``/fmel RUN trades``: the run's closed trades, the last :data:`FMEL_TRADES` of them."""
    run = code(report.run_id)
    trades = report.trades
    if not trades:
        parts = _compact(
            [_section(f"Run {run} closed no trades."), _verification(report.verification)]
        )
        return parts, f"Run {esc(report.run_id)} closed no trades."
    total = closed_count(report.trades_closed, trades)
    shown = trades[-FMEL_TRADES:]
    what = f"all {total:,}" if len(shown) == total else f"the last {len(shown)} of {total:,}"
    head = f"*Closed trades* of run {run} ({what}) · net {PNL} after commission"
    table = trades_table(shown, first=total - len(shown) + 1).splitlines()
    parts = _compact([_section(head), *_code_sections(table), _verification(report.verification)])
    return parts, f"Run {esc(report.run_id)}: {_plural(total, 'closed trade')}"


def _verification(v: Mapping[str, Any] | None) -> Block | None:
    if v is None:
        return None
    if v.get("ok"):
        head = str(v.get("chain_head") or "")[:12]
        return _section(f"✅ Verified: the hash chain of {_plural(v.get('rows') or 0, 'decision')} "
                        f"is intact (head {code(head + '…')})")  # fmt: skip
    return _section(f"❌ *Mismatch* at bar {esc(v.get('first_bad_bar'))}: {esc(v.get('reason'))}")


# ====================================================================== lists
def _agent_items(agents: Sequence[Any]) -> list[str]:
    return [f"• {code(a.name)} v{a.latest_version} · {_user(a.owner)} · since {_when(a.created_at)}"
            for a in agents]  # fmt: skip


def _agents_draft(agents: Sequence[Any]) -> Draft:
    if not agents:
        text = "No agents yet: upload a `.py` backtrader strategy file to register one."
        return [_section(text)], "No agents yet."
    title = f"*Agents* ({len(agents):,})"
    return [
        Lines(_agent_items(agents), title=title, noun="agent")
    ], f"{_plural(len(agents), 'agent')}"


def _run_items(runs: Sequence[Any]) -> list[str]:
    return [f"• {code(r.run_id)} · {code(r.agent)} v{r.version} · {esc(r.kind)} · {esc(r.status)}"
            f" · {_when(r.created_at)} · {_run_outcome(r)}" for r in runs]  # fmt: skip


def _run_outcome(run: Any) -> str:
    if run.error:
        message = shorten(str(run.error.get("message") or ""), 120)
        return f"{esc(run.error.get('kind'))}: {esc(message)}"
    res = (run.result or {}).get("results")
    if res:
        sharpe = _num(res.get("sharpe_ratio"))
        warnings, lookahead = stored_warnings(run.result)
        flag = _warning_flag(lookahead, warnings)
        return f"return {_pct(res.get('portfolio_return_pct'))} · Sharpe {sharpe}{flag}"
    return "-"


def _runs_draft(runs: Sequence[Any]) -> Draft:
    if not runs:
        return [_section("No runs yet.")], "No runs yet."
    title = f"*Recent runs* ({len(runs):,}, newest first)"
    return [Lines(_run_items(runs), title=title, noun="run")], f"{_plural(len(runs), 'run')}"


_EVENT_DRAFTS: dict[str, Callable[[Any], Draft]] = {
    ev.AgentRegistered.kind: _registered,
    ev.AgentRejected.kind: _rejected,
    ev.BacktestQueued.kind: _queued,
    ev.BacktestProgress.kind: _progress,
    ev.BacktestFinished.kind: _finished,
    ev.BacktestFailed.kind: _failed,
    ev.JobFailed.kind: _job_failed,
    ev.PaperStarted.kind: _paper_started,
    ev.PaperHealth.kind: _paper_health,
    ev.PaperStopped.kind: _paper_stopped,
    ev.PaperFailed.kind: _paper_failed,
    ev.PaperStatus.kind: _paper_status,
    ev.Digest.kind: _digest,
    ev.SweepProgress.kind: _sweep_progress,
    ev.SweepFinished.kind: _sweep_finished,
    ev.SweepFailed.kind: _sweep_failed,
    ev.ParityChecked.kind: _parity_checked,
}
