"""Upload to result through the real queue, a real worker, the real sandbox and local stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from infra.local.artifacts import LocalArtifactStore
from infra.local.fmel import LocalFmelStore
from infra.local.market import LocalMarketData
from infra.local.queue import submit
from infra.local.redis_server import EmbeddedRedis
from infra.local.registry import SqliteRegistry
from infra.local.runner import SubprocessRunner
from infra.local.worker import Worker
from tests.conftest import SMA_CROSS
from workers import events as ev
from workers import jobs
from workers.ports import RunStatus, job_id_for

BROKEN = b"""
import backtrader as bt

class Broken(bt.Strategy):
    def next(self):
        if len(self) == 40:
            raise ZeroDivisionError("division by zero")
"""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ev.Event] = []

    def send(self, event: ev.Event) -> None:
        self.sent.append(event)


@pytest.fixture
def stack(tmp_path: Path, synthetic_data: Path, redis_home: Path) -> Iterator[Any]:
    srv = EmbeddedRedis(redis_home)
    conn = redis.Redis.from_url(srv.ensure_running())
    notifier = Recorder()
    registry = SqliteRegistry(tmp_path / "state.db")
    artifacts, fmel = LocalArtifactStore(tmp_path / "artifacts"), LocalFmelStore(tmp_path / "fmel")
    services = jobs.Services(
        artifacts=artifacts,
        registry=registry,
        fmel=fmel,
        runner=SubprocessRunner(
            timeout_s=120,
            fmel=fmel,
            market=LocalMarketData(synthetic_data),
            artifacts=artifacts,
            runs_dir=tmp_path / "runs",
        ),
        notifier=notifier,
        market=LocalMarketData(synthetic_data),
    )
    yield conn, notifier, registry, services


def work(conn: redis.Redis, services: jobs.Services) -> None:
    """A tradeops worker (RQ's, handing each job these services) until the queues are empty."""
    queues = [Queue(q, connection=conn) for q in ("validate", "backtest")]
    Worker(queues, connection=conn, services=services).work(burst=True)


@pytest.mark.slow
def test_upload_then_backtest_through_the_queue(stack: Any) -> None:
    conn, notifier, registry, services = stack
    upload = submit(
        conn,
        "validate",
        "workers.jobs.register_agent",
        job_id=job_id_for("validate", "C1", "F1"),
        timeout_s=60,
        kwargs={
            "job_id": "u1",
            "owner": "U1",
            "name": "sma",
            "source": SMA_CROSS.read_bytes(),
            "reply_to": {"channel": "C1"},
        },
    )
    work(conn, services)
    registered = upload.job.return_value()
    assert isinstance(registered, ev.AgentRegistered) and registered.version == 1
    bt_job = submit(
        conn,
        "backtest",
        "workers.jobs.run_backtest",
        job_id=job_id_for("backtest", "C1", "T1"),
        timeout_s=240,
        kwargs={
            "job_id": "b1",
            "run_id": "run-1",
            "owner": "U1",
            "agent": "sma",
            "parameters": {"symbols": ["SYN"]},
            "reply_to": {"channel": "C1"},
        },
    )
    again = submit(
        conn,
        "backtest",
        "workers.jobs.run_backtest",
        job_id=job_id_for("backtest", "C1", "T1"),
        timeout_s=240,
        kwargs={},
    )
    assert again.duplicate
    work(conn, services)
    done = bt_job.job.return_value()
    assert isinstance(done, ev.BacktestFinished), done
    assert done.reply_to == {"channel": "C1"}
    assert done.result["results"]["sharpe_ratio"] is not None
    assert done.result["sandbox"]["isolation"] == "bubblewrap"
    assert registry.get_run("run-1").status == RunStatus.FINISHED
    assert type(notifier.sent[0]) is ev.AgentRegistered
    assert type(notifier.sent[-1]) is ev.BacktestFinished
    assert len([e for e in notifier.sent if isinstance(e, ev.BacktestFinished)]) == 1


@pytest.mark.slow
def test_an_agent_error_is_reported_not_retried(stack: Any) -> None:
    conn, _, registry, services = stack
    submit(
        conn,
        "validate",
        "workers.jobs.register_agent",
        job_id="v-broken",
        timeout_s=60,
        kwargs={"job_id": "u", "owner": "U1", "name": "broken", "source": BROKEN},
    )
    job = submit(
        conn,
        "backtest",
        "workers.jobs.run_backtest",
        job_id="b-broken",
        timeout_s=240,
        retries=2,
        kwargs={
            "job_id": "b",
            "run_id": "run-b",
            "owner": "U1",
            "agent": "broken",
            "parameters": {"symbols": ["SYN"]},
        },
    ).job
    work(conn, services)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED  # the job did its work: no retry
    failed = job.return_value()
    assert isinstance(failed, ev.BacktestFailed)
    assert failed.error["kind"] == "agent" and failed.error["line"] == 7
    assert registry.get_run("run-b").status == RunStatus.FAILED


def test_a_damaged_store_is_an_operators_job_and_is_not_retried(
    stack: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    conn, notifier, registry, services = stack
    upload = {"job_id": "u", "owner": "U1", "name": "sma", "source": SMA_CROSS.read_bytes()}
    submit(conn, "validate", "workers.jobs.register_agent", job_id="v-damaged", timeout_s=60,
           kwargs=upload)  # fmt: skip
    work(conn, services)
    stored = LocalArtifactStore(tmp_path / "artifacts")
    sha = registry.get_version("sma", 1).sha256  # type: ignore[union-attr]
    Path(stored.path_hint(sha)).write_bytes(b"# not the code that was uploaded\n")
    job = submit(conn, "backtest", "workers.jobs.run_backtest", job_id="b-damaged",
                 timeout_s=240, retries=2,
                 kwargs={"job_id": "b", "run_id": "run-d", "owner": "U1", "agent": "sma",
                         "reply_to": {"channel": "C1"}}).job  # fmt: skip
    work(conn, services)
    job.refresh()
    assert job.get_status() == JobStatus.FAILED and not job.retries_left  # not run again
    (told,) = [e for e in notifier.sent if isinstance(e, ev.BacktestFailed)]
    assert told.error["kind"] == "platform" and "needs an operator" in told.error["message"]
    assert "an operator has been told" in told.error["hint"]
    assert "Traceback" not in told.to_json() and sha not in told.to_json()  # no store detail
    assert registry.get_run("run-d").status == RunStatus.FAILED  # type: ignore[union-attr]
    said = capfd.readouterr().err
    assert f"job b-damaged needs an operator: ArtifactCorrupted: artifact {sha}" in said
