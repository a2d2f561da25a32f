"""CloudBuildRunner with the official Cloud Build client against our stand-in, which runs
each build's steps here (storage steps on a real fake-gcs-server, the runtime image's step
in the bubblewrap sandbox, refused without the hardening flags)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.emulators.cloudbuild import CloudBuildServer
from infra.gcp.cloudbuild import BUILD_FILE, CloudBuildRunner
from infra.gcp.storage import GcsArtifactStore
from infra.local.fmel import LocalFmelStore
from infra.local.market import LocalMarketData
from infra.local.sandbox import Limits
from runtime.paths import DEFAULT_DATA_DIR
from tests.conftest import SMA_CROSS
from tests.gcs_server import GcsBucket, gcs_bucket_fixture, gcs_server_fixture  # noqa: F401
from workers.ports import BacktestSpec

PROJECT = "tradeops-test"
IMAGE = "europe-docker.pkg.dev/tradeops-test/tradeops/runtime:test"


@pytest.fixture(scope="module")
def builds(gcs_server: Any) -> Iterator[CloudBuildServer]:
    with CloudBuildServer(storage_host=gcs_server.url) as server:
        yield server


@pytest.fixture
def runner_for(
    builds: CloudBuildServer, gcs_bucket: GcsBucket, tmp_path: Path
) -> Iterator[Any]:
    clients: list[Any] = []

    def make(*, timeout_s: float = 300, build_file: Path = BUILD_FILE) -> CloudBuildRunner:
        client = builds.client()
        clients.append(client)
        return CloudBuildRunner(
            client=client,
            project=PROJECT,
            artifacts=GcsArtifactStore(gcs_bucket.client, gcs_bucket.name, "team"),
            image=IMAGE,
            runs_dir=tmp_path / "runs",
            market=LocalMarketData(DEFAULT_DATA_DIR),
            fmel=LocalFmelStore(tmp_path / "fmel"),
            limits=Limits(timeout_s=timeout_s, memory_mb=2048),
            poll_s=0.2,
            build_file=build_file,
        )

    yield make
    for client in clients:
        client.transport.close()


def spec_of(runner: CloudBuildRunner, code: bytes, **kw: Any) -> BacktestSpec:
    sha = runner.artifacts.put(code, kind="agent")
    return BacktestSpec(run_id=kw.pop("run_id", f"r-{uuid.uuid4().hex[:10]}"), agent="sma",
                        version=1, agent_sha256=sha, owner="U1", symbols=("SPY",),
                        **kw)  # fmt: skip


@pytest.mark.slow
def test_a_backtest_runs_on_cloud_build_and_comes_back_checked(
    runner_for: Any, builds: CloudBuildServer, gcs_bucket: GcsBucket, tmp_path: Path
) -> None:
    runner = runner_for()
    spec = spec_of(runner, SMA_CROSS.read_bytes())
    seen: list[tuple[int, int | None]] = []
    doc = runner.run(spec, lambda done, total: seen.append((done, total)))
    assert doc["error"] is None, doc["error"]
    assert doc["results"] and doc["results"]["total_trades"] >= 1
    build_id = doc["runner"]["build_id"]
    assert doc["runner"]["name"] == "cloudbuild" and doc["runner"]["log_url"]
    [build] = [b for b in builds.client().list_builds(project_id=PROJECT) if b.id == build_id]
    assert build.status.name == "SUCCESS" and build.timeout.total_seconds() == 300
    assert {"tradeops-backtest", f"run-{spec.run_id}", "agent-sma"} <= set(build.tags)
    assert seen and seen[-1][0] > 0  # progress from the build's log
    assert runner.fmel is not None and runner.fmel.verify(spec.run_id).ok  # decisions stored
    chart = doc["chart_artifact"]
    assert chart and runner.artifacts.get(chart).startswith(b"\x89PNG")
    objects = {b.name for b in gcs_bucket.client.list_blobs(gcs_bucket.name)}
    assert f"team/runs/{spec.run_id}/outputs.tgz" in objects
    assert f"team/logs/log-{build_id}.txt" in objects
    log = (tmp_path / "runs" / spec.run_id / "agent.log").read_text()
    assert "##tradeops-progress" not in log  # the agent's output, not our progress lines


CRASHES = b"""
import backtrader as bt

class Crashes(bt.Strategy):
    def next(self):
        print("about to fail", flush=True)
        if len(self) == 30:
            raise ZeroDivisionError("bad bar")
"""


@pytest.mark.slow
def test_a_failing_agent_says_why_and_keeps_its_decisions(
    runner_for: Any, tmp_path: Path
) -> None:
    runner = runner_for()
    spec = spec_of(runner, CRASHES)
    doc = runner.run(spec)
    error = doc["error"]
    assert error is not None and error["kind"] == "agent" and "bad bar" in error["message"]
    assert error["line"] == 8
    assert doc["fmel"] and doc["fmel"]["decisions"] >= 29  # the bars before the failure
    assert "about to fail" in (tmp_path / "runs" / spec.run_id / "agent.log").read_text()


HOSTILE = b"""
import os
import backtrader as bt

os.symlink("/etc/passwd", "/out/link")
os.mkfifo("/out/pipe")

class Hostile(bt.Strategy):
    def next(self):
        pass
"""


@pytest.mark.slow
def test_what_the_run_leaves_is_checked_like_a_local_runs(runner_for: Any) -> None:
    runner = runner_for()
    doc = runner.run(spec_of(runner, HOSTILE))
    assert doc["error"] is None and doc["chart_artifact"]
    [said] = [w for w in doc["warnings"] if "not kept from the run's files" in w]
    assert "link" in said and "pipe" in said  # neither followed nor read


LOOPS = b"""
import backtrader as bt

class Loops(bt.Strategy):
    def next(self):
        while True:
            pass
"""


@pytest.mark.slow
def test_a_run_past_its_timeout_is_cancelled(runner_for: Any, builds: CloudBuildServer) -> None:
    runner = runner_for(timeout_s=8)
    spec = spec_of(runner, LOOPS)
    doc = runner.run(spec)
    assert doc["error"] is not None and doc["error"]["kind"] == "timeout"
    build = builds.client().get_build(project_id=PROJECT, id=doc["runner"]["build_id"])
    assert build.status.name in ("TIMEOUT", "CANCELLED")


@pytest.mark.slow
def test_a_build_file_without_its_hardening_runs_nothing(
    runner_for: Any, tmp_path: Path
) -> None:
    """A regression in the build file (here: the network left on) is refused by the
    stand-in as a build would be by our tests: the run fails, the agent never ran."""
    weak = yaml.safe_load(BUILD_FILE.read_text())
    [run] = [s for s in weak["steps"] if s["id"] == "run"]
    run["args"].remove("--network=none")
    path = tmp_path / "weak.yaml"
    path.write_text(yaml.safe_dump(weak))
    runner = runner_for(build_file=path)
    spec = spec_of(runner, CRASHES)
    doc = runner.run(spec)
    assert doc["error"] is not None and doc["error"]["kind"] == "platform"
    assert "about to fail" not in (tmp_path / "runs" / spec.run_id / "agent.log").read_text()


def test_the_request_is_the_build_file_with_its_substitutions(runner_for: Any) -> None:
    runner = runner_for(timeout_s=600)
    spec = spec_of(runner, SMA_CROSS.read_bytes(), run_id="r-fixed")
    build = runner.build_request(spec)
    subs = dict(build.substitutions)
    assert subs["_RUN_URL"].endswith("/team/runs/r-fixed") and subs["_IMAGE"] == IMAGE
    assert subs["_AGENT_URL"] == runner.artifacts.path_hint(spec.agent_sha256)
    assert subs["_MEMORY_MB"] == "2048" and build.timeout.total_seconds() == 600
    assert build.logs_bucket.endswith("/team/logs")
    assert [s.id for s in build.steps] == [s["id"] for s in yaml.safe_load(
        BUILD_FILE.read_text())["steps"]]  # fmt: skip


SLOW = b"""
import time
import backtrader as bt

class Slow(bt.Strategy):
    def next(self):
        time.sleep(0.05)
"""


class JobTimeout(Exception):
    """What RQ raises in a job past its timeout (here: from the progress callback)."""


@pytest.mark.slow
def test_a_job_that_ends_while_its_build_runs_cancels_the_build(
    runner_for: Any, builds: CloudBuildServer
) -> None:
    runner = runner_for()

    def out_of_time(done: int, total: int | None) -> None:
        raise JobTimeout

    with pytest.raises(JobTimeout):
        runner.run(spec_of(runner, SLOW), out_of_time)
    [build] = list(builds.client().list_builds(project_id=PROJECT, filter='tags="agent-sma"'))[:1]
    assert builds.wait(build.id)["status"] == "CANCELLED"
