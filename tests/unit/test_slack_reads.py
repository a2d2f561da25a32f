"""`answer_soon`: a quick read is the acknowledgement; a slow one is acknowledged with a line
saying so and answered later through ``respond``; a read that fails says so in one line."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bot.slack_app import answer_soon


class Said:
    def __init__(self) -> None:
        self.acks: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.responded = threading.Event()

    def ack(self, **kw: Any) -> None:
        self.acks.append(kw)

    def respond(self, **kw: Any) -> None:
        self.responses.append(kw)
        self.responded.set()


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=2) as p:
        yield p


def test_a_quick_read_is_the_acknowledgement(pool: ThreadPoolExecutor) -> None:
    said = Said()
    answer_soon(said.ack, said.respond, lambda: {"text": "3 agents"}, pool=pool,
                wait_s=5, pending="reading")  # fmt: skip
    assert said.acks == [{"text": "3 agents"}] and said.responses == []


def test_a_slow_read_is_acknowledged_then_answered(pool: ThreadPoolExecutor) -> None:
    said, release = Said(), threading.Event()

    def slow() -> dict[str, Any]:
        release.wait(10)
        return {"text": "chain intact"}

    answer_soon(said.ack, said.respond, slow, pool=pool, wait_s=0.05, pending="verifying")
    assert said.acks == [{"text": "⏳ verifying"}] and said.responses == []
    release.set()
    assert said.responded.wait(10)
    assert said.responses == [
        {"text": "chain intact", "response_type": "ephemeral", "replace_original": False}
    ]


def test_no_wait_always_answers_later(pool: ThreadPoolExecutor) -> None:
    said = Said()
    answer_soon(said.ack, said.respond, lambda: {"text": "done"}, pool=pool, wait_s=0,
                pending="verifying")  # fmt: skip
    assert said.acks == [{"text": "⏳ verifying"}]
    assert said.responded.wait(10) and said.responses[0]["text"] == "done"


@pytest.mark.parametrize("wait_s", [5.0, 0.0])
def test_a_failed_read_is_one_line(pool: ThreadPoolExecutor, wait_s: float) -> None:
    said = Said()

    def broken() -> dict[str, Any]:
        raise RuntimeError("Traceback: secret-ish internals")

    answer_soon(said.ack, said.respond, broken, pool=pool, wait_s=wait_s, pending="reading")
    if wait_s:
        [message] = said.acks
    else:
        assert said.responded.wait(10)
        [message] = said.responses
    assert "could not read that" in message["text"] and "internals" not in str(message)
