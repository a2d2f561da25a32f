"""The Slack app end to end: signed HTTP requests into a real `tradeops bot --http`, its Web API
calls answered by a local Slack stand-in (tests/slack_api.py), a real Redis and a real worker
running backtests in the sandbox."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.redis_server import EmbeddedRedis
from tests.conftest import REPO_ROOT, SMA_CROSS, processes_mentioning
from tests.slack_api import (
    SlackAPI,
    block_action_body,
    event_body,
    signed_request,
    slash_command_body,
)

SECRET = "test-signing-secret"
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Stack:
    api: SlackAPI
    url: str  # the bot's base URL
    home: Path
    env: dict[str, str]
    logs: list[str]

    def post(
        self, body: str, *, secret: str = SECRET, headers: dict[str, str] | None = None
    ) -> tuple[int, str, float]:
        """A signed request to /slack/events: (status, body, seconds to answer)."""
        signed, data = signed_request("/slack/events", body, secret=secret)
        req = urllib.request.Request(self.url + "/slack/events", data=data,
                                     headers=signed | (headers or {}), method="POST")  # fmt: skip
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), time.perf_counter() - t0
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.perf_counter() - t0

    def command(self, command: str, text: str, **kw: Any) -> tuple[int, str, float]:
        return self.post(slash_command_body(command, text, **kw))

    def root_of(self, said: str, channel: str = "C1", timeout: float = 15) -> str:
        """The ts of the channel message that opened the thread for a command."""
        calls = self.api.wait_for("chat.postMessage", timeout=timeout,
                                  where=lambda c: c.args.get("channel") == channel
                                  and not c.args.get("thread_ts")
                                  and said in json.dumps(c.args))  # fmt: skip
        return str(calls[-1].response["ts"])

    def thread_text(self, ts: str, channel: str = "C1") -> str:
        return json.dumps(self.api.posted(channel, thread_ts=ts))


def _env(home: Path, api: SlackAPI, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADEOPS_", "REDIS_", "SLACK_"))}  # fmt: skip
    return env | {
        "TRADEOPS_HOME": str(home), "TRADEOPS_DATA_DIR": str(data),
        "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api.base_url, "TRADEOPS_ADMINS": "UADMIN",
        "TRADEOPS_TRADERS": "U1", "TRADEOPS_WORKER_HEARTBEAT_S": "1",
        "TRADEOPS_DELIVERY_RETRY_S": "1",
    }  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from runtime.data import write_synthetic_dir

    home = Path("/tmp") / f"trs-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    data = write_synthetic_dir(tmp_path_factory.mktemp("data"), ["SYN"], n_bars=300, seed=3)
    api = SlackAPI().start()
    env = _env(home, api, data)
    EmbeddedRedis(home).ensure_running()
    _news_before_the_bot(home)
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=REPO_ROOT,
                                      env=env, stderr=subprocess.DEVNULL, text=True,
                                      start_new_session=True))  # fmt: skip
        bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "bot", "--http", "--port", "0"],
                               cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
        procs.append(bot)
        assert bot.stderr is not None
        seen = ""
        while not (found := re.search(r"listening on http://[^:]+:(\d+)/slack/events", seen)):
            line = bot.stderr.readline()
            assert line, seen  # the bot stopped before it listened
            seen += line
        logs: list[str] = []
        threading.Thread(target=lambda: logs.extend(bot.stderr or ()), daemon=True).start()
        yield Stack(api, f"http://127.0.0.1:{found.group(1)}", home, env, logs)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        api.stop()
        EmbeddedRedis(home).stop()
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(home)], check=False)


EARLY_NEWS = "sent before the bot ever started"


def _news_before_the_bot(home: Path) -> None:
    """A worker's event on the stream before the bot's first start (a scheduled digest)."""
    import redis as redis_lib

    from infra.local.events import RedisEventLog
    from workers import events as ev

    conn = redis_lib.Redis.from_url(EmbeddedRedis(home).url)
    RedisEventLog(conn).send(ev.JobFailed(job_id="early-1", work="digest", error={
        "kind": "platform", "message": EARLY_NEWS, "hint": "h"},
        reply_to={"channel": "C5"}))  # fmt: skip


def test_what_workers_sent_before_the_bots_first_start_is_delivered(stack: Stack) -> None:
    stack.api.wait_for("chat.postMessage", timeout=20,
                       where=lambda c: EARLY_NEWS in json.dumps(c.args))  # fmt: skip


def upload(stack: Stack, file_id: str, name: str, content: bytes, *, user: str = "U1",
           channel: str = "C1", **kind: str) -> str:  # fmt: skip
    """Share a file the way Slack reports it: both events, the first retried once."""
    info = stack.api.add_file(file_id, name, content, user=user, channel=channel, **kind)
    shares = info["shares"].get("public", {}) | info["shares"].get("private", {})
    ts = str(shares[channel][0]["ts"])
    message = {"type": "message", "subtype": "file_share", "channel": channel, "user": user,
               "ts": ts, "files": [{"id": file_id, "name": name}], "text": ""}  # fmt: skip
    shared = {"type": "file_shared", "file_id": file_id, "user_id": user, "channel_id": channel,
              "event_ts": ts}  # fmt: skip
    assert stack.post(event_body(message, event_id=f"Ev{file_id}a"))[0] == 200
    assert stack.post(event_body(shared, event_id=f"Ev{file_id}b"))[0] == 200
    retried = stack.post(
        event_body(message, event_id=f"Ev{file_id}a"),
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"},
    )
    assert retried[0] == 200
    return ts


def registered(stack: Stack, ts: str, channel: str = "C1") -> None:
    """Wait for the bot's answer in the upload's thread: the agent is registered."""
    reply = stack.api.wait_for("chat.postMessage", timeout=60,
                               where=lambda c: c.args.get("thread_ts") == ts
                               and c.args.get("channel") == channel)[0]  # fmt: skip
    assert "Registered" in json.dumps(reply.args), reply.args


@pytest.mark.slow
def test_upload_registers_in_the_files_thread_once(stack: Stack) -> None:
    ts = upload(stack, "F1", "sma_cross.py", SMA_CROSS.read_bytes())
    replies = stack.api.wait_for("chat.postMessage", timeout=60,
                                 where=lambda c: c.args.get("thread_ts") == ts)  # fmt: skip
    text = json.dumps(replies[0].args)
    assert "sma_cross" in text and "1" in text and "SmaCross" in text
    time.sleep(1.0)  # room for a duplicate to show up, if there were one
    assert len([c for c in stack.api.calls_to("chat.postMessage")
                if c.args.get("thread_ts") == ts and not c.rejected]) == 1  # fmt: skip
    assert stack.api.downloads["F1"] == 1


@pytest.mark.slow
def test_a_rejected_upload_says_which_line(stack: Stack) -> None:
    bad = (
        b"import os\nimport backtrader as bt\n\n"
        b"class A(bt.Strategy):\n    def next(self):\n        pass\n"
    )
    ts = upload(stack, "F2", "bad_agent.py", bad)
    reply = stack.api.wait_for("chat.postMessage", timeout=60,
                               where=lambda c: c.args.get("thread_ts") == ts)[0]  # fmt: skip
    text = json.dumps(reply.args)
    assert "line 1" in text and "os" in text


@pytest.mark.slow
def test_backtest_acks_then_everything_in_one_thread(stack: Stack) -> None:
    registered(stack, upload(stack, "F3", "sma_cross.py", SMA_CROSS.read_bytes()))
    status, body, took = stack.command("/backtest", "sma_cross SYN cash=20000")
    assert status == 200 and took < 3.0
    assert "usage" not in body.lower()
    root = stack.root_of("/backtest sma_cross SYN cash=20000")
    chart = _wait_upload(stack, root, timeout=120)
    assert chart.content.startswith(PNG) and chart.channel_id == "C1"
    thread = stack.thread_text(root)
    assert "Sharpe" in thread and "Sortino" in thread
    assert re.search(r"chain|FMEL", thread)
    assert "Last trades" in thread  # the decisions behind the trades, read from the record
    assert "Traceback" not in thread
    # progress is one message updated in place, not a stream of posts
    updates = [c for c in stack.api.calls_to("chat.update") if not c.rejected]
    assert updates, "the status message was updated"
    statuses = {c.args["ts"] for c in updates}
    posted = stack.api.posted("C1", thread_ts=root)
    assert len(statuses & {str(m.get("ts")) for m in posted}) >= 1
    assert "Backtest finished in" in json.dumps(posted[0])  # the status message's last word


def _wait_upload(stack: Stack, thread_ts: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for up in stack.api.uploads:
            if up.thread_ts == thread_ts:
                return up
        time.sleep(0.1)
    raise AssertionError(f"no chart uploaded into thread {thread_ts}; bot log:\n"
                         + "".join(stack.logs[-30:]))  # fmt: skip


def test_a_bad_signature_is_refused(stack: Stack) -> None:
    status, _, _ = stack.post(slash_command_body("/agents", ""), secret="not-the-secret")
    assert status == 401


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (slash_command_body("/agents", ""), {"X-Slack-Request-Timestamp": "soon"}, 401),
        (slash_command_body("/agents", ""), {"X-Slack-Request-Timestamp": ""}, 401),
        ('{"type": "event_callback", "event": ', {}, 400),  # signed, not JSON
        ("[1, 2, 3]", {"Content-Type": "application/json"}, 400),  # signed, not an object
    ],
    ids=["timestamp-not-a-number", "no-timestamp", "signed-broken-json", "signed-json-list"],
)
def test_malformed_requests_get_a_4xx_and_no_traceback(
    stack: Stack, body: str, headers: dict[str, str], expected: int
) -> None:
    status, text, _ = stack.post(body, headers=headers)
    assert status == expected, text
    assert "Traceback" not in text
    assert stack.post(slash_command_body("/agents", ""))[0] == 200  # the bot lives on


def test_an_unknown_agent_answers_only_the_sender(stack: Stack) -> None:
    before = len(stack.api.calls_to("chat.postMessage"))
    status, body, _ = stack.command("/backtest", "nosuch SYN", user="U1", channel="C1")
    assert status == 200
    doc = json.loads(body)
    assert doc.get("response_type", "ephemeral") == "ephemeral"
    assert "no agent nosuch: upload it first" in doc["text"]
    time.sleep(1.0)
    posted = stack.api.calls_to("chat.postMessage")[before:]
    assert not [c for c in posted if "nosuch" in json.dumps(c.args)]


def test_usage_errors_are_one_line_replies(stack: Stack) -> None:
    status, body, _ = stack.command("/backtest", "")
    assert status == 200
    doc = json.loads(body)
    assert "needs an agent" in doc["text"] and "usage: /backtest" in doc["text"]
    assert "\n" not in doc["text"]


@pytest.mark.slow
def test_a_duplicate_command_runs_once(stack: Stack) -> None:
    first = stack.command("/digest", "", user="UADMIN", channel="C7")
    second = stack.command("/digest", "", user="UADMIN", channel="C7")
    assert first[0] == second[0] == 200
    assert "already running" in second[1]
    root = stack.root_of("/digest", channel="C7")
    stack.api.wait_for("chat.postMessage", timeout=60,
                       where=lambda c: c.args.get("thread_ts") == root)  # fmt: skip
    roots = [
        c
        for c in stack.api.calls_to("chat.postMessage")
        if c.args.get("channel") == "C7" and not c.args.get("thread_ts") and not c.rejected
    ]
    assert len(roots) == 1


@pytest.mark.slow
def test_other_users_agents_and_paper_trading_are_refused(stack: Stack) -> None:
    registered(stack, upload(stack, "F4", "owned.py", SMA_CROSS.read_bytes(), user="U1"))
    status, body, _ = stack.command("/backtest", "owned SYN", user="U2")
    assert status == 200 and "belongs to U1" in body
    status, body, _ = stack.command("/paper-start", "owned", user="U2")
    assert "trader role" in body
    status, body, _ = stack.command("/backtest", "owned SYN", user="UADMIN", channel="C8")
    assert "belongs" not in body  # admins may


@pytest.mark.slow
def test_rate_limited_posts_are_retried(stack: Stack) -> None:
    before = len(stack.api.calls_to("chat.postMessage"))
    stack.api.fail_next("chat.postMessage", status=429, retry_after=1)
    status, _, _ = stack.command("/digest", "", user="UADMIN", channel="C9")
    assert status == 200
    stack.root_of("/digest", channel="C9", timeout=20)

    # whichever post met the 429 (the thread root, or another delivery in flight), the
    # client waited Retry-After and sent the very same call again, which went through
    def retried() -> list[Any]:
        calls = stack.api.calls_to("chat.postMessage")[before:]
        (limited,) = [i for i, c in enumerate(calls) if c.rejected]
        return [(calls[limited], c) for c in calls[limited + 1 :]
                if c.args == calls[limited].args and not c.rejected]  # fmt: skip

    deadline = time.monotonic() + 15
    while not retried() and time.monotonic() < deadline:
        time.sleep(0.1)
    ((first, second),) = retried()[:1]
    assert second.at - first.at >= 0.9


def test_health_reports_bot_and_queue(stack: Stack) -> None:
    with urllib.request.urlopen(stack.url + "/health", timeout=10) as resp:
        assert resp.status == 200
        doc = json.loads(resp.read())
    assert doc["queue"]["redis"] == "ok" and doc["queue"]["workers"]["backtest"] >= 1
    assert doc["bot"]["mode"] == "http" and doc["bot"]["delivery"]["alive"]


@pytest.mark.slow
def test_run_again_button_queues_into_the_same_thread(stack: Stack) -> None:
    ts = upload(stack, "F5", "again.py", SMA_CROSS.read_bytes(), user="U1", channel="C5")
    registered(stack, ts, channel="C5")
    thread = stack.api.add_message("C5", "a result", user="UBOT")
    value = json.dumps({"agent": "again", "version": 1, "parameters": {"symbols": ["SYN"]}})
    status, _, took = stack.post(block_action_body("tradeops_backtest_again", value, user="U1",
                                                   channel="C5", message_ts=thread))  # fmt: skip
    assert status == 200 and took < 3.0
    _wait_upload(stack, thread, timeout=120)


def test_the_home_tab_lists_the_users_agents(stack: Stack) -> None:
    ts = upload(stack, "F6", "homely.py", SMA_CROSS.read_bytes(), user="UHOME", channel="C6")
    registered(stack, ts, channel="C6")
    opened = {"type": "app_home_opened", "user": "UHOME", "channel": "D1", "tab": "home"}
    assert stack.post(event_body(opened, event_id="EvHome1"))[0] == 200
    stack.api.wait_for("views.publish", timeout=20)
    view = stack.api.home_view("UHOME")
    assert view is not None and "homely" in json.dumps(view)


def test_an_oversized_upload_is_refused_in_its_thread(stack: Stack) -> None:
    big = b"# padding\n" * 120_000  # over the 1 MiB limit
    ts = upload(stack, "F7", "huge.py", big, user="U1", channel="C1")
    reply = stack.api.wait_for("chat.postMessage", timeout=20,
                               where=lambda c: c.args.get("thread_ts") == ts)[0]  # fmt: skip
    assert "at most 1,048,576" in json.dumps(reply.args)
    assert stack.api.downloads["F7"] == 0  # refused on its size, never fetched


@pytest.mark.slow
def test_a_result_that_could_not_be_posted_is_posted_later(stack: Stack) -> None:
    ts = upload(stack, "F8", "later.py", SMA_CROSS.read_bytes(), user="U1", channel="C4")
    registered(stack, ts, channel="C4")
    status, _, _ = stack.command("/backtest", "later SYN", user="U1", channel="C4")
    assert status == 200
    root = stack.root_of("/backtest later SYN", channel="C4")
    # Slack fails every post for a while: the events stay pending and are delivered later
    stack.api.fail_next("chat.postMessage", status=500, times=3)
    stack.api.fail_next("chat.update", status=500, times=3)
    _wait_upload(stack, root, timeout=90)
    thread = stack.thread_text(root, channel="C4")
    assert "Sharpe" in thread
    posted = stack.api.posted("C4", thread_ts=root)
    assert "Backtest queued" not in json.dumps(posted[-1])  # no late status after the result
    assert any(c.rejected for c in stack.api.calls_to("chat.postMessage"))


def test_a_non_python_file_gets_an_answer_only_in_a_dm(stack: Stack) -> None:
    pdf = {"filetype": "pdf", "mimetype": "application/pdf"}
    in_dm = upload(stack, "F9", "notes.pdf", b"%PDF-1.4", user="U1", channel="D9", **pdf)
    reply = stack.api.wait_for("chat.postMessage", timeout=20,
                               where=lambda c: c.args.get("thread_ts") == in_dm)[0]  # fmt: skip
    assert "agents are Python files" in json.dumps(reply.args)
    in_channel = upload(
        stack,
        "F10",
        "photo.png",
        PNG,
        user="U1",
        channel="C1",
        filetype="png",
        mimetype="image/png",
    )
    time.sleep(1.0)
    assert not [c for c in stack.api.calls_to("chat.postMessage")
                if c.args.get("thread_ts") == in_channel]  # fmt: skip
    assert stack.api.downloads["F9"] == stack.api.downloads["F10"] == 0


def test_an_event_that_cannot_be_shown_is_parked_and_delivery_goes_on(stack: Stack) -> None:
    import redis as redis_lib

    from infra.local.events import RedisEventLog
    from workers import events as ev

    conn = redis_lib.Redis.from_url(EmbeddedRedis(stack.home).url)
    notifier = RedisEventLog(conn)
    # a result no renderer expects (what a hostile box could once hand back)
    poisoned = ev.BacktestFinished(
        job_id="poison-1",
        run_id="run-poison",
        reply_to={"channel": "C4", "thread_ts": "1.1"},
        result={"results": ["x"], "data_checks": 5},
    )
    after = ev.JobFailed(job_id="after-1", work="digest", error={
        "kind": "platform", "message": "still delivered", "hint": "h"},
        reply_to={"channel": "C4", "thread_ts": "1.2"})  # fmt: skip
    notifier.send(poisoned)
    notifier.send(after)
    said = stack.api.wait_for("chat.postMessage", timeout=20,
                              where=lambda c: c.args.get("thread_ts") == "1.1")  # fmt: skip
    assert "could not show this backtest finished" in json.dumps(said[0].args)
    assert "Traceback" not in json.dumps(said[0].args)
    stack.api.wait_for("chat.postMessage", timeout=20,
                       where=lambda c: "still delivered" in json.dumps(c.args))  # fmt: skip
    parked = [json.loads(e) for e in conn.lrange("tradeops:slack:undelivered", 0, -1)]
    assert any(p.get("run_id") == "run-poison" for p in parked)
    conn.delete("tradeops:slack:undelivered")


def test_parked_events_can_be_posted_again(stack: Stack) -> None:
    import redis as redis_lib

    from workers import events as ev

    conn = redis_lib.Redis.from_url(EmbeddedRedis(stack.home).url)
    parked = ev.JobFailed(job_id="parked-1", work="digest", error={
        "kind": "platform", "message": "parked here", "hint": "h"},
        reply_to={"channel": "C3"})  # fmt: skip
    conn.rpush("tradeops:slack:undelivered", parked.to_json())
    done = subprocess.run([sys.executable, "-m", "bot.cli", "bot", "--redeliver"],
                          cwd=REPO_ROOT, env=stack.env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0 and "1 event(s)" in done.stderr
    stack.api.wait_for("chat.postMessage", timeout=20,
                       where=lambda c: "parked here" in json.dumps(c.args))  # fmt: skip
    assert conn.llen("tradeops:slack:undelivered") == 0


@pytest.mark.slow
def test_paper_trading_from_slack_start_status_and_the_stop_button(stack: Stack) -> None:
    ts = upload(stack, "F11", "papered.py", SMA_CROSS.read_bytes(), user="U1", channel="C2")
    registered(stack, ts, channel="C2")
    status, body, _ = stack.command("/paper-start", "papered SYN cash=5000 speed=0.2",
                                    user="U1", channel="C2")  # fmt: skip
    assert status == 200 and "trader" not in body
    root = stack.root_of("/paper-start papered SYN cash=5000 speed=0.2", channel="C2")
    started = stack.api.wait_for("chat.postMessage", timeout=60,
                                 where=lambda c: c.args.get("thread_ts") == root)[0]  # fmt: skip
    text = json.dumps(started.args)
    assert "papered" in text and "tradeops_paper_stop" in text  # a Stop button
    stack.command("/paper-status", "papered", user="U1", channel="C2")
    status_root = stack.root_of("/paper-status papered", channel="C2")
    in_status = lambda c: c.args.get("thread_ts") == status_root  # noqa: E731
    shown = stack.api.wait_for("chat.postMessage", timeout=60, where=in_status)[0]
    assert "running" in json.dumps(shown.args) or "starting" in json.dumps(shown.args)
    value = json.dumps({"agent": "papered"})
    press = block_action_body("tradeops_paper_stop", value, user="U1", channel="C2",
                              message_ts=root, thread_ts=root)  # fmt: skip
    pressed = stack.post(press)
    assert pressed[0] == 200
    stopped = stack.api.wait_for("chat.postMessage", timeout=60, where=lambda c:
                                 c.args.get("thread_ts") == root
                                 and "stopped" in json.dumps(c.args).lower())  # fmt: skip
    assert stopped
    session = stack.home / "paper" / "paper-papered"
    sup = json.loads((session / "supervisor.json").read_text())
    assert sup["status"] == "stopped"
    assert sup["parameters"]["bar_seconds"] == 0.2 and sup["parameters"]["cash"] == 5000


@pytest.mark.slow
def test_a_runs_decisions_are_its_owners(stack: Stack) -> None:
    ts = upload(stack, "F12", "private.py", SMA_CROSS.read_bytes(), user="U1", channel="C3")
    registered(stack, ts, channel="C3")
    stack.command("/backtest", "private SYN", user="U1", channel="C3")
    root = stack.root_of("/backtest private SYN", channel="C3")
    _wait_upload(stack, root, timeout=120)
    status, body, _ = stack.command("/fmel", "private", user="U2", channel="C3")
    assert status == 200 and "belongs to U1" in body
    status, body, _ = stack.command("/fmel", "private last=3", user="U1", channel="C3")
    assert status == 200 and "belongs" not in body and "FMEL" in body
    # verify reads the whole run: acknowledged at once, answered through the response_url
    status, body, seconds = stack.command("/fmel", "private verify", user="U1", channel="C3",
                                          response_url=stack.api.response_url)  # fmt: skip
    assert status == 200 and "Verifying the decision chain of private" in body and seconds < 3
    [answer] = stack.api.wait_for("response_url", timeout=30,
                                  where=lambda c: "Verified" in json.dumps(c.args))  # fmt: skip
    assert answer.args["response_type"] == "ephemeral" and "FMEL" in json.dumps(answer.args)


def test_a_crash_streak_is_one_message_updated_in_place(stack: Stack) -> None:
    import redis as redis_lib

    from infra.local.events import RedisEventLog
    from workers import events as ev

    notifier = RedisEventLog(redis_lib.Redis.from_url(EmbeddedRedis(stack.home).url))
    where = {"channel": "CSTREAK", "thread_ts": "6.1"}  # a channel no other test posts in

    def crash(streak: int, in_a_row: int, reason: str) -> ev.PaperHealth:
        return ev.PaperHealth(job_id="paper-loop-r1", agent_id="loop", reply_to=where,
                              health={"status": "crashed", "exit": 1, "restarts": streak + in_a_row,
                                      "restart_in_s": 1.0, "run_id": "r1", "reason": reason,
                                      "streak": streak, "in_a_row": in_a_row})  # fmt: skip

    in_thread = lambda c: c.args.get("channel") == "CSTREAK"  # noqa: E731
    for n in (1, 2, 3):
        notifier.send(crash(0, n, f"ZeroDivisionError: crash {n}"))
    said = lambda text: lambda c: in_thread(c) and text in json.dumps(c.args)  # noqa: E731
    stack.api.wait_for("chat.update", timeout=20, where=said("crash 3"))
    notifier.send(crash(0, 2, "ZeroDivisionError: crash 2"))  # a late retry of an older one
    notifier.send(crash(7, 1, "ZeroDivisionError: a new streak"))  # after a stable run
    stack.api.wait_for("chat.postMessage", timeout=20, where=said("a new streak"))
    posts = [c for c in stack.api.calls_to("chat.postMessage") if in_thread(c)]
    updates = [c for c in stack.api.calls_to("chat.update") if in_thread(c)]
    assert len(posts) == 2  # one message a streak
    assert len(updates) == 2 and "3 times in a row" in json.dumps(updates[-1].args)
    assert "Why: ZeroDivisionError: crash 3" in json.dumps(updates[-1].args)


@pytest.mark.slow
def test_a_sweep_is_one_progress_message_then_a_ranked_table_and_a_heatmap(stack: Stack) -> None:
    registered(stack, upload(stack, "F20", "sweeper.py", SMA_CROSS.read_bytes()))
    said = "/sweep sweeper fast=5,10 slow=30..50/20 SYN rank=return"
    status, body, took = stack.command("/sweep", said.removeprefix("/sweep "))
    assert status == 200 and took < 3.0, body
    root = stack.root_of(said)
    heatmap = _wait_upload(stack, root, timeout=180)
    assert heatmap.content.startswith(PNG) and heatmap.filename.startswith("sweep-")
    posted = stack.api.posted("C1", thread_ts=root)
    status_ts = str(posted[0].get("ts"))
    assert "Sweep finished" in json.dumps(posted[0])  # the status message's last word
    updated = [c for c in stack.api.calls_to("chat.update")
               if not c.rejected and c.args.get("ts") == status_ts]  # fmt: skip
    assert updated, "the sweep's progress went into one message, updated in place"
    table = json.dumps(posted[1:])
    assert "fast" in table and "slow" in table and "ranked by" in table.lower()
    said_in_thread = [p for p in posted if not p.get("files")]  # the heatmap is a file share
    assert len(said_in_thread) == 2, [json.dumps(p)[:200] for p in posted]  # status + table
    assert "Traceback" not in json.dumps(posted)


def test_a_sweep_too_big_is_answered_in_its_thread(stack: Stack) -> None:
    registered(stack, upload(stack, "F21", "bigsweep.py", SMA_CROSS.read_bytes()))
    said = "/sweep bigsweep fast=1..50 slow=1..50 SYN"
    assert stack.command("/sweep", said.removeprefix("/sweep "))[0] == 200
    root = stack.root_of(said)
    reply = stack.api.wait_for("chat.postMessage", timeout=60,
                               where=lambda c: c.args.get("thread_ts") == root)  # fmt: skip
    text = json.dumps([c.args for c in reply])
    assert "2500 combinations; a sweep runs at most 100" in text
