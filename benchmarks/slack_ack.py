"""How fast the Slack app acknowledges slash commands under a burst.

    python benchmarks/slack_ack.py [--burst 50] [--rounds 5]

A real `tradeops bot --http` on the embedded Redis, its Web API calls answered by the tests'
local Slack stand-in; each round sends ``--burst`` signed `/backtest` commands at once (from
different users and channels, so none is folded into another) and times each answer. No
worker runs: the jobs are queued, which is all an acknowledgement waits for. For scale, the
same burst of `GET /health` is timed alternately with the commands. Prints the median and
p99 (target p99 <= 100 ms; Slack's limit is 3,000 ms).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from percentiles import p99

from infra.local.redis_server import EmbeddedRedis
from runtime.paths import EXAMPLES_DIR
from tests.slack_api import SlackAPI, signed_request, slash_command_body

SECRET = "bench-secret"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tsa-", dir="/tmp"))
    api = SlackAPI().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "SLACK_"))}
    env |= {"TRADEOPS_HOME": str(home), "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": api.base_url}  # fmt: skip
    EmbeddedRedis(home).ensure_running()
    subprocess.run([sys.executable, "-m", "bot.cli", "agents", "add",
                    str(EXAMPLES_DIR / "sma_cross.py")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "bot", "--http", "--port", "0"],
                           env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = ""
    assert bot.stderr is not None
    while not (found := re.search(r"listening on http://[^:]+:(\d+)/", seen)):
        line = bot.stderr.readline()
        assert line, seen
        seen += line
    threading.Thread(target=lambda: [None for _ in bot.stderr or ()], daemon=True).start()
    url = f"http://127.0.0.1:{found.group(1)}"
    pool = ThreadPoolExecutor(max_workers=args.burst)

    def command(i: int, r: int) -> float:
        body = slash_command_body("/backtest", "sma_cross SPY", user=f"U{r}x{i}",
                                  channel=f"C{r}x{i}")  # fmt: skip
        headers, data = signed_request("/slack/events", body, secret=SECRET)
        req = urllib.request.Request(url + "/slack/events", data=data, headers=headers)
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            assert resp.status == 200
        return time.perf_counter() - t0

    def health(i: int, r: int) -> float:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            resp.read()
        return time.perf_counter() - t0

    acks: list[float] = []
    gets: list[float] = []
    try:
        list(pool.map(lambda i: command(i, -1), range(5)))  # warm-up
        for r in range(args.rounds):
            for fn, out in ((command, acks), (health, gets)):
                out += list(pool.map(lambda i, fn=fn, r=r: fn(i, r), range(args.burst)))
                time.sleep(0.5)
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
        api.stop()
        EmbeddedRedis(home).stop()
    ms = 1000
    print(f"slash command acks, {args.rounds} bursts of {args.burst}: median "
          f"{statistics.median(acks) * ms:.1f} ms, p99 {p99(acks) * ms:.1f} ms, max "
          f"{max(acks) * ms:.1f} ms  (target p99 <= 100 ms)")  # fmt: skip
    print(f"GET /health, same bursts for scale: median {statistics.median(gets) * ms:.1f} ms, "
          f"p99 {p99(gets) * ms:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
