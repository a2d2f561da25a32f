"""Jobs survive the machinery failing under them: a worker SIGKILLed mid-backtest, Redis
restarted with jobs queued. Real `tradeops worker` processes, the embedded Redis, the sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job, JobStatus

from infra.local.events import RedisEventLog
from infra.local.queue import submit
from infra.local.redis_server import EmbeddedRedis
from infra.local.registry import SqliteRegistry
from runtime.data import write_synthetic_dir
from tests.conftest import REPO_ROOT, SMA_CROSS, processes_mentioning, survivors
from workers import events as ev
from workers.ports import RunStatus

# Busy for a few milliseconds on every bar, so the backtest is still running when killed.
SLOW = b"""
import backtrader as bt

class Slow(bt.Strategy):
    def __init__(self):
        self.sma = bt.indicators.SMA(self.data.close, period=10)

    def next(self):
        total = 0
        for i in range(40000):
            total += i
        if not self.position and self.data.close[0] > self.sma[0]:
            self.buy()
        elif self.position and self.data.close[0] < self.sma[0]:
            self.close()
"""


@pytest.fixture
def home(redis_home: Path, tmp_path: Path) -> Iterator[Path]:
    yield redis_home
    for pid in processes_mentioning(str(redis_home)):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dir(tmp_path_factory.mktemp("data"), ["SYN"], n_bars=1500, seed=5)


def env_for(home: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    return env | {
        "TRADEOPS_HOME": str(home),
        "TRADEOPS_DATA_DIR": str(data),
        "TRADEOPS_WORKER_HEARTBEAT_S": "0.5",  # a lost job is found within a few seconds
    }


def start_worker(home: Path, data: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "validate,backtest", *extra],
        cwd=REPO_ROOT,
        env=env_for(home, data),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def register(conn: redis.Redis, name: str, source: bytes) -> None:
    job = submit(conn, "validate", "workers.jobs.register_agent", job_id=f"reg-{name}",
                 timeout_s=60, kwargs={"job_id": f"reg-{name}", "owner": "U1", "name": name,
                                       "source": source})  # fmt: skip
    wait_for(lambda: job.job.get_status(refresh=True) == JobStatus.FINISHED, 60)


def backtest(conn: redis.Redis, job_id: str, agent: str, retries: int) -> Job:
    return submit(conn, "backtest", "workers.jobs.run_backtest", job_id=job_id,
                  timeout_s=300, retries=retries,
                  kwargs={"job_id": job_id, "run_id": f"run-{job_id}", "owner": "U1",
                          "agent": agent, "parameters": {"symbols": ["SYN"]},
                          "reply_to": {"channel": "C9"}}).job  # fmt: skip


def wait_for(cond: Any, timeout_s: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def events(conn: redis.Redis, job_id: str) -> list[ev.Event]:
    return RedisEventLog(conn).events(job_id)


def final(conn: redis.Redis, job_id: str) -> Any:
    def last() -> bool:
        got = events(conn, job_id)
        return bool(got) and isinstance(got[-1], ev.BacktestFinished | ev.BacktestFailed)

    return last


def kill_mid_backtest(conn: redis.Redis, job: Job, worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker (and only it: its sandbox must die with it) once bars are flowing."""
    wait_for(lambda: (job.get_meta(refresh=True) or {}).get("done", 0) > 50, 120,
             "the backtest to be under way")  # fmt: skip
    assert sandboxes(home_of(conn)), "the backtest runs in a sandbox"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    # the sandbox went down with its worker (bubblewrap's --die-with-parent)
    assert survivors(lambda: sandboxes(home_of(conn))) == []


def home_of(conn: redis.Redis) -> Path:
    return Path(conn.connection_pool.connection_kwargs["path"]).parents[1]


def sandboxes(home: Path) -> list[int]:
    return processes_mentioning(f"{home}/warm") + processes_mentioning(f"{home}/runs")


@pytest.mark.slow
def test_a_killed_worker_job_is_retried_and_completes(home: Path, data: Path) -> None:
    conn = redis.Redis.from_url(EmbeddedRedis(home).ensure_running())
    first = start_worker(home, data)
    try:
        register(conn, "slow", SLOW)
        job = backtest(conn, "bt-kill-retry", "slow", retries=2)
        kill_mid_backtest(conn, job, first)
        second = start_worker(home, data)
        try:
            wait_for(final(conn, job.id), 180, "the retried backtest to finish")
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)
    seen = events(conn, job.id)
    lost = [e for e in seen if isinstance(e, ev.JobFailed)]
    assert len(lost) == 1 and lost[0].retrying and lost[0].attempts_left == 2
    assert lost[0].error["kind"] == "platform"
    assert "worker running this job stopped" in lost[0].error["message"]
    assert lost[0].reply_to == {"channel": "C9"}
    assert isinstance(seen[-1], ev.BacktestFinished), seen[-1]
    assert seen[-1].result["error"] is None
    assert SqliteRegistry(home / "state.db").get_run(f"run-{job.id}").status == RunStatus.FINISHED
    # the retry's decision record is whole: its hash chain verifies
    from runtime.fmel.store import verify_run

    assert verify_run(home / "fmel", f"run-{job.id}").ok


@pytest.mark.slow
def test_a_killed_worker_job_without_retries_fails_loudly(home: Path, data: Path) -> None:
    conn = redis.Redis.from_url(EmbeddedRedis(home).ensure_running())
    first = start_worker(home, data)
    try:
        register(conn, "slow", SLOW)
        job = backtest(conn, "bt-kill-final", "slow", retries=0)
        kill_mid_backtest(conn, job, first)
        second = start_worker(home, data)  # its maintenance finds the lost job
        try:
            wait_for(final(conn, job.id), 60, "the failure to be reported")
            # RQ runs the failure callback (the news) before it marks the job failed
            failed = lambda: job.get_status(refresh=True) == JobStatus.FAILED  # noqa: E731
            wait_for(failed, 10, "the job to be marked failed")
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)
    last = events(conn, job.id)[-1]
    assert isinstance(last, ev.BacktestFailed)
    assert last.error["kind"] == "platform" and last.reply_to == {"channel": "C9"}
    run = SqliteRegistry(home / "state.db").get_run(f"run-{job.id}")
    assert run.status == RunStatus.FAILED and run.error["kind"] == "platform"


@pytest.mark.slow
def test_queued_jobs_survive_a_redis_restart(home: Path, data: Path) -> None:
    srv = EmbeddedRedis(home)
    conn = redis.Redis.from_url(srv.ensure_running())
    up = submit(conn, "validate", "workers.jobs.register_agent", job_id="reg-sma",
                timeout_s=60, kwargs={"job_id": "reg-sma", "owner": "U1", "name": "sma",
                                      "source": SMA_CROSS.read_bytes()})  # fmt: skip
    assert up.job.get_status() == JobStatus.QUEUED
    os.kill(srv.pid() or 0, signal.SIGKILL)  # no clean shutdown: only the append-only file
    wait_for(lambda: not srv.running(), 10, "Redis to die")
    conn = redis.Redis.from_url(srv.ensure_running())
    job = backtest(conn, "bt-after-restart", "sma", retries=0)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--burst"],
        cwd=REPO_ROOT, env=env_for(home, data), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert isinstance(Job.fetch("reg-sma", connection=conn).return_value(), ev.AgentRegistered)
    result = job.return_value()
    assert isinstance(result, ev.BacktestFinished), result
