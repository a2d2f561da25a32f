"""A 24-combination parameter sweep with one worker and with two, side by side.

    python benchmarks/sweep_workers.py [--pairs 3]

One home (its embedded Redis, this machine's sandbox, local stores) and the bundled daily
data. Each trial starts N `tradeops worker` processes, lets them warm up (imports, a warm
sandbox each), then asks for the same sweep as a front-end asks (the desk enqueues the
start job and follows its events to the ranked result): sma_cross, fast=5..20/5 ×
slow=30..80/10 on SPY, 24 backtests of about 1,200 bars each, and the collector's ranking
and heatmap. Trials alternate 1, 2, 1, 2…; the figure is the ratio of the medians (goal:
two workers at least 1.8× as fast on a 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from queue_latency import start_workers, stop  # a sibling: benchmarks run as scripts

from bot.desk import Desk
from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings
from runtime.paths import EXAMPLES_DIR
from workers import events as ev

GRID = {"fast": "5..20/5", "slow": "30..80/10"}
PARAMETERS = {"symbols": ["SPY"]}


def sweep_seconds(desk: Desk) -> float:
    t0 = time.perf_counter()
    ticket = desk.sweep(agent="sma", grid=GRID, parameters=PARAMETERS)  # type: ignore[arg-type]
    final = desk.follow(ticket, lambda e: None, timeout_s=900)
    seconds = time.perf_counter() - t0
    assert isinstance(final, ev.SweepFinished), final
    assert final.result["combinations"] == 24 and final.result["failed"] == 0, final.result
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trsw-", dir="/tmp"))  # short: unix socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    env |= {"TRADEOPS_HOME": str(home)}
    srv = EmbeddedRedis(home)
    srv.ensure_running()
    here = Desk(Settings.from_env(env), user="bench", use_queue=False)  # no worker yet
    up = here.follow(here.upload(name="sma", source=(EXAMPLES_DIR / "sma_cross.py").read_bytes()),
                     lambda e: None)  # fmt: skip
    assert isinstance(up, ev.AgentRegistered), up
    desk = Desk(Settings.from_env(env), user="bench", use_queue=True)
    took: dict[int, list[float]] = {1: [], 2: []}
    try:
        for pair in range(args.pairs):
            for n in (1, 2):
                procs = start_workers(n, env)
                try:
                    seconds = sweep_seconds(desk)
                finally:
                    stop(procs)
                took[n].append(seconds)
                print(f"pair {pair + 1}: {n} worker(s) {seconds:.1f} s", file=sys.stderr)
    finally:
        srv.stop()
    one, two = statistics.median(took[1]), statistics.median(took[2])
    print(f"24-combination sweep, {args.pairs} pairs alternating, medians: "
          f"1 worker {one:.1f} s, 2 workers {two:.1f} s: {one / two:.2f}x "
          f"(runs: 1 worker {', '.join(f'{x:.1f}' for x in took[1])}; "
          f"2 workers {', '.join(f'{x:.1f}' for x in took[2])}) (goal >= 1.8x)")  # fmt: skip


if __name__ == "__main__":
    main()
