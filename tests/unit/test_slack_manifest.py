"""infra/deploy/slack-manifest.yml agrees with the code: commands, URLs, events, scopes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bot.commands import USAGE
from bot.slack_app import SLASH_COMMANDS
from bot.slack_server import EVENTS_PATH
from tests.conftest import REPO_ROOT

MANIFEST_PATH = REPO_ROOT / "infra" / "deploy" / "slack-manifest.yml"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def commands(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    listed = manifest["features"]["slash_commands"]
    return {c["command"]: c for c in listed}


def test_the_slash_commands_are_exactly_the_bots(manifest: dict[str, Any]) -> None:
    listed = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert len(listed) == len(set(listed)), "a command is listed twice"
    assert sorted(listed) == sorted(SLASH_COMMANDS)


@pytest.mark.parametrize("name", list(USAGE))
def test_each_usage_hint_is_the_commands_arguments(manifest: dict[str, Any], name: str) -> None:
    entry = commands(manifest)[f"/{name}"]
    word, _, arguments = USAGE[name].partition(" ")
    assert word == f"/{name}"
    if arguments:
        assert entry.get("usage_hint") == arguments
    else:
        assert "usage_hint" not in entry, f"/{name} takes no arguments"
    assert entry.get("description"), f"/{name} has no description"
    assert entry.get("should_escape") is False  # the parser reads the text as typed


def test_every_url_is_the_bots_events_path(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls += [settings["event_subscriptions"]["request_url"]]
    urls += [settings["interactivity"]["request_url"]]
    assert EVENTS_PATH == "/slack/events"
    for url in urls:
        assert url.startswith("https://"), url
        assert url.endswith(EVENTS_PATH), url
    assert len(set(urls)) == 1, "every request goes to the one endpoint"


def test_the_bot_events_the_app_handles(manifest: dict[str, Any]) -> None:
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_home_opened", "file_shared", "message.channels", "message.im"} <= events


def test_the_scopes_cover_what_the_code_calls(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # slash commands; chat.postMessage/update/postEphemeral; files.info and url_private;
    # files_upload_v2 (the equity chart)
    assert {"commands", "chat:write", "files:read", "files:write"} <= scopes
    # each message.<kind> event needs the matching <kind>:history scope
    history = {"channels": "channels:history", "groups": "groups:history", "im": "im:history",
               "mpim": "mpim:history"}  # fmt: skip
    for event in manifest["settings"]["event_subscriptions"]["bot_events"]:
        kind, dot, where = event.partition(".")
        if kind == "message" and dot:
            assert history[where] in scopes, f"{event} needs {history[where]}"


def test_the_home_tab_and_interactivity_are_on(manifest: dict[str, Any]) -> None:
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["bot_user"]["display_name"]
