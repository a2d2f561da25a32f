"""The job queue: RQ on Redis (``REDIS_URL``, else the embedded Redis of this home).

One queue per kind of work, so a slow backtest never holds up a validation and workers
can be pointed at the kinds they should take. Job ids are derived from the request (a
retried chat event or a double click gives the same id), and enqueueing is atomic and
unique: a duplicate finds the job already there and runs nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Dependency, Job

from infra.local.redis_server import EmbeddedRedis
from infra.settings import Settings
from workers.ports import QUEUES, JobState
from workers.ports import Submitted as Taken

if TYPE_CHECKING:
    from workers.jobs import Services

VALIDATE_TIMEOUT_S = 60
BACKTEST_MARGIN_S = 120  # on top of the sandbox's own wall-clock limit
RESULT_TTL_S = 7 * 24 * 3600
FAILURE_TTL_S = 30 * 24 * 3600
ON_FAILURE = Callback("infra.local.worker.on_job_failure", timeout=60)


def redis_url(settings: Settings) -> str:
    return settings.redis_url or EmbeddedRedis(settings.home).ensure_running()


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings))


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
    depends_on: Sequence[str] = (),
) -> Submitted:
    """Enqueue once. Retries are for infrastructure failures only: job functions turn an
    agent's own error into a failure event instead of raising, so it is never retried.
    A job that raises, or whose worker dies under it, is retried at once while it has
    attempts left; each such failure, and the last, is told to the user (``ON_FAILURE``).

    With ``depends_on`` (job ids) the job waits until each of those has ended, finished or
    failed for good (a sweep's collector waits for its combinations)."""
    if kind not in QUEUES:
        raise ValueError(f"unknown queue {kind!r} (queues: {', '.join(QUEUES)})")
    queue = Queue(kind, connection=conn)
    if depends_on and Job.exists(job_id, connection=conn):  # RQ's `unique` refuses dependencies
        return Submitted(Job.fetch(job_id, connection=conn), duplicate=True)
    try:
        job = queue.enqueue_call(
            func,
            args=tuple(args),
            kwargs=kwargs or {},
            timeout=timeout_s,
            job_id=job_id,
            unique=not depends_on,
            # no retry interval: a delayed retry would need RQ's scheduler running somewhere
            retry=Retry(max=retries) if retries else None,
            on_failure=ON_FAILURE,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            meta=meta or {},
            depends_on=(
                Dependency(jobs=list(depends_on), allow_failure=True) if depends_on else None
            ),
        )
    except DuplicateJobError:
        return Submitted(Job.fetch(job_id, connection=conn), duplicate=True)
    return Submitted(job, duplicate=False)


_STATES = {
    "queued": JobState.QUEUED, "deferred": JobState.QUEUED, "scheduled": JobState.QUEUED,
    "started": JobState.STARTED, "finished": JobState.FINISHED, "failed": JobState.FAILED,
    "stopped": JobState.FAILED, "canceled": JobState.FAILED,
}  # fmt: skip


class RedisWorkQueue:
    """The work queue port on RQ. ``services`` (made on first need) are what a sweep hands
    the failure callback of a job it finds lost, so its owner is told."""

    names: tuple[str, ...] = QUEUES

    def __init__(
        self,
        settings: Settings,
        connect_to: Callable[[], redis.Redis],
        services: Callable[[], Services],
    ) -> None:
        self.settings = settings
        self._connect = connect_to
        self._services = services

    @property
    def conn(self) -> redis.Redis:
        return self._connect()

    def reachable(self) -> bool:
        if self.settings.redis_url:
            return True
        return EmbeddedRedis(self.settings.home).running()

    def submit(
        self,
        queue: str,
        func: str,
        *,
        job_id: str,
        kwargs: dict[str, Any],
        timeout_s: int,
        depends_on: Sequence[str] = (),
    ) -> Taken:
        done = submit(self.conn, queue, func, job_id=job_id, kwargs=kwargs, timeout_s=timeout_s,
                      depends_on=depends_on)  # fmt: skip
        return Taken(job_id, done.duplicate, dict(done.job.kwargs or kwargs))

    def depth(self, queue: str) -> int:
        return int(Queue(queue, connection=self.conn).count)

    def workers(self, queue: str) -> int:
        from rq import Worker

        if not self.reachable():
            return 0
        return len(Worker.all(queue=Queue(queue, connection=self.conn)))

    def state(self, job_id: str) -> JobState:
        from rq.exceptions import NoSuchJobError

        try:
            status = Job.fetch(job_id, connection=self.conn).get_status(refresh=False)
        except NoSuchJobError:
            return JobState.GONE
        return _STATES.get(str(getattr(status, "value", status)), JobState.GONE)

    def sweep(self, queue: str) -> None:
        from rq.registry import StartedJobRegistry

        from infra.local.worker import sweeping

        with sweeping(self._services()):
            StartedJobRegistry(queue, connection=self.conn).cleanup()
