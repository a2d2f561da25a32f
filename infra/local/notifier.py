"""Events kept in Redis, where the front-end that asked reads them.

Each event is appended to the list ``tradeops:events:<job_id>`` (kept for a week) and
to the stream ``tradeops:events`` (capped) that digests and dashboards read. The command
line waits on a job's list; the Slack front-end will deliver from the same place.
"""

from __future__ import annotations

import redis

from workers.events import Event

EVENTS_STREAM = "tradeops:events"
KEEP_S = 7 * 24 * 3600
STREAM_MAXLEN = 100_000


def job_key(job_id: str) -> str:
    return f"{EVENTS_STREAM}:{job_id}"


class RedisNotifier:
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
        return [Event.from_json(r.decode() if isinstance(r, bytes) else r) for r in raw]
