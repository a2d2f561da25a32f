"""The event log on Redis: each job's list, and the stream consumer groups read.

Each event is appended to the list ``tradeops:events:<job_id>`` (kept for a week), where
the front-end that asked follows its job, and to the stream ``tradeops:events`` (capped),
which the Slack bot reads as the consumer group ``slack``. Events no consumer could
deliver are parked in ``tradeops:events:parked`` until an operator puts them back.
"""

from __future__ import annotations

from typing import Any

import redis

from workers.events import Event
from workers.ports import Delivery

EVENTS_STREAM = "tradeops:events"
PARKED = "tradeops:slack:undelivered"  # the name it has always had: parked events survive
KEEP_S = 7 * 24 * 3600
STREAM_MAXLEN = 100_000


def job_key(job_id: str) -> str:
    return f"{EVENTS_STREAM}:{job_id}"


class RedisEventLog:
    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def send(self, event: Event) -> None:
        data = event.to_json()
        key = job_key(event.job_id)
        with self.conn.pipeline() as pipe:
            pipe.rpush(key, data)
            pipe.expire(key, KEEP_S)
            pipe.xadd(EVENTS_STREAM, {"event": data}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.execute()

    def events(self, job_id: str, start: int = 0) -> list[Event]:
        raw = self.conn.lrange(job_key(job_id), start, -1)
        return [Event.from_json(_text(r)) for r in raw]

    # ------------------------------------------------------------------ consumer groups
    def open_group(self, group: str) -> None:
        try:
            self.conn.xgroup_create(EVENTS_STREAM, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take(self, group: str, consumer: str, *, count: int, block_s: float) -> list[Delivery]:
        # BLOCK 0 would wait forever: the shortest wait Redis has is a millisecond
        got: Any = self.conn.xreadgroup(
            group, consumer, {EVENTS_STREAM: ">"}, count=count, block=max(1, int(block_s * 1000))
        )
        return [_delivery(key, fields) for _, entries in got or () for key, fields in entries]

    def reclaim(self, group: str, consumer: str, *, idle_s: float, count: int) -> list[Delivery]:
        # XPENDING + XCLAIM rather than XAUTOCLAIM: on Redis before 7 an entry trimmed from
        # the capped stream while pending stays pending for ever, and XAUTOCLAIM gives it
        # back without its id; here it is found (claimed, and gone from the stream) and let go
        idle_ms = int(idle_s * 1000)
        pending: Any = self.conn.xpending_range(
            EVENTS_STREAM, group, min="-", max="+", count=count, idle=idle_ms
        )
        if not pending:
            return []
        ids = [p["message_id"] for p in pending]
        claimed: Any = self.conn.xclaim(
            EVENTS_STREAM, group, consumer, min_idle_time=idle_ms, message_ids=ids, justid=True
        )
        with self.conn.pipeline(transaction=False) as pipe:
            for key in claimed:
                pipe.xrange(EVENTS_STREAM, key, key)
            found: Any = pipe.execute()
        taken = []
        for key, entries in zip(claimed, found, strict=True):
            if entries:
                taken.append(_delivery(key, entries[0][1]))
            else:  # trimmed while pending: nothing left to deliver
                self.ack(group, _text(key))
        return taken

    def ack(self, group: str, key: str) -> None:
        self.conn.xack(EVENTS_STREAM, group, key)

    def park(self, event: Event) -> None:
        self.conn.rpush(PARKED, event.to_json())

    def unpark(self) -> int:
        moved = 0
        while (raw := self.conn.lindex(PARKED, 0)) is not None:  # re-added before it is removed
            with self.conn.pipeline() as pipe:
                pipe.xadd(EVENTS_STREAM, {"event": _text(raw)}, maxlen=STREAM_MAXLEN,
                          approximate=True)  # fmt: skip
                pipe.lpop(PARKED)
                pipe.execute()
            moved += 1
        return moved


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _delivery(key: Any, fields: dict[Any, Any]) -> Delivery:
    raw = fields.get(b"event") or fields.get("event")
    try:
        event = Event.from_json(_text(raw)) if raw is not None else None
    except (ValueError, AttributeError, TypeError):  # a newer worker's kind, or junk
        event = None
    return Delivery(_text(key), event)
