"""The ``tradeops`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import commands
from bot.commands import AGENT_REF, PARAM_NAME, UsageError, agent_name_for
from bot.console import format_decisions, format_result, format_validation
from infra.settings import Settings, SettingsError
from runtime.defaults import DEFAULT_CASH, DEFAULT_TIMEOUT_S
from runtime.paths import EXAMPLES_DIR
from workers.params import RANKS

if TYPE_CHECKING:
    from infra.bootstrap import Platform
    from workers.payloads import RunParameters
    from workers.ports import AgentVersion
    from workers.validation import ValidationReport

# backtrader, pandas and pyarrow are imported by the commands that need them, so that
# `tradeops --help` and usage errors answer at once.
DEMO_AGENT = EXAMPLES_DIR / "sma_cross.py"


class CliError(Exception):
    """A one-line message for the user; exit status 2."""


# ----------------------------------------------------------------- argument types
def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2021-01-31, got {text!r}") from None


def _symbols(text: str) -> tuple[str, ...]:
    syms = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not syms:
        raise argparse.ArgumentTypeError("expected symbols like SPY,QQQ")
    return syms


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value

    return parse


def _queues(text: str) -> tuple[str, ...]:
    from workers.ports import QUEUES

    names = tuple(q.strip() for q in text.split(",") if q.strip())
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected queues from {','.join(QUEUES)}, got {text!r}")
    return names


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("expected a fraction like 0.001 (0.1%), from 0 to 1")
    return value


# ----------------------------------------------------------------------- parser
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tradeops")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tradeops",
        description="Backtest, paper-trade and explain backtrader agents.",
    )
    ap.add_argument("--version", action="version", version=f"tradeops {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("backtest", help="backtest an agent file", description=(
        "Run one backtest of the strategy in FILE, record every decision (FMEL) and "
        "store the result under $TRADEOPS_HOME."))  # fmt: skip
    b.add_argument("file", type=Path, metavar="AGENT|FILE",
                   help="an agent file (.py), or a registered agent: NAME or NAME@vN")  # fmt: skip
    _params_argument(b, "the strategy's own parameters, e.g. fast=5 slow=20")
    _backtest_options(b)

    sw = sub.add_parser("sweep", help="backtest every combination of parameter values",
                        description=(
        "Backtest AGENT once per combination of its parameters' values (fast=5..20/5 is "
        "5,10,15,20; slow=20,40,60 a list), spread over every running worker (else run "
        "here, one after another); rank them, draw a heatmap of two parameters, and with "
        "--oos run the best again on held-out bars."))  # fmt: skip
    sw.add_argument("file", type=Path, metavar="AGENT",
                    help="a registered agent (NAME or NAME@vN) or an agent file (.py)")  # fmt: skip
    _params_argument(sw, "each swept parameter and its values: fast=5..20/5 slow=20,40,60",
                     required=True)  # fmt: skip
    _run_options(sw)
    sw.add_argument("--rank", choices=tuple(RANKS), default="sharpe",
                    help="the figure combinations are ranked by (default sharpe)")  # fmt: skip
    sw.add_argument("--oos", type=_share, default=None, metavar="SHARE",
                    help="hold out this share of the bars (the last ones, e.g. 30%%) and run "
                    "the best combinations on them")  # fmt: skip

    pa = sub.add_parser("parity", help="backtest vs paper replay of the same bars",
                        description=(
        "Backtest AGENT, then replay the same bars through the paper runtime (live feeds, "
        "simulated broker, full speed) and compare orders, fills and every bar's decision "
        "state. Exit 0: identical; 1: they part (the first such bar is named)."))  # fmt: skip
    pa.add_argument("file", type=Path, metavar="AGENT",
                    help="a registered agent (NAME or NAME@vN) or an agent file (.py)")  # fmt: skip
    _params_argument(pa, "the strategy's own parameters, e.g. fast=5 slow=20")
    _run_options(pa)

    f = sub.add_parser("fmel", help="show or verify a run's decisions", description=(
        "Show the last decisions of a run (bar, action, orders, fills, value), or with "
        "--verify recompute its hash chain from the stored rows, or with --trades list the "
        "run's closed trades."))  # fmt: skip
    f.add_argument("run_id", metavar="RUN_ID", help="run id, a unique prefix of one, or 'last'")
    f.add_argument("--last", type=_positive(int), default=20, metavar="N",
                   help="how many decisions to show (default 20)")  # fmt: skip
    what = f.add_mutually_exclusive_group()
    what.add_argument("--verify", action="store_true", help="recompute and check the hash chain")
    what.add_argument(
        "--trades",
        action="store_true",
        help="the run's closed trades: entry, exit, size, prices, P&L, bars held",
    )
    f.add_argument("--json", action="store_true", help="print JSON")

    v = sub.add_parser("validate", help="check an agent file without running it", description=(
        "Check the agent in FILE statically, without running any of it: size, encoding, "
        "syntax, imports, forbidden names and attributes, and which strategy would run. "
        "Exit status 0 when valid, 1 when not."))  # fmt: skip
    v.add_argument("file", type=Path, metavar="FILE", help="agent file (.py)")
    v.add_argument("--strategy", metavar="NAME", help="strategy class to run (files with several)")
    v.add_argument("--json", action="store_true",
                   help="print exactly the validation report as JSON on stdout")  # fmt: skip

    a = sub.add_parser("agents", help="register and list agents", description=(
        "Agents are registered versions of agent files: `agents add` validates a file and "
        "stores it as the agent's next version; `agents list` shows them."))  # fmt: skip
    asub = a.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    add = asub.add_parser("add", help="validate a file and register it as a new version")
    add.add_argument("file", type=Path, metavar="FILE", help="agent file (.py)")
    add.add_argument("--name", metavar="N", help="agent name (default: the file's stem)")
    add.add_argument("--strategy", metavar="NAME",
                     help="strategy class to run (files with several); the version keeps it")
    add.add_argument("--json", action="store_true", help="print the event as JSON")
    lst = asub.add_parser("list", help="list registered agents")
    lst.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("runs", help="list runs, newest first", description=(
        "The runs recorded for all agents, or for one, newest first."))  # fmt: skip
    r.add_argument("agent", nargs="?", metavar="AGENT", help="only this agent's runs")
    r.add_argument("--last", type=_positive(int), default=20, metavar="N",
                   help="how many (default 20)")  # fmt: skip
    r.add_argument("--json", action="store_true", help="print JSON")

    w = sub.add_parser("worker", help="run queued jobs", description=(
        "Take jobs from the queues (Redis at REDIS_URL, else this home's embedded Redis) and "
        "run them: validation, backtests in the sandbox. Run several for throughput."))  # fmt: skip
    w.add_argument("--burst", action="store_true", help="stop once the queues are empty")
    w.add_argument("--queues", type=_queues, default=None, metavar="Q,Q",
                   help="queues to take jobs from (default: all)")  # fmt: skip
    w.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="serve GET /health on this port (a pod's probes)")  # fmt: skip

    d = sub.add_parser("demo", help="the whole flow on this machine, as a chat", description=(
        "Start the embedded Redis and a worker (unless they run), upload the bundled "
        "SMA-cross example agent, backtest it through the queue in the sandbox, and print "
        "the conversation a chat user would see: registration, progress, metrics, the FMEL "
        "summary and where the chart is."))  # fmt: skip
    d.add_argument("--json", action="store_true", help="print the result document as JSON")
    d.add_argument("--backend", choices=("local", "gcp"), default="local",
                   help="gcp: the same flow on local stand-ins of Cloud Storage, the Firebase "
                   "Realtime Database and BigQuery, started and stopped by the demo")  # fmt: skip

    sh = sub.add_parser("shell", help="the chat commands at a terminal", description=(
        "An interactive console speaking the Slack commands (/backtest, /agents, /runs, "
        "/fmel, /paper-start…, /help) through the same queue and jobs; /upload FILE stands "
        "in for sharing a file. Reads commands from stdin when it is not a terminal."))  # fmt: skip
    sh.add_argument("--inline", action="store_true",
                    help="run jobs in this process even when a worker is running")  # fmt: skip
    pp = sub.add_parser("paper", help="paper-trade agents", description=(
        "Paper trading: an agent on live bars (a replay of the data folder, or Alpaca) with "
        "a paper broker, every decision recorded as it happens, in a supervised sandboxed "
        "process named paper-AGENT that is restarted (and resumes) when it dies."))  # fmt: skip
    psub = pp.add_subparsers(dest="paper_command", required=True, metavar="ACTION")
    ps = psub.add_parser("start", help="start paper trading an agent")
    ps.add_argument("agent", metavar="AGENT", help="a registered agent, NAME or NAME@vN")
    _params_argument(ps, "the strategy's own parameters, e.g. fast=5 slow=20")
    ps.add_argument("--symbols", type=_symbols, default=None, metavar="A,B",
                    help="symbols to trade (default SPY)")  # fmt: skip
    ps.add_argument("--cash", type=_positive(float), default=DEFAULT_CASH, metavar="N",
                    help="starting cash (default 10000)")  # fmt: skip
    ps.add_argument("--feed", choices=("replay", "alpaca"), default="replay",
                    help="where bars come from (default replay)")  # fmt: skip
    ps.add_argument("--start", type=_date, metavar="YYYY-MM-DD",
                    help="replay: the first day played (default the data's first)")  # fmt: skip
    ps.add_argument("--bar-seconds", type=_positive(float), default=1.0, metavar="S",
                    help="replay: seconds between bars (default 1)")  # fmt: skip
    pm = psub.add_parser("manifest", help="the Kubernetes StatefulSet a start would apply",
                         description=(
        "Print (YAML) the StatefulSet paper-AGENT that `paper start` would create with "
        "TRADEOPS_CLUSTER=kubernetes (TRADEOPS_RUNTIME_IMAGE); nothing is applied."))  # fmt: skip
    pm.add_argument("agent", metavar="AGENT", help="a registered agent, NAME or NAME@vN")
    for action in ps._actions[2:]:  # the start options, the same names and defaults
        pm._add_action(action)
    pst = psub.add_parser("stop", help="stop an agent's paper trading")
    pst.add_argument("agent", metavar="AGENT")
    pl = psub.add_parser("logs", help="the session's log")
    pl.add_argument("agent", metavar="AGENT")
    pl.add_argument("--tail", type=_positive(int), default=100, metavar="N",
                    help="how many lines (default 100)")  # fmt: skip
    pstat = psub.add_parser("status", help="sessions: status, restarts, health")
    pstat.add_argument("agent", nargs="?", metavar="AGENT")
    pstat.add_argument("--json", action="store_true", help="print JSON")

    bt_ = sub.add_parser("bot", help="run the Slack app", description=(
        "Run the Slack app: over HTTP (Slack posts commands, events and button presses to "
        "/slack/events; GET /health answers with the bot's and the queue's state) or in "
        "Socket Mode (SLACK_APP_TOKEN). It queues the work; run workers for it."))  # fmt: skip
    mode = bt_.add_mutually_exclusive_group(required=True)
    mode.add_argument("--http", action="store_true", help="serve Slack's HTTP requests")
    mode.add_argument("--socket", action="store_true", help="connect to Slack in Socket Mode")
    mode.add_argument("--redeliver", action="store_true",
                      help="post again the events Slack refused too often, then exit")  # fmt: skip
    bt_.add_argument("--port", type=_port, default=None, metavar="P",
                     help="HTTP port (default $PORT, else 3000)")  # fmt: skip

    sch = sub.add_parser("scheduler", help="enqueue scheduled digests on time", description=(
        "Run RQ's cron scheduler with one job per digest in TRADEOPS_DIGESTS "
        "(CHANNEL@HH:MM, UTC, comma-separated); workers on the digest queue run them. "
        "Runs until SIGTERM; several schedulers enqueue each digest once. With "
        "TRADEOPS_CLUSTER=kubernetes it also watches the paper pods: a restart is news for "
        "the agent's owner."))  # fmt: skip
    sch.add_argument("--health-port", type=int, default=None, metavar="PORT",
                     help="serve GET /health on this port (a pod's probes)")  # fmt: skip
    r = sub.add_parser("redis", help="the embedded Redis of $TRADEOPS_HOME: status or stop",
                       description=(
        "The embedded redis-server (started by the first process that needs a queue when "
        "REDIS_URL is unset) runs until stopped: `tradeops redis stop` shuts it down, its "
        "queued jobs kept on disk for the next start."))  # fmt: skip
    r.add_argument("action", choices=["status", "stop"])
    g = sub.add_parser("gcp", help="set up what tradeops needs in Google Cloud", description=(
        "rules: the .indexOn rules the registry's queries need in the Firebase Realtime "
        "Database of TRADEOPS_REGISTRY (without them its queries are refused). Printed; with "
        "--apply, merged into the database's rules (every other rule kept)."))  # fmt: skip
    g.add_argument("what", choices=["rules"])
    g.add_argument("--apply", action="store_true",
                   help="merge them into the database's rules (Firebase Realtime Database Admin)")
    return ap


def _params_argument(p: argparse.ArgumentParser, help_text: str, *, required: bool = False) -> None:
    p.add_argument("params", nargs="+" if required else "*", type=_param, metavar="NAME=VALUE",
                   help=help_text)  # fmt: skip


def _param(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not value or not PARAM_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _share(text: str) -> float:
    try:
        return commands._share(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _params_of(args: argparse.Namespace) -> dict[str, str]:
    pairs: list[tuple[str, str]] = list(getattr(args, "params", None) or [])
    names = [name for name, _ in pairs]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise CliError(f"{twice[0]}= given twice")
    return dict(pairs)


def _run_options(b: argparse.ArgumentParser) -> None:
    """What a sweep's or parity check's runs share: the options of `tradeops backtest` that
    every worker can honour (its data is the platform's)."""
    b.add_argument("--symbols", type=_symbols, default=None, metavar="A,B",
                   help="symbols to trade (default SPY)")  # fmt: skip
    b.add_argument("--start", type=_date, metavar="YYYY-MM-DD", help="first day (inclusive)")
    b.add_argument("--end", type=_date, metavar="YYYY-MM-DD", help="last day (inclusive)")
    b.add_argument("--cash", type=_positive(float), default=DEFAULT_CASH, metavar="N",
                   help="starting cash (default 10000)")  # fmt: skip
    b.add_argument("--commission", type=_fraction, default=0.0, metavar="X",
                   help="commission as a fraction of value, e.g. 0.001 (default 0)")  # fmt: skip
    b.add_argument("--strategy", metavar="NAME", help="strategy class to run (files with several)")
    b.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")


def _backtest_options(b: argparse.ArgumentParser) -> None:
    b.add_argument(
        "--symbols",
        type=_symbols,
        default=None,
        metavar="A,B",
        help="symbols to trade (default SPY)",
    )
    b.add_argument("--start", type=_date, metavar="YYYY-MM-DD", help="first day (inclusive)")
    b.add_argument("--end", type=_date, metavar="YYYY-MM-DD", help="last day (inclusive)")
    b.add_argument(
        "--cash",
        type=_positive(float),
        default=DEFAULT_CASH,
        metavar="N",
        help="starting cash (default 10000)",
    )
    b.add_argument(
        "--commission",
        type=_fraction,
        default=0.0,
        metavar="X",
        help="commission as a fraction of value, e.g. 0.001 (default 0)",
    )
    b.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="market data folder (default $TRADEOPS_DATA_DIR or the bundled sample)",
    )
    b.add_argument("--strategy", metavar="NAME", help="strategy class to run (files with several)")
    b.add_argument(
        "--timeout",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="wall-clock limit in seconds (default 1200)",
    )
    b.add_argument(
        "--chart",
        type=Path,
        metavar="PNG",
        help="where to write the equity chart (default: in the run's folder)",
    )
    b.add_argument("--json", action="store_true",
                   help="print exactly the result document as JSON on stdout")  # fmt: skip
    b.add_argument("--unsafe", action="store_true",
                   help="run unsandboxed where no sandbox can be had (trusted code)")  # fmt: skip


# ---------------------------------------------------------------------- commands
def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Through the queue when a worker is running (and nothing asks for this machine's
    files or an unsandboxed run), else in this process: the same job code either way."""
    local_only = args.data or args.unsafe or args.chart or args.timeout != DEFAULT_TIMEOUT_S
    if not local_only:
        from bot.desk import Desk

        desk = Desk(settings, user=_cli_user(), use_queue=True)
        if desk.workers_on("backtest") and (not args.file.is_file() or desk.workers_on("validate")):
            return _backtest_via_queue(args, settings, desk)
    return _backtest_here(args, settings)


def _backtest_via_queue(args: argparse.Namespace, settings: Settings, desk: Any) -> int:
    from workers import events as ev

    version: int | None
    if args.file.is_file():
        report = _validate(args.file, args.strategy, settings)
        if not report.ok:  # refused here, as in-process: nothing is queued
            return _backtest_here(args, settings)
        name = agent_name_for(args.file.stem)
        uploaded = desk.upload(name=name, source=args.file.read_bytes(), strategy=args.strategy)
        registered = desk.follow(uploaded, _quiet)
        if not isinstance(registered, ev.AgentRegistered):
            raise CliError(_one_line(registered))
        agent, version = name, int(registered.version)
    else:
        _, agent, stored = _resolve_agent(args.file, _platform(settings))
        version = None if stored is None else int(stored.version)
    ticket = desk.backtest(agent=agent, version=version, parameters=_run_parameters(args))
    print(f"tradeops: backtest {ticket.run_id} queued ({desk.workers_on('backtest')} worker(s))",
          file=sys.stderr)  # fmt: skip
    progress = _ProgressLine()

    def show(event: Any) -> None:
        if isinstance(event, ev.BacktestProgress):
            progress(event.done, event.total)
        elif isinstance(event, ev.JobFailed):
            print(f"tradeops: {event.error['message']}; retrying", file=sys.stderr)

    final = desk.follow(ticket, show, on_wait=lambda text: print(f"tradeops: {text}",
                                                                 file=sys.stderr))  # fmt: skip
    progress.finish()
    run = desk.registry().get_run(ticket.run_id)
    doc = (run.result if run is not None else None) or getattr(final, "result", None)
    if doc is None:  # lost before any result: the failure news is all there is
        print(_one_line(final), file=sys.stderr)
        return 1
    if chart := desk.chart_file(doc):  # from the artifact store, for the reader to open
        doc["chart"] = str(chart)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_result(doc))
    return 1 if doc.get("error") else 0


def _quiet(event: Any) -> None:
    pass


def _one_line(event: Any) -> str:
    from bot.console import format_event_or_say

    return format_event_or_say(event).splitlines()[0]


def _backtest_here(args: argparse.Namespace, settings: Settings) -> int:
    """The worker's job code, run in this process with this command's runner (its timeout,
    an unsandboxed run when asked) and data folder: one pipeline, whoever runs it."""
    from bot.desk import Desk
    from runtime.fmel import new_run_id
    from workers import events as ev
    from workers import jobs

    run_id = new_run_id()
    work = settings.runs_dir / run_id
    data_dir = (args.data or settings.data_dir).resolve()
    if not data_dir.is_dir():
        raise CliError(f"data folder not found: {data_dir}")
    progress = _ProgressLine()

    class Progress:
        def send(self, event: Any) -> None:
            if isinstance(event, ev.BacktestProgress):
                progress(event.done, event.total)

    platform = _platform(settings)
    local = platform.sandbox_runner(timeout_s=args.timeout, unsafe=args.unsafe, data_dir=data_dir)
    if local.unsandboxed:
        print("tradeops: warning: no sandbox here; running the agent UNSANDBOXED (--unsafe)",
              file=sys.stderr)  # fmt: skip
    services = platform.services(Progress(), runner=local.runner, market=local.market,
                                 progress_every_s=0.5)  # fmt: skip
    agent_file, name, stored = _resolve_agent(args.file, services)
    strategy = args.strategy or (stored.report.get("strategy") if stored else None)
    try:
        if stored is None:  # a file: validated and registered as the upload job does it
            report = _validate(agent_file, strategy, settings)
            if not report.ok:  # refused before any of it runs
                return _refused(args, run_id, work, agent_file, name, report)
            registered = jobs.register_agent(services, job_id=f"cli-{run_id}", owner=_cli_user(),
                                             name=name, source=agent_file.read_bytes(),
                                             strategy=args.strategy)  # fmt: skip
            assert isinstance(registered, ev.AgentRegistered), registered
            version, validation = int(registered.version), dict(registered.report)
        else:
            version, validation = int(stored.version), dict(stored.report)
        final = jobs.run_backtest(services, job_id=f"cli-{run_id}", run_id=run_id,
                                  owner=_cli_user(), agent=name, version=version,
                                  parameters=_run_parameters(args))  # fmt: skip
    finally:
        progress.finish()
        local.close()
    run = services.registry.get_run(run_id)
    if run is None:  # refused before it ran (a parameter its strategy does not have)
        from bot.console import format_event_or_say

        print(format_event_or_say(final), file=sys.stderr)
        return 1
    assert run is not None and run.result is not None
    doc = {**run.result, "validation": validation}
    doc.setdefault("chart_artifact", None)
    if chart := Desk(settings, _cli_user(), platform=platform).chart_file(doc, args.chart):
        doc["chart"] = str(chart)
    work.mkdir(parents=True, exist_ok=True)
    (work / "result.json").write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_result(doc))
        log = local.log_of(run_id)
        if doc["error"] and log.is_file():
            print(f"  Agent log: {log}")
    return 1 if doc["error"] else 0


def _refused(
    args: argparse.Namespace,
    run_id: str,
    work: Path,
    agent_file: Path,
    name: str,
    report: ValidationReport,
) -> int:
    """A file that did not pass validation: nothing ran, nothing was registered."""
    from runtime.backtest import BacktestRequest, error_document

    error = report.first_error_as_run_error()
    assert error is not None
    req = BacktestRequest(agent_file=agent_file, agent_id=name, run_id=run_id,
                          symbols=args.symbols or ("SPY",), start=args.start, end=args.end,
                          cash=args.cash, commission=args.commission)  # fmt: skip
    doc = error_document(req, error)
    doc |= {"agent_sha256": report.sha256, "sandbox": None, "agent_version": None,
            "chart_artifact": None, "validation": report.to_dict()}  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    (work / "result.json").write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"Backtest {run_id} refused: the agent did not pass validation (nothing ran)")
        print(format_validation(report))
    return 1


def _run_parameters(args: argparse.Namespace) -> RunParameters:
    """A backtest's parameters from this command's options, as the job takes them."""
    params: RunParameters = {
        "symbols": list(args.symbols or ("SPY",)),
        "start": args.start and args.start.isoformat(),
        "end": args.end and args.end.isoformat(),
        "cash": args.cash,
        "commission": args.commission,
    }
    if args.strategy:
        params["strategy"] = args.strategy
    if getattr(args, "command", "") != "sweep" and (given := _params_of(args)):
        params["params"] = given
    return params


def _resolve_agent(target: Path, ports: Any) -> tuple[Path, str, AgentVersion | None]:
    """(the file, the agent's name, None) for a file; (its name as a path, the agent's name,
    the stored version) for a registered agent (``NAME`` or ``NAME@vN``)."""
    if target.is_file():
        return target.resolve(), agent_name_for(target.stem), None
    if target.suffix == ".py" or "/" in str(target):
        raise CliError(f"agent file not found: {target}")
    found = AGENT_REF.fullmatch(str(target))
    version = None
    if found:
        wanted = int(found.group(2)) if found.group(2) else None
        version = ports.registry.get_version(found.group(1), wanted)
    if version is None:
        known = ", ".join(a.name for a in ports.registry.list_agents()[:8]) or "none yet"
        raise CliError(f"no agent file or registered agent {str(target)!r} (agents: {known})")
    return Path(f"{version.name}.py"), version.name, version


def cmd_fmel(args: argparse.Namespace, settings: Settings) -> int:
    fmel = _platform(settings).fmel
    run_id = resolve_run_id(args.run_id, settings)
    if args.trades:
        return _print_trades(settings, run_id, as_json=args.json)
    if args.verify:
        v = fmel.verify(run_id)
        if args.json:
            print(json.dumps(v.to_dict(), indent=2))
        elif v.ok:
            note = f" ({v.reason})" if v.reason else ""
            print(f"FMEL {run_id}: OK · {v.rows} decisions · chain head {v.chain_head}{note}")
        else:
            print(f"FMEL {run_id}: MISMATCH at bar {v.first_bad_bar}: {v.reason}")
        return 0 if v.ok else 1
    rows = fmel.decisions(run_id, last=args.last)
    summary = fmel.summary(run_id)
    if args.json:
        print(json.dumps({"summary": summary, "decisions": rows}, indent=2, default=str))
        return 0
    if summary:
        actions = " · ".join(f"{k} {v}" for k, v in summary["actions"].items())
        print(f"FMEL {run_id} · {summary['agent_id']} · {summary['decisions']} decisions "
              f"({actions}) · chain {summary['chain_head'][:12]}…")  # fmt: skip
    print(format_decisions(rows))
    return 0


def _print_trades(settings: Settings, run_id: str, *, as_json: bool) -> int:
    """The run's closed trades, from its stored result (the desk's ``/fmel RUN trades``)."""
    from bot.console import format_trades
    from bot.desk import Desk, DeskError

    try:
        report = Desk(settings, user=_cli_user()).fmel(run_id, trades=True)
    except DeskError as exc:
        raise CliError(str(exc)) from None
    trades = report.trades or []
    if as_json:
        listed = {"run_id": run_id, "trades_closed": report.trades_closed, "trades": trades}
        print(json.dumps(listed, indent=2))
    else:
        print(format_trades(run_id, trades, report.trades_closed))
    return 0


def resolve_run_id(wanted: str, settings: Settings) -> str:
    """``last`` (the latest recorded run), an agent's name (its latest recorded run), a run
    id or its unambiguous start: the desk's rule, as in chat."""
    from bot.desk import Desk, DeskError

    if wanted == "last":
        recorded = _platform(settings).fmel.recorded()
        if not recorded:
            raise CliError("no recorded runs yet: run `tradeops backtest AGENT` first")
        return recorded[0]
    try:
        return Desk(settings, user=_cli_user()).fmel_run_id(wanted)
    except DeskError as exc:
        raise CliError(str(exc)) from None


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The README's first command: the whole flow, through the queue, as a conversation."""
    if args.backend == "gcp":
        return _demo_on_google(args, settings)
    return _demo(args, settings, "sandboxed backtests")


def _demo(
    args: argparse.Namespace,
    settings: Settings,
    backends: str,
    after: Callable[[Any, str], None] | None = None,
) -> int:
    """The conversation on ``settings``' backends; ``after(desk, run_id)`` says more at the
    end (where each part lives)."""
    from bot.console import Conversation
    from bot.desk import Desk
    from bot.shell import Shell

    _log_to_file(settings, "demo.log")
    platform = _platform(settings)
    had_redis = platform.queue.reachable()
    url = platform.queue_url()  # starts the embedded Redis unless one serves this home
    desk = Desk(settings, user=_cli_user(), use_queue=True, platform=platform)
    worker = None
    if not (desk.workers_on("validate") and desk.workers_on("backtest")):
        worker = _start_worker(settings, desk)
    where = "its own worker" if worker else "the running worker(s)"
    print(f"tradeops demo · Redis {url} · {where} · {backends} · "
          f"state in {settings.home}\n", file=sys.stderr if args.json else sys.stdout)  # fmt: skip
    chat = Conversation(print if not args.json else _quiet)
    shell = Shell(desk, lambda text: chat.say("tradeops", text))
    script = [
        ("shares sma_cross.py", f"/upload {DEMO_AGENT} sma_cross"),
        ("/backtest sma_cross SPY,QQQ", "/backtest sma_cross SPY,QQQ"),
        ("/fmel sma_cross last=5 verify", "/fmel sma_cross last=5 verify"),
    ]
    run_id = ""
    try:
        for said, line in script:
            chat.say("you", said)
            shell.handle(line)
            if shell.errors or (shell.last is not None and _demo_failed(shell.last)):
                return 1
            if line.startswith("/backtest"):
                result = getattr(shell.last, "result", None)
                run_id = getattr(shell.last, "run_id", "")
                if args.json and result is not None:
                    print(json.dumps(result, indent=2))
                shell.last = None  # the /fmel answer comes straight from the desk
        if after is not None and not args.json:
            after(desk, run_id)
        return 0
    finally:
        if worker is not None:
            _stop_worker(worker)
        if not had_redis:
            platform.stop_idle_redis()


def _demo_on_google(args: argparse.Namespace, settings: Settings) -> int:
    """The demo on Cloud Storage, the Realtime Database, BigQuery and Cloud Build, each a
    local stand-in started here (fake-gcs-server, our RTDB server, bqemulator, our Cloud
    Build server running the steps in the sandbox) and stopped at the end. Its
    home is its own (``<home>/demo-gcp``), so a local worker of the home takes none of it."""
    from infra.emulators import google_stand_ins

    say = print if not args.json else _quiet
    say("tradeops demo: starting Cloud Storage, Realtime Database, BigQuery and Cloud Build "
        "stand-ins…")
    with google_stand_ins() as stand_ins:
        env = {
            **stand_ins,
            "TRADEOPS_HOME": str(settings.home / "demo-gcp"),
            "TRADEOPS_DATA_DIR": str(settings.data_dir),
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # this process and the worker it starts
        try:
            cloud = Settings.from_env()

            def where(desk: Any, run_id: str) -> None:
                _say_where(desk, run_id, cloud)

            return _demo(args, cloud, "Cloud Storage · Firebase · BigQuery · Cloud Build "
                         "(local stand-ins)", where)  # fmt: skip
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _say_where(desk: Any, run_id: str, settings: Settings) -> None:
    """Where each part of the run lives, read back from each service."""
    ports = desk.ports
    run = ports.registry.get_run(run_id) if run_id else None
    version = ports.registry.get_version("sma_cross", None)
    summary = ports.fmel.summary(run_id) if run_id else None
    print()
    print("Where it all lives:")
    if version is not None:
        print(f"  agent code   Cloud Storage  {ports.artifacts.path_hint(version.sha256)}")
    if run is not None and run.result and run.result.get("chart_artifact"):
        print(f"  chart        Cloud Storage  "
              f"{ports.artifacts.path_hint(run.result['chart_artifact'])}")  # fmt: skip
    ran = (run.result or {}).get("runner") if run is not None else None
    if isinstance(ran, dict) and ran.get("name") == "cloudbuild":
        print(f"  backtest     Cloud Build    build {ran.get('build_id')} in "
              f"{settings.gcp_project}, log {ran.get('log_url')}")  # fmt: skip
    if run is not None:
        print(f"  run {run.run_id}  Firebase  {settings.registry} creators/{run.owner}/"
              f"agents/{run.agent}/runs/{run.run_id} ({run.status.value})")  # fmt: skip
    if summary is not None:
        dataset = settings.fmel.removeprefix("bigquery://").replace("/", ".")
        print(f"  decisions    BigQuery       {dataset}.trading_decisions "
              f"({summary.get('decisions')} rows of run {run_id}; verified above from there)")
def _demo_failed(event: Any) -> bool:
    return event.kind in ("agent_rejected", "backtest_failed", "job_failed")


def _start_worker(settings: Settings, desk: Any) -> Any:
    """A `tradeops worker` for the demo, its log in the home; waits until it listens."""
    import subprocess

    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TRADEOPS_HOME=str(settings.home),
               TRADEOPS_DATA_DIR=str(settings.data_dir))  # fmt: skip
    with open(logs / "demo-worker.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (desk.workers_on("validate") and desk.workers_on("backtest")):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_worker(proc)
            raise CliError(f"the demo's worker did not start (see {logs / 'demo-worker.log'})")
        time.sleep(0.05)
    return proc


def _stop_worker(proc: Any) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # RQ's warm shutdown: the sandbox it kept goes too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _log_to_file(settings: Settings, name: str) -> Path:
    """Faults go to a log file under the home, not onto the user's screen."""
    import logging

    folder = settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / name)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return folder / name


def cmd_shell(args: argparse.Namespace, settings: Settings) -> int:
    from bot.desk import Desk
    from bot.shell import run_shell

    _log_to_file(settings, "shell.log")
    desk = Desk(settings, user=_cli_user(), use_queue=False if args.inline else None)
    return run_shell(desk)


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    if not args.file.is_file():
        raise CliError(f"agent file not found: {args.file}")
    report = _validate(args.file, args.strategy, settings)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_validation(report))
    return 0 if report.ok else 1


def _platform(settings: Settings) -> Platform:
    from infra.bootstrap import bootstrap

    return bootstrap(settings)


def _local_services(settings: Settings) -> Any:
    """The job code's services for this process; its events go nowhere (commands print
    the event they get back)."""

    class Quiet:
        def send(self, event: Any) -> None:
            pass

    return _platform(settings).services(Quiet())


def cmd_agents(args: argparse.Namespace, settings: Settings) -> int:
    from bot.console import format_agents, format_event_or_say
    from workers import jobs

    if args.agents_command == "list":  # the registry alone: no other port is made
        agents = _platform(settings).registry.list_agents()
        if args.json:
            print(json.dumps([dataclasses.asdict(a) for a in agents], indent=2))
        else:
            print(format_agents(agents))
        return 0
    if not args.file.is_file():
        raise CliError(f"agent file not found: {args.file}")
    name = args.name or args.file.stem
    named = AGENT_REF.fullmatch(name)
    if not named or named["version"]:
        raise CliError(f"agent name {name!r}: use letters, digits, - and _ (start with a letter)")
    services = _local_services(settings)
    event = jobs.register_agent(services, job_id=f"cli-{name}", owner=_cli_user(), name=name,
                                source=args.file.read_bytes(), strategy=args.strategy)  # fmt: skip
    print(event.to_json() if args.json else format_event_or_say(event))
    return 0 if event.kind == "agent_registered" else 1


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from bot.console import format_runs

    runs = _platform(settings).registry.list_runs(args.agent, limit=args.last)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in runs], indent=2, default=str))
    else:
        print(format_runs(runs))
    return 0


def _cli_user() -> str:
    return "cli:" + (os.environ.get("USER") or os.environ.get("LOGNAME") or "local")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ports import QUEUES

    platform = _platform(settings)
    platform.serve_health(args.health_port, "worker")
    return platform.run_worker(args.queues or QUEUES, burst=args.burst)


def _validate(path: Path, strategy: str | None, settings: Settings) -> ValidationReport:
    from workers.validation import Policy, validate_file

    policy = Policy(max_bytes=settings.max_agent_bytes, allowed_imports=settings.allowed_imports)
    try:
        return validate_file(path, strategy=strategy, policy=policy)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


class _ProgressLine:
    """Progress on stderr once a run has taken more than a second."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.shown = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.t0 < 1.0 or (not self.tty and now - self.last_print < 5.0):
            return
        self.last_print = now
        share = f"/{total} ({100 * done // total}%)" if total else ""
        end = "\r" if self.tty else "\n"
        print(f"  backtest: bar {done}{share}", end=end, file=sys.stderr, flush=True)
        self.shown = True

    def finish(self) -> None:
        if self.tty and self.shown:
            print(file=sys.stderr)


def _in_home(exc: OSError, settings: Settings) -> bool:
    """The state folder cannot be made or written (a path that cannot exist, no rights)."""
    return bool(exc.filename) and str(exc.filename).startswith(str(settings.home))


def _expected(exc: Exception) -> bool:
    """Failures a user can act on (the queue is unreachable…): one line, no traceback."""
    import redis

    from bot.desk import DeskError
    from workers.ports import NeedsOperator, Temporary

    return isinstance(exc, DeskError | NeedsOperator | Temporary | redis.ConnectionError)


def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from bot import slack_server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s "
                        "%(message)s")  # fmt: skip
    if args.socket:
        return slack_server.run_socket(settings)
    if args.redeliver:
        moved = _platform(settings).events.unpark()
        print(f"tradeops bot: {moved} event(s) queued for delivery again; a running bot posts "
              "them", file=sys.stderr)  # fmt: skip
        return 0
    port = args.port
    if port is None:
        env_port = os.environ.get("PORT", "").strip()
        if env_port and not env_port.isdigit():
            raise CliError(f"PORT: expected a port number, got {env_port!r}")
        port = int(env_port or 3000)
    return slack_server.run_http(settings, port)


def cmd_paper(args: argparse.Namespace, settings: Settings) -> int:
    """The same paper jobs as the chat commands, through the queue or in this process."""
    from bot.console import format_event_or_say
    from bot.desk import Desk
    from workers import events as ev

    if args.paper_command == "manifest":
        return _paper_manifest(args, settings)
    desk = Desk(settings, user=_cli_user())
    if args.paper_command == "logs":
        cluster = desk.services().cluster
        try:
            if cluster is None:
                raise KeyError(args.agent)
            print(cluster.logs(args.agent, tail=args.tail))
        except KeyError:
            raise CliError(f"no paper session for {args.agent}") from None
        return 0
    if args.paper_command == "start":
        found = AGENT_REF.fullmatch(args.agent)
        if not found:
            raise CliError(f"{args.agent!r} is not an agent name (NAME or NAME@vN)")
        params = {"symbols": list(args.symbols or ("SPY",)), "cash": args.cash,
                  "feed": args.feed, "start": args.start and args.start.isoformat(),
                  "bar_seconds": args.bar_seconds}  # fmt: skip
        if given := _params_of(args):
            params["params"] = given
        version = int(found.group(2)) if found.group(2) else None
        ticket = desk.paper("paper_start", agent=found.group(1), version=version,
                            parameters=params)  # fmt: skip
    elif args.paper_command == "stop":
        ticket = desk.paper("paper_stop", agent=args.agent)
    else:
        ticket = desk.paper("paper_status", agent=args.agent)

    def waiting(text: str) -> None:
        print(f"tradeops: {text}", file=sys.stderr)

    final = desk.follow(ticket, lambda e: None, on_wait=waiting)
    if getattr(args, "json", False) and isinstance(final, ev.PaperStatus):
        print(json.dumps(final.sessions, indent=2, default=str))
    else:
        print(format_event_or_say(final))
    return 1 if final.kind in ("paper_failed", "job_failed") else 0


def _paper_manifest(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from workers.ports import PaperSpec

    found = AGENT_REF.fullmatch(args.agent)
    if not found:
        raise CliError(f"{args.agent!r} is not an agent name (NAME or NAME@vN)")
    platform = _platform(settings)
    number = int(found.group(2)) if found.group(2) else None
    version = platform.registry.get_version(found.group(1), number)
    if version is None:
        raise CliError(f"no agent {args.agent} is registered")
    spec = PaperSpec(
        agent=version.name, version=version.version, sha256=version.sha256,
        owner=_cli_user(), run_id="RUN_ID", symbols=tuple(args.symbols or ("SPY",)),
        cash=args.cash, feed=args.feed, start=args.start and args.start.isoformat(),
        bar_seconds=args.bar_seconds,
    )  # fmt: skip
    print(yaml.safe_dump(platform.paper_manifest(spec), sort_keys=False), end="")
    return 0


def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    """A sweep through the queue when a worker takes backtests, else in this process."""
    from bot.console import format_event_or_say, format_sweep
    from workers import events as ev

    desk, agent, version = _registered(args, settings)
    ticket = desk.sweep(agent=agent, version=version, grid=_params_of(args),
                        parameters=_run_parameters(args), rank=args.rank, oos=args.oos)  # fmt: skip
    where = f"{desk.workers_on('backtest')} worker(s)" if not ticket.inline else "this process"
    print(f"tradeops: sweep {ticket.run_id} of {agent} on {where}", file=sys.stderr)

    def show(event: ev.Event) -> None:
        if isinstance(event, ev.SweepProgress):
            phase = "held-out" if event.phase == "held_out" else "combinations"
            failed = f", {event.failed} failed" if event.failed else ""
            print(f"tradeops: {phase} {event.done}/{event.total} done{failed}", file=sys.stderr)
        elif isinstance(event, ev.JobFailed):
            print(f"tradeops: {event.error['message']}", file=sys.stderr)

    final = desk.follow(ticket, show, on_wait=lambda text: print(f"tradeops: {text}",
                                                                 file=sys.stderr))  # fmt: skip
    if not isinstance(final, ev.SweepFinished):
        print(json.dumps(final.to_dict(), indent=2) if args.json else format_event_or_say(final))
        return 1
    doc = dict(final.result)
    if sha := doc.get("heatmap_artifact"):
        path = settings.runs_dir / final.sweep_id / "heatmap.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(desk.artifacts().get(str(sha)))
        doc["heatmap"] = str(path)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_sweep(doc))
        if doc.get("heatmap"):
            print(f"Heatmap: {doc['heatmap']}")
    return 0


def cmd_parity(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the backtest and the paper replay are identical, 1 when they part."""
    from bot.console import format_event_or_say, format_parity
    from workers import events as ev

    desk, agent, version = _registered(args, settings)
    ticket = desk.parity(agent=agent, version=version, parameters=_run_parameters(args))
    progress = _ProgressLine()

    def show(event: ev.Event) -> None:
        if isinstance(event, ev.BacktestProgress):
            progress(event.done, event.total)

    final = desk.follow(ticket, show, on_wait=lambda text: print(f"tradeops: {text}",
                                                                 file=sys.stderr))  # fmt: skip
    progress.finish()
    if not isinstance(final, ev.ParityChecked):
        print(format_event_or_say(final))
        return 1
    print(json.dumps(final.report, indent=2) if args.json else format_parity(final.report))
    return 0 if final.report["verdict"] == "identical" else 1


def _registered(args: argparse.Namespace, settings: Settings) -> tuple[Any, str, int | None]:
    """The desk, and the agent the command names: a registered one, or a file registered
    first as its next version (as `tradeops backtest FILE` does)."""
    from bot.desk import Desk
    from workers import events as ev

    desk = Desk(settings, user=_cli_user())
    target: Path = args.file
    if not target.is_file():
        _, name, stored = _resolve_agent(target, _platform(settings))
        return desk, name, None if stored is None else int(stored.version)
    report = _validate(target, args.strategy, settings)
    if not report.ok:
        print(format_validation(report))
        raise CliError(f"{target.name} did not pass validation: nothing ran")
    name = agent_name_for(target.stem)
    uploaded = desk.upload(name=name, source=target.read_bytes(), strategy=args.strategy)
    registered = desk.follow(uploaded, _quiet)
    if not isinstance(registered, ev.AgentRegistered):
        raise CliError(_one_line(registered))
    return desk, name, int(registered.version)


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    platform = _platform(settings)
    platform.serve_health(args.health_port, "scheduler")
    return platform.run_scheduler()


def cmd_gcp(args: argparse.Namespace, settings: Settings) -> int:
    import json

    rules, changed = _platform(settings).registry_rules(apply=args.apply)
    print(json.dumps(rules, indent=2))
    if args.apply:
        said = "merged into" if changed else "already in"
        print(f"tradeops: the registry's indexes are {said} the rules of {settings.registry}",
              file=sys.stderr)  # fmt: skip
    return 0


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    print(f"tradeops: {_platform(settings).embedded_redis(stop=args.action == 'stop')}")
    return 0


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """As ``parse_args``, with a strategy's NAME=VALUE words taken wherever they are
    (argparse alone takes them only right after the agent, before any option)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "params"):
        try:
            args.params = [*args.params, *map(_param, extra)]
        except argparse.ArgumentTypeError:
            pass
        else:
            extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


COMMANDS = {
    "backtest": cmd_backtest,
    "fmel": cmd_fmel,
    "demo": cmd_demo,
    "validate": cmd_validate,
    "worker": cmd_worker,
    "agents": cmd_agents,
    "runs": cmd_runs,
    "shell": cmd_shell,
    "scheduler": cmd_scheduler,
    "bot": cmd_bot,
    "paper": cmd_paper,
    "sweep": cmd_sweep,
    "parity": cmd_parity,
    "redis": cmd_redis,
    "gcp": cmd_gcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        return COMMANDS[args.command](args, settings)
    except (CliError, SettingsError) as exc:
        print(f"tradeops: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tradeops runs | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except Exception as exc:
        if settings is not None and isinstance(exc, OSError) and _in_home(exc, settings):
            print(f"tradeops: error: TRADEOPS_HOME {settings.home}: {exc.strerror}",
                  file=sys.stderr)  # fmt: skip
            return 2
        if not _expected(exc):
            raise  # a bug: its traceback is what whoever fixes it needs
        print(f"tradeops: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tradeops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
