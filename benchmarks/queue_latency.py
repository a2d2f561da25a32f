"""The job queue with real workers: latency and throughput.

    python benchmarks/queue_latency.py [--runs 7] [--batch 16] [--rounds 3]

- enqueue-to-start with an idle worker (a no-op job): median, target <= 20 ms;
- command-to-result of a small backtest (one symbol, two years of daily bars) as a front-end
  sees it (the desk enqueues it and follows its events to the result) through the queue, a
  worker and the sandbox, commands 2 s apart: median, target <= 1.5 s;
- throughput of a batch of such backtests with one worker and with two, alternating rounds
  (1, 2, 1, 2, …): the median of the per-round speed-ups (target >= 1.7x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from rq.job import Job

from bot.desk import Desk
from infra.local.queue import submit
from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings
from runtime.data import write_synthetic_dir
from runtime.paths import EXAMPLES_DIR
from workers.ports import job_id_for


def start_workers(n: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "bot.cli", "worker"]
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(4.0)  # imports done and, after the first job, a sandbox kept warm
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:  # seen now and then, blocked in BLPOP: noted
            print(f"worker {p.pid} ignored SIGTERM for 30 s; sent it again", file=sys.stderr)
            p.terminate()  # RQ's second signal: a cold shutdown
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait(job: Job, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        status = job.get_status(refresh=True)
        if status in ("finished", "failed"):
            return job.return_value()
        if time.monotonic() > deadline:
            raise TimeoutError(job.id)
        time.sleep(0.005)


def backtest(conn: redis.Redis, tag: str) -> Job:
    return submit(
        conn,
        "backtest",
        "workers.jobs.run_backtest",
        job_id=job_id_for("backtest", tag),
        timeout_s=600,
        kwargs={
            "job_id": tag,
            "run_id": f"bench-{tag}",
            "owner": "bench",
            "agent": "sma",
            "parameters": {"symbols": ["SYN"]},
        },
    ).job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tq-", dir="/tmp"))
    data = write_synthetic_dir(home / "data", ["SYN"], n_bars=504, seed=5)  # two years
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    env |= {"TRADEOPS_HOME": str(home), "TRADEOPS_DATA_DIR": str(data)}
    server = EmbeddedRedis(home)
    conn = redis.Redis.from_url(server.ensure_running())
    agent = (EXAMPLES_DIR / "sma_cross.py").read_bytes()
    reg = submit(
        conn,
        "validate",
        "workers.jobs.register_agent",
        job_id="bench-register",
        timeout_s=60,
        kwargs={"job_id": "r", "owner": "bench", "name": "sma", "source": agent},
    ).job
    med = statistics.median
    settings = Settings.from_env(env)
    desk = Desk(settings, user="bench", use_queue=True)
    ones: list[float] = []
    twos: list[float] = []
    try:
        workers = start_workers(1, env)
        wait(reg)
        starts = []
        for i in range(args.runs * 3):
            t0 = time.time()
            job = submit(
                conn, "backtest", "workers.jobs.ping", job_id=f"ping-{i}", timeout_s=10
            ).job
            started = wait(job)
            starts.append(started - t0)
        wait(backtest(conn, "warmup"))
        latencies = []
        for _ in range(args.runs):
            time.sleep(2.0)  # a user's pace: the worker is idle and its next sandbox warm
            t0 = time.perf_counter()
            ticket = desk.backtest(agent="sma", parameters={"symbols": ["SYN"]})
            result = desk.follow(ticket, lambda e: None, timeout_s=120)
            latencies.append(time.perf_counter() - t0)
            assert result.kind == "backtest_finished", result
        stop(workers)
        for r in range(args.rounds):
            for n, times in ((1, ones), (2, twos)):
                workers = start_workers(n, env)
                for job in [backtest(conn, f"warm-{r}-{n}-{w}") for w in range(n)]:
                    wait(job)  # together, so that each worker has run one
                time.sleep(1.5)
                t0 = time.perf_counter()
                for job in [backtest(conn, f"b{r}-{n}-{i}") for i in range(args.batch)]:
                    wait(job)
                times.append(time.perf_counter() - t0)
                stop(workers)
    finally:
        server.stop()
    ratios = [one / two for one, two in zip(ones, twos, strict=True)]
    one, two = med(ones), med(twos)
    print(
        f"enqueue-to-start (no-op job, idle worker): median {med(starts) * 1000:.1f} ms "
        f"over {len(starts)}  (target <= 20 ms)"
    )
    print(
        f"command-to-result (1 symbol, 504 daily bars): median {med(latencies):.3f} s "
        f"over {len(latencies)}  (target <= 1.5 s)"
    )
    print(
        f"throughput, {args.batch} backtests x {args.rounds} alternating rounds: 1 worker "
        f"median {one:.2f} s, 2 workers median {two:.2f} s; speed-ups "
        f"{', '.join(f'{x:.2f}' for x in ratios)}: median {med(ratios):.2f}x  (target >= 1.7x)"
    )


if __name__ == "__main__":
    main()
