"""The PaperCluster contract: the in-memory fake and the local supervised cluster (real
sandboxed sessions on the replay feed) behave the same, StatefulSet-like."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.artifacts import LocalArtifactStore
from infra.local.paper import LocalPaperCluster
from runtime.paths import DEFAULT_DATA_DIR
from tests.conftest import SMA_CROSS, processes_mentioning
from tests.fakes import InMemoryPaperCluster
from workers.ports import NotFound, PaperCluster, PaperConflict, PaperSpec, SessionStatus


@pytest.fixture(params=["memory", "local"])
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[PaperCluster, str]]:
    if request.param == "memory":
        yield InMemoryPaperCluster(), "0" * 64
        return
    home = Path("/tmp") / f"tpc-{os.getpid()}-{time.monotonic_ns() % 10**6}"  # short: sockets
    artifacts = LocalArtifactStore(home / "artifacts")
    sha = artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    local = LocalPaperCluster(home, data_dir=DEFAULT_DATA_DIR, fmel_dir=home / "fmel",
                              artifacts=artifacts)  # fmt: skip
    try:
        yield local, sha
    finally:
        for session in local.status():
            if session.status is not SessionStatus.STOPPED:
                local.stop(session.agent)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(home)], check=False)


def spec(sha: str, agent: str = "sma", run_id: str = "paper-run-1") -> PaperSpec:
    return PaperSpec(agent=agent, version=1, sha256=sha, owner="U1", run_id=run_id,
                     symbols=("SPY",), cash=5000.0, bar_seconds=0.05)  # fmt: skip


def test_a_started_session_is_starting_then_running_and_says_what_it_runs(
    cluster: tuple[PaperCluster, str],
) -> None:
    paper, sha = cluster
    started = paper.start(spec(sha))
    assert started.status is SessionStatus.STARTING
    assert (started.agent, started.owner, started.run_id) == ("sma", "U1", "paper-run-1")
    assert started.parameters["symbols"] == ["SPY"] and started.parameters["cash"] == 5000.0
    deadline = time.monotonic() + 30
    while (now := paper.status("sma")[0]).status is SessionStatus.STARTING:
        assert time.monotonic() < deadline, "never running"
        time.sleep(0.1)
    assert now.status is SessionStatus.RUNNING and now.restarts == 0


def test_one_session_per_agent(cluster: tuple[PaperCluster, str]) -> None:
    paper, sha = cluster
    paper.start(spec(sha))
    with pytest.raises(PaperConflict):
        paper.start(spec(sha, run_id="paper-run-2"))
    paper.start(spec(sha, agent="other", run_id="paper-run-3"))  # another agent: its own
    assert [s.agent for s in paper.status()] == ["other", "sma"]


def test_stop_keeps_the_session_and_a_new_start_replaces_it(
    cluster: tuple[PaperCluster, str],
) -> None:
    paper, sha = cluster
    paper.start(spec(sha))
    stopped = paper.stop("sma")
    assert stopped.status is SessionStatus.STOPPED and stopped.stopped_at is not None
    assert paper.stop("sma").status is SessionStatus.STOPPED  # twice: unchanged
    (kept,) = paper.status("sma")
    assert kept.status is SessionStatus.STOPPED and kept.run_id == "paper-run-1"
    again = paper.start(spec(sha, run_id="paper-run-2"))
    assert again.run_id == "paper-run-2" and again.status is not SessionStatus.STOPPED
    assert isinstance(paper.logs("sma", tail=50), str)  # known: its lines, maybe none yet
    assert paper.logs("sma", tail=0) == ""


def test_an_unknown_agent(cluster: tuple[PaperCluster, str]) -> None:
    paper, _ = cluster
    assert paper.status("ghost") == []
    with pytest.raises(NotFound):
        paper.stop("ghost")
    with pytest.raises(NotFound):
        paper.logs("ghost")
