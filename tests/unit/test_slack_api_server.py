"""The local Slack Web API server (tests/slack_api.py), driven by the real slack_sdk client."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.slack_api import (
    SlackAPI,
    block_action_body,
    event_body,
    signed_request,
    slash_command_body,
)

TOKEN = "xoxb-test"


@pytest.fixture
def api() -> Iterator[SlackAPI]:
    with SlackAPI(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(api: SlackAPI) -> WebClient:
    return WebClient(token=TOKEN, base_url=api.base_url, timeout=5)


def fetch(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---------------------------------------------------------------------- server basics
def test_base_url_is_local_and_ends_in_api() -> None:
    with SlackAPI() as api:
        assert api.base_url.startswith("http://127.0.0.1:")
        assert api.base_url.endswith("/api/")
    with pytest.raises(RuntimeError):
        _ = api.base_url


def test_auth_test_answers_like_a_bot_token(api: SlackAPI, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["team_id"] == "T1"
    assert resp["user_id"] == api.bot_user_id
    assert resp["bot_id"] == api.bot_id
    assert "chat:write" in resp.headers["x-oauth-scopes"]
    [call] = api.calls_to("auth.test")
    assert call.token == TOKEN
    assert not call.rejected


def test_invalid_token_is_refused_and_recorded(api: SlackAPI) -> None:
    wrong = WebClient(token="xoxb-wrong", base_url=api.base_url)
    with pytest.raises(SlackApiError) as info:
        wrong.chat_postMessage(channel="C1", text="hi")
    assert info.value.response["error"] == "invalid_auth"
    [call] = api.calls_to("chat.postMessage")
    assert call.rejected and call.token == "xoxb-wrong"
    assert api.posted() == []


def test_unknown_method_is_answered_and_recorded(api: SlackAPI, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        client.api_call("pins.add", params={"channel": "C1"})
    assert info.value.response["error"] == "unknown_method"
    assert api.calls_to("pins.add")[0].args == {"channel": "C1"}


# ---------------------------------------------------------------------- messages
def test_post_and_update_messages(api: SlackAPI, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*running*"}}]
    first = client.chat_postMessage(channel="C1", text="backtest queued", blocks=blocks)
    reply = client.chat_postMessage(channel="C1", text="done", thread_ts=first["ts"])
    assert first["channel"] == "C1"
    assert first["message"]["blocks"] == blocks
    assert first["ts"] < reply["ts"]
    assert reply["message"]["thread_ts"] == first["ts"]

    updated = client.chat_update(channel="C1", ts=first["ts"], text="backtest finished")
    assert updated["ts"] == first["ts"]
    assert updated["message"]["text"] == "backtest finished"
    assert [m["text"] for m in api.posted("C1", thread_ts=first["ts"])] == ["done"]
    assert api.posted("C1")[0]["text"] == "backtest finished"
    assert api.calls_to("chat.postMessage")[0].args["blocks"] == blocks


def test_update_of_an_unknown_message_fails(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        client.chat_update(channel="C1", ts="1.000100", text="x")
    assert info.value.response["error"] == "message_not_found"


def test_ephemeral_permalink_views_and_lookups(api: SlackAPI, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="thread")["ts"]
    reply = client.chat_postMessage(channel="C1", text="reply", thread_ts=parent)["ts"]
    assert client.chat_postEphemeral(channel="C1", user="U1", text="only you")["message_ts"]
    link = client.chat_getPermalink(channel="C1", message_ts=reply)["permalink"]
    assert link.endswith(f"/archives/C1/p{reply.replace('.', '')}?thread_ts={parent}&cid=C1")

    view = {"type": "home", "blocks": [{"type": "divider"}]}
    published = client.views_publish(user_id="U1", view=view)["view"]
    assert published["type"] == "home" and published["blocks"] == view["blocks"]
    assert api.home_view("U1") == published

    assert client.conversations_info(channel="C1")["channel"]["id"] == "C1"
    assert client.users_info(user="U1")["user"]["id"] == "U1"


def test_wait_for_sees_calls_from_another_thread(api: SlackAPI, client: WebClient) -> None:
    def post_later() -> None:
        for text in ("one", "two"):
            client.chat_postMessage(channel="C1", text=text)

    threading.Thread(target=post_later).start()
    calls = api.wait_for("chat.postMessage", count=2, timeout=5)
    assert [c.args["text"] for c in calls] == ["one", "two"]
    [two] = api.wait_for("chat.postMessage", where=lambda c: c.args["text"] == "two")
    assert two.response["ok"] is True
    with pytest.raises(TimeoutError, match=r"0 of 1 chat\.update"):
        api.wait_for("chat.update", timeout=0.1)

    api.reset()
    assert api.calls == []


# ---------------------------------------------------------------------- files
def test_files_info_and_download_with_the_bot_token(api: SlackAPI, client: WebClient) -> None:
    source = b"class Agent:\n    pass\n"
    api.add_file("F1", "sma.py", source, user="U1", channel="C1")
    file = client.files_info(file="F1")["file"]
    assert file["id"] == "F1" and file["name"] == "sma.py" and file["size"] == len(source)
    assert file["filetype"] == "python" and file["mimetype"] == "text/x-python"
    assert file["url_private"] == f"{api.url}/files-pri/T1-F1/sma.py"
    [share] = file["shares"]["public"]["C1"]
    assert api.posted("C1")[0]["ts"] == share["ts"]

    assert fetch(file["url_private"]) == (200, source)
    assert fetch(file["url_private_download"]) == (200, source)
    assert fetch(file["url_private"], token=None)[0] == 403
    assert fetch(file["url_private"], token="xoxb-wrong")[0] == 403
    assert api.downloads["F1"] == 2


def test_file_shared_in_a_thread_says_so(api: SlackAPI, client: WebClient) -> None:
    api.add_file("F2", "a.py", b"x = 1\n", channel="C1", thread_ts="1700000000.000100")
    share = client.files_info(file="F2")["file"]["shares"]["public"]["C1"][0]
    assert share["thread_ts"] == "1700000000.000100"
    with pytest.raises(SlackApiError) as info:
        client.files_info(file="F404")
    assert info.value.response["error"] == "file_not_found"


def test_files_upload_v2_end_to_end(api: SlackAPI, client: WebClient) -> None:
    thread = client.chat_postMessage(channel="C1", text="backtest")["ts"]
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    resp = client.files_upload_v2(
        channel="C1", thread_ts=thread, content=png, filename="chart.png", initial_comment="equity"
    )
    [upload] = api.uploads
    assert upload.filename == "chart.png" and upload.title == "chart.png"
    assert upload.content == png
    assert (upload.channel_id, upload.thread_ts) == ("C1", thread)
    assert upload.initial_comment == "equity"
    assert resp["file"]["id"] == upload.file_id
    assert resp["file"]["mimetype"] == "image/png"

    info = client.files_info(file=upload.file_id)["file"]
    assert fetch(info["url_private"]) == (200, png)
    [shared] = api.posted("C1", thread_ts=thread)
    assert shared["text"] == "equity" and shared["files"][0]["id"] == upload.file_id
    get_url = api.calls_to("files.getUploadURLExternal")[0]
    assert get_url.args["length"] == str(len(png))


# ---------------------------------------------------------------------- failure injection
def test_rate_limit_is_retried_by_slack_sdk(api: SlackAPI) -> None:
    client = WebClient(
        token=TOKEN,
        base_url=api.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    api.fail_next("chat.postMessage", retry_after=1)
    resp = client.chat_postMessage(channel="C1", text="after a 429")
    assert resp["ok"]
    first, second = api.calls_to("chat.postMessage")
    assert first.rejected and first.response["error"] == "ratelimited"
    assert not second.rejected
    assert second.at - first.at >= 1
    assert api.wait_for("chat.postMessage") == [second]


def test_rate_limit_without_retries_raises(api: SlackAPI, client: WebClient) -> None:
    api.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel="C1", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"


def test_injected_error_raises_slack_api_error(api: SlackAPI, client: WebClient) -> None:
    api.fail_next("chat.postMessage", error="channel_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            client.chat_postMessage(channel="C9", text="x")
        assert info.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C9", text="x")["ok"]
    assert [c.rejected for c in api.calls_to("chat.postMessage")] == [True, True, False]
    assert len(api.calls_to("chat.postMessage", rejected=True)) == 2


# ---------------------------------------------------------------------- requests into the bot
def test_signed_requests_verify_with_the_same_secret_only() -> None:
    body = slash_command_body("/backtest", "sma_cross SPY", user="U7")
    headers, raw = signed_request("/slack/events", body, secret="s3cret")
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert raw == body.encode()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier("s3cret").is_valid(body=raw, timestamp=ts, signature=sig)
    assert SignatureVerifier("s3cret").is_valid_request(raw, headers)
    assert not SignatureVerifier("other").is_valid(body=raw, timestamp=ts, signature=sig)

    old, _ = signed_request("/slack/events", body, secret="s3cret", timestamp=1)
    assert not SignatureVerifier("s3cret").is_valid_request(raw, old)


def test_request_bodies_look_like_slacks() -> None:
    command = {k: v[0] for k, v in parse_qs(slash_command_body("/runs", "last 5")).items()}
    assert command["command"] == "/runs" and command["text"] == "last 5"
    assert (command["user_id"], command["channel_id"], command["team_id"]) == ("U1", "C1", "T1")
    assert command["trigger_id"]

    event = json.loads(event_body({"type": "file_shared", "file_id": "F1"}, event_id="Ev1"))
    assert event["type"] == "event_callback" and event["event_id"] == "Ev1"
    assert event["event"]["file_id"] == "F1" and event["team_id"] == "T1"
    headers, _ = signed_request("/slack/events", json.dumps(event), secret="s")
    assert headers["Content-Type"] == "application/json"

    raw = block_action_body(
        "tradeops_paper_stop",
        '{"agent": "sma"}',
        user="U2",
        channel="C1",
        message_ts="1700000000.000200",
        thread_ts="1700000000.000100",
    )
    payload = json.loads(parse_qs(raw)["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "tradeops_paper_stop"
    assert payload["actions"][0]["value"] == '{"agent": "sma"}'
    assert payload["user"]["id"] == "U2" and payload["channel"]["id"] == "C1"
    assert payload["container"]["message_ts"] == "1700000000.000200"
    assert payload["message"]["thread_ts"] == "1700000000.000100"


def test_response_url_posts_are_recorded(api: SlackAPI) -> None:
    req = urllib.request.Request(
        api.response_url,
        data=json.dumps({"text": "queued", "response_type": "ephemeral"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    [call] = api.wait_for("response_url")
    assert call.args["text"] == "queued"


def test_a_bolt_app_accepts_the_signed_requests(api: SlackAPI, client: WebClient) -> None:
    from slack_bolt import Ack, App, BoltRequest, Respond

    app = App(token=TOKEN, signing_secret="s3cret", client=client)

    @app.command("/runs")
    def runs(ack: Ack, respond: Respond, command: dict[str, str]) -> None:
        ack()
        respond(f"runs for {command['user_id']}")

    @app.action("tradeops_paper_stop")
    def stop(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        client.chat_postMessage(
            channel=body["channel"]["id"], thread_ts=body["container"]["thread_ts"], text="stop"
        )

    def signed(body: str, secret: str = "s3cret") -> BoltRequest:
        headers, raw = signed_request("/slack/events", body, secret=secret)
        as_bolt_wants: dict[str, str | Sequence[str]] = dict(headers)
        return BoltRequest(body=raw.decode(), headers=as_bolt_wants)

    body = slash_command_body("/runs", "", user="U7", response_url=api.response_url)
    assert app.dispatch(signed(body)).status == 200
    assert api.wait_for("response_url")[0].args["text"] == "runs for U7"

    parent = client.chat_postMessage(channel="C1", text="paper")["ts"]
    body = block_action_body(
        "tradeops_paper_stop", "sma", user="U7", channel="C1", message_ts=parent, thread_ts=parent
    )
    assert app.dispatch(signed(body, secret="wrong")).status == 401
    assert app.dispatch(signed(body)).status == 200
    [reply] = api.wait_for("chat.postMessage", where=lambda c: c.args["text"] == "stop")
    assert reply.args["thread_ts"] == parent
