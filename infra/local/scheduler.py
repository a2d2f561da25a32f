"""The scheduled digests: RQ's cron scheduler, enqueueing ``workers.control.digest`` jobs.

RQ's own scheduler is used as it is (DESIGN.md section 9: no home-made scheduler), with
two changes in :class:`DigestCronJob`:

- RQ reads cron fields in the machine's time zone; TRADEOPS_DIGESTS times are UTC, so
  next times are computed in UTC whatever the host's ``TZ`` is.
- RQ enqueues each run under a random job id with fixed keyword arguments; a digest is
  enqueued through :func:`infra.local.queue.submit` instead, under an id made of its
  channel and its scheduled minute. A second scheduler (another host, a restart within the
  minute) then finds the job already there and nothing is posted twice, and the digest
  gets the retries and failure events every other job has.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime

import redis
from croniter import croniter
from rq import cron_job_registry
from rq.cron import CronJob, CronScheduler
from rq.job import Job
from rq.utils import now

from infra.local.queue import connect, submit
from infra.settings import Settings
from workers.control import digest
from workers.ports import job_id_for

DIGEST_QUEUE = "digest"
DIGEST_TIMEOUT_S = 300
HISTORY_TTL_S = 30 * 24 * 3600  # how long a digest's cron history lists the jobs it made


class DigestCronJob(CronJob):
    """One channel's daily digest at a UTC time."""

    def __init__(self, *, channel: str, at: str) -> None:
        hour, minute = (int(part) for part in at.split(":"))
        self.channel = channel
        super().__init__(
            queue_name=DIGEST_QUEUE,
            func=digest,
            kwargs={"channel": channel, "reply_to": {"channel": channel}},
            cron=f"{minute} {hour} * * *",
            job_timeout=DIGEST_TIMEOUT_S,
            name=f"digest:{channel}@{at}",
        )

    def get_next_enqueue_time(self) -> datetime:
        """The first time after the last enqueue (or now) that the cron fields match in UTC."""
        base = (self.latest_enqueue_time or now()).astimezone(UTC)
        found: datetime = croniter(self.cron, base).get_next(datetime)
        return found.astimezone(UTC)

    def slot_job_id(self) -> str:
        """The job id of the run due now: the same for every scheduler that enqueues it."""
        slot = (self.next_enqueue_time or now()).astimezone(UTC)
        return job_id_for("digest", self.channel, slot.strftime("%Y-%m-%dT%H:%MZ"))

    def enqueue(self, connection: redis.Redis) -> Job:
        job_id = self.slot_job_id()
        submitted = submit(
            connection,
            self.queue_name,
            self.func_name,
            job_id=job_id,
            kwargs={**self.kwargs, "job_id": job_id},
            timeout_s=DIGEST_TIMEOUT_S,
        )
        with connection.pipeline() as pipe:  # the history RQ's own cron jobs keep
            pipe.zadd(self.job_history_key, {job_id: time.time()})
            pipe.expire(self.job_history_key, HISTORY_TTL_S)
            cron_job_registry.add(self.name, pipe)
            pipe.execute()
        said = "already enqueued by another scheduler" if submitted.duplicate else "enqueued"
        print(f"tradeops scheduler: digest for {self.channel} {said} ({job_id})",
              file=sys.stderr, flush=True)  # fmt: skip
        return submitted.job


class DigestScheduler(CronScheduler):
    def add(self, job: CronJob) -> CronJob:
        """Register an already built cron job (``register`` can only build RQ's own)."""
        self._cron_jobs.append(job)
        return job


def build_scheduler(settings: Settings, conn: redis.Redis) -> CronScheduler:
    """A cron scheduler with one job per configured digest (none: a scheduler with no jobs)."""
    scheduler = DigestScheduler(conn, logging_level=logging.WARNING)
    for channel, at in settings.digests:
        scheduler.add(DigestCronJob(channel=channel, at=at))
    return scheduler


def run_scheduler(settings: Settings) -> int:
    """``tradeops scheduler``: enqueue the configured digests on time until SIGTERM/SIGINT."""
    if not settings.digests:
        # Stay up, idle: process managers (honcho, foreman) stop every process of a
        # Procfile when one of them exits.
        print(
            "tradeops scheduler: no digests configured; set TRADEOPS_DIGESTS "
            "(e.g. C0123ABCD@09:00: a channel id and a UTC time) and start it again",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_stop()
        return 0
    scheduler = build_scheduler(settings, connect(settings))
    plan = ", ".join(f"{channel} at {at} UTC" for channel, at in settings.digests)
    print(f"tradeops scheduler: digests for {plan}", file=sys.stderr, flush=True)
    scheduler.start()
    return 0


def _wait_for_stop() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
