"""The chat command grammar (DESIGN.md section 4), shared by Slack and the console shell.

    /backtest <agent>[@vN] [SYM,SYM…] [start=YYYY-MM-DD] [end=YYYY-MM-DD] [cash=N] [param=V…]
    /paper-start <agent>[@vN] [SYM,…] [cash=N] [feed=replay|alpaca] [start=YYYY-MM-DD] [speed=S]
                 [param=V…]
    /sweep <agent>[@vN] param=A..B/STEP param=X,Y,Z… [SYM,…] [start=…] [end=…] [cash=N]
           [rank=sharpe] [oos=30%]
    /parity <agent>[@vN] [SYM,…] [start=…] [end=…] [cash=N] [param=V…]
    /paper-stop <agent>     /paper-status [agent]
    /agents     /runs [agent]     /fmel <agent|run> [last=N] [verify] [trades]     /digest
    /help

``parse`` turns a command and its text into a :class:`Command`, or raises
:class:`UsageError` whose message is one line: what was wrong, then the usage. Front-ends
show that line as it is; nothing here knows Slack or the terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from workers.payloads import RunParameters

AGENT_REF = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_\-]{0,63})(?:@v?(?P<version>\d{1,6}))?")
SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-]{0,11}")
MAX_SYMBOLS = 20

USAGE: dict[str, str] = {
    "backtest": (
        "/backtest <agent>[@vN] [SYM,SYM…] [start=YYYY-MM-DD] [end=YYYY-MM-DD] [cash=N] "
        "[param=VALUE…]"
    ),
    "paper-start": (
        "/paper-start <agent>[@vN] [SYM,…] [cash=N] [feed=replay|alpaca] [start=YYYY-MM-DD] "
        "[speed=S] [param=VALUE…]"
    ),
    "sweep": (
        "/sweep <agent>[@vN] param=FROM..TO/STEP param=A,B,C… [SYM,…] [start=YYYY-MM-DD] "
        "[end=YYYY-MM-DD] [cash=N] [rank=sharpe|return|drawdown|…] [oos=30%]"
    ),
    "parity": (
        "/parity <agent>[@vN] [SYM,…] [start=YYYY-MM-DD] [end=YYYY-MM-DD] [cash=N] "
        "[param=VALUE…]"
    ),
    "paper-stop": "/paper-stop <agent>",
    "paper-status": "/paper-status [agent]",
    "agents": "/agents",
    "runs": "/runs [agent]",
    "fmel": "/fmel <agent|run> [last=N] [verify] [trades]",
    "digest": "/digest",
    "help": "/help",
}

HELP: dict[str, str] = {
    "backtest": (
        "backtest an agent on daily bars (default SPY, all the data, cash 10000); "
        "`fast=5` sets its strategy's parameter fast"
    ),
    "paper-start": (
        "start paper trading an agent (needs the trader role): replayed bars from start=, "
        "one every speed= seconds, or Alpaca's live bars with feed=alpaca"
    ),
    "sweep": (
        "backtest every combination of parameter values (one run each, spread over the "
        "workers), ranked, with a heatmap; `oos=30%` checks the best on held-out bars"
    ),
    "parity": (
        "backtest an agent and replay the same bars through paper trading: are orders, fills "
        "and every decision identical?"
    ),
    "paper-stop": "stop an agent's paper trading",
    "paper-status": "health, P&L and decisions of paper sessions",
    "agents": "the registered agents and their latest versions",
    "runs": "recent backtests and paper sessions",
    "fmel": (
        "an agent's or run's last decisions; `verify` checks its hash chain, `trades` lists "
        "its closed trades"
    ),
    "digest": "a status digest now: paper sessions, recent backtests, failures",
    "help": "this list",
}


class UsageError(ValueError):
    """A malformed command: the message is one line, ready to show to the user."""


@dataclass(frozen=True, kw_only=True)
class Command:
    name: str  # "backtest", "paper-start", … (no slash)
    agent: str | None = None  # an agent name, or for /fmel an agent or a run id
    version: int | None = None
    symbols: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None
    cash: float | None = None
    feed: str | None = None  # /paper-start: replay or alpaca
    speed: float | None = None  # /paper-start: seconds between replayed bars
    last: int | None = None
    verify: bool = False
    trades: bool = False  # /fmel: the run's closed trades instead of its decisions
    # the strategy's own parameters as typed (name, text), in order; for /sweep each text
    # is its values (5..20/5, or 20,40,60)
    params: tuple[tuple[str, str], ...] = ()
    rank: str | None = None  # /sweep: the metric ranked by
    oos: float | None = None  # /sweep: the share of bars held out, from the end

    def backtest_parameters(self) -> RunParameters:
        """The parameters a backtest job takes (only those given)."""
        out: RunParameters = {}
        if self.symbols:
            out["symbols"] = list(self.symbols)
        if self.start:
            out["start"] = self.start.isoformat()
        if self.end:
            out["end"] = self.end.isoformat()
        if self.cash is not None:
            out["cash"] = self.cash
        if self.params and self.name != "sweep":
            out["params"] = dict(self.params)
        return out

    def grid(self) -> dict[str, str]:
        """/sweep: each swept parameter's values, as typed."""
        return dict(self.params)

    def parameters(self) -> dict[str, object]:
        """The paper parameters a job takes (only those given)."""
        out: dict[str, object] = dict(self.backtest_parameters())
        if self.feed:
            out["feed"] = self.feed
        if self.speed is not None:
            out["bar_seconds"] = self.speed
        return out


def agent_name_for(filename: str) -> str:
    """The agent name an uploaded file registers under: its stem, made a valid name."""
    stem = re.sub(r"[^A-Za-z0-9_\-]", "_", filename.rsplit("/", 1)[-1].removesuffix(".py"))[:64]
    return stem if stem[:1].isalpha() else f"a_{stem}"[:64]


def split_command(line: str) -> tuple[str, str]:
    """``"/backtest sma SPY"`` -> ``("backtest", "sma SPY")``."""
    parts = line.replace("\u00a0", " ").split(None, 1)
    if not parts:
        return "", ""
    return parts[0].lstrip("/").lower(), (parts[1] if len(parts) > 1 else "").strip()


def parse(command: str, text: str = "") -> Command:
    name = command.strip().lstrip("/").lower()
    if name not in USAGE:
        known = " ".join(f"/{c}" for c in USAGE)
        shown = "".join(c for c in name if c.isprintable())[:32]
        raise UsageError(f"unknown command /{shown}; commands: {known}")
    words = text.replace("\u00a0", " ").split()
    try:
        return _PARSERS[name](name, words)
    except UsageError as exc:
        raise UsageError(f"{exc}; usage: {USAGE[name]}") from None


def _no_args(name: str, words: list[str]) -> Command:
    if words:
        raise UsageError(f"/{name} takes no arguments, got {words[0]!r}")
    return Command(name=name)


def _agent_ref(word: str, *, versioned: bool = True) -> tuple[str, int | None]:
    found = AGENT_REF.fullmatch(word)
    if not found or (found["version"] and not versioned):
        raise UsageError(f"{word!r} is not an agent name (letters, digits, - and _)")
    version = int(found["version"]) if found["version"] else None
    if version == 0:
        raise UsageError("versions start at v1")
    return found["name"], version


def _symbols(word: str) -> tuple[str, ...]:
    syms = tuple(dict.fromkeys(s.strip().upper() for s in word.split(",") if s.strip()))
    bad = [s for s in syms if not SYMBOL.fullmatch(s)]
    if bad or not syms:
        raise UsageError(f"{(bad or [word])[0]!r} is not a symbol like SPY")
    if len(syms) > MAX_SYMBOLS:
        raise UsageError(f"at most {MAX_SYMBOLS} symbols")
    return syms


def _date(key: str, value: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{key}= expects a date like 2021-01-31, got {value!r}") from None


def _cash(value: str) -> float:
    try:
        cash = float(value.replace(",", "").replace("_", "").lstrip("$"))
    except ValueError:
        raise UsageError(f"cash= expects a number, got {value!r}") from None
    if not 0 < cash < 1e12:  # also refuses nan and inf
        raise UsageError(f"cash= must be a positive amount below 1,000,000,000,000, got {value!r}")
    return cash


#: every key=value option of any command: a strategy parameter of one of these names cannot
#: be set from chat (the option would be taken for it)
OPTIONS = ("start", "end", "cash", "feed", "speed", "rank", "oos", "symbols")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _run_like(name: str, words: list[str], allowed: tuple[str, ...]) -> Command:
    """/backtest, /paper-start, /sweep, /parity: an agent, optional symbols, key=value
    options, and the strategy's own parameters as name=value."""
    if not words:
        raise UsageError(f"/{name} needs an agent")
    agent, version = _agent_ref(words[0])
    fields: dict[str, object] = {}
    params: dict[str, str] = {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        low = key.lower()
        if not eq:
            if "symbols" in fields:
                raise UsageError(f"unexpected {word!r} (symbols go in one list: SPY,QQQ)")
            fields["symbols"] = _symbols(word)
        elif low in OPTIONS and low not in allowed:
            raise UsageError(f"unknown option {low}= (options: {', '.join(allowed)})")
        elif low not in OPTIONS:
            if not PARAM_NAME.fullmatch(key):
                raise UsageError(f"{key!r} is not a parameter name")
            if key in params:
                raise UsageError(f"{key}= given twice")
            if not value:
                raise UsageError(f"{key}= has no value")
            params[key] = value
        elif low in fields:
            raise UsageError(f"{low}= given twice")
        elif low in ("start", "end"):
            fields[low] = _date(low, value)
        elif low == "feed":
            fields[low] = _feed(value)
        elif low == "speed":
            fields[low] = _speed(value)
        elif low == "rank":
            fields[low] = _rank(value)
        elif low == "oos":
            fields[low] = _share(value)
        else:
            fields[low] = _cash(value)
    start, end = fields.get("start"), fields.get("end")
    if isinstance(start, date) and isinstance(end, date) and start > end:
        raise UsageError(f"start={start} is after end={end}")
    return Command(name=name, agent=agent, version=version, params=tuple(params.items()),
                   **fields)  # type: ignore[arg-type]  # fmt: skip


def _sweep(name: str, words: list[str]) -> Command:
    cmd = _run_like(name, words, ("start", "end", "cash", "rank", "oos"))
    if not cmd.params:
        raise UsageError("name a parameter and its values to sweep, like fast=5..20/5")
    return cmd


def _rank(value: str) -> str:
    from workers.params import RANKS

    if value.lower() not in RANKS:
        raise UsageError(f"rank= is one of {', '.join(RANKS)}, got {value!r}")
    return value.lower()


def _share(value: str) -> float:
    """``30%`` or ``0.3``: a share of the bars."""
    text = value.strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(f"oos= expects a share of the bars like 30%, got {value!r}") from None
    if not 0.05 <= share <= 0.5:  # also refuses nan
        raise UsageError(f"oos= holds out 5% to 50% of the bars, got {value!r}")
    return share


def _backtest(name: str, words: list[str]) -> Command:
    return _run_like(name, words, ("start", "end", "cash"))


def _paper_start(name: str, words: list[str]) -> Command:
    return _run_like(name, words, ("cash", "feed", "start", "speed"))


FEEDS = ("replay", "alpaca")


def _feed(value: str) -> str:
    if value.lower() not in FEEDS:
        raise UsageError(f"feed= is {' or '.join(FEEDS)}, got {value!r}")
    return value.lower()


def _speed(value: str) -> float:
    try:
        seconds = float(value.lower().removesuffix("s"))
    except ValueError:
        raise UsageError(f"speed= expects seconds between bars, got {value!r}") from None
    if not 0.01 <= seconds <= 86_400:  # also refuses nan and inf
        raise UsageError(f"speed= must be from 0.01 to 86400 seconds a bar, got {value!r}")
    return seconds


def _one_agent(name: str, words: list[str], *, required: bool) -> Command:
    if len(words) > 1:
        raise UsageError(f"/{name} takes one agent, got {' '.join(words)!r}")
    if not words:
        if required:
            raise UsageError(f"/{name} needs an agent")
        return Command(name=name)
    agent, _ = _agent_ref(words[0], versioned=False)
    return Command(name=name, agent=agent)


def _fmel(name: str, words: list[str]) -> Command:
    if not words:
        raise UsageError("/fmel needs an agent or a run id")
    target, last, verify, trades = words[0], None, False, False
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,79}", target):
        raise UsageError(f"{target!r} is not an agent name or run id")
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if word.lower() == "verify":
            verify = True
        elif word.lower() == "trades":
            trades = True
        elif eq and key.lower() == "last":
            if last is not None:
                raise UsageError("last= given twice")
            if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= 500:
                raise UsageError(f"last= expects a number from 1 to 500, got {value!r}")
            last = int(value)
        else:
            raise UsageError(f"unexpected {word!r}")
    return Command(name=name, agent=target, last=last, verify=verify, trades=trades)


_PARSERS = {
    "backtest": _backtest,
    "paper-start": _paper_start,
    "sweep": _sweep,
    "parity": lambda n, w: _run_like(n, w, ("start", "end", "cash")),
    "paper-stop": lambda n, w: _one_agent(n, w, required=True),
    "paper-status": lambda n, w: _one_agent(n, w, required=False),
    "agents": _no_args,
    "runs": lambda n, w: _one_agent(n, w, required=False),
    "fmel": _fmel,
    "digest": _no_args,
    "help": lambda n, w: Command(name=n),  # "/help backtest" is still help
}
