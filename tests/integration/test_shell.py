"""`tradeops shell`, `tradeops demo`, `tradeops backtest` through the queue, and the desk
they share: real processes, the embedded Redis, real workers and the sandbox."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import desk as desk_module
from bot.desk import Desk
from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings
from tests.conftest import REPO_ROOT, SMA_CROSS, processes_mentioning, survivors
from workers import events as ev

NO_TRACEBACK = re.compile(r"Traceback|File \"")


def env_for(home: Path, data: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    env["TRADEOPS_HOME"] = str(home)
    if data is not None:
        env["TRADEOPS_DATA_DIR"] = str(data)
    return env


def tradeops(
    home: Path, *args: str, data: Path | None = None, stdin: str = "", timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=REPO_ROOT, env=env_for(home, data),
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def home(redis_home: Path) -> Iterator[Path]:
    yield redis_home
    for pid in processes_mentioning(str(redis_home)):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def worker(home: Path, synthetic_data: Path) -> Iterator[subprocess.Popen[bytes]]:
    EmbeddedRedis(home).ensure_running()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"], cwd=REPO_ROOT,
        env=env_for(home, synthetic_data), stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    desk = Desk(Settings.from_env(env_for(home, synthetic_data)), user="t")
    deadline = 60.0
    import time

    t0 = time.monotonic()
    while not desk.workers_on("backtest"):
        assert proc.poll() is None and time.monotonic() - t0 < deadline, "worker did not start"
        time.sleep(0.05)
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


SCRIPT = f"""\
/help
/upload {SMA_CROSS} sma
/agents
/backtest sma SYN cash=20000
/runs sma
/fmel sma last=3 verify
/backtest
/backtest sma SYN start=2030-01-01 end=2020-01-01
/bogus
/upload /no/such/agent.py
/upload {REPO_ROOT / "README.md"}
/backtest nosuch SYN
"""


@pytest.mark.slow
def test_shell_without_a_worker_runs_jobs_here(home: Path, synthetic_data: Path) -> None:
    out = tradeops(home, "shell", data=synthetic_data, stdin=SCRIPT)
    text = out.stdout
    assert "/paper-start <agent>" in text and "/upload FILE [NAME]" in text  # /help
    assert "Registered agent sma version 1 · strategy SmaCross" in text
    assert re.search(r"^sma\s+v1\s+cli:", text, re.MULTILINE)  # /agents
    assert re.search(r"Backtest \S+ · SmaCross \(sma\) · SYN", text)
    assert "Final value" in text and "from 20,000.00" in text  # cash=20000 reached the job
    assert re.search(r"^\S+\s+sma@v1\s+backtest\s+finished", text, re.MULTILINE)  # /runs
    assert "Verified: the hash chain of 250 decisions is intact" in text  # /fmel
    assert "/backtest needs an agent; usage: /backtest <agent>" in text
    assert "start=2030-01-01 is after end=2020-01-01" in text
    assert "unknown command /bogus" in text
    assert "no such file: /no/such/agent.py" in text
    assert "README.md: agents are Python files (.py)" in text
    assert "no agent nosuch" in text  # the job's own failure event, rendered
    assert not NO_TRACEBACK.search(text + out.stderr), out.stderr
    assert out.returncode == 1  # the last job failed
    assert "Backtest queued" not in text  # nothing went through a queue…
    assert not EmbeddedRedis(home).running()  # …and no Redis was started for it


@pytest.mark.slow
def test_shell_through_a_worker(home: Path, synthetic_data: Path, worker: object) -> None:
    script = f"/upload {SMA_CROSS} sma\n/backtest sma SYN\n/fmel sma last=2\n"
    out = tradeops(home, "shell", data=synthetic_data, stdin=script)
    assert out.returncode == 0, out.stderr
    assert "Registered agent sma version 1" in out.stdout
    assert re.search(r"Backtest queued · sma on SYN · run \S+", out.stdout)
    assert "Sharpe" in out.stdout and "FMEL   250 decisions" in out.stdout
    assert "Last 2 decisions that ordered or traded" in out.stdout


@pytest.mark.slow
def test_backtest_command_goes_through_a_running_worker(
    home: Path, synthetic_data: Path, worker: object
) -> None:
    out = tradeops(home, "backtest", str(SMA_CROSS), "--symbols", "SYN", "--json",
                   data=synthetic_data)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert re.search(r"tradeops: backtest \S+ queued \(1 worker\(s\)\)", out.stderr)
    import json

    doc = json.loads(out.stdout)
    assert doc["error"] is None and doc["sandbox"]["isolation"] == "bubblewrap"
    runs = tradeops(home, "runs", "--json", data=synthetic_data)
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [doc["run_id"]]


@pytest.mark.slow
def test_a_duplicate_request_follows_the_same_job(
    home: Path, synthetic_data: Path, worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(env_for(home, synthetic_data))
    desk = Desk(settings, user="U1")
    up = desk.upload(name="sma", source=SMA_CROSS.read_bytes(), request_id="F1")
    assert isinstance(desk.follow(up, lambda e: None, timeout_s=60), ev.AgentRegistered)
    first = desk.backtest(agent="sma", parameters={"symbols": ["SYN"]}, request_id="T1")
    again = desk.backtest(agent="sma", parameters={"symbols": ["SYN"]}, request_id="T1")
    assert not first.inline and again.duplicate and again.run_id == first.run_id
    seen: list[ev.Event] = []
    done = desk.follow(first, seen.append, timeout_s=120)
    replay = desk.follow(again, lambda e: None, timeout_s=10)
    assert isinstance(done, ev.BacktestFinished) and replay == done
    assert isinstance(seen[0], ev.BacktestQueued)
    assert len(desk.runs("sma")) == 1


def test_following_a_job_no_worker_takes_says_so(
    home: Path, synthetic_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_module, "WAITING_NOTE_S", 0.2)
    desk = Desk(Settings.from_env(env_for(home, synthetic_data)), user="U1", use_queue=True)
    ticket = desk.upload(name="sma", source=SMA_CROSS.read_bytes())
    assert not ticket.inline
    notes: list[str] = []
    with pytest.raises(desk_module.DeskError, match=r"no result after 2\.5 s"):
        desk.follow(ticket, lambda e: None, timeout_s=2.5, on_wait=notes.append)
    assert notes == ["waiting for a worker on the validate queue: start one with `tradeops worker`"]


@pytest.mark.slow
def test_demo_tells_the_whole_story_and_cleans_up(tmp_path: Path) -> None:
    home = tmp_path / "a-home-whose-path-is-long-enough-to-need-a-short-socket-elsewhere" / "x"
    try:
        out = tradeops(home, "demo")
        assert out.returncode == 0, out.stdout + out.stderr
        text = out.stdout
        for said in ("you › shares sma_cross.py", "you › /backtest sma_cross SPY,QQQ",
                     "tradeops › Registered agent sma_cross version 1 · strategy SmaCross",
                     "tradeops › Backtest queued · sma_cross on SPY, QQQ",
                     "Sharpe", "FMEL   ", "Chart  ", "Verified: the hash chain"):  # fmt: skip
            assert said in text, said
        chart = re.search(r"Chart  (\S+\.png)", text)
        assert chart and Path(chart.group(1)).stat().st_size > 10_000
        assert not NO_TRACEBACK.search(text + out.stderr)
        # it stopped the worker and the Redis it started
        assert survivors(lambda: processes_mentioning(str(home))) == []
        assert not EmbeddedRedis(home).running()
        again = tradeops(home, "demo")  # a second demo in the same home
        assert again.returncode == 0, again.stderr
        assert "Registered agent sma_cross version 1" in again.stdout  # same code, same version
    finally:
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_the_demo_on_google_stand_ins_says_where_each_part_lives(redis_home: Path) -> None:
    """Cloud Storage, the Realtime Database, BigQuery and Cloud Build as local stand-ins
    (fake-gcs-server, ours, bqemulator, ours) behind the official clients: the same
    conversation, the backtest run as a Cloud Build build, the decisions read back and
    verified from BigQuery."""
    out = tradeops(redis_home, "demo", "--backend", "gcp")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "Cloud Storage · Firebase · BigQuery · Cloud Build (local stand-ins)" in text
    build = re.search(r"Ran on Cloud Build, build (\S+) · log http", text)  # in the conversation
    assert build is not None
    assert f"backtest     Cloud Build    build {build.group(1)} in tradeops-demo" in text
    assert "Registered agent sma_cross version 1" in text and "Sharpe" in text
    assert "Verified: the hash chain of 1180 decisions is intact" in text
    code = re.search(r"agent code   Cloud Storage  gs://tradeops-demo/artifacts/sha256/"
                     r"[0-9a-f]{2}/([0-9a-f]{64})", text)  # fmt: skip
    assert code is not None
    assert code.group(1) == hashlib.sha256(SMA_CROSS.read_bytes()).hexdigest()
    assert re.search(r"run \S+  Firebase  https://tradeops-demo\.firebaseio\.com creators/\S+/"
                     r"agents/sma_cross/runs/\S+ \(finished\)", text)  # fmt: skip
    assert "BigQuery       tradeops-demo.fmel.trading_decisions (1180 rows" in text
    assert not NO_TRACEBACK.search(text + out.stderr)
    assert not (redis_home / "demo-gcp" / "artifacts").exists()  # nothing stored locally
