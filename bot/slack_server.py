"""``tradeops bot``: the Slack app over HTTP or Socket Mode, with its delivery loop.

HTTP mode serves ``POST /slack/events`` (slash commands, events and interactivity: bolt
verifies each request's signature and answers 401 to a bad one) and ``GET /health`` (the
bot's and the queue's state), on a threading server so a burst of commands is acknowledged
in parallel. Socket Mode connects out to Slack with ``SLACK_APP_TOKEN`` instead, for a
machine Slack cannot reach. Both run the delivery loop that posts job events into threads.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slack_bolt import App, BoltRequest
from slack_sdk.errors import SlackApiError

from bot.delivery import Deliverer
from bot.desk import Desk
from bot.slack_app import build_app, web_client
from infra.settings import Settings, SettingsError
from workers.policy import Roles

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
EVENTS_PATH = "/slack/events"


class Bot:
    """The app, its desk and its delivery loop, started and stopped together."""

    def __init__(self, settings: Settings, mode: str) -> None:
        self.settings = settings
        self.mode = mode
        self.started = time.time()
        self.desk = Desk(
            settings, user="", use_queue=True, roles=Roles(settings.admins, settings.traders)
        )
        self.client = web_client(settings)
        try:
            self.app: App = build_app(settings, self.desk, self.client)
        except SlackApiError as exc:  # bolt checks the token with auth.test at start
            raise SettingsError(
                f"SLACK_BOT_TOKEN: Slack refused it ({exc.response.get('error')})"
            ) from None
        self.deliverer = Deliverer(self.client, self.desk, retry_s=settings.delivery_retry_s)
        self.stop = threading.Event()
        self.delivery = threading.Thread(
            target=self.deliverer.run, args=(self.stop,), name="delivery", daemon=True
        )

    def start_delivery(self) -> None:
        self.deliverer.ensure_group()
        self.delivery.start()

    def close(self) -> None:
        self.stop.set()
        self.delivery.join(timeout=5)

    def health(self) -> dict[str, Any]:
        queue: dict[str, Any] = {}
        try:
            work = self.desk.ports.queue
            queue["redis"] = "ok" if self.desk.conn.ping() else "no answer"
            queue["queued"] = {q: work.depth(q) for q in work.names}
            queue["workers"] = {q: work.workers(q) for q in work.names}
        except Exception as exc:  # the answer is the state, whatever it is
            queue["redis"] = f"error: {type(exc).__name__}"
        ok = queue.get("redis") == "ok" and self.deliverer.alive
        return {
            "status": "ok" if ok else "degraded",
            "bot": {
                "mode": self.mode,
                "uptime_s": round(time.time() - self.started, 1),
                "delivery": {
                    "alive": self.deliverer.alive,
                    "delivered": self.deliverer.delivered,
                    "failed_attempts": self.deliverer.failed,
                },
            },
            "queue": queue,
        }


def make_handler(bot: Bot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tradeops"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/health", "/healthz"):
                self._send(200, json.dumps(bot.health()).encode(), "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if path != EVENTS_PATH:
                self._send(404, b"not found", "text/plain")
                return
            length_text = self.headers.get("Content-Length") or "0"
            if not length_text.isdigit():
                self._send(400, b"bad Content-Length", "text/plain")
                return
            length = int(length_text)
            if length > MAX_BODY:
                self._send(413, b"too large", "text/plain")
                return
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            if not (self.headers.get("X-Slack-Request-Timestamp") or "").isdigit():
                self._send(401, b"missing or malformed request timestamp", "text/plain")
                return
            headers: dict[str, Any] = {k.lower(): [v] for k, v in self.headers.items()}
            try:  # bolt parses the body as it builds the request
                resp = bot.app.dispatch(BoltRequest(body=body, query=query, headers=headers))
            except Exception:  # a malformed body, signed or not: the sender's, never a 500
                log.warning("a request bolt could not read was refused", exc_info=True)
                self._send(400, b"malformed request", "text/plain")
                return
            content_type = (resp.headers.get("content-type") or ["text/plain"])[0]
            self._send(resp.status, (resp.body or "").encode(), content_type)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler


def _bot(settings: Settings, mode: str) -> Bot:
    """The bot, or one line on why Slack would not have it (bolt checks the token at start)."""
    from urllib.error import URLError

    from slack_sdk.errors import SlackApiError

    try:
        return Bot(settings, mode)
    except SlackApiError as exc:
        said = exc.response.get("error") if exc.response is not None else exc
        raise SettingsError(f"SLACK_BOT_TOKEN: Slack refused the bot token ({said})") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SettingsError(
            f"cannot reach Slack at {settings.slack_api_url} ({reason}); check SLACK_API_URL "
            "and the network"
        ) from None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of commands must not meet a full listen backlog (5)


def run_http(settings: Settings, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104
    settings.require("slack_bot_token", "slack_signing_secret")
    bot = _bot(settings, "http")
    server = Server((host, port), make_handler(bot))
    bot.start_delivery()
    _stop_on_signals(server.shutdown)
    print(
        f"tradeops bot: listening on http://{host}:{server.server_address[1]}{EVENTS_PATH} "
        f"(health: /health); Slack API {settings.slack_api_url}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        bot.close()
    return 0


def run_socket(settings: Settings) -> int:
    settings.require("slack_bot_token", "slack_app_token")
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    bot = _bot(settings, "socket")
    handler = SocketModeHandler(bot.app, settings.slack_app_token, web_client=bot.client)
    bot.start_delivery()
    done = threading.Event()
    _stop_on_signals(done.set)
    print("tradeops bot: connected to Slack in Socket Mode", file=sys.stderr, flush=True)
    handler.connect()
    try:
        done.wait()
    finally:
        handler.close()
        bot.close()
    return 0


def _stop_on_signals(stop: Any) -> None:
    def handle(signum: int, frame: Any) -> None:
        threading.Thread(target=stop, daemon=True).start()  # shutdown() must not block here

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
