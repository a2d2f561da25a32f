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


def test_a_stop_whose_exception_was_swallowed_still_stops_an_idle_worker(
    conn: redis.Redis, redis_home: Path
) -> None:
    """SIGTERM to an idle worker: RQ raises StopRequested from the handler, and one landing in
    a broad `except Exception` (its maintenance) was lost, leaving the worker on its queues
    for ever. The request is kept, and the worker leaves at its next heartbeat."""
    import contextlib
    import signal
    import threading
    import time

    from infra.bootstrap import bootstrap
    from infra.local.worker import Worker

    platform = bootstrap(Settings(home=redis_home, data_dir=redis_home), redis_conn=conn)
    worker = Worker([Queue("validate", connection=conn)], connection=conn,
                    services=platform.services(), heartbeat_s=1.0)  # fmt: skip

    def swallowed_stop() -> None:  # the handler's exception, lost as a broad except loses it
        with contextlib.suppress(Exception):
            worker.request_stop(signal.SIGTERM, None)

    rescued = threading.Event()

    def rescue() -> None:  # the old behaviour would hang: end it the way that always worked
        rescued.set()
        os.kill(os.getpid(), signal.SIGTERM)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop, watchdog = threading.Timer(2.0, swallowed_stop), threading.Timer(30.0, rescue)
    stop.start()
    watchdog.start()
    t0 = time.monotonic()
    try:
        worker.work(logging_level="ERROR")  # in the main thread: RQ installs its handlers
    finally:
        watchdog.cancel()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert not rescued.is_set(), "the worker ignored the stop"
    assert time.monotonic() - t0 < 15  # its BLPOP waits 3 s at a time here


def fails(word: str) -> str:
    """A job function that always raises (a platform failure, retried then given up)."""
    record(word)
    raise RuntimeError(f"{word} failed")


def test_a_job_waits_for_its_dependencies_however_they_end(conn: redis.Redis) -> None:
    """A sweep's collector: it runs once every combination's job has ended, even one that
    failed for good, and handing it out twice (a retried start) makes one job."""
    ok = submit(conn, "backtest", f"{__name__}.record", job_id="dep-ok", args=["ok"],
                timeout_s=60)  # fmt: skip
    bad = submit(conn, "backtest", f"{__name__}.fails", job_id="dep-bad", args=["bad"],
                 timeout_s=60, retries=1)  # fmt: skip
    after = [submit(conn, "backtest", f"{__name__}.record", job_id="dep-after",
                    args=["after"], timeout_s=60, depends_on=[ok.job.id, bad.job.id])
             for _ in range(2)]  # fmt: skip
    assert [a.duplicate for a in after] == [False, True]
    drain(conn, "backtest")
    calls = CALLS.read_text().splitlines()
    assert calls.count("after") == 1 and calls[-1] == "after"
    assert calls.count("bad") == 2  # its retry, before the collector
