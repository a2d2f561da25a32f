"""`tradeops worker`: a real worker process on the embedded Redis of a home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.local.notifier import RedisNotifier
from infra.local.queue import job_id_for, submit
from infra.local.redis_server import EmbeddedRedis
from tests.conftest import SMA_CROSS
from workers import events as ev


@pytest.fixture
def home(redis_home: Path) -> Path:
    return redis_home


def cli_env(home: Path, data: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    return env | {"TRADEOPS_HOME": str(home), "TRADEOPS_DATA_DIR": str(data)}


@pytest.mark.slow
def test_a_burst_worker_registers_and_backtests(home: Path, synthetic_data: Path) -> None:
    conn = redis.Redis.from_url(EmbeddedRedis(home).ensure_running())
    up = submit(conn, "validate", "workers.jobs.register_agent",
                job_id=job_id_for("validate", "x"), timeout_s=60,
                kwargs={"job_id": "u1", "owner": "U1", "name": "sma",
                        "source": SMA_CROSS.read_bytes()})  # fmt: skip
    bt = submit(conn, "backtest", "workers.jobs.run_backtest",
                job_id=job_id_for("backtest", "x"), timeout_s=300,
                kwargs={"job_id": "b1", "run_id": "run-w1", "owner": "U1", "agent": "sma",
                        "parameters": {"symbols": ["SYN"]}})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--burst"],
        env=cli_env(home, synthetic_data), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tradeops worker: queues validate, backtest" in done.stderr
    assert isinstance(up.job.return_value(), ev.AgentRegistered)
    result = bt.job.return_value()
    assert isinstance(result, ev.BacktestFinished), result
    bt.job.refresh()
    assert bt.job.meta.get("done", 0) <= (bt.job.meta.get("total") or 10**9)
    kinds = [type(e) for e in RedisNotifier(conn).events("b1")]
    assert kinds[-1] is ev.BacktestFinished
    assert (home / "state.db").exists() and any((home / "artifacts").rglob("*"))
    assert not list((home / "warm").glob("warm-*"))  # the warm sandbox went with the worker


def test_unknown_queue_is_a_usage_error(home: Path, synthetic_data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "gpu"],
        env=cli_env(home, synthetic_data), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "expected queues from validate,backtest,paper,digest" in done.stderr
