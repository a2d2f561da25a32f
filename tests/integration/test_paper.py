"""Paper trading on this machine: `tradeops paper …` starting a supervised, sandboxed session
on the replay feed; health, FMEL rows while it runs, a SIGKILL survived with the hash chain
intact and no order repeated, and a clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.paper import health
from runtime.fmel import store
from tests.conftest import REPO_ROOT, SMA_CROSS, processes_mentioning

DATA = REPO_ROOT / "runtime" / "sample_data" / "daily"


def tradeops(
    home: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    env = base | {"TRADEOPS_HOME": str(home)} | (env or {})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "h"
    assert tradeops(home, "agents", "add", str(SMA_CROSS), "--name", "sma").returncode == 0
    yield home
    tradeops(home, "paper", "stop", "sma")
    for pid in processes_mentioning(str(home)):
        os.kill(pid, signal.SIGKILL)


def status(home: Path, agent: str = "sma") -> dict[str, Any]:
    out = tradeops(home, "paper", "status", agent, "--json")
    assert out.returncode == 0, out.stderr
    (doc,) = json.loads(out.stdout)
    return doc  # type: ignore[no-any-return]


def wait_for(cond: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (got := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return got


def rows(home: Path, run_id: str) -> list[dict[str, Any]]:
    return store.read_rows(home / "fmel", run_id)


@pytest.mark.slow
def test_a_replay_session_trades_resumes_after_sigkill_and_stops_cleanly(home: Path) -> None:
    out = tradeops(home, "paper", "start", "sma", "--symbols", "SPY,QQQ", "--start",
                   "2022-01-01", "--bar-seconds", "0.03")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Paper started" in out.stdout
    first = wait_for(lambda: (s := status(home))["health"] and s, 30, "the session's health")
    run_id = first["run_id"]
    assert first["status"] == "running" and first["restarts"] == 0 and first["pid"]
    h = first["health"]
    assert h["status"] == "ok" and h["agent_id"] == "sma" and h["mode"] == "PAPER_TRADE"
    assert {"uptime", "decisions", "last_bar", "equity", "positions"} <= set(h)
    sock = Path(first["health_url"].removeprefix("http+unix://").removesuffix("/health"))
    wait_for(lambda: health(sock, "/ready") == {"ready": True}, 10, "ready: a bar handled")
    # rows are on disk while it runs
    wait_for(lambda: len(rows(home, run_id)) > 50, 30, "FMEL rows while running")
    wait_for(lambda: any(r["fills"] for r in rows(home, run_id)), 60, "a trade")
    held = wait_for(lambda: status(home)["positions"], 60, "an open position")
    for p in held.values():  # the unrealised P&L is worked out on the trusted side
        assert p["unrealised"] == pytest.approx(p["size"] * (p["last"] - p["price"]))
    said = lambda: tradeops(home, "paper", "status", "sma").stdout  # noqa: E731
    shown = wait_for(lambda: "Open positions" in (t := said()) and t, 60, "positions shown")
    assert "unrealised P&L" in shown, shown

    # SIGKILL the session (the innermost process in its sandbox): the supervisor restarts it
    before = rows(home, run_id)
    session_arg = f"--session\0{home}/paper/paper-sma"
    inner = [p for p in processes_mentioning(session_arg)
             if os.path.basename(Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0])
             .startswith(b"python")]  # fmt: skip
    assert len(inner) == 1, inner  # the session itself, not its bubblewrap parents
    os.kill(inner[0], signal.SIGKILL)
    again = wait_for(lambda: (s := status(home))["restarts"] == 1 and s["health"] and s, 60,
                     "the restarted session")  # fmt: skip
    assert again["status"] == "running" and again["pid"] != first["pid"]
    # the crash is news for the session's owner
    from infra.local.events import RedisEventLog
    from infra.local.queue import connect
    from infra.settings import Settings

    conn = connect(Settings.from_env({"TRADEOPS_HOME": str(home)}))
    news = RedisEventLog(conn).events(f"paper-sma-{run_id}")
    assert [e.health["status"] for e in news] == ["crashed"] and news[0].user_id.startswith("cli:")
    resumed = again["health"]["resumed_from_bar"]
    assert resumed is not None and resumed >= before[-1]["bar_number"] - 1
    wait_for(lambda: len(rows(home, run_id)) > len(before) + 30, 60, "rows after the restart")

    # SIGTERM via `paper stop`: a clean stop, the summary written, the state says stopped
    out = tradeops(home, "paper", "stop", "sma")
    assert out.returncode == 0 and "Paper stopped" in out.stdout, out.stdout + out.stderr
    assert status(home)["status"] == "stopped"
    session = home / "paper" / "paper-sma"
    assert json.loads((session / "out" / "state.json").read_text())["stopped"] is True
    log = (session / "session.log").read_text().splitlines()
    assert "stopped" in log[-1]
    # the bars replayed to rebuild the state after the restart do not repeat the agent's output
    assert any(line.startswith("-- replaying the bars handled before") for line in log)
    said = [line for line in log if " BUY " in line or " SELL " in line]
    resumed_at = str(rows(home, run_id)[resumed - 1]["timestamp"])[:10]
    twice = {line for line in said if said.count(line) > 1}
    # only bars handled but not yet stored when it was killed are handled (and said) again
    assert said and all(line[:10] > resumed_at for line in twice), (resumed_at, twice)

    # one chain across the restart, every bar once, no order twice
    verify = tradeops(home, "fmel", run_id, "--verify")
    assert verify.returncode == 0 and ": OK ·" in verify.stdout, verify.stdout
    got = rows(home, run_id)
    bars = [r["bar_number"] for r in got]
    assert bars == list(range(1, len(bars) + 1))
    times = [r["timestamp"] for r in got]
    assert times == sorted(times) and len(set(times)) == len(times)
    orders = [(r["timestamp"], o["symbol"], o["side"]) for r in got for o in r["actions_taken"]]
    assert orders and len(orders) == len(set(orders))
    summary = store.read_summary(home / "fmel", run_id)
    assert summary is not None and summary["decisions"] == len(got)
    assert summary["chain_head"] == got[-1]["complete_state_hash"]
    # a stopped session still says how it ended
    final = status(home)
    assert final["pnl"] is not None and final["pnl"]["equity"] > 0, final
    assert final["decisions"] == len(got)
    assert "P&L n/a" not in out.stdout


def test_paper_commands_answer_in_one_line(home: Path) -> None:
    out = tradeops(home, "paper", "stop", "sma")
    assert out.returncode == 1 and "not" in out.stdout.lower()
    out = tradeops(home, "paper", "start", "nosuch")
    assert out.returncode == 1 and "nosuch" in out.stdout
    out = tradeops(home, "paper", "logs", "sma")
    assert out.returncode == 2 and "no paper session for sma" in out.stderr
    assert "Traceback" not in out.stderr


HANGS = """
import backtrader as bt

class Hangs(bt.Strategy):
    def next(self):
        if len(self) == 40:
            sum(range(10**13))  # C code holding the interpreter: nothing else runs
"""


@contextlib.contextmanager
def session_of(tmp_path: Path, name: str, source: str, env: dict[str, str]) -> Iterator[Path]:
    """A home where agent ``name`` (``source``) paper-trades with ``env``; stopped after."""
    home = tmp_path / "h"  # short: the health socket path must fit in 107 bytes
    agent = tmp_path / f"{name}.py"
    agent.write_text(source)
    try:
        assert tradeops(home, "agents", "add", str(agent), env=env).returncode == 0
        out = tradeops(home, "paper", "start", name, "--bar-seconds", "0.05", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        yield home
    finally:
        tradeops(home, "paper", "stop", name)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_hung_session_is_reported_and_restarted(tmp_path: Path) -> None:
    with session_of(tmp_path, "hangs", HANGS, {"TRADEOPS_PAPER_HEALTH_S": "0.5"}) as home:
        doc = wait_for(lambda: (s := status(home, "hangs"))["restarts"] >= 1 and s, 60,
                       "a restart of the hung session")  # fmt: skip
        from infra.local.events import RedisEventLog
        from infra.local.queue import connect
        from infra.settings import Settings

        conn = connect(Settings.from_env({"TRADEOPS_HOME": str(home)}))
        log, key = RedisEventLog(conn), f"paper-hangs-{doc['run_id']}"
        # the supervisor notes the restart in its file, then connects to tell the news
        news = wait_for(lambda: log.events(key), 10, "the hung session's news")
        assert news[0].health["status"] == "unhealthy"
        sup = json.loads((home / "paper" / "paper-hangs" / "supervisor.json").read_text())
        assert sup["last_problem"] == "stopped answering /health"


@pytest.mark.slow
def test_stopping_a_hung_session_kills_it_after_the_grace(tmp_path: Path) -> None:
    # asked every 60 s, the hung session is not caught by its health before the stop
    with session_of(tmp_path, "hangs", HANGS, {"TRADEOPS_PAPER_HEALTH_S": "60"}) as home:
        wait_for(lambda: status(home, "hangs")["health"], 30, "the session's health")
        # then it stops answering: in the C call holding the interpreter, where SIGTERM waits
        wait_for(lambda: status(home, "hangs")["health"] is None, 30, "the session to hang")
        out = tradeops(home, "paper", "stop", "hangs")
        assert out.returncode == 0, out.stdout + out.stderr
        # the stop came back because the supervisor killed the session and ended, not
        # because the stop gave up waiting on it (that leaves both running)
        assert processes_mentioning(str(home / "paper")) == []
        said = (home / "paper" / "paper-hangs" / "supervisor.log").read_text()
        assert "did not stop" in said and said.rstrip().endswith("stopped")
        assert status(home, "hangs")["status"] == "stopped"


BIG = """
import backtrader as bt
import numpy as np

class Big(bt.Strategy):
    def next(self):
        if len(self) == 3:
            self.block = np.ones(250_000_000)  # 2 GB: fine under the default 4096 MB
"""


@pytest.mark.slow
def test_the_sandbox_settings_reach_a_paper_session(tmp_path: Path) -> None:
    with session_of(tmp_path, "big", BIG, {"TRADEOPS_SANDBOX_MEMORY_MB": "1500"}) as home:
        wait_for(lambda: status(home, "big")["restarts"] >= 1, 60, "the session to crash")
        logs = tradeops(home, "paper", "logs", "big").stdout
        assert "MemoryError" in logs, logs[-2000:]


SCRIBBLER = """
import os
import backtrader as bt

for name in ("supervisor.json", "session.log", "spec.json"):
    try:
        os.remove(name)
        os.symlink("/etc/hostname", name)
        print("replaced", name, flush=True)
    except OSError as exc:
        print("refused", name, exc.strerror, flush=True)

class Scribbler(bt.Strategy):
    def next(self):
        pass
"""


@pytest.mark.slow
def test_a_session_cannot_touch_its_supervisors_files(tmp_path: Path) -> None:
    env = {"TRADEOPS_ALLOWED_IMPORTS": "os"}
    with session_of(tmp_path, "scribbler", SCRIBBLER, env) as home:
        wait_for(lambda: status(home, "scribbler")["health"], 30, "the session's health")
        logs = tradeops(home, "paper", "logs", "scribbler").stdout
        for name in ("supervisor.json", "session.log", "spec.json"):
            assert f"refused {name}" in logs, logs[-2000:]
            assert not (home / "paper" / "paper-scribbler" / name).is_symlink()


BROKEN = """
import backtrader as bt

class Broken(bt.Strategy):
    def __init__(self):
        raise ValueError("threshold missing")  # before the first bar, every time
"""


@pytest.mark.slow
def test_a_session_that_cannot_start_is_not_restarted_and_says_why(tmp_path: Path) -> None:
    with session_of(tmp_path, "broken", BROKEN, {}) as home:
        doc = wait_for(lambda: (s := status(home, "broken"))["status"] == "crashed" and s, 30,
                       "the session to fail")  # fmt: skip
        time.sleep(2.0)  # a restart would have come by now (back-off starts at 0.5 s)
        again = status(home, "broken")
        assert again["restarts"] == 0 and again["status"] == "crashed"
        sup = json.loads((home / "paper" / "paper-broken" / "supervisor.json").read_text())
        assert sup["last_problem"] == "ValueError: threshold missing"
        from infra.local.events import RedisEventLog
        from infra.local.queue import connect
        from infra.settings import Settings

        conn = connect(Settings.from_env({"TRADEOPS_HOME": str(home)}))
        (news,) = RedisEventLog(conn).events(f"paper-broken-{doc['run_id']}")
        assert news.health["status"] == "failed" and news.health["reason"] == sup["last_problem"]


def test_paper_start_refuses_what_the_data_cannot_play(home: Path) -> None:
    for args in (["--symbols", "FOO"], ["--start", "2031-01-01"]):
        out = tradeops(home, "paper", "start", "sma", *args)
        assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
        assert "no data for symbol 'FOO'" in out.stdout or "no bars for SPY" in out.stdout
    assert not (home / "paper" / "paper-sma").exists()  # nothing was started


CRASHES = """
import backtrader as bt

class Crashes(bt.Strategy):
    def next(self):
        if len(self) >= 2:
            raise ZeroDivisionError("the agent divided by zero")
"""


@pytest.mark.slow
def test_a_crash_says_why_and_crashes_in_a_row_are_one_streak(tmp_path: Path) -> None:
    with session_of(tmp_path, "crashes", CRASHES, {}) as home:
        doc = wait_for(lambda: (s := status(home, "crashes"))["restarts"] >= 2 and s, 60,
                       "two restarts")  # fmt: skip
        sup = json.loads((home / "paper" / "paper-crashes" / "supervisor.json").read_text())
        assert sup["last_problem"] == "ZeroDivisionError: the agent divided by zero"
        from infra.local.events import RedisEventLog
        from infra.local.queue import connect
        from infra.settings import Settings

        conn = connect(Settings.from_env({"TRADEOPS_HOME": str(home)}))
        log, key = RedisEventLog(conn), f"paper-crashes-{doc['run_id']}"
        # the supervisor notes a restart in its file, then connects to tell the news
        news = wait_for(lambda: len(n := log.events(key)) >= 2 and n[:2], 10, "two crashes' news")
        assert [n.health["in_a_row"] for n in news] == [1, 2]
        assert {n.health["streak"] for n in news} == {news[0].health["streak"]}
        assert news[1].health["reason"] == sup["last_problem"]
        assert [n.health["restart_in_s"] for n in news] == [0.5, 1.0]  # backing off
        said = (home / "paper" / "paper-crashes" / "supervisor.log").read_text()
        assert f"supervisor paper-crashes run {doc['run_id']}: started (pid" in said, said
        assert "(ZeroDivisionError: the agent divided by zero); restart 1 in 0.5 s" in said
