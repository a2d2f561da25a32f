"""``tradeops shell``: the chat commands at a terminal, like a chat bot's shell adapter.

Each line is what a Slack user would type (``/backtest sma SPY start=2020-01-01``); the
shell hands it to the same desk and job code as the Slack app and prints, as plain text,
what Slack would show in the thread. ``/upload FILE [NAME]`` stands in for sharing a file
with the bot. ``tradeops demo`` drives the same shell with a script.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot import console
from bot.commands import HELP, USAGE, Command, UsageError, parse, split_command
from bot.desk import Desk, DeskError, Ticket
from workers import events as ev

log = logging.getLogger(__name__)

SHELL_USAGE = dict(USAGE, upload="/upload FILE [NAME]")
SHELL_HELP = dict(HELP, upload="validate a file and register it as an agent's next version")
QUIT = {"exit", "quit", "/exit", "/quit", r"\q"}


class Shell:
    def __init__(
        self,
        desk: Desk,
        reply: Callable[[str], None] = print,
        *,
        progress: Callable[[str], None] | None = None,
        max_upload_bytes: int = 1 << 20,
    ) -> None:
        self.desk = desk
        self.reply = reply  # what the bot says
        self.progress = progress or reply  # progress lines (a tty overwrites them in place)
        self.session = uuid.uuid4().hex[:12]
        self.max_upload_bytes = max_upload_bytes
        self.last: ev.Event | None = None  # the final event of the last job
        self.errors = 0  # lines answered with an error

    def run(self, lines: Iterable[str]) -> int:
        """Handle lines until one says quit or they end; 0, or 1 if the last job failed."""
        for line in lines:
            if not self.handle(line):
                break
        return 1 if self.last is not None and _failed(self.last) else 0

    def handle(self, line: str) -> bool:
        """One line; False when it asks to quit. Nothing escapes as a traceback."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if text.lower() in QUIT:
            return False
        try:
            self._dispatch(text)
        except (UsageError, DeskError) as exc:
            self.errors += 1
            self.reply(str(exc))
        except Exception as exc:  # a fault of ours or of the infrastructure: one line
            self.errors += 1
            log.error("shell: %s failed:\n%s", text, traceback.format_exc())
            self.reply(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                       if str(exc) else f"error: {type(exc).__name__}")  # fmt: skip
        return True

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, text: str) -> None:
        name, rest = split_command(text if text.startswith("/") else "/" + text)
        if name == "upload":
            self._upload(rest)
            return
        if name == "help" or name == "?":
            self.reply(console.format_help(SHELL_USAGE, SHELL_HELP))
            return
        cmd = parse(name, rest)
        reply_to = {"console": self.session}
        if cmd.name == "agents":
            self.reply(console.format_agents(self.desk.agents()))
        elif cmd.name == "runs":
            self.reply(console.format_runs(self.desk.runs(cmd.agent)))
        elif cmd.name == "fmel":
            assert cmd.agent is not None
            found = self.desk.fmel(
                cmd.agent, last=cmd.last or 10, verify=cmd.verify, trades=cmd.trades
            )
            self.reply(console.format_fmel(found))
        elif cmd.name == "backtest":
            assert cmd.agent is not None
            params = cmd.backtest_parameters()
            ticket = self.desk.backtest(agent=cmd.agent, version=cmd.version, parameters=params,
                                        reply_to=reply_to)  # fmt: skip
            self._follow(ticket)
        elif cmd.name == "sweep":
            assert cmd.agent is not None
            self._follow(self.desk.sweep(agent=cmd.agent, version=cmd.version, grid=cmd.grid(),
                                         parameters=cmd.backtest_parameters(), rank=cmd.rank,
                                         oos=cmd.oos, reply_to=reply_to))  # fmt: skip
        elif cmd.name == "parity":
            assert cmd.agent is not None
            self._follow(self.desk.parity(agent=cmd.agent, version=cmd.version,
                                          parameters=cmd.backtest_parameters(),
                                          reply_to=reply_to))  # fmt: skip
        elif cmd.name in ("paper-start", "paper-stop", "paper-status"):
            self._follow(self._paper(cmd, reply_to))
        elif cmd.name == "digest":
            self._follow(self.desk.digest(channel=f"console-{self.session}", reply_to=reply_to))

    def _paper(self, cmd: Command, reply_to: dict[str, str]) -> Ticket:
        if cmd.name == "paper-start":
            return self.desk.paper("paper_start", agent=cmd.agent, version=cmd.version,
                                   parameters=cmd.parameters(), reply_to=reply_to)  # fmt: skip
        work = "paper_stop" if cmd.name == "paper-stop" else "paper_status"
        return self.desk.paper(work, agent=cmd.agent, reply_to=reply_to)

    def _upload(self, rest: str) -> None:
        words = rest.split()
        if not 1 <= len(words) <= 2:
            raise UsageError(f"usage: {SHELL_USAGE['upload']}")
        path = Path(words[0]).expanduser()
        name = words[1] if len(words) == 2 else path.stem
        if path.suffix != ".py":
            raise UsageError(f"{path.name}: agents are Python files (.py)")
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
        if path.stat().st_size > self.max_upload_bytes:
            raise UsageError(f"{path.name} is larger than {self.max_upload_bytes:,} bytes")
        from bot.commands import AGENT_REF

        found = AGENT_REF.fullmatch(name)
        if not found or found["version"]:
            raise UsageError(f"{name!r} is not an agent name (letters, digits, - and _)")
        self._follow(self.desk.upload(name=name, source=path.read_bytes(),
                                      reply_to={"console": self.session}))  # fmt: skip

    def _follow(self, ticket: Ticket) -> None:
        def show(event: ev.Event) -> None:
            if isinstance(event, ev.BacktestFinished) and (
                chart := self.desk.chart_file(event.result)
            ):  # the chart is in the artifact store: a file here, for the reader to open
                event = replace(event, result={**event.result, "chart": str(chart)})
            text = console.format_event_or_say(event)
            (self.progress if isinstance(event, ev.BacktestProgress) else self.reply)(text)

        self.last = self.desk.follow(ticket, show, on_wait=self.reply)


def _failed(event: ev.Event) -> bool:
    return isinstance(event, ev.AgentRejected | ev.BacktestFailed | ev.JobFailed) or (
        event.kind == "paper_failed"
    )


def interactive_lines(prompt: str = "tradeops> ") -> Iterable[str]:
    """Lines typed at a terminal (with line editing when readline is there)."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it gives input() history and editing)
    while True:
        try:
            yield input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return


def run_shell(desk: Desk, *, stdin: Any = None) -> int:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        print("tradeops shell · the Slack commands at a terminal · /help lists them, "
              "exit (or Ctrl-D) leaves", file=sys.stderr)  # fmt: skip
        out = _Terminal()
        return Shell(desk, out.reply, progress=out.progress).run(interactive_lines())
    return Shell(desk).run(stdin)


class _Terminal:
    """Progress rewritten in place on one line; replies below it."""

    def __init__(self) -> None:
        self.open = False

    def progress(self, text: str) -> None:
        print("\r" + text.strip()[:100].ljust(60), end="", file=sys.stderr, flush=True)
        self.open = True

    def reply(self, text: str) -> None:
        if self.open:
            print(file=sys.stderr)
            self.open = False
        print(text, flush=True)
