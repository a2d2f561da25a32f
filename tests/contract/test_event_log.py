"""The EventLog contract: the in-memory fake and the Redis log (a real embedded Redis, one
per test) behave the same.

Idle times are real on Redis (the test sleeps) and the fake's clock on memory (the test
moves it), so each check runs against both with the same numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from infra.local.events import EVENTS_STREAM, RedisEventLog
from infra.local.redis_server import EmbeddedRedis
from tests.fakes import InMemoryEventLog
from workers import events as ev
from workers.ports import Delivery, EventLog

IDLE_S = 0.05  # how long a taken event must stay unacknowledged to be reclaimed
LONG_S = 30.0  # an idle time no test reaches
BLOCK_S = 0.01


@dataclass
class Kit:
    log: EventLog
    add_junk: Callable[[str], None]  # an entry on the log as it is, bypassing send
    wait: Callable[[float], None]  # let seconds pass, as far as idle times go


@pytest.fixture(params=["memory", "redis"])
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    if request.param == "memory":
        now = [1000.0]
        fake = InMemoryEventLog(clock=lambda: now[0])

        def tick(seconds: float) -> None:
            now[0] += seconds

        def fake_junk(text: str) -> None:
            fake.send_raw(text)

        yield Kit(fake, fake_junk, tick)
        return
    url = EmbeddedRedis(request.getfixturevalue("redis_home")).ensure_running()
    conn = redis.Redis.from_url(url, socket_timeout=10)  # a hang fails instead of waiting

    def redis_junk(text: str) -> None:
        conn.xadd(EVENTS_STREAM, {"event": text})

    try:
        yield Kit(RedisEventLog(conn), redis_junk, time.sleep)
    finally:
        conn.close()


def progress(job_id: str, done: int) -> ev.BacktestProgress:
    return ev.BacktestProgress(
        job_id=job_id, user_id="U1", reply_to={"channel": "C1", "thread_ts": "1.5"},
        run_id=f"run-{job_id}", done=done, total=10,
    )  # fmt: skip


def failed(job_id: str) -> ev.JobFailed:
    return ev.JobFailed(
        job_id=job_id, user_id="U2", reply_to={"channel": "C2"}, work="digest",
        error={"kind": "platform", "message": "store down", "hint": "try later"},
        retrying=False, attempts_left=0,
    )  # fmt: skip


def events_of(got: list[Delivery]) -> list[ev.Event | None]:
    return [d.event for d in got]


def take(log: EventLog, group: str = "g", count: int = 100) -> list[Delivery]:
    return log.take(group, "c1", count=count, block_s=BLOCK_S)


# ------------------------------------------------------------------ each job's list
def test_a_jobs_events_come_back_in_order_from_start(kit: Kit) -> None:
    a1, b1, a2, a3 = progress("a", 1), failed("b"), progress("a", 2), failed("a")
    for e in (a1, b1, a2, a3):
        kit.log.send(e)
    assert kit.log.events("a") == [a1, a2, a3]  # the same events back, fields and all
    assert kit.log.events("a", 1) == [a2, a3]
    assert kit.log.events("a", 2) == [a3]
    assert kit.log.events("a", 3) == []
    assert kit.log.events("b") == [b1]
    assert kit.log.events("nobody") == []


# ------------------------------------------------------------------ consumer groups
def test_a_group_sees_events_sent_before_it_was_opened(kit: Kit) -> None:
    early = [progress("a", 1), failed("b")]
    for e in early:
        kit.log.send(e)
    kit.log.open_group("g")
    late = progress("a", 2)
    kit.log.send(late)
    assert events_of(take(kit.log)) == [*early, late]


def test_each_group_gets_every_event_once(kit: Kit) -> None:
    kit.log.open_group("g1")
    kit.log.open_group("g2")
    sent = [progress("a", 1), failed("b"), progress("a", 2)]
    for e in sent:
        kit.log.send(e)
    first = take(kit.log, "g1")
    assert events_of(first) == sent
    keys = [d.key for d in first]
    assert all(isinstance(k, str) for k in keys)
    assert len(set(keys)) == 3 and keys == sorted(keys)
    assert take(kit.log, "g1") == []  # taken once, even though none was acknowledged
    second = take(kit.log, "g2")
    assert events_of(second) == sent and [d.key for d in second] == keys
    assert take(kit.log, "g2") == []
    newer = failed("c")
    kit.log.send(newer)
    assert events_of(take(kit.log, "g1")) == [newer]
    assert events_of(take(kit.log, "g2")) == [newer]


def test_take_gives_at_most_count_in_order(kit: Kit) -> None:
    kit.log.open_group("g")
    sent = [progress("a", n) for n in range(5)]
    for e in sent:
        kit.log.send(e)
    assert events_of(take(kit.log, count=2)) == sent[:2]
    assert events_of(take(kit.log, count=2)) == sent[2:4]
    assert events_of(take(kit.log, count=2)) == sent[4:]
    assert take(kit.log, count=2) == []


def test_opening_a_group_again_changes_nothing(kit: Kit) -> None:
    kit.log.open_group("g")
    first, second = progress("a", 1), progress("a", 2)
    kit.log.send(first)
    kit.log.send(second)
    assert events_of(take(kit.log, count=1)) == [first]
    kit.log.open_group("g")  # a restarted consumer opens its group again
    assert events_of(take(kit.log)) == [second]  # not back to the log's start
    kit.wait(2 * IDLE_S)
    reclaimed = kit.log.reclaim("g", "c1", idle_s=IDLE_S, count=10)
    assert events_of(reclaimed) == [first, second]  # and still pending


# ------------------------------------------------------------------ pending and reclaim
def test_unacknowledged_events_are_reclaimed_after_idle_and_not_before(kit: Kit) -> None:
    kit.log.open_group("g")
    kit.log.open_group("other")
    acked, unacked = progress("a", 1), failed("b")
    kit.log.send(acked)
    kit.log.send(unacked)
    got = take(kit.log)
    assert events_of(got) == [acked, unacked]
    kit.log.ack("g", got[0].key)
    assert kit.log.reclaim("g", "c2", idle_s=LONG_S, count=10) == []  # not idle long enough
    kit.wait(2 * IDLE_S)
    assert kit.log.reclaim("g", "c2", idle_s=LONG_S, count=10) == []
    assert kit.log.reclaim("other", "c2", idle_s=IDLE_S, count=10) == []  # it took nothing
    back = kit.log.reclaim("g", "c2", idle_s=IDLE_S, count=10)
    assert back == [Delivery(got[1].key, unacked)]  # the same entry, and only the unacked one
    assert kit.log.reclaim("g", "c1", idle_s=LONG_S, count=10) == []  # reclaiming restarts idle
    kit.wait(2 * IDLE_S)
    again = kit.log.reclaim("g", "c1", idle_s=IDLE_S, count=10)
    assert again == back  # still unacknowledged: it comes back again
    kit.log.ack("g", again[0].key)
    kit.wait(2 * IDLE_S)
    assert kit.log.reclaim("g", "c1", idle_s=IDLE_S, count=10) == []  # acked: never again
    assert take(kit.log) == []  # nor as new
    assert events_of(take(kit.log, "other")) == [acked, unacked]  # other groups unaffected


def test_reclaim_gives_at_most_count_oldest_first(kit: Kit) -> None:
    kit.log.open_group("g")
    sent = [progress("a", n) for n in range(3)]
    for e in sent:
        kit.log.send(e)
    take(kit.log)
    kit.wait(2 * IDLE_S)
    assert events_of(kit.log.reclaim("g", "c2", idle_s=IDLE_S, count=2)) == sent[:2]
    assert events_of(kit.log.reclaim("g", "c2", idle_s=IDLE_S, count=2)) == sent[2:]
    assert kit.log.reclaim("g", "c2", idle_s=IDLE_S, count=2) == []


# ------------------------------------------------------------------ parking
def test_a_parked_event_is_delivered_again_after_unpark(kit: Kit) -> None:
    kit.log.open_group("g")
    stuck, other = failed("a"), progress("b", 1)
    kit.log.send(stuck)
    [got] = take(kit.log)
    kit.log.park(stuck)  # what the bot does when it gives up on a delivery
    kit.log.ack("g", got.key)
    kit.log.park(other)
    assert kit.log.unpark() == 2
    back = take(kit.log)
    assert events_of(back) == [stuck, other]  # new entries for the group, in parking order
    assert all(d.key > got.key for d in back)  # after what the log held
    assert kit.log.unpark() == 0  # nothing is left parked
    assert take(kit.log) == []
    assert kit.log.events("a") == [stuck]  # the job's own list is not repeated


def test_unpark_with_nothing_parked(kit: Kit) -> None:
    kit.log.open_group("g")
    assert kit.log.unpark() == 0
    assert take(kit.log) == []


# ------------------------------------------------------------------ unreadable entries
def test_an_entry_that_cannot_be_read_is_delivered_as_none(kit: Kit) -> None:
    kit.log.open_group("g")
    kit.add_junk("not json")
    kit.add_junk(json.dumps({"kind": "from_a_newer_worker", "job_id": "x"}))
    kit.add_junk(json.dumps({"kind": "job_failed", "job_id": "x"}))  # fields missing
    kit.add_junk("[1, 2]")
    good = failed("a")
    kit.log.send(good)
    got = take(kit.log)
    assert events_of(got) == [None, None, None, None, good]
    assert len({d.key for d in got}) == 5
    kit.log.ack("g", got[0].key)  # junk is acknowledged like any entry
    kit.wait(2 * IDLE_S)
    back = kit.log.reclaim("g", "c2", idle_s=IDLE_S, count=10)
    assert back == got[1:]  # and unacknowledged junk comes back, still unreadable


def test_take_with_no_wait_returns_at_once(kit: Kit) -> None:
    kit.log.open_group("g")
    began = time.monotonic()
    assert kit.log.take("g", "c1", count=10, block_s=0) == []  # Redis' BLOCK 0 is for ever
    assert time.monotonic() - began < 5


def test_an_entry_trimmed_while_pending_does_not_block_reclaim(redis_home: object) -> None:
    """Redis before 7 keeps a deleted entry pending for ever: the log lets it go, so the
    entries behind it are still reclaimed (the stream is capped, so old entries go)."""
    url = EmbeddedRedis(redis_home).ensure_running()  # type: ignore[arg-type]
    conn = redis.Redis.from_url(url, socket_timeout=10)
    log = RedisEventLog(conn)
    log.open_group("g")
    sent = [progress("a", n) for n in range(3)]
    for e in sent:
        log.send(e)
    got = take(log)
    conn.xdel(EVENTS_STREAM, got[0].key, got[1].key)
    time.sleep(2 * IDLE_S)
    assert log.reclaim("g", "c2", idle_s=IDLE_S, count=2) == []  # the two trimmed, let go
    assert events_of(log.reclaim("g", "c2", idle_s=IDLE_S, count=2)) == [sent[2]]
    conn.close()
