"""The queue on a real (embedded) Redis with a real RQ worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker

from infra.local.queue import connect, submit
from infra.settings import Settings
from workers.ports import QUEUES, job_id_for

CALLS = Path("/tmp") / f"tradeops-queue-calls-{os.getpid()}"


def record(word: str) -> str:
    """A job function: leaves a trace of each call, so a test can count runs."""
    with CALLS.open("a") as f:
        f.write(word + "\n")
    return word.upper()


@pytest.fixture
def conn(redis_home: Path) -> Iterator[redis.Redis]:
    CALLS.unlink(missing_ok=True)
    yield connect(Settings(home=redis_home, data_dir=redis_home))
    CALLS.unlink(missing_ok=True)


def drain(conn: redis.Redis, *queues: str) -> None:
    SimpleWorker([Queue(q, connection=conn) for q in queues], connection=conn).work(burst=True)


def test_a_duplicate_request_runs_once(conn: redis.Redis) -> None:
    job_id = job_id_for("validate", "T1", "C1", "Ev123")
    first = submit(conn, "validate", f"{__name__}.record", job_id=job_id, args=["hi"], timeout_s=60)
    again = submit(conn, "validate", f"{__name__}.record", job_id=job_id, args=["hi"], timeout_s=60)
    assert not first.duplicate and again.duplicate
    assert again.job.id == first.job.id
    drain(conn, "validate")
    third = submit(conn, "validate", f"{__name__}.record", job_id=job_id, args=["hi"], timeout_s=60)
    assert third.duplicate  # already done: still not run again
    drain(conn, "validate")
    assert CALLS.read_text().splitlines() == ["hi"]
    assert third.job.return_value() == "HI"


def test_other_requests_are_other_jobs_on_their_own_queues(conn: redis.Redis) -> None:
    a = submit(conn, "validate", f"{__name__}.record", job_id=job_id_for("validate", "1"),
               args=["a"], timeout_s=60)  # fmt: skip
    b = submit(conn, "backtest", f"{__name__}.record", job_id=job_id_for("backtest", "1"),
               args=["b"], timeout_s=60)  # fmt: skip
    assert a.job.id != b.job.id
    assert Queue("validate", connection=conn).job_ids == [a.job.id]
    assert Queue("backtest", connection=conn).job_ids == [b.job.id]
    drain(conn, "validate")
    assert CALLS.read_text().splitlines() == ["a"]  # the backtest queue waits for its workers


def test_unknown_queue_is_refused(conn: redis.Redis) -> None:
    with pytest.raises(ValueError, match="unknown queue 'gpu'"):
        submit(conn, "gpu", f"{__name__}.record", job_id="x", timeout_s=1)
    assert set(QUEUES) == {"validate", "backtest", "paper", "digest"}


def test_settings_read_redis_url() -> None:
    from infra.settings import SettingsError

    assert Settings.from_env({"REDIS_URL": "redis://h:6379/0"}).redis_url == "redis://h:6379/0"
    assert Settings.from_env({}).redis_url is None
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings.from_env({"REDIS_URL": "http://nope"})
