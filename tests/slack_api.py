"""A local server that speaks Slack's Web API, and helpers to sign requests into the bot.

STYLE.md 6: the real ``slack_sdk.WebClient`` talks to a real HTTP server, as in
bolt-python's own ``tests/mock_web_api_server``. Point the client at it with
``WebClient(base_url=api.base_url)`` (or ``SLACK_API_URL=api.base_url``).

The server records every Web API call (``calls``) and answers the methods the bot uses
with responses shaped like Slack's: ``chat.*`` keep a small message store (``posted``),
``files.info`` describes files registered with :meth:`SlackAPI.add_file` or uploaded
through the ``files_upload_v2`` flow, and ``url_private`` downloads are served here, with
the bot token required as on Slack. :meth:`SlackAPI.fail_next` makes the next calls to a
method fail (HTTP 429 with ``Retry-After``, or ``ok: false``) so retries can be tested.

Requests *into* the bot (slash commands, events, button clicks) are built with
:func:`slash_command_body`, :func:`event_body` and :func:`block_action_body` and signed
with :func:`signed_request` the way Slack signs them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import mimetypes
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

from infra.emulators.http import LocalHttpServer, StandInHandler

log = logging.getLogger(__name__)

TEAM_ID = "T1"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A1"
WORKSPACE_URL = "https://tradeops-test.slack.com/"
FIRST_TS_US = 1_700_000_000_000_000  # message timestamps count up from 1700000000.000000
SCOPES = "chat:write,commands,files:read,files:write,channels:read,users:read"
# Arguments slack_sdk may send as JSON text inside a form body; recorded decoded.
JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")
FILETYPES = {"py": "python", "txt": "text", "md": "markdown", "csv": "csv", "json": "json"}

Args = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One Web API request as the server received it (``token`` popped from ``args``)."""

    method: str
    args: Args
    token: str | None
    at: float
    rejected: bool = False  # refused (invalid_auth) or failed on purpose (fail_next)
    response: Args = field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    """A file that went through getUploadURLExternal → upload URL → completeUploadExternal."""

    file_id: str
    filename: str
    title: str
    content: bytes
    channel_id: str | None
    thread_ts: str | None
    initial_comment: str | None = None


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: int
    error: str | None


@dataclass
class _File:
    id: str
    name: str
    title: str
    content: bytes
    user: str
    channel: str | None
    filetype: str
    mimetype: str
    ts: str | None
    thread_ts: str | None
    created: int = field(default_factory=lambda: int(time.time()))


class _Request(NamedTuple):
    verb: str
    path: str
    query: str
    content_type: str
    authorization: str
    body: bytes


class _Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class _ApiError(Exception):
    """Answered as ``{"ok": false, "error": <code>}`` with HTTP 200, as Slack does."""


def _json_reply(doc: Args, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
    extra = {"Content-Type": "application/json; charset=utf-8", "x-oauth-scopes": SCOPES}
    return _Reply(status, json.dumps(doc).encode(), {**extra, **(headers or {})})


def _text_reply(status: int, text: str) -> _Reply:
    return _Reply(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


class SlackAPI:
    """Slack's Web API on 127.0.0.1 (a free port), recording every call. Thread-safe.

    Use as a context manager, or ``start()`` / ``stop()``. Pass ``base_url`` to
    ``WebClient(base_url=...)``; calls must carry ``token`` (``Authorization: Bearer``).
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.socket_url: str | None = None  # what apps.connections.open hands out
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self._cond = threading.Condition(threading.RLock())
        self._calls: list[Call] = []
        self._uploads: list[Upload] = []
        self._downloads: Counter[str] = Counter()
        self._failures: dict[str, deque[_Failure]] = {}
        self._files: dict[str, _File] = {}
        self._pending: dict[str, _File] = {}  # upload URL issued, not completed yet
        self._messages: dict[tuple[str, str], Args] = {}
        self._home_views: dict[str, Args] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._http = LocalHttpServer(_Handler, self, "slack-api")
        self._methods: dict[str, Callable[[Args], Args]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.publish": self._views_publish,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "files.info": self._files_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SlackAPI:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> SlackAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the server must be started)."""
        return f"http://127.0.0.1:{self._http.port('SlackAPI')}"

    @property
    def base_url(self) -> str:
        """What ``WebClient(base_url=...)`` and ``SLACK_API_URL`` take."""
        return f"{self.url}/api/"

    @property
    def response_url(self) -> str:
        """A ``response_url`` for request bodies; posts to it are recorded as calls to
        the method ``"response_url"`` (what bolt's ``respond()`` sends)."""
        return f"{self.url}/hooks/response"

    # ------------------------------------------------------------------ what was recorded
    @property
    def calls(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    @property
    def uploads(self) -> list[Upload]:
        with self._cond:
            return list(self._uploads)

    @property
    def downloads(self) -> Counter[str]:
        """Successful ``url_private`` downloads per file id."""
        with self._cond:
            return Counter(self._downloads)

    def calls_to(self, method: str, *, rejected: bool | None = None) -> list[Call]:
        """Calls to ``method`` in arrival order; ``rejected=False`` keeps only the calls
        that were answered normally, ``True`` only the refused or failed-on-purpose ones."""
        with self._cond:
            return [
                c
                for c in self._calls
                if c.method == method and (rejected is None or c.rejected == rejected)
            ]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[Call], bool] | None = None,
        *,
        rejected: bool | None = False,
    ) -> list[Call]:
        """Block until ``count`` calls to ``method`` (matching ``where``) have arrived and
        return all that match. By default only calls answered normally count: a call
        failed by :meth:`fail_next` has not happened yet from the caller's point of view."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    c for c in self.calls_to(method, rejected=rejected) if not where or where(c)
                ]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._cond.wait(left)
        if len(found) < count:
            seen = ", ".join(c.method for c in self.calls) or "none"
            raise TimeoutError(
                f"{len(found)} of {count} {method} calls after {timeout}s; calls seen: {seen}"
            )
        return found

    def posted(self, channel: str | None = None, *, thread_ts: str | None = None) -> list[Args]:
        """Messages as they now stand (after updates), oldest first; with ``thread_ts``,
        the replies in that thread. Each carries its ``channel``."""
        with self._cond:
            found = [{**m, "channel": ch} for (ch, _), m in self._messages.items()]
        if channel is not None:
            found = [m for m in found if m["channel"] == channel]
        if thread_ts is not None:
            found = [m for m in found if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]
        return sorted(found, key=lambda m: m["ts"])

    def home_view(self, user: str) -> Args | None:
        """The App Home view last published for ``user``."""
        with self._cond:
            return self._home_views.get(user)

    def reset(self) -> None:
        """Forget calls, uploads, downloads and pending failures; the workspace (files,
        messages, home views) stays."""
        with self._cond:
            self._calls.clear()
            self._uploads.clear()
            self._downloads.clear()
            self._failures.clear()

    # ------------------------------------------------------------------ arranging
    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls to ``method`` answer HTTP ``status`` with
        ``Retry-After`` (rate limited), or, given ``error``, HTTP 200 ``ok: false``."""
        with self._cond:
            queue = self._failures.setdefault(method, deque())
            queue.extend([_Failure(status, retry_after, error)] * times)

    def add_file(
        self,
        file_id: str,
        name: str,
        content: bytes,
        *,
        user: str = "U1",
        channel: str | None = "C1",
        filetype: str = "python",
        mimetype: str = "text/x-python",
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> Args:
        """Register a file a user shared in ``channel`` (as the message ``ts``, a new one by
        default, in the thread ``thread_ts`` if given); returns what ``files.info`` says."""
        with self._cond:
            if channel is not None and ts is None:
                ts = self.add_message(channel, "", user=user, thread_ts=thread_ts)
            self._files[file_id] = _File(
                file_id,
                name,
                name,
                bytes(content),
                user,
                channel,
                filetype,
                mimetype,
                ts,
                thread_ts,
            )
            return self._file_info(self._files[file_id])

    def add_message(
        self, channel: str, text: str, *, user: str = "U1", thread_ts: str | None = None
    ) -> str:
        """A message someone posted in ``channel``; returns its ``ts``."""
        with self._cond:
            ts = self._next_ts()
            message: Args = {"type": "message", "user": user, "text": text, "ts": ts}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages[(channel, ts)] = message
            return ts

    # ------------------------------------------------------------------ HTTP routing
    def _handle(self, req: _Request) -> _Reply:
        if req.path.startswith("/api/"):
            return self._web_api(req)
        if req.path.startswith("/files-pri/") and req.verb == "GET":
            return self._download(req)
        if req.path.startswith("/upload/v1/") and req.verb == "POST":
            return self._receive_upload(req)
        if req.path.startswith("/hooks/") and req.verb == "POST":
            return self._response_url(req)
        return _text_reply(404, "not found")

    def _web_api(self, req: _Request) -> _Reply:
        method = req.path.removeprefix("/api/")
        args = _parse_args(req)
        token = req.authorization.removeprefix("Bearer ").strip() or args.pop("token", None)
        args.pop("token", None)
        with self._cond:
            reply, doc, rejected = self._answer(method, args, token)
            self._calls.append(Call(method, args, token, time.time(), rejected, doc))
            self._cond.notify_all()
        return reply

    def _answer(self, method: str, args: Args, token: str | None) -> tuple[_Reply, Args, bool]:
        if method == "apps.connections.open":  # Socket Mode: the app-level token's one call
            if token != self.app_token or not self.socket_url:
                doc = {"ok": False, "error": "invalid_auth" if token != self.app_token
                       else "no_socket_server"}  # fmt: skip
                return _json_reply(doc), doc, True
            doc = {"ok": True, "url": self.socket_url}
            return _json_reply(doc), doc, False
        if token != self.token:
            doc: Args = {"ok": False, "error": "not_authed" if not token else "invalid_auth"}
            return _json_reply(doc), doc, True
        failures = self._failures.get(method)
        if failures:
            return (*self._injected(failures.popleft()), True)
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise _ApiError("unknown_method")
            doc = {"ok": True, **handler(args)}
        except _ApiError as exc:
            doc = {"ok": False, "error": str(exc)}
        return _json_reply(doc), doc, False

    @staticmethod
    def _injected(failure: _Failure) -> tuple[_Reply, Args]:
        if failure.error is not None:
            doc: Args = {"ok": False, "error": failure.error}
            return _json_reply(doc), doc
        doc = {"ok": False, "error": "ratelimited"}
        headers = {"Retry-After": str(failure.retry_after)}
        return _json_reply(doc, failure.status, headers), doc

    def _download(self, req: _Request) -> _Reply:
        parts = req.path.split("/")  # "", "files-pri", "T1-F1", ["download",] name
        file_id = parts[2].partition("-")[2]
        as_attachment = len(parts) > 4 and parts[3] == "download"
        if req.authorization.removeprefix("Bearer ").strip() != self.token:
            return _text_reply(403, "invalid_auth: url_private needs the bot token")
        with self._cond:
            file = self._files.get(file_id)
            if file is None:
                return _text_reply(404, "file_not_found")
            self._downloads[file_id] += 1
        headers = {"Content-Type": file.mimetype}
        if as_attachment:
            headers["Content-Disposition"] = f'attachment; filename="{file.name}"'
        return _Reply(200, file.content, headers)

    def _receive_upload(self, req: _Request) -> _Reply:
        """The upload URL: the raw body is the file (what slack_sdk sends)."""
        file_id = req.path.removeprefix("/upload/v1/")
        with self._cond:
            pending = self._pending.get(file_id)
            if pending is None:
                return _text_reply(404, "upload URL not issued")
            pending.content = req.body
        return _text_reply(200, f"OK - {len(req.body)}")

    def _response_url(self, req: _Request) -> _Reply:
        args = _parse_args(req)
        with self._cond:
            self._calls.append(Call("response_url", args, None, time.time()))
            self._cond.notify_all()
        return _json_reply({"ok": True})

    # ------------------------------------------------------------------ Web API methods
    def _auth_test(self, args: Args) -> Args:
        return {
            "url": WORKSPACE_URL,
            "team": "TradeOps Test",
            "user": "tradeops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: Args) -> Args:
        channel = _need(args, "channel", "channel_not_found")
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise _ApiError("no_text")
        ts = self._next_ts()
        message = {**self._bot_message(args), "ts": ts}
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: Args) -> Args:
        channel = _need(args, "channel", "channel_not_found")
        ts = _need(args, "ts", "message_not_found")
        old = self._messages.get((channel, ts))
        if old is None:
            raise _ApiError("message_not_found")
        message = {**old, **self._bot_message(args), "edited": {"user": self.bot_user_id}}
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "text": message["text"], "message": message}

    def _chat_post_ephemeral(self, args: Args) -> Args:
        _need(args, "channel", "channel_not_found")
        _need(args, "user", "user_not_in_channel")
        return {"message_ts": self._next_ts()}

    def _chat_get_permalink(self, args: Args) -> Args:
        channel = _need(args, "channel", "channel_not_found")
        ts = _need(args, "message_ts", "message_not_found")
        link = f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}"
        thread_ts = self._messages.get((channel, ts), {}).get("thread_ts")
        if thread_ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _views_publish(self, args: Args) -> Args:
        user = _need(args, "user_id", "user_not_found")
        view = args.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _ApiError("invalid_arguments")
        published = {
            "id": f"V{next(self._ids):06d}",
            "team_id": self.team_id,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": secrets.token_hex(8),
            "app_id": APP_ID,
            "bot_id": self.bot_id,
        }
        self._home_views[user] = published
        return {"view": published}

    def _conversations_info(self, args: Args) -> Args:
        channel = _need(args, "channel", "channel_not_found")
        return {
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": channel.startswith("C"),
                "is_private": channel.startswith("G"),
                "is_im": channel.startswith("D"),
                "is_archived": False,
                "is_member": True,
                "created": FIRST_TS_US // 1_000_000,
                "context_team_id": self.team_id,
            }
        }

    def _users_info(self, args: Args) -> Args:
        user = _need(args, "user", "user_not_found")
        profile = {"real_name": f"User {user}", "display_name": user.lower()}
        return {
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": user.lower(),
                "real_name": profile["real_name"],
                "deleted": False,
                "is_bot": user == self.bot_user_id,
                "tz": "UTC",
                "profile": profile,
            }
        }

    def _files_info(self, args: Args) -> Args:
        file = self._files.get(_need(args, "file", "file_not_found"))
        if file is None:
            raise _ApiError("file_not_found")
        return {"file": self._file_info(file), "comments": [], "response_metadata": {}}

    def _files_get_upload_url(self, args: Args) -> Args:
        name = _need(args, "filename", "invalid_arguments")
        if not str(args.get("length", "")).isdigit():
            raise _ApiError("invalid_arguments")
        file_id = f"F{next(self._ids):06d}"
        ext = name.rpartition(".")[2].lower() if "." in name else ""
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        filetype = FILETYPES.get(ext, ext or "binary")
        self._pending[file_id] = _File(
            file_id, name, name, b"", self.bot_user_id, None, filetype, mimetype, None, None
        )
        return {"upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: Args) -> Args:
        items = args.get("files")
        if not isinstance(items, list) or not items:
            raise _ApiError("invalid_arguments")
        if any(self._pending.get(str(item.get("id"))) is None for item in items):
            raise _ApiError("file_not_found")
        channels = str(args.get("channels") or "").split(",")
        channel = args.get("channel_id") or channels[0] or None
        thread_ts = args.get("thread_ts") or None
        done = [self._complete(item, channel, thread_ts, args) for item in items]
        return {"files": [self._file_info(f) for f in done]}

    def _complete(
        self, item: Args, channel: str | None, thread_ts: str | None, args: Args
    ) -> _File:
        file = self._pending.pop(str(item["id"]))
        file.title = str(item.get("title") or file.name)
        file.channel, file.thread_ts = channel, thread_ts
        if channel is not None:
            text = str(args.get("initial_comment") or "")
            file.ts = self.add_message(channel, text, user=self.bot_user_id, thread_ts=thread_ts)
            self._messages[(channel, file.ts)]["files"] = [{"id": file.id, "name": file.name}]
        self._files[file.id] = file
        comment = args.get("initial_comment")
        self._uploads.append(
            Upload(file.id, file.name, file.title, file.content, channel, thread_ts, comment)
        )
        return file

    # ------------------------------------------------------------------ shapes
    def _next_ts(self) -> str:
        us = FIRST_TS_US + 100 * next(self._ts)
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _bot_message(self, args: Args) -> Args:
        message: Args = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": str(args.get("text") or ""),
        }
        for key in ("blocks", "attachments", "metadata"):
            if args.get(key):
                message[key] = args[key]
        return message

    def _file_info(self, file: _File) -> Args:
        base = f"{self.url}/files-pri/{self.team_id}-{file.id}"
        name = quote(file.name)
        public = bool(file.channel and file.channel.startswith("C"))
        return {
            "id": file.id,
            "created": file.created,
            "timestamp": file.created,
            "name": file.name,
            "title": file.title,
            "mimetype": file.mimetype,
            "filetype": file.filetype,
            "pretty_type": file.filetype.capitalize(),
            "user": file.user,
            "user_team": self.team_id,
            "mode": "hosted",
            "editable": False,
            "is_external": False,
            "is_public": public,
            "size": len(file.content),
            "url_private": f"{base}/{name}",
            "url_private_download": f"{base}/download/{name}",
            "permalink": f"{WORKSPACE_URL}files/{file.user}/{file.id}/{name}",
            "channels": [file.channel] if public else [],
            "groups": [],
            "ims": [],
            "shares": self._shares(file, public),
            "comments_count": 0,
        }

    def _shares(self, file: _File, public: bool) -> Args:
        if file.channel is None or file.ts is None:
            return {}
        share: Args = {
            "ts": file.ts,
            "channel_name": file.channel.lower(),
            "team_id": self.team_id,
            "share_user_id": file.user,
        }
        if file.thread_ts:
            share["thread_ts"] = file.thread_ts
        return {"public" if public else "private": {file.channel: [share]}}


# ---------------------------------------------------------------------- the HTTP server
class _Handler(StandInHandler):
    protocol_version = "HTTP/1.0"  # one request a connection, as before
    methods = ("GET", "POST")

    def serve(self, verb: str, body: bytes) -> None:
        url = urlsplit(self.path)
        req = _Request(
            verb,
            url.path,
            url.query,
            self.headers.get("Content-Type", ""),
            self.headers.get("Authorization", ""),
            body,
        )
        try:
            reply = self.owner._handle(req)
        except Exception:
            log.exception("SlackAPI failed on %s %s", verb, self.path)
            reply = _text_reply(500, "internal error in the test server")
        self.answer(reply.status, reply.body, reply.headers.items())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("SlackAPI: " + format, *args)


def _parse_args(req: _Request) -> Args:
    """Query string plus a form or JSON body, with JSON-text arguments decoded."""
    args: Args = dict(parse_qsl(req.query, keep_blank_values=True))
    if req.body and "json" in req.content_type:
        args.update(json.loads(req.body))
    elif req.body:
        args.update(parse_qsl(req.body.decode(), keep_blank_values=True))
    for key in JSON_ARGS:
        if isinstance(args.get(key), str) and args[key][:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


def _need(args: Args, key: str, error: str) -> str:
    value = args.get(key)
    if not value:
        raise _ApiError(error)
    return str(value)


# ---------------------------------------------------------------------- requests into the bot
def signed_request(
    path: str,
    body: str,
    *,
    secret: str,
    timestamp: int | str | None = None,
    content_type: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a request Slack would send to ``path`` of the bot, signed with
    ``secret`` (``v0=hmac_sha256(secret, "v0:{ts}:{body}")``). Slack's signature does not
    cover the path; it is here so call sites read like the request they make.
    ``content_type`` defaults to JSON for a JSON body, else form-encoded."""
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    if content_type is None:
        is_json = body.lstrip().startswith("{")
        content_type = "application/json" if is_json else "application/x-www-form-urlencoded"
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": str(signature),
    }
    return headers, body.encode()


def _trigger_id() -> str:
    return f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"


def slash_command_body(
    command: str,
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    team: str = TEAM_ID,
    trigger_id: str | None = None,
    response_url: str = "https://hooks.slack.com/commands/T1/1/x",
) -> str:
    """A slash command as Slack posts it (form-encoded)."""
    return urlencode(
        {
            "token": "verification-token",
            "team_id": team,
            "team_domain": "tradeops-test",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or _trigger_id(),
        }
    )


def event_body(event: Args, *, event_id: str, team: str = TEAM_ID) -> str:
    """An Events API ``event_callback`` envelope around ``event`` (JSON)."""
    now = int(time.time())
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": team,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


def block_action_body(
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    thread_ts: str | None = None,
    block_id: str = "actions",
    team: str = TEAM_ID,
    response_url: str = "https://hooks.slack.com/actions/T1/1/x",
) -> str:
    """A button click on a message, as Slack posts it (form-encoded ``payload=`` JSON)."""
    container: Args = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    message: Args = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": message_ts}
    if thread_ts:
        container["thread_ts"] = message["thread_ts"] = thread_ts
    payload: Args = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": container,
        "trigger_id": _trigger_id(),
        "team": {"id": team, "domain": "tradeops-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel.lower()},
        "message": {**message, "text": ""},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})
