"""Events into Slack threads: the bot's delivery loop.

Workers never talk to Slack. Each event they send goes into the event log (the port
``workers.ports.EventLog``; a Redis stream here); the bot reads it as a consumer group
(``slack``), posts each event that has a Slack address into its thread, and acknowledges it
only once posted. An event that could not be posted (Slack down, a rate limit that outlasted
the client's retries) stays pending and is claimed again and retried; a result is stored
before its event is sent, so nothing is lost while Slack is away. After ``MAX_ATTEMPTS`` an
event is parked and logged (``tradeops bot --redeliver`` puts parked events back).

What the bot remembers of its posts (the message showing a job's progress, which steps of
an event were done) is kept in the queue's Redis, for a week.

One job's progress is one message, updated in place (``chat.update``): the first of
queued / progress creates it, the final event turns it into a one-line outcome, then the
result itself is posted below it and, for a backtest, its chart uploaded into the thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import render
from bot.desk import Desk
from workers import events as ev
from workers.ports import Delivery

log = logging.getLogger(__name__)

GROUP = "slack"
MAX_ATTEMPTS = 8
KEEP_S = 7 * 24 * 3600


class Deliverer:
    def __init__(self, client: WebClient, desk: Desk, *, retry_s: float = 10.0) -> None:
        self.retry_s = retry_s
        self.events = desk.ports.events
        self.conn: redis.Redis = desk.conn  # the bot's memory of what it posted
        self.client = client
        self.desk = desk
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.delivered = 0
        self.failed = 0
        self.alive = False

    # ------------------------------------------------------------------ the loop
    def ensure_group(self) -> None:
        # from the log's start: what workers sent before the bot's first start (a scheduled
        # digest, a backtest's result) is delivered too
        self.events.open_group(GROUP)

    def run(self, stop: threading.Event) -> None:
        self.ensure_group()
        self.alive = True
        next_retry = time.monotonic() + self.retry_s
        try:
            while not stop.is_set():
                try:
                    for taken in self.events.take(GROUP, self.consumer, count=20, block_s=0.5):
                        self.handle(taken)
                    if time.monotonic() >= next_retry:
                        next_retry = time.monotonic() + self.retry_s
                        self.retry_pending()
                except redis.RedisError as exc:  # Redis restarting: wait, then go on
                    log.warning("delivery: Redis: %s", exc)
                    stop.wait(1.0)
        finally:
            self.alive = False

    def retry_pending(self) -> None:
        """Claim events left pending (a failed post, or a bot that died) and try again."""
        for taken in self.events.reclaim(GROUP, self.consumer, idle_s=self.retry_s, count=50):
            self.handle(taken)

    def handle(self, taken: Delivery) -> None:
        key, event = taken.key, taken.event
        if event is None:  # unknown kind (a newer worker) or junk
            self.events.ack(GROUP, key)
            return
        try:
            self.deliver(event, key)
        except (SlackApiError, OSError) as exc:
            self.failed += 1
            attempts = int(self.conn.hincrby("tradeops:slack:attempts", key, 1))
            reason = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
            log.warning(
                "delivery of %s (%s) failed, attempt %d: %s", key, event.kind, attempts, reason
            )
            if attempts < MAX_ATTEMPTS and _retryable(exc):
                return  # stays pending: retried later
            self.events.park(event)
            log.error("delivery of %s (%s) given up after %d attempt(s)", key, event.kind, attempts)
        except Exception:  # a rendering fault or a field no renderer expected: never fatal
            self.failed += 1
            log.exception("delivery of %s (%s) failed; the event is parked", key, event.kind)
            self.events.park(event)
            self._say_unshowable(event, key)
        self.events.ack(GROUP, key)
        self.conn.hdel("tradeops:slack:attempts", key)

    def _say_unshowable(self, event: ev.Event, key: str) -> None:
        where = event.reply_to
        if not where.get("channel"):
            return
        try:
            message = render.render_unshowable(event)
            self._once(key, "unshowable", lambda: self._post(where, message))
        except Exception:  # Slack down as well: the parked event is the record
            log.exception("could not tell the thread of %s that it was not shown", key)

    # ------------------------------------------------------------------ one event
    def deliver(self, event: ev.Event, key: str = "") -> None:
        where = event.reply_to
        if not where.get("channel"):
            return  # not a Slack job (the console's, the command line's)
        self.delivered += 1
        ended = f"tradeops:slack:ended:{event.job_id}"
        if isinstance(event, ev.BacktestQueued | ev.BacktestProgress | ev.SweepProgress):
            if not self.conn.exists(ended):  # a late retry must not reopen a finished job
                self._status(event, render.render_event(event))
            return
        if event.final:
            self.conn.set(ended, 1, ex=KEEP_S)
            if self._status_ts(event.job_id):
                self._status(event, render.render_outcome(event))
        if isinstance(event, ev.BacktestFinished):
            self._once(key, "result", lambda: self._post(where, self._result(event)))
            self._once(key, "chart", lambda: self._chart(event))
            return
        if isinstance(event, ev.SweepFinished):
            message = render.render_event(event)
            if message is not None:
                self._once(key, "post", lambda: self._post(where, message))
            self._once(key, "heatmap", lambda: self._heatmap(event))
            return
        message = render.render_event(event)
        if message is None:
            return
        if isinstance(event, ev.PaperHealth) and isinstance(event.health.get("streak"), int):
            self._streak(event, message)
            return
        self._once(key, "post", lambda: self._post(where, message))

    def _streak(self, event: ev.PaperHealth, message: dict[str, Any]) -> None:
        """A session's crashes in a row are one message, updated at each crash; news of an
        earlier crash arriving late (a retried delivery) does not overwrite a later one."""
        where = event.reply_to
        slot = f"tradeops:slack:streak:{event.job_id}:{event.health['streak']}"
        count = event.health.get("in_a_row")
        n = int(count) if isinstance(count, int | float) else 0
        known: Any = self.conn.hgetall(slot)
        ts = (known.get(b"ts") or b"").decode()
        if ts and n <= int(known.get(b"n") or 0):
            return
        if ts:
            self.client.chat_update(channel=where["channel"], ts=ts, **message)
        else:
            posted = self.client.chat_postMessage(
                channel=where["channel"], thread_ts=where.get("thread_ts"), **message
            )
            ts = str(posted["ts"])
        self.conn.hset(slot, mapping={"ts": ts, "n": n})
        self.conn.expire(slot, KEEP_S)

    def _result(self, event: ev.BacktestFinished) -> dict[str, Any]:
        rows = None
        try:
            # read on behalf of whoever ran it (the bot's own desk is nobody's)
            rows = self.desk.with_user(event.user_id).fmel(event.run_id, last=8).rows
        except Exception as exc:  # the record is an extra: the metrics go out regardless
            log.info("no FMEL rows for %s: %s", event.run_id, exc)
        return render.render_result(event.result, fmel_rows=rows)

    def _chart(self, event: ev.BacktestFinished) -> None:
        title = f"Equity and drawdown · {event.result.get('agent_id')} · {event.run_id}"
        self._upload(event, event.result.get("chart_artifact"), f"{event.run_id}.png", title)

    def _heatmap(self, event: ev.SweepFinished) -> None:
        title = f"Sweep heatmap · {event.result.get('agent_id')} · {event.sweep_id}"
        self._upload(event, event.result.get("heatmap_artifact"), f"{event.sweep_id}.png", title)

    def _upload(self, event: ev.Event, sha: Any, filename: str, title: str) -> None:
        """A PNG of the artifact store into the event's thread (nothing when it is gone)."""
        if not sha:
            return
        try:
            png = self.desk.artifacts().get(str(sha))
        except KeyError:
            return
        where = event.reply_to
        self.client.files_upload_v2(channel=where["channel"], thread_ts=where.get("thread_ts"),
                                    content=png, filename=filename, title=title)  # fmt: skip

    def _post(self, where: dict[str, str], message: dict[str, Any]) -> None:
        self.client.chat_postMessage(
            channel=where["channel"],
            thread_ts=where.get("thread_ts"),
            unfurl_links=False,
            **message,
        )

    def _status(self, event: ev.Event, message: dict[str, Any] | None) -> None:
        """The job's one status message: created once, then updated in place."""
        if message is None:
            return
        where = event.reply_to
        ts = self._status_ts(event.job_id)
        if ts:
            self.client.chat_update(channel=where["channel"], ts=ts, **message)
            return
        posted = self.client.chat_postMessage(
            channel=where["channel"], thread_ts=where.get("thread_ts"), **message
        )
        self.conn.set(f"tradeops:slack:status:{event.job_id}", str(posted["ts"]), ex=KEEP_S)

    def _status_ts(self, job_id: str) -> str | None:
        ts = self.conn.get(f"tradeops:slack:status:{job_id}")
        return ts.decode() if isinstance(ts, bytes) else ts

    def _once(self, key: str, step: str, do: Any) -> None:
        """A step of an event's delivery, done once even when the event is retried."""
        mark = f"tradeops:slack:done:{key}:{step}"
        if key and self.conn.exists(mark):
            return
        do()
        if key:
            self.conn.set(mark, 1, ex=KEEP_S)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, SlackApiError):
        # a wrong channel or a missing scope will not fix itself; rate limits and 5xx might
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return True
