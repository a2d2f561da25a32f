"""The RQ worker that runs tradeops jobs, and what happens when a job is lost.

``Worker`` is RQ's ``SimpleWorker`` (jobs run in the worker's own process, so the sandbox
it keeps warm between jobs survives) plus a heartbeat thread while a job runs. RQ's own
forking worker sends heartbeats from its parent while the work-horse runs; a plain
``SimpleWorker`` sends none, so the execution of a job whose worker was SIGKILLed would
look alive until the job's whole timeout (20 minutes for a backtest) had passed. Here a
busy worker renews its execution every ``heartbeat_s`` with a time-to-live of about four
beats; when they stop, the next maintenance pass of any worker on the queue (or of a
front-end following the job) finds the execution expired, and RQ treats the job as
abandoned: ``on_job_failure`` runs, and the job is retried if it has attempts left.

Job functions take their adapters as their first argument (``workers.jobs.Services``):
the worker is made with them and hands them to each job (:class:`ServicesJob`), so nothing
is read from a module global.

``on_job_failure`` is every job's failure callback. It turns an infrastructure failure
(an abandoned job, an exception escaping a job function) into an event for the user,
through the application's own ``workers.jobs.job_failed``. RQ calls it with the job alone;
the services it needs are those of the worker running the job, or of whoever is sweeping
the queue's registries (:func:`sweeping`), who may find a job lost by a dead worker.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
from rq import SimpleWorker
from rq.exceptions import AbandonedJobError, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

if TYPE_CHECKING:
    from workers.jobs import Services

log = logging.getLogger(__name__)

# the services of whoever may run a job's failure callback in this context
_SWEEPER: ContextVar[Services | None] = ContextVar("tradeops_sweeper", default=None)


@contextmanager
def sweeping(services: Services) -> Iterator[None]:
    """Failure callbacks run while sweeping (a lost job found) tell users through these."""
    token = _SWEEPER.set(services)
    try:
        yield
    finally:
        _SWEEPER.reset(token)


class ServicesJob(Job):
    """A job whose function is called with the worker's services first."""

    services: Services | None = None

    def _execute(self) -> Any:
        if self.services is None:
            raise RuntimeError(f"job {self.id}: no services to run it with")
        return self.func(self.services, *self.args, **self.kwargs)


class Worker(SimpleWorker):
    def __init__(
        self, *args: Any, services: Services, heartbeat_s: float = 5.0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("job_class", ServicesJob)
        # Maintenance (which finds lost jobs) runs every few beats, and an idle worker
        # wakes from its blocking dequeue that often to do it (RQ waits worker_ttl - 15 s).
        maintenance = max(1, round(3 * heartbeat_s))
        kwargs.setdefault("maintenance_interval", maintenance)
        kwargs.setdefault("worker_ttl", maintenance + 15)
        super().__init__(*args, **kwargs)
        self.heartbeat_s = heartbeat_s
        self.services = services

    def work(self, *args: Any, **kwargs: Any) -> bool:
        with sweeping(self.services):  # its maintenance finds lost jobs
            return bool(super().work(*args, **kwargs))

    # A stop asked of an idle worker: RQ raises StopRequested from the signal handler, and
    # when the signal lands inside a broad ``except Exception`` (its maintenance, a failure
    # callback) the exception is swallowed; RQ's dequeue loop then waits on the queues again
    # and again without looking, and the worker ignores the SIGTERM. The request is kept as a
    # flag, and the dequeue loop's heartbeat (each BLPOP timeout, 15 s at most) ends it.
    def request_stop(self, signum: Any, frame: Any) -> None:
        self._stop_requested = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if self._stop_requested and self.get_state() != WorkerStatus.BUSY:
            raise StopRequested
        super().heartbeat(timeout, pipeline)

    @property
    def execution_ttl(self) -> int:
        """Seconds an execution stays alive without a heartbeat."""
        return max(2, math.ceil(4 * self.heartbeat_s))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.execution_ttl

    def execute_job(self, job: Job, queue: Queue) -> None:
        if isinstance(job, ServicesJob):
            job.services = self.services
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beats = threading.Thread(
            target=self._beat, args=(job, execution, stop), name="rq-heartbeat", daemon=True
        )
        beats.start()
        began = time.monotonic()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beats.join()
        self.set_state(WorkerStatus.IDLE)
        print(job_line(job, time.monotonic() - began), file=sys.stderr, flush=True)

    def _beat(self, job: Job, execution: Execution, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError as exc:  # Redis away for a moment: try on the next beat
                log.warning("worker %s: heartbeat for job %s failed: %s", self.name, job.id, exc)


def job_line(job: Job, seconds: float) -> str:
    """One line per job for the operator: what ran, for which agent, how it ended, how long."""
    kwargs = job.kwargs or {}
    work = (job.func_name or "?").rsplit(".", 1)[-1]
    who = kwargs.get("agent") or kwargs.get("name") or kwargs.get("channel") or "-"
    try:
        result = job.return_value()
    except Exception:  # an old or unreadable result: the status says enough
        result = None
    if result is not None and hasattr(result, "kind"):
        error = getattr(result, "error", None)
        outcome = result.kind + (f" ({error.get('kind')})" if isinstance(error, dict) else "")
    else:
        outcome = str(job.get_status(refresh=True) or "?")
    run = kwargs.get("run_id") or job.id
    return f"tradeops worker: {work} {who} {run}: {outcome} in {seconds:.2f} s"


def on_job_failure(
    job: Job,
    connection: redis.Redis,
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """RQ failure callback: tell the user, in one line and without any traceback.

    RQ calls it before it decides on a retry: a :class:`NeedsOperator` failure (a damaged
    store, a wrong setting) is not retried, and the operator's log says what it was."""
    from workers import jobs
    from workers.ports import NeedsOperator

    services = getattr(job, "services", None) or _SWEEPER.get()

    hint = None
    if exc_type is AbandonedJobError or isinstance(exc_value, AbandonedJobError):
        reason = "the worker running this job stopped unexpectedly"
    elif isinstance(exc_value, NeedsOperator):
        job.retries_left = 0  # the same failure again; an operator must act first
        reason = "tradeops needs an operator to fix its storage or settings before this can run"
        hint = "Nothing in your agent causes this: an operator has been told."
        print(f"tradeops worker: job {job.id} needs an operator: "
              f"{type(exc_value).__name__}: {exc_value}", file=sys.stderr, flush=True)  # fmt: skip
    else:
        name = exc_type.__name__ if exc_type else "unknown error"
        reason = f"a platform error interrupted this job ({name})"
    kwargs: dict[str, Any] = dict(job.kwargs or {})
    if services is None:  # swept by something that cannot tell users: say it here
        print(f"tradeops: job {job.id} failed and nobody could be told: {reason}",
              file=sys.stderr, flush=True)  # fmt: skip
        return
    jobs.job_failed(
        services,
        work=(job.func_name or "").rsplit(".", 1)[-1],
        kwargs=kwargs,
        reason=reason,
        attempts_left=int(job.retries_left or 0),
        hint=hint,
    )
