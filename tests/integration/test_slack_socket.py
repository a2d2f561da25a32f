"""`tradeops bot --socket`: Socket Mode against a local server that speaks its protocol.

The Slack stand-in answers `apps.connections.open` (with the app-level token) with the URL of
a WebSocket server of this test's own, which says hello, hands the bot envelopes (a slash
command, an event) and collects the bot's acknowledgements, as Slack's Socket Mode does."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from infra.local.redis_server import EmbeddedRedis
from tests.conftest import REPO_ROOT, processes_mentioning
from tests.slack_api import SlackAPI


class SocketSlack:
    """One connection at a time; envelopes to send, acknowledgements received."""

    def __init__(self) -> None:
        self.outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self.server: Server = serve(self.handle, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def handle(self, ws: ServerConnection) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A1"}}))  # fmt: skip
        self.connected.set()
        while True:
            try:
                envelope = self.outbox.get(timeout=0.05)
                ws.send(json.dumps(envelope))
            except queue.Empty:
                pass
            try:
                got = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:
                return
            self.acks.put(json.loads(got))

    def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        self.outbox.put(envelope)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ack = self.acks.get(timeout=10)
            if ack.get("envelope_id") == envelope["envelope_id"]:
                return ack
        raise AssertionError(f"no ack for {envelope['envelope_id']}")


@pytest.fixture
def socket_bot(redis_home: Path, tmp_path: Path) -> Iterator[tuple[SlackAPI, SocketSlack]]:
    api = SlackAPI().start()
    ws = SocketSlack()
    api.socket_url = ws.url
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADEOPS_", "REDIS_", "SLACK_"))}  # fmt: skip
    env |= {"TRADEOPS_HOME": str(redis_home), "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_APP_TOKEN": "xapp-test", "SLACK_API_URL": api.base_url}  # fmt: skip
    EmbeddedRedis(redis_home).ensure_running()
    bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "bot", "--socket"], cwd=REPO_ROOT,
                           env=env, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        assert ws.connected.wait(30), "the bot did not connect"
        yield api, ws
    finally:
        bot.send_signal(signal.SIGTERM)
        try:
            assert bot.wait(timeout=20) == 0
        finally:
            if bot.poll() is None:
                os.killpg(bot.pid, signal.SIGKILL)
            ws.server.shutdown()
            api.stop()
            for pid in processes_mentioning(str(redis_home)):
                os.kill(pid, signal.SIGKILL)


def test_socket_mode_takes_commands_and_events(socket_bot: tuple[SlackAPI, SocketSlack]) -> None:
    api, ws = socket_bot
    opened = api.calls_to("apps.connections.open")
    assert opened and opened[0].token == "xapp-test"  # the app token, for this call only
    command = {"command": "/backtest", "text": "", "user_id": "U1", "channel_id": "C1",
               "team_id": "T1", "trigger_id": "tr1", "response_url": api.response_url}  # fmt: skip
    ack = ws.send({"envelope_id": "e1", "type": "slash_commands", "payload": command,
                   "accepts_response_payload": True})  # fmt: skip
    assert "needs an agent" in json.dumps(ack.get("payload"))  # the usage reply is the ack
    opened_home = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}
    home = {"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": "Ev1", "event_time": 1, "event": opened_home}  # fmt: skip
    ws.send({"envelope_id": "e2", "type": "events_api", "payload": home,
             "accepts_response_payload": False})  # fmt: skip
    api.wait_for("views.publish", timeout=15)
    assert api.home_view("U1") is not None
