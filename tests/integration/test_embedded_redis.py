"""The embedded Redis: one private server per TRADEOPS_HOME, shared, durable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.redis_server import EmbeddedRedis


@pytest.fixture
def server(redis_home: Path) -> EmbeddedRedis:
    return EmbeddedRedis(redis_home)


def test_starts_on_a_private_socket_without_tcp(server: EmbeddedRedis) -> None:
    url = server.ensure_running()
    assert url == f"unix://{server.socket}"
    client = server.client()
    assert client.ping()
    assert client.config_get("port")["port"] == "0"
    assert oct(server.socket.stat().st_mode & 0o777) == "0o700"


def test_a_second_process_shares_the_same_server(server: EmbeddedRedis) -> None:
    server.ensure_running()
    first = server.pid()
    code = (
        "import sys; from pathlib import Path; from infra.local.redis_server import EmbeddedRedis;"
        f"r = EmbeddedRedis(Path({str(server.dir.parent)!r})); r.ensure_running();"
        "r.client().set('from-child', '1'); print(r.pid())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == first
    assert server.client().get("from-child") == b"1"


def test_concurrent_starts_make_one_server(server: EmbeddedRedis) -> None:
    code = (
        "from pathlib import Path; from infra.local.redis_server import EmbeddedRedis;"
        f"r = EmbeddedRedis(Path({str(server.dir.parent)!r})); r.ensure_running(); print(r.pid())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    pids = {int(p.communicate(timeout=60)[0].strip()) for p in procs}
    assert len(pids) == 1


def test_data_survives_a_restart_and_a_crash(server: EmbeddedRedis) -> None:
    server.ensure_running()
    server.client().rpush("rq:queue:backtest", "job-1")
    server.stop()
    assert not server.running()
    server.ensure_running()
    assert server.client().lrange("rq:queue:backtest", 0, -1) == [b"job-1"]
    server.client().rpush("rq:queue:backtest", "job-2")
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # no chance to save anything on the way out
    deadline = time.monotonic() + 5
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.ensure_running()  # over the stale socket file
    assert server.client().lrange("rq:queue:backtest", 0, -1) == [b"job-1", b"job-2"]
