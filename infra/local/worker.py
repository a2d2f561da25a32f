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

``on_job_failure`` is every job's failure callback. It turns an infrastructure failure
(an abandoned job, an exception escaping a job function) into an event for the user,
through the application's own ``workers.jobs.job_failed``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from types import TracebackType
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

log = logging.getLogger(__name__)


class Worker(SimpleWorker):
    def __init__(self, *args: Any, heartbeat_s: float = 5.0, **kwargs: Any) -> None:
        # Maintenance (which finds lost jobs) runs every few beats, and an idle worker
        # wakes from its blocking dequeue that often to do it (RQ waits worker_ttl - 15 s).
        maintenance = max(1, round(3 * heartbeat_s))
        kwargs.setdefault("maintenance_interval", maintenance)
        kwargs.setdefault("worker_ttl", maintenance + 15)
        super().__init__(*args, **kwargs)
        self.heartbeat_s = heartbeat_s

    @property
    def execution_ttl(self) -> int:
        """Seconds an execution stays alive without a heartbeat."""
        return max(2, math.ceil(4 * self.heartbeat_s))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.execution_ttl

    def execute_job(self, job: Job, queue: Queue) -> None:
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
    _ensure_configured(connection)
    kwargs: dict[str, Any] = dict(job.kwargs or {})
    jobs.job_failed(
        work=(job.func_name or "").rsplit(".", 1)[-1],
        kwargs=kwargs,
        reason=reason,
        attempts_left=int(job.retries_left or 0),
        hint=hint,
    )


def _ensure_configured(connection: redis.Redis) -> None:
    """Registry cleanup may run this callback outside a worker (a front-end counting a
    registry triggers it): build the job services from the environment there."""
    from workers import jobs

    try:
        jobs.services()
        return
    except RuntimeError:
        pass
    from infra.bootstrap import build_services
    from infra.local.notifier import RedisNotifier
    from infra.settings import Settings

    jobs.configure(build_services(Settings.from_env(), RedisNotifier(connection)))
