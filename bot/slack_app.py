"""The Slack app: slash commands, file uploads, buttons and the App Home, on slack-bolt.

Every request is acknowledged at once and no work is done inline: a command is parsed and
authorised (both quick), acknowledged, then a channel message opens the job's thread and
the job is queued with that thread as its reply address. Workers do the work; the
:mod:`bot.delivery` loop posts each event of the job into the thread. Quick reads
(`/agents`, `/runs`, `/fmel`, `/help`) and refusals are the acknowledgement itself,
shown only to the user who asked; a read that is not back within :data:`READ_WAIT_S` (a
cloud store on a bad day) and ``/fmel … verify`` (it reads the whole run) are
acknowledged with a line saying so and answered through the command's ``response_url``.

Slack sends an upload twice (``file_shared`` and a ``message`` with subtype
``file_share``) and retries events it thinks were lost; a retried command or a double
click arrives twice. Each upload is fetched once and each request becomes one job: the
first to claim a short-lived Redis key for it wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot import render
from bot.commands import HELP, USAGE, Command, UsageError, agent_name_for, parse
from bot.desk import Desk, DeskError
from infra.settings import Settings
from workers.control import session_doc
from workers.policy import Refused

log = logging.getLogger(__name__)

SLASH_COMMANDS = tuple(f"/{name}" for name in USAGE)
DEDUPE_S = 10  # the same command from the same user in the same channel within this: once
UPLOAD_CLAIM_S = 24 * 3600
FETCH_TIMEOUT_S = 15
# a read answers inside the acknowledgement when it is back within this (Slack waits 3 s)
READ_WAIT_S = 2.0


def web_client(settings: Settings) -> WebClient:
    """The Web API client: Slack's (or ``SLACK_API_URL``), retrying rate limits and
    dropped connections as Slack asks (``Retry-After``)."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


def build_app(settings: Settings, desk: Desk, client: WebClient) -> App:
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=client,
        # Acknowledging needs a free listener thread: enough for a burst of commands.
        listener_executor=ThreadPoolExecutor(max_workers=64, thread_name_prefix="slack"),
        logger=logging.getLogger("tradeops.slack"),
    )
    Handlers(settings, desk, client).register(app)
    return app


def answer_soon(
    ack: Callable[..., Any],
    respond: Callable[..., Any],
    read: Callable[[], dict[str, Any]],
    *,
    pool: ThreadPoolExecutor,
    wait_s: float,
    pending: str,
) -> None:
    """Acknowledge with what ``read`` answers if it is back within ``wait_s``; otherwise
    acknowledge with ``pending`` and send the answer through ``respond`` (the command's
    ``response_url``, good for 30 minutes) when it comes. Either way the user gets one
    answer, and Slack its acknowledgement in time."""
    future = pool.submit(read)
    if wait_s > 0:
        try:
            ack(**future.result(timeout=wait_s))
            return
        except TimeoutError:
            pass
        except Exception:
            log.exception("a read failed")
            ack(**render.render_refusal("tradeops could not read that; an operator has been told"))
            return
    ack(text=f"⏳ {pending}")
    future.add_done_callback(lambda done: _respond_with(respond, done))


def _respond_with(respond: Callable[..., Any], done: Future[dict[str, Any]]) -> None:
    try:
        message = done.result()
    except Exception:
        log.exception("a read failed")
        message = render.render_refusal("tradeops could not read that; an operator has been told")
    try:
        respond(**message, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # the response_url expired or Slack is away: nothing to retry
        log.warning("cannot send a read's answer: %s", exc)


class Handlers:
    def __init__(
        self, settings: Settings, desk: Desk, client: WebClient, *, read_wait_s: float = READ_WAIT_S
    ) -> None:
        self.settings = settings
        self.desk = desk
        self.client = client
        self.read_wait_s = read_wait_s
        # reads run here so the listener thread can acknowledge on time
        self.readers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="slack-read")

    @property
    def conn(self) -> redis.Redis:
        return self.desk.conn

    def register(self, app: App) -> None:
        for name in SLASH_COMMANDS:
            app.command(name)(self.on_command)
        app.event({"type": "message", "subtype": "file_share"})(self.on_file_message)
        app.event("file_shared")(self.on_file_shared)
        app.event("message")(_ignore)  # other messages: not for us
        app.event("app_home_opened")(self.on_home)
        app.action("tradeops_backtest_again")(self.on_backtest_again)
        app.action("tradeops_paper_start")(self.on_paper_start)
        app.action("tradeops_paper_stop")(self.on_paper_stop)

    # ------------------------------------------------------------------ commands
    def on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        user, channel = command["user_id"], command["channel_id"]
        text = (command.get("text") or "").strip()
        said = f"{command['command']} {text}".strip()
        try:
            cmd = parse(command["command"], text)
        except UsageError as exc:
            ack(**render.render_usage_error(str(exc)))
            return
        desk = self.desk.with_user(user)
        if cmd.name == "help":
            ack(**render.render_help(USAGE, HELP))
            return
        if cmd.name in ("agents", "runs", "fmel"):
            pending = (
                f"Verifying the decision chain of {cmd.agent}… the answer follows here."
                if cmd.verify
                else "Still reading… the answer follows here."
            )
            answer_soon(
                ack, respond, lambda: self._read(desk, cmd), pool=self.readers,
                wait_s=0.0 if cmd.verify else self.read_wait_s, pending=pending,
            )  # fmt: skip
            return
        work = {
            "backtest": "run_backtest",
            "sweep": "run_backtest",
            "parity": "run_backtest",
            "paper-start": "paper_start",
            "paper-stop": "paper_stop",
        }.get(cmd.name, "")
        try:
            desk.authorize(work, cmd.agent)
        except Refused as exc:
            ack(**render.render_refusal(str(exc)))
            return
        identity = (command.get("team_id", ""), channel, user, command["command"], text)
        if not self._claim("cmd", *identity, ttl_s=DEDUPE_S):
            ack(**render.render_refusal("that command is already running here (sent twice?)"))
            return
        ack()
        thread = self._open_thread(channel, user, said, respond)
        if thread is None:
            return
        request_id = command.get("trigger_id") or ":".join(identity)
        self._submit(desk, cmd, request_id, thread)

    def _read(self, desk: Desk, cmd: Command) -> dict[str, Any]:
        try:
            if cmd.name == "agents":
                return render.render_agents(desk.agents())
            if cmd.name == "runs":
                return render.render_runs(desk.runs(cmd.agent))
            assert cmd.agent is not None
            found = desk.fmel(cmd.agent, last=cmd.last or 10, verify=cmd.verify, trades=cmd.trades)
            return render.render_fmel(found)
        except (DeskError, Refused) as exc:
            return render.render_refusal(str(exc))

    def _open_thread(
        self, channel: str, user: str, said: str, respond: Any
    ) -> dict[str, str] | None:
        """The channel message under which everything about this job goes."""
        try:
            root = self.client.chat_postMessage(
                channel=channel, **render.render_thread_root(user, said)
            )
        except SlackApiError as exc:
            reason = exc.response.get("error", "error")
            log.warning("cannot open a thread in %s: %s", channel, reason)
            respond(
                text=f"I can't post in this channel ({reason}): invite me with "
                "`/invite @tradeops`, or talk to me in a DM.",
                response_type="ephemeral",
            )
            return None
        return {"channel": channel, "thread_ts": str(root["ts"])}

    def _submit(self, desk: Desk, cmd: Command, request_id: str, thread: dict[str, str]) -> None:
        try:
            if cmd.name == "backtest":
                assert cmd.agent is not None
                desk.backtest(
                    agent=cmd.agent,
                    version=cmd.version,
                    parameters=cmd.backtest_parameters(),
                    request_id=request_id,
                    reply_to=thread,
                )
            elif cmd.name == "sweep":
                assert cmd.agent is not None
                desk.sweep(agent=cmd.agent, version=cmd.version, grid=cmd.grid(),
                           parameters=cmd.backtest_parameters(), rank=cmd.rank, oos=cmd.oos,
                           request_id=request_id, reply_to=thread)  # fmt: skip
            elif cmd.name == "parity":
                assert cmd.agent is not None
                desk.parity(agent=cmd.agent, version=cmd.version,
                            parameters=cmd.backtest_parameters(), request_id=request_id,
                            reply_to=thread)  # fmt: skip
            elif cmd.name == "paper-start":
                desk.paper(
                    "paper_start",
                    agent=cmd.agent,
                    version=cmd.version,
                    parameters=cmd.parameters(),
                    request_id=request_id,
                    reply_to=thread,
                )
            elif cmd.name in ("paper-stop", "paper-status"):
                work = "paper_stop" if cmd.name == "paper-stop" else "paper_status"
                desk.paper(work, agent=cmd.agent, request_id=request_id, reply_to=thread)
            elif cmd.name == "digest":
                desk.digest(channel=thread["channel"], request_id=request_id, reply_to=thread)
        except (Refused, DeskError) as exc:
            self._say(thread, render.render_refusal(str(exc)))
        except redis.RedisError as exc:
            log.error("cannot queue %s: %s", cmd.name, exc)
            self._say(thread, render.render_refusal("the job queue is unreachable; try again"))

    def _say(self, where: dict[str, str], message: dict[str, Any]) -> None:
        try:
            self.client.chat_postMessage(
                channel=where["channel"], thread_ts=where.get("thread_ts"), **message
            )
        except SlackApiError as exc:
            log.warning("cannot post to %s: %s", where.get("channel"), exc.response.get("error"))

    def _claim(self, kind: str, *identity: str, ttl_s: int) -> bool:
        """True for the first claimant of this request within ``ttl_s``."""
        digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:32]
        return bool(self.conn.set(f"tradeops:slack:{kind}:{digest}", 1, nx=True, ex=ttl_s))

    # ------------------------------------------------------------------ uploads
    def on_file_message(self, event: dict[str, Any], context: Any) -> None:
        team = context.get("team_id") or event.get("team") or ""
        thread_ts = event.get("thread_ts") or event.get("ts")
        for f in event.get("files") or ():
            self._upload(team, f["id"], event.get("channel", ""), thread_ts, event.get("user", ""))

    def on_file_shared(self, event: dict[str, Any], context: Any) -> None:
        team = context.get("team_id") or ""
        self._upload(
            team, event["file_id"], event.get("channel_id", ""), None, event.get("user_id", "")
        )

    def _upload(
        self, team: str, file_id: str, channel: str, thread_ts: str | None, user: str
    ) -> None:
        if not self._claim("file", team, file_id, ttl_s=UPLOAD_CLAIM_S):
            return  # the other event of the pair, or a retry: already taken
        try:
            info = self.client.files_info(file=file_id)["file"]
        except SlackApiError as exc:
            log.warning("files.info %s: %s", file_id, exc.response.get("error"))
            return
        thread_ts = thread_ts or _share_ts(info, channel)
        where = {"channel": channel, "thread_ts": thread_ts} if thread_ts else {"channel": channel}
        name = str(info.get("name") or "")
        if not name.endswith(".py"):
            if info.get("filetype") == "python":
                name += ".py"
            elif channel.startswith("D"):  # sent to the bot itself: it deserves an answer
                what = f"{name or 'that file'} is not an agent: agents are Python files (.py)"
                self._say(where, render.render_refusal(what))
                return
            else:
                return  # a channel's images and PDFs are none of our business
        limit = self.settings.max_agent_bytes
        if int(info.get("size") or 0) > limit:
            self._say(
                where,
                render.render_refusal(
                    f"{name} is {int(info['size']):,} bytes; agents may be at most {limit:,}"
                ),
            )
            return
        try:
            source = self._fetch(str(info.get("url_private_download") or info["url_private"]))
        except (OSError, ValueError) as exc:
            log.warning("cannot download %s: %s", file_id, exc)
            self._say(where, render.render_refusal(f"I could not download {name}; share it again"))
            return
        problem = _not_text(source, limit)
        if problem:
            self._say(where, render.render_refusal(f"{name}: {problem}"))
            return
        desk = self.desk.with_user(user)
        agent = agent_name_for(name)
        try:
            desk.upload(name=agent, source=source, request_id=f"{team}:{file_id}", reply_to=where)
        except Refused as exc:
            self._say(where, render.render_refusal(str(exc)))

    def _fetch(self, url: str) -> bytes:
        """The file's bytes, with the bot token sent only to Slack's own hosts (or to the
        host of ``SLACK_API_URL``)."""
        host = urllib.parse.urlsplit(url).hostname or ""
        api_host = urllib.parse.urlsplit(self.settings.slack_api_url).hostname or ""
        scheme = urllib.parse.urlsplit(url).scheme
        trusted = host == api_host or host == "slack.com" or host.endswith(".slack.com")
        if scheme not in ("https", "http") or not trusted:
            raise ValueError(f"not a Slack file URL: {host or url[:40]!r}")
        req = urllib.request.Request(  # noqa: S310 (scheme and host checked above)
            url, headers={"Authorization": f"Bearer {self.settings.slack_bot_token}"}
        )
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310
            data: bytes = resp.read(self.settings.max_agent_bytes + 1)
        return data

    # ------------------------------------------------------------------ buttons
    def on_backtest_again(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = _json(action.get("value"))
        params = value.get("parameters") if isinstance(value.get("parameters"), dict) else {}
        self._button(
            ack,
            body,
            "run_backtest",
            value.get("agent"),
            lambda desk, agent, rid, where: desk.backtest(
                agent=agent,
                version=value.get("version"),
                parameters=params,
                request_id=rid,
                reply_to=where,
            ),
        )

    def on_paper_start(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = _json(action.get("value"))
        self._button(
            ack,
            body,
            "paper_start",
            value.get("agent"),
            lambda desk, agent, rid, where: desk.paper(
                "paper_start",
                agent=agent,
                version=value.get("version"),
                parameters=_button_parameters(value),
                request_id=rid,
                reply_to=where,
            ),
        )

    def on_paper_stop(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = _json(action.get("value"))
        self._button(
            ack,
            body,
            "paper_stop",
            value.get("agent"),
            lambda desk, agent, rid, where: desk.paper(
                "paper_stop", agent=agent, request_id=rid, reply_to=where
            ),
        )

    def _button(self, ack: Any, body: dict[str, Any], work: str, agent: Any, take: Any) -> None:
        """A button press: authorise, acknowledge, then queue into the message's thread."""
        ack()
        user = body.get("user", {}).get("id", "")
        channel = (body.get("channel") or {}).get("id", "")
        message = body.get("message") or {}
        where = {"channel": channel, "thread_ts": message.get("thread_ts") or message.get("ts")}
        if not isinstance(agent, str) or not agent:
            return
        desk = self.desk.with_user(user)
        try:
            desk.authorize(work, agent)
        except Refused as exc:
            self._ephemeral(channel, user, render.render_refusal(str(exc)))
            return
        press = (body.get("team", {}).get("id", ""), user, work, agent, str(where["thread_ts"]))
        if not self._claim("button", *press, ttl_s=DEDUPE_S):
            return  # a double click
        try:
            take(desk, agent, body.get("trigger_id") or ":".join(press), where)
        except (Refused, DeskError) as exc:
            self._say(where, render.render_refusal(str(exc)))

    def _ephemeral(self, channel: str, user: str, message: dict[str, Any]) -> None:
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, **message)
        except SlackApiError as exc:
            log.warning("cannot answer %s: %s", user, exc.response.get("error"))

    # ------------------------------------------------------------------ App Home
    def on_home(self, event: dict[str, Any]) -> None:
        user = event.get("user", "")
        if event.get("tab", "home") != "home" or not user:
            return
        desk = self.desk.with_user(user)
        agents = [a for a in desk.agents() if a.owner == user]
        runs = [r for r in desk.runs(None, limit=50) if r.owner == user][:10]
        services = desk.services()
        sessions = [  # as /paper-status shows them: with their version, P&L and positions
            session_doc(x, services.registry.get_run(x.run_id))
            for x in (services.cluster.status() if services.cluster is not None else [])
            if x.owner == user
        ]
        try:
            self.client.views_publish(
                user_id=user,
                view=render.render_home(user_id=user, agents=agents, runs=runs, sessions=sessions),
            )
        except SlackApiError as exc:
            log.warning("views.publish for %s: %s", user, exc.response.get("error"))


def _ignore() -> None:
    pass


def _share_ts(info: dict[str, Any], channel: str) -> str | None:
    """The ts of the message that shared the file in ``channel``: the upload's thread."""
    shares = info.get("shares") or {}
    for kind in ("public", "private"):
        found = (shares.get(kind) or {}).get(channel) or []
        if found:
            return str(found[0].get("ts"))
    return None


def _not_text(source: bytes, limit: int) -> str | None:
    if len(source) > limit:
        return f"agents may be at most {limit:,} bytes"
    if b"\0" in source:
        return "this is not a text file"
    try:
        source.decode("utf-8")
    except UnicodeDecodeError:
        return "this is not UTF-8 text"
    return None


def _button_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """The backtest's symbols and cash a "Start paper trading" button carries (a button's
    value comes back from the client: the job checks them again as any request)."""
    given = value.get("parameters")
    given = given if isinstance(given, dict) else {}
    out: dict[str, Any] = {}
    symbols = given.get("symbols")
    if isinstance(symbols, list) and symbols and all(isinstance(x, str) for x in symbols):
        out["symbols"] = symbols[:20]
    cash = given.get("cash")
    if isinstance(cash, int | float) and not isinstance(cash, bool):
        out["cash"] = float(cash)
    return out


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
