"""The runtime's entry point inside a sandbox or container.

    python -m runtime backtest --request REQUEST.json --out DIR

Writes ``DIR/result.json`` (the result document) and keeps ``DIR/progress.json`` up to
date while the run goes. The agent's own output goes to stdout/stderr, which the caller
keeps as the agent's log: the result never travels on stdout, so a ``print`` in an agent
cannot corrupt it. Exit status: 0 success, 1 the run failed (``error`` says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from runtime.backtest import BacktestRequest, run_backtest

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"


def write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, allow_nan=False))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime")
    sub = ap.add_subparsers(dest="command", required=True)
    bt_cmd = sub.add_parser("backtest", help="run one backtest")
    bt_cmd.add_argument("--request", type=Path, required=True)
    bt_cmd.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    req = BacktestRequest.from_json(args.request.read_text())
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def progress(done: int, total: int | None) -> None:
        write_json(out / PROGRESS_FILE, {"done": done, "total": total})

    doc = run_backtest(req, progress)
    write_json(out / RESULT_FILE, doc)
    sys.stdout.flush()
    return 1 if doc["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
