"""The runtime's entry point inside a sandbox or container.

    python -m runtime backtest --request REQUEST.json --out DIR
    python -m runtime serve --out DIR      (request as one JSON line on stdin)

Writes ``DIR/result.json`` (the result document) and keeps ``DIR/progress.json`` up to
date while the run goes. The agent's own output goes to stdout/stderr, which the caller
keeps as the agent's log: the result never travels on stdout, so a ``print`` in an agent
cannot corrupt it. Exit status: 0 success, 1 the run failed (``error`` says why).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from runtime.backtest import BacktestRequest, run_backtest
from runtime.files import write_json
from runtime.paths import PROGRESS_FILE, PROGRESS_LINE, RESULT_FILE


def _rehearse() -> None:
    """Run a tiny backtest of a built-in strategy before any agent code is here.

    The first backtest in a process pays for lazy imports and first-use set-up (pandas'
    CSV parser, Parquet writing, backtrader's metaclasses); a warm sandbox pays it while
    it waits, so the agent's run does not.
    """
    import tempfile

    from runtime.data import write_synthetic_dir

    scratch = Path(tempfile.mkdtemp())
    agent = scratch / "rehearsal.py"
    agent.write_text(
        "import backtrader as bt\n"
        "class Rehearsal(bt.Strategy):\n"
        "    def __init__(self):\n"
        "        self.sma = bt.ind.SMA(period=5)\n"
        "    def next(self):\n"
        "        if not self.position:\n"
        "            self.buy()\n"
    )
    data = write_synthetic_dir(scratch / "data", ["SYN"], n_bars=30, seed=1)
    req = BacktestRequest(
        agent_file=agent,
        symbols=("SYN",),
        data_dir=data,
        fmel_dir=scratch,
        chart_path=scratch / "chart.png",  # matplotlib imported and its fonts loaded now
    )
    # what the warm-up prints (fontconfig finding no configuration, say) is not the agent's
    # output: keep it out of the log the agent's run will write to these same streams
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as quiet:
        os.dup2(quiet.fileno(), 1)
        os.dup2(quiet.fileno(), 2)
        try:
            run_backtest(req)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    sys.modules.pop("tradeops_agent_rehearsal", None)


def _request_waiting() -> bool:
    import select

    try:
        return bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError):  # no stdin to wait on
        return False


# Warnings our runtime or backtrader raise (a library's deprecation, a NaN in our float
# normalising) are not the agent's to read: they would land in its log. What its own code
# triggers (warnings attributed to the agent's module) still shows.
PLATFORM_WARNINGS = r"(runtime|backtrader|numpy|pandas|pyarrow|matplotlib)(\.|$)"


def quiet_platform_warnings() -> None:
    warnings.filterwarnings("ignore", module=PLATFORM_WARNINGS)


def main(argv: list[str] | None = None) -> int:
    quiet_platform_warnings()
    ap = argparse.ArgumentParser(prog="python -m runtime")
    sub = ap.add_subparsers(dest="command", required=True)
    bt_cmd = sub.add_parser("backtest", help="run one backtest")
    bt_cmd.add_argument("--request", type=Path, required=True)
    bt_cmd.add_argument("--out", type=Path, required=True)
    bt_cmd.add_argument("--progress-log", action="store_true",
                        help=f"also print progress to stderr as '{PROGRESS_LINE}DONE/TOTAL' "
                        "lines (a runner that sees only the log: Cloud Build)")  # fmt: skip
    serve = sub.add_parser("serve", help="import everything, then run the request read on stdin")
    serve.add_argument("--out", type=Path, required=True)
    paper = sub.add_parser("paper", help="run a paper-trading session until SIGTERM")
    paper.add_argument("--session", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.command == "paper":
        from runtime.paper.session import main as paper_main

        return paper_main(args.session)
    if args.command == "serve":
        # A pre-started ("warm") sandbox: the imports above are done before the request
        # is known, so a run only pays for itself. One request per process, never reused.
        # A request already waiting (jobs back to back: a sweep's) is run at once: the
        # rehearsal would only delay it.
        if not _request_waiting():
            _rehearse()
        line = sys.stdin.readline()
        if not line:
            return 0  # the runner shut the warm sandbox down unused
        req = BacktestRequest.from_json(line)
    else:
        req = BacktestRequest.from_json(args.request.read_text())
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    to_log = getattr(args, "progress_log", False)

    def progress(done: int, total: int | None) -> None:
        write_json(out / PROGRESS_FILE, {"done": done, "total": total})
        if to_log:
            print(f"{PROGRESS_LINE}{done}/{total if total is not None else '?'}",
                  file=sys.stderr, flush=True)  # fmt: skip

    doc = run_backtest(req, progress)
    write_json(out / RESULT_FILE, doc)
    return 1 if doc["error"] else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown (about 0.2 s with pandas, pyarrow and matplotlib
    # loaded): the result is written and the output flushed; nothing else is pending.
    os._exit(code)
