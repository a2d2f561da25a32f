"""The job queue: RQ on Redis (``REDIS_URL``, else the embedded Redis of this home).

One queue per kind of work, so a slow backtest never holds up a validation and workers
can be pointed at the kinds they should take. Job ids are derived from the request (a
retried chat event or a double click gives the same id), and enqueueing is atomic and
unique: a duplicate finds the job already there and runs nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job

from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings

QUEUES = ("validate", "backtest", "paper", "digest")
VALIDATE_TIMEOUT_S = 60
BACKTEST_MARGIN_S = 120  # on top of the sandbox's own wall-clock limit
RESULT_TTL_S = 7 * 24 * 3600
FAILURE_TTL_S = 30 * 24 * 3600
ON_FAILURE = Callback("infra.local.worker.on_job_failure", timeout=60)


def redis_url(settings: Settings) -> str:
    return settings.redis_url or EmbeddedRedis(settings.home).ensure_running()


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings))


def job_id_for(kind: str, *identity: str) -> str:
    """A job id from what identifies the request, e.g. Slack's team, channel and event id."""
    digest = hashlib.sha256("\0".join((kind, *identity)).encode()).hexdigest()
    return f"{kind}-{digest[:32]}"


@dataclass(frozen=True)
class Submitted:
    job: Job
    duplicate: bool  # the same request was already queued (or done): nothing new runs


def submit(
    conn: redis.Redis,
    kind: str,
    func: str,  # dotted path of the job function: the worker imports it
    *,
    job_id: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    timeout_s: int,
    retries: int = 2,
    meta: dict[str, Any] | None = None,
) -> Submitted:
    """Enqueue once. Retries are for infrastructure failures only: job functions turn an
    agent's own error into a failure event instead of raising, so it is never retried.
    A job that raises, or whose worker dies under it, is retried at once while it has
    attempts left; each such failure, and the last, is told to the user (``ON_FAILURE``)."""
    if kind not in QUEUES:
        raise ValueError(f"unknown queue {kind!r} (queues: {', '.join(QUEUES)})")
    queue = Queue(kind, connection=conn)
    try:
        job = queue.enqueue_call(
            func,
            args=tuple(args),
            kwargs=kwargs or {},
            timeout=timeout_s,
            job_id=job_id,
            unique=True,
            # no retry interval: a delayed retry would need RQ's scheduler running somewhere
            retry=Retry(max=retries) if retries else None,
            on_failure=ON_FAILURE,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            meta=meta or {},
        )
    except DuplicateJobError:
        return Submitted(Job.fetch(job_id, connection=conn), duplicate=True)
    return Submitted(job, duplicate=False)
