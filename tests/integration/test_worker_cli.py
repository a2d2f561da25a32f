"""`tradeops worker`: a real worker process on the embedded Redis of a home."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.local.events import RedisEventLog
from infra.local.queue import submit
from infra.local.redis_server import EmbeddedRedis
from tests.conftest import SMA_CROSS
from workers import events as ev
from workers.ports import job_id_for


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
    # one line a job for the operator: what, for whom, how it ended, how long
    assert re.search(r"tradeops worker: register_agent sma \S+: agent_registered in \d+\.\d\d s",
                     done.stderr), done.stderr  # fmt: skip
    assert re.search(r"run_backtest sma run-w1: backtest_finished in \d+\.\d\d s", done.stderr)
    assert isinstance(up.job.return_value(), ev.AgentRegistered)
    result = bt.job.return_value()
    assert isinstance(result, ev.BacktestFinished), result
    bt.job.refresh()
    assert bt.job.meta.get("done", 0) <= (bt.job.meta.get("total") or 10**9)
    kinds = [type(e) for e in RedisEventLog(conn).events("b1")]
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


# ------------------------------------------------ sandbox settings through a worker
LIMITED = {
    "mem": ("import numpy as np\n",
            "if len(self) == 5:\n            self.block = np.ones(250_000_000)"),
    "cpu": ("", "while len(self) > 3:\n            pass"),
    "procs": ("import threading\n", "if len(self) == 5:\n            self.pool = [threading.Thread("
              "target=threading.Event().wait, args=(30,), daemon=True) for _ in range(100)]\n"
              "            for t in self.pool:\n                t.start()"),
    "file": ("import numpy as np\n", "if len(self) == 5:\n            "
             "np.zeros(30 << 20, dtype=np.uint8).tofile('big.bin')"),
    "output": ("import numpy as np\n", "if len(self) < 8:\n            "
               "np.zeros(12 << 20, dtype=np.uint8).tofile(f'part{len(self)}.bin')"),
    "log": ("", "print('x' * 5000)"),
}  # fmt: skip
SETTINGS = {
    "TRADEOPS_SANDBOX_MEMORY_MB": "1500",  # the default (4096) holds the 2 GB block
    "TRADEOPS_SANDBOX_CPU_SECONDS": "3",
    "TRADEOPS_SANDBOX_PROCESSES": "40",
    "TRADEOPS_SANDBOX_FILE_MB": "20",
    "TRADEOPS_SANDBOX_OUTPUT_MB": "50",
    "TRADEOPS_SANDBOX_LOG_BYTES": "20000",
    "TRADEOPS_ALLOWED_IMPORTS": "threading",
}


@pytest.mark.slow
def test_every_sandbox_setting_reaches_a_workers_runs(home: Path, synthetic_data: Path) -> None:
    conn = redis.Redis.from_url(EmbeddedRedis(home).ensure_running())
    jobs = {}
    for name, (imports, body) in LIMITED.items():
        source = (f"import backtrader as bt\n{imports}\n\nclass Limited(bt.Strategy):\n"
                  f"    def next(self):\n        {body}\n")  # fmt: skip
        submit(conn, "validate", "workers.jobs.register_agent",
               job_id=job_id_for("validate", name), timeout_s=60,
               kwargs={"job_id": f"u-{name}", "owner": "U1", "name": name,
                       "source": source.encode()})  # fmt: skip
        jobs[name] = submit(conn, "backtest", "workers.jobs.run_backtest",
                            job_id=job_id_for("backtest", name), timeout_s=300,
                            kwargs={"job_id": f"b-{name}", "run_id": f"run-{name}",
                                    "owner": "U1", "agent": name,
                                    "parameters": {"symbols": ["SYN"]}})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--burst"],
        env=cli_env(home, synthetic_data) | SETTINGS, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    errors = {}
    for name, sub in jobs.items():
        event = sub.job.return_value()
        errors[name] = event.error if isinstance(event, ev.BacktestFailed) else None
    assert errors["mem"] and errors["mem"]["kind"] == "memory", errors["mem"]
    assert errors["cpu"] and "CPU time limit (3 s)" in errors["cpu"]["message"], errors["cpu"]
    assert errors["procs"] and "process limit of 40" in errors["procs"]["message"], errors["procs"]
    assert errors["file"] and "limit (20 MB)" in errors["file"]["message"], errors["file"]
    assert errors["output"] and "quota of 50 MB" in errors["output"]["message"], errors["output"]
    assert errors["log"] is None
    log = (home / "runs" / "run-log" / "agent.log").read_bytes()
    assert 20000 <= len(log) < 20200 and b"log truncated" in log


FORGER = """
import sys
import backtrader as bt

_main = sys.modules["__main__"]
_write = _main.write_json

def _forge(path, doc, **kw):
    if path.name == "result.json" and doc.get("results"):
        doc["run_id"], doc["agent_id"] = "forged-run", "somebody-else"
        doc["results"]["final_value"] *= 100
    return _write(path, doc, **kw)

_main.write_json = _forge

class Forger(bt.Strategy):
    def next(self):
        if not self.position:
            self.buy()
"""


@pytest.mark.slow
def test_a_forged_result_never_reaches_the_registry(home: Path, synthetic_data: Path) -> None:
    from infra.local.registry import SqliteRegistry

    conn = redis.Redis.from_url(EmbeddedRedis(home).ensure_running())
    submit(conn, "validate", "workers.jobs.register_agent", job_id=job_id_for("validate", "f"),
           timeout_s=60, kwargs={"job_id": "u-f", "owner": "U1", "name": "forger",
                                 "source": FORGER.encode()})  # fmt: skip
    bt = submit(conn, "backtest", "workers.jobs.run_backtest", job_id=job_id_for("backtest", "f"),
                timeout_s=300, kwargs={"job_id": "b-f", "run_id": "run-f", "owner": "U1",
                                       "agent": "forger",
                                       "parameters": {"symbols": ["SYN"]}})  # fmt: skip
    env = cli_env(home, synthetic_data) | {"TRADEOPS_ALLOWED_IMPORTS": "sys"}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "worker", "--burst"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    event = bt.job.return_value()
    assert isinstance(event, ev.BacktestFailed), event
    assert event.run_id == "run-f" and "refused" in event.error["message"]
    runs = SqliteRegistry(home / "state.db").list_runs()
    assert [(r.run_id, r.agent) for r in runs] == [("run-f", "forger")]
    assert "forged-run" not in json.dumps([r.result for r in runs], default=str)


@pytest.mark.parametrize("process", ["worker", "scheduler"])
def test_a_process_serves_its_health_for_a_pods_probes(
    home: Path, synthetic_data: Path, process: str
) -> None:
    import signal
    import time
    import urllib.error
    import urllib.request

    from infra.emulators import free_port

    EmbeddedRedis(home).ensure_running()
    port = free_port()
    argv = [sys.executable, "-m", "bot.cli", process, "--health-port", str(port)]
    proc = subprocess.Popen(argv, env=cli_env(home, synthetic_data), stderr=subprocess.DEVNULL)
    try:
        deadline, doc = time.monotonic() + 30, None
        while doc is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    doc = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "no /health"
                time.sleep(0.2)
        assert doc == {"status": "ok", "process": process, "redis": True}
        EmbeddedRedis(home).stop()  # its Redis gone: unhealthy, and said so
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
        assert refused.value.code == 503
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
