"""Scheduled digests through RQ's cron scheduler, a real Redis and a real worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.cron import CronScheduler
from rq.job import Job, JobStatus

from infra.local.artifacts import LocalArtifactStore
from infra.local.fmel import LocalFmelStore
from infra.local.market import LocalMarketData
from infra.local.redis_server import EmbeddedRedis
from infra.local.registry import SqliteRegistry
from infra.local.runner import SubprocessRunner
from infra.local.scheduler import build_scheduler
from infra.local.worker import Worker
from infra.settings import Settings
from runtime.paths import DEFAULT_DATA_DIR
from tests.conftest import REPO_ROOT, cli_env
from tests.fakes import InMemoryPaperCluster
from workers import control, jobs
from workers import events as ev
from workers.ports import RunStatus, job_id_for


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ev.Event] = []

    def send(self, event: ev.Event) -> None:
        self.sent.append(event)


def settings_for(home: Path, digests: str) -> Settings:
    return Settings.from_env({"TRADEOPS_HOME": str(home), "TRADEOPS_DIGESTS": digests})


@pytest.fixture
def conn(redis_home: Path) -> redis.Redis:
    return redis.Redis.from_url(EmbeddedRedis(redis_home).ensure_running())


@pytest.fixture
def new_york_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in a zone far from UTC, as an operator's laptop would be."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_digests_are_scheduled_at_their_utc_time_whatever_the_machine_zone(
    redis_home: Path, conn: redis.Redis, new_york_time: None
) -> None:
    assert time.localtime().tm_gmtoff != 0  # the zone really moved
    scheduler = build_scheduler(settings_for(redis_home, "C1@09:00,C2@17:30"), conn)
    first, second = scheduler.get_jobs()
    assert (first.cron, second.cron) == ("0 9 * * *", "30 17 * * *")
    assert (first.queue_name, first.func_name) == ("digest", "workers.control.digest")
    assert first.kwargs == {"channel": "C1", "reply_to": {"channel": "C1"}}
    assert second.kwargs == {"channel": "C2", "reply_to": {"channel": "C2"}}
    now = datetime.now(UTC)
    for job, (hour, minute) in [(first, (9, 0)), (second, (17, 30))]:
        due = job.next_enqueue_time
        assert due is not None
        due = due.astimezone(UTC)
        assert (due.hour, due.minute, due.second) == (hour, minute, 0)
        assert timedelta(0) < due - now <= timedelta(days=1)


def test_a_due_digest_is_enqueued_once_and_a_worker_turns_it_into_a_digest_event(
    tmp_path: Path, redis_home: Path, conn: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier, cluster = Recorder(), InMemoryPaperCluster()
    registry = SqliteRegistry(tmp_path / "state.db")
    services = jobs.Services(
        artifacts=LocalArtifactStore(tmp_path / "artifacts"),
        registry=registry,
        fmel=LocalFmelStore(tmp_path / "fmel"),
        runner=SubprocessRunner(timeout_s=60, fmel=LocalFmelStore(tmp_path / "fmel")),
        notifier=notifier,
        market=LocalMarketData(DEFAULT_DATA_DIR),  # paper start checks its symbols
        cluster=cluster,  # an in-memory cluster: this test is about the digest
    )
    registry.add_version(owner="U1", name="sma", sha256="a" * 64, report={})
    for run_id, outcome in [("bt-ok", RunStatus.FINISHED), ("bt-bad", RunStatus.FAILED)]:
        registry.create_run(run_id=run_id, agent="sma", version=1, owner="U1",
                            kind="backtest", parameters={}, channel="C1")  # fmt: skip
        registry.update_run(run_id, status=RunStatus.RUNNING)
        registry.update_run(
            run_id,
            status=outcome,
            result={"results": {"portfolio_return_pct": 4.0, "sharpe_ratio": 0.8}},
            error={"kind": "timeout", "message": "ran 20 min"} if outcome == "failed" else None,
        )
    control.paper_start(services, job_id="p1", owner="U1", agent="sma", parameters={"cash": 1000},
                        reply_to={"channel": "C1"})  # fmt: skip
    cluster.set_health("sma", {"equity": 1100.0, "decisions": 3})

    scheduler = build_scheduler(settings_for(redis_home, "C1@09:00"), conn)
    (cron_job,) = scheduler.get_jobs()
    slot = datetime.now(UTC) - timedelta(seconds=1)
    cron_job.next_enqueue_time = slot  # as if 09:00 UTC had just come
    job_id = job_id_for("digest", "C1", slot.strftime("%Y-%m-%dT%H:%MZ"))
    assert scheduler.enqueue_jobs() == [cron_job]
    assert Queue("digest", connection=conn).job_ids == [job_id]
    assert cron_job.get_job_ids(conn) == [job_id]
    due = cron_job.next_enqueue_time
    assert due is not None and due > slot and (due.hour, due.minute) == (9, 0)
    assert scheduler.enqueue_jobs() == []  # not due again before then

    other_host = build_scheduler(settings_for(redis_home, "C1@09:00"), conn)
    other_host.get_jobs()[0].next_enqueue_time = slot
    other_host.enqueue_jobs()  # the same minute from another scheduler: the same job
    assert Queue("digest", connection=conn).job_ids == [job_id]
    said = capsys.readouterr().err.splitlines()
    assert f"tradeops scheduler: digest for C1 enqueued ({job_id})" in said
    again = f"tradeops scheduler: digest for C1 already enqueued by another scheduler ({job_id})"
    assert again in said

    Worker([Queue("digest", connection=conn)], connection=conn, services=services).work(burst=True)
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == JobStatus.FINISHED
    digest = job.return_value()
    assert isinstance(digest, ev.Digest), digest
    assert (digest.job_id, digest.reply_to) == (job_id, {"channel": "C1"})
    assert digest.until - digest.since == pytest.approx(24 * 3600)
    sections: dict[str, Any] = digest.sections
    assert {(b["run_id"], b["status"], b["return_pct"]) for b in sections["backtests"]} == {
        ("bt-ok", "finished", 4.0), ("bt-bad", "failed", 4.0),
    }  # fmt: skip
    assert [(f["run_id"], f["error"]) for f in sections["failures"]] == [
        ("bt-bad", {"kind": "timeout", "message": "ran 20 min"}),
    ]  # fmt: skip
    (paper,) = sections["paper"]
    assert (paper["agent"], paper["status"], paper["decisions"]) == ("sma", "running", 3)
    assert paper["pnl"]["pnl"] == pytest.approx(100.0)
    assert [type(e) for e in notifier.sent] == [ev.PaperStarted, ev.Digest]
    assert notifier.sent[-1] == digest
    assert registry.last_digest("C1") == digest.until


def test_the_scheduler_says_what_it_schedules_and_stops_on_sigterm(
    redis_home: Path, conn: redis.Redis
) -> None:
    env = cli_env(redis_home, {"TRADEOPS_DIGESTS": "C1@09:00,C2@17:30"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "scheduler"], cwd=REPO_ROOT, env=env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "C1 at 09:00 UTC" in line and "C2 at 17:30 UTC" in line, line
        deadline = time.monotonic() + 20
        while not CronScheduler.all(conn) and time.monotonic() < deadline:
            time.sleep(0.05)  # running once it has registered itself
        (running,) = CronScheduler.all(conn)
        assert running.pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert CronScheduler.all(conn) == []
    finally:
        proc.kill()
        proc.wait()


def test_without_digests_the_scheduler_idles_with_a_hint_and_starts_no_redis(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "scheduler"], cwd=REPO_ROOT,
        env=cli_env(home, {"TRADEOPS_DIGESTS": ""}), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "no digests configured" in line and "TRADEOPS_DIGESTS" in line
        time.sleep(0.5)
        assert proc.poll() is None  # still up: a Procfile's other processes keep running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr.read() == ""
        assert not home.exists()
    finally:
        proc.kill()
        proc.wait()
