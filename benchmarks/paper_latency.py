"""Bar arrival to order submitted in a paper session, FMEL recording on.

    python benchmarks/paper_latency.py [--bars 3000] [--runs 3]

A real `python -m runtime paper` session on the replay feed (synthetic daily bars, played as
fast as the session takes them, in batches of one time each) with an agent that places an
order on every bar; the session times each order from the moment its bar left the feed's
source to backtrader's "submitted" notification, with the FMEL recorder (flushing every
0.5 s) and the health bookkeeping in the path. The session runs unsandboxed here so the
figure is the session's own; the sandbox adds nothing per bar (it is a process boundary).
Prints the median and p99 over all orders of all runs (target p99 <= 20 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from percentiles import p99

from runtime.data import write_synthetic_dir

AGENT = """
import backtrader as bt

class EveryBar(bt.Strategy):
    def __init__(self):
        self.sma = bt.indicators.SMA(self.data.close, period=20)

    def next(self):
        if len(self) % 2:
            self.buy(size=1)
        else:
            self.sell(size=1)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    latencies: list[float] = []
    medians: list[float] = []
    for run in range(args.runs):
        folder = Path(tempfile.mkdtemp(prefix="tpl-"))
        data = write_synthetic_dir(folder / "data", ["SYN"], n_bars=args.bars, seed=run)
        (folder / "agent.py").write_text(AGENT)
        (folder / "spec.json").write_text(json.dumps({
            "agent_id": "every_bar", "run_id": f"bench-{run}", "agent_file": "agent.py",
            "symbols": ["SYN"], "cash": 1e9, "feed": "replay", "bar_seconds": 0.001,
            "data_dir": str(data), "flush_seconds": 0.5,
        }))  # fmt: skip
        subprocess.run([sys.executable, "-m", "runtime", "paper", "--session", str(folder)],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        got = json.loads((folder / "out" / "latency.json").read_text())
        latencies += got
        medians.append(statistics.median(got))
    ms = 1000
    each = ", ".join(f"{m * ms:.2f}" for m in medians)
    print(
        f"bar arrival to order submitted, FMEL on: {len(latencies)} orders over {args.runs} "
        f"sessions of {args.bars} bars: median {statistics.median(latencies) * ms:.2f} ms, "
        f"p99 {p99(latencies) * ms:.2f} ms, max {max(latencies) * ms:.2f} ms; per-session "
        f"medians {each} ms  (target p99 <= 20 ms)"
    )


if __name__ == "__main__":
    main()
