"""SubprocessRunner (the runtime in a child process) and the request it sends across."""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from infra.local.runner import (
    LOG_FILE,
    PROGRESS_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    SubprocessRunner,
    child_env,
)
from runtime.backtest import BacktestRequest, run_backtest
from tests.conftest import SMA_CROSS, RunCli, WriteAgent, processes_mentioning, survivors

# A well-behaved but slow agent (about 1 s for 250 bars, so progress gets reported),
# which also says which process it is and leaves a marked helper process behind.
HELPER_MARK = "leftover-helper-5d1e"
SLOW_AGENT = """
import os
import subprocess
import sys
import time

import backtrader as bt

leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "MARK"])


class Slow(bt.Strategy):
    def __init__(self):
        print(f"PID {os.getpid()} PGID {os.getpgid(0)}")

    def next(self):
        time.sleep(0.004)
        if len(self) == 100:
            print("bar 100 reached")

    def stop(self):
        print("helper alive at the end:", leftover.poll() is None)
""".replace("MARK", HELPER_MARK)


def request(agent: Path, data: Path, **kw: Any) -> BacktestRequest:
    return BacktestRequest(agent_file=agent, symbols=("SYN",), data_dir=data, **kw)


class SlowRun:
    def __init__(self, agent: Path, req: BacktestRequest, work: Path) -> None:
        self.agent = agent
        self.req = req
        self.work = work
        self.progress: list[tuple[int, int | None]] = []
        self.doc = SubprocessRunner(timeout_s=60).run_request(
            req, work, lambda done, total: self.progress.append((done, total))
        )


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> SlowRun:
    root = tmp_path_factory.mktemp("slow")
    agent = root / "slow_agent.py"
    agent.write_text(SLOW_AGENT)
    req = request(agent, synthetic_data, fmel_dir=root / "fmel", chart_path=root / "c.png")
    return SlowRun(agent, req, root / "work")


def test_runner_returns_the_result_document(slow_run: SlowRun) -> None:
    doc = slow_run.doc
    assert doc["error"] is None, doc["error"]
    assert doc["run_id"] == slow_run.req.run_id
    assert doc["strategy"]["name"] == "Slow"
    assert doc["fmel"]["decisions"] == 250
    assert json.loads((slow_run.work / RESULT_FILE).read_text()) == doc


def test_runner_writes_the_request_it_ran(slow_run: SlowRun) -> None:
    sent = BacktestRequest.from_json((slow_run.work / REQUEST_FILE).read_text())
    assert sent == slow_run.req


def test_runner_reports_progress(slow_run: SlowRun) -> None:
    assert slow_run.progress, "no progress reported during a 1 s run"
    for done, total in slow_run.progress:
        assert total == 250
        assert 0 < done <= 250
    dones = [d for d, _ in slow_run.progress]
    assert dones == sorted(dones)
    assert json.loads((slow_run.work / PROGRESS_FILE).read_text())["total"] == 250


def test_agent_output_goes_to_the_log(slow_run: SlowRun) -> None:
    log = (slow_run.work / LOG_FILE).read_text()
    assert "bar 100 reached" in log


def test_child_runs_in_a_pid_namespace_of_its_own(slow_run: SlowRun) -> None:
    log = (slow_run.work / LOG_FILE).read_text()
    found = re.search(r"PID (\d+) PGID (\d+)", log)
    assert found is not None, log
    pid, pgid = int(found.group(1)), int(found.group(2))
    assert pid <= 3 and pgid <= 3  # numbered inside a fresh PID namespace
    assert pgid != os.getpgid(0)


def test_leftover_processes_are_killed_after_a_normal_run(slow_run: SlowRun) -> None:
    assert "helper alive at the end: True" in (slow_run.work / LOG_FILE).read_text()
    left = survivors(lambda: processes_mentioning(HELPER_MARK))
    for pid in left:  # do not leave it running when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_child_env_keeps_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-canary")
    monkeypatch.setenv("TRADEOPS_HOME", "/somewhere")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/key.json")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = child_env()
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["MPLBACKEND"] == "Agg"
    allowed = {"PATH", "LANG", "LC_ALL", "TZ", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    ours = {"MPLBACKEND", "ARROW_DEFAULT_MEMORY_POOL", "OPENBLAS_NUM_THREADS", "MALLOC_ARENA_MAX"}
    assert set(env) <= allowed | ours
    assert "canary" not in json.dumps(env)


def test_log_is_limited(tmp_path: Path, write_agent: WriteAgent, synthetic_data: Path) -> None:
    agent = write_agent(
        """
        import backtrader as bt

        print("y" * 10_000)


        class Quiet(bt.Strategy):
            pass
        """
    )
    runner = SubprocessRunner(log_limit=1000)
    doc = runner.run_request(request(agent, synthetic_data), tmp_path / "w")
    assert doc["error"] is None
    log = (tmp_path / "w" / LOG_FILE).read_bytes()
    assert log.startswith(b"y" * 1000)
    dropped = re.fullmatch(rb"y{1000}\n\[log truncated: (\d+) more bytes not kept\]\n", log)
    assert dropped is not None, log[-200:]
    assert int(dropped.group(1)) >= 9001


def test_killed_child_is_a_memory_error_not_a_stale_result(
    tmp_path: Path, write_agent: WriteAgent, synthetic_data: Path
) -> None:
    agent = write_agent(
        """
        import os
        import signal

        import backtrader as bt


        class Killed(bt.Strategy):
            def next(self):
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    work = tmp_path / "w"
    work.mkdir()
    (work / RESULT_FILE).write_text(json.dumps({"run_id": "stale", "error": None}))
    (work / PROGRESS_FILE).write_text(json.dumps({"done": 999, "total": 999}))
    req = request(agent, synthetic_data)
    doc = SubprocessRunner().run_request(req, work)
    assert doc["run_id"] == req.run_id
    assert doc["error"]["kind"] == "memory"
    assert "killed" in doc["error"]["message"]
    assert doc["results"] is None


def test_child_exit_without_result_is_a_platform_error(
    tmp_path: Path, write_agent: WriteAgent, synthetic_data: Path
) -> None:
    agent = write_agent(
        """
        import os

        import backtrader as bt


        class Gone(bt.Strategy):
            def next(self):
                os._exit(3)
        """
    )
    doc = SubprocessRunner().run_request(request(agent, synthetic_data), tmp_path / "w")
    assert doc["error"]["kind"] == "platform"
    assert "exited with code 3" in doc["error"]["message"]


def test_timeout(tmp_path: Path, write_agent: WriteAgent, synthetic_data: Path) -> None:
    agent = write_agent(
        """
        import backtrader as bt


        class Spin(bt.Strategy):
            def next(self):
                while True:
                    pass
        """
    )
    runner = SubprocessRunner(timeout_s=1.5)
    doc = runner.run_request(request(agent, synthetic_data), tmp_path / "w")
    assert doc["error"]["kind"] == "timeout"
    assert doc["error"]["message"] == "TimeoutError: backtest exceeded 1.5 seconds"
    assert doc["monitoring"]["errors"] == 1


# ------------------------------------------------------------------- the request (7)
def test_request_json_round_trip(tmp_path: Path) -> None:
    full = BacktestRequest(
        agent_file=tmp_path / "a.py",
        run_id="20250101T000000-abcdef12",
        symbols=("SPY", "QQQ"),
        start=date(2021, 1, 4),
        end=date(2022, 12, 30),
        cash=25_000.0,
        commission=0.001,
        data_dir=tmp_path / "data",
        strategy="Agent",
        agent_id="my-agent",
        agent_version="3",
        user_id="U123",
        fmel_dir=tmp_path / "fmel",
        chart_path=tmp_path / "chart.png",
    )
    text = full.to_json()
    plain = json.loads(text)
    assert plain["symbols"] == ["SPY", "QQQ"]
    assert plain["start"] == "2021-01-04"
    assert plain["chart_path"] == str(tmp_path / "chart.png")
    assert BacktestRequest.from_json(text) == full

    bare = BacktestRequest(agent_file=Path("x.py"))
    again = BacktestRequest.from_json(bare.to_json())
    assert again == bare
    assert again.start is None and again.fmel_dir is None and again.chart_path is None
    assert again.resolved_agent_id == "x"


def test_in_process_equals_cli_subprocess(
    run_cli: RunCli, tradeops_home: Path, tmp_path: Path, synthetic_data: Path
) -> None:
    req = BacktestRequest(
        agent_file=SMA_CROSS,
        symbols=("SYN", "ALT"),
        data_dir=synthetic_data,
        cash=50_000.0,
        fmel_dir=tmp_path / "fmel",
    )
    inproc = run_backtest(req)
    assert inproc["error"] is None, inproc["error"]
    assert inproc["results"]["total_trades"] > 0

    out = run_cli(
        "backtest", SMA_CROSS, "--data", synthetic_data, "--symbols", "SYN,ALT",
        "--cash", "50000", "--json",
    )  # fmt: skip
    assert out.code == 0, out
    sub = json.loads(out.stdout)
    assert sub["results"]["final_value"] == inproc["results"]["final_value"]
    assert sub["results"] == inproc["results"]
    assert sub["fmel"] == inproc["fmel"]  # same decisions, same chain head
    assert sub["data_checks"] == inproc["data_checks"]
