"""Command-to-result of a backtest on the Cloud Build stand-in beside the local sandbox.

    python benchmarks/cloudbuild_runner.py [--pairs 5]

Two homes, each with one worker: one on this machine's sandbox (local artifacts), the other
with ``TRADEOPS_RUNNER=cloudbuild`` against our Cloud Build stand-in and a real
fake-gcs-server (the agent and the run's files in the bucket, the build's steps run here:
storage copies, the runtime in the bubblewrap sandbox, tar, the upload). The same small
backtest (one symbol, two years of daily bars) is asked of each in turn, as a front-end asks
(the desk enqueues it and follows its events to the result), commands 2 s apart: medians.

The stand-in runs each step as a process here, so its figure is what our runner adds (the
staging, the build's polling, from 0.25 s up to every 2 s, the outputs' round trip through
the bucket) and the steps' own start-up, not Google's queueing or image pulls: a real build
takes tens of seconds more before its first step.
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

from queue_latency import start_workers, stop  # a sibling: benchmarks run as scripts

from bot.desk import Desk
from infra.emulators.cloudbuild import CloudBuildServer
from infra.emulators.gcs import FakeGcsServer
from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings
from runtime.data import write_synthetic_dir
from runtime.paths import EXAMPLES_DIR

BUCKET = "bench-tradeops"
PROJECT = "tradeops-bench"


def home_env(home: Path, data: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    return env | {"TRADEOPS_HOME": str(home), "TRADEOPS_DATA_DIR": str(data)} | extra


def command_to_result(desk: Desk) -> float:
    t0 = time.perf_counter()
    ticket = desk.backtest(agent="sma", parameters={"symbols": ["SYN"]})
    result = desk.follow(ticket, lambda e: None, timeout_s=300)
    seconds = time.perf_counter() - t0
    assert result.kind == "backtest_finished", result
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tcb-", dir="/tmp"))
    data = write_synthetic_dir(root / "data", ["SYN"], n_bars=504, seed=5)
    agent = EXAMPLES_DIR / "sma_cross.py"
    times: dict[str, list[float]] = {"local sandbox": [], "Cloud Build stand-in": []}
    with FakeGcsServer() as gcs, CloudBuildServer(storage_host=gcs.url) as builds:
        client = gcs.client()
        client.create_bucket(BUCKET)
        client.close()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.url  # this process's desk reads the bucket
        cloud = {
            "GOOGLE_CLOUD_PROJECT": PROJECT, "STORAGE_EMULATOR_HOST": gcs.url,
            "CLOUDBUILD_EMULATOR_HOST": builds.url, "TRADEOPS_ARTIFACTS": f"gs://{BUCKET}/a",
            "TRADEOPS_RUNNER": "cloudbuild",
            "TRADEOPS_RUNTIME_IMAGE": f"europe-docker.pkg.dev/{PROJECT}/tradeops/runtime:bench",
        }  # fmt: skip
        envs = {
            "local sandbox": home_env(root / "local", data, {}),
            "Cloud Build stand-in": home_env(root / "cloud", data, cloud),
        }
        desks, workers, servers = {}, [], []
        try:
            for name, env in envs.items():
                server = EmbeddedRedis(Path(env["TRADEOPS_HOME"]))
                server.ensure_running()
                servers.append(server)
                subprocess.run([sys.executable, "-m", "bot.cli", "agents", "add", str(agent),
                                "--name", "sma"], env=env, check=True,
                               capture_output=True)  # fmt: skip
                workers += start_workers(1, env)
                desks[name] = Desk(Settings.from_env(env), user="bench", use_queue=True)
                command_to_result(desks[name])  # warm: imports done, a sandbox kept warm
            for _ in range(args.pairs):
                for name, desk in desks.items():  # alternating: local, cloud, local, …
                    time.sleep(2.0)
                    times[name].append(command_to_result(desk))
        finally:
            stop(workers)
            for server in servers:
                server.stop()
    med = statistics.median
    for name, got in times.items():
        print(f"{name:>21}: command-to-result median {med(got):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in got)})")  # fmt: skip
    ratio = med(times["Cloud Build stand-in"]) / med(times["local sandbox"])
    print(f"Cloud Build stand-in / local sandbox: {ratio:.2f}x ({args.pairs} pairs)")


if __name__ == "__main__":
    main()
