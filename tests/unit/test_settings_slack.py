"""The Slack settings: token shapes, secrets kept out of messages and reprs, API URL, roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError

BOT_TOKEN = "xoxb-1234-5678-s3cr3tB0t"
APP_TOKEN = "xapp-1-A0123-9876-s3cr3tApp"
SIGNING_SECRET = "8f3e1c0d9b7a6f5e4d3c2b1a0f9e8d7c"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"TRADEOPS_HOME": str(tmp_path / "home"), **env})


def error(tmp_path: Path, **env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        settings(tmp_path, **env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_slack_is_optional_and_roles_default_to_nobody(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.slack_bot_token is None
    assert s.slack_app_token is None
    assert s.slack_signing_secret is None
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.admins == frozenset()
    assert s.traders == frozenset()


def test_well_formed_tokens_and_secret_are_kept(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        SLACK_BOT_TOKEN=f" {BOT_TOKEN} ",
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_SIGNING_SECRET=f"{SIGNING_SECRET}\n",
    )
    assert s.slack_bot_token == BOT_TOKEN
    assert s.slack_app_token == APP_TOKEN
    assert s.slack_signing_secret == SIGNING_SECRET


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("var", ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"])
def test_empty_means_unset(tmp_path: Path, var: str, value: str) -> None:
    s = settings(tmp_path, **{var: value})
    assert s.slack_bot_token is s.slack_app_token is s.slack_signing_secret is None


@pytest.mark.parametrize(
    ("var", "prefix", "wrong"),
    [
        ("SLACK_BOT_TOKEN", "xoxb-", APP_TOKEN),  # the two tokens swapped
        ("SLACK_BOT_TOKEN", "xoxb-", "xoxp-1234-user-s3cr3t"),  # a user token
        ("SLACK_BOT_TOKEN", "xoxb-", "XOXB-1234-s3cr3t"),
        ("SLACK_BOT_TOKEN", "xoxb-", "s3cr3t-xoxb-1234"),
        ("SLACK_APP_TOKEN", "xapp-", BOT_TOKEN),
        ("SLACK_APP_TOKEN", "xapp-", "xoxa-2-s3cr3t"),
        ("SLACK_APP_TOKEN", "xapp-", "app-s3cr3t-1234"),
    ],
)
def test_a_wrong_token_is_named_without_showing_it(
    tmp_path: Path, var: str, prefix: str, wrong: str
) -> None:
    message = error(tmp_path, **{var: wrong})
    assert message.startswith(f"{var}: ")
    assert prefix in message
    assert wrong not in message
    assert "s3cr3t" not in message  # not even a piece of it


@pytest.mark.parametrize("show", [repr, str])
def test_secrets_never_appear_in_repr_or_str(tmp_path: Path, show: object) -> None:
    s = settings(
        tmp_path,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        TRADEOPS_ADMINS="UADMIN1",
    )
    assert callable(show)
    shown = show(s)
    assert "UADMIN1" in shown  # the rest of the settings are still there
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, "s3cr3t", "xoxb-", "xapp-"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://slack.com/api/", "https://slack.com/api/"),
        ("https://slack.com/api", "https://slack.com/api/"),
        ("http://127.0.0.1:8765/api", "http://127.0.0.1:8765/api/"),
        ("  http://localhost:9000/  ", "http://localhost:9000/"),
        ("", "https://slack.com/api/"),
        ("   ", "https://slack.com/api/"),
    ],
)
def test_the_api_url_ends_in_a_slash(tmp_path: Path, given: str, expected: str) -> None:
    assert settings(tmp_path, SLACK_API_URL=given).slack_api_url == expected


@pytest.mark.parametrize(
    "bad",
    ["ftp://slack.com/api/", "file:///etc/passwd", "slack.com/api/", "//slack.com/api", "https:/x"],
)
def test_a_non_http_api_url_is_refused(tmp_path: Path, bad: str) -> None:
    message = error(tmp_path, SLACK_API_URL=bad)
    assert message.startswith("SLACK_API_URL: ")
    assert "http" in message


@pytest.mark.parametrize("var", ["TRADEOPS_ADMINS", "TRADEOPS_TRADERS"])
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("U012AB3CD", {"U012AB3CD"}),
        ("U012AB3CD,W0456EF", {"U012AB3CD", "W0456EF"}),
        (" U012AB3CD , W0456EF ,", {"U012AB3CD", "W0456EF"}),
        ("U1,U1,U2", {"U1", "U2"}),
        ("", set()),
        (" , ,", set()),
    ],
)
def test_roles_are_comma_separated_user_ids(
    tmp_path: Path, var: str, given: str, expected: set[str]
) -> None:
    s = settings(tmp_path, **{var: given})
    got = s.admins if var == "TRADEOPS_ADMINS" else s.traders
    other = s.traders if var == "TRADEOPS_ADMINS" else s.admins
    assert got == frozenset(expected)
    assert other == frozenset()


def test_admins_and_traders_are_read_separately(tmp_path: Path) -> None:
    s = settings(tmp_path, TRADEOPS_ADMINS="UADMIN", TRADEOPS_TRADERS="UTRADER1,UTRADER2")
    assert s.admins == frozenset({"UADMIN"})
    assert s.traders == frozenset({"UTRADER1", "UTRADER2"})


@pytest.mark.parametrize("var", ["TRADEOPS_ADMINS", "TRADEOPS_TRADERS"])
@pytest.mark.parametrize(
    "junk",
    ["U1;rm", "U1 U2", "@alice", "<@U012AB3CD>", "U1/../x", "U1$(id)", "U1\tU2", "U-1"],
)
def test_junk_in_roles_is_refused_naming_the_variable(tmp_path: Path, var: str, junk: str) -> None:
    message = error(tmp_path, **{var: f"UGOOD,{junk}"})
    assert message.startswith(f"{var}: ")
    assert "UGOOD" not in message  # the good id is not blamed


def test_require_names_the_missing_signing_secret(tmp_path: Path) -> None:
    s = settings(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN)
    with pytest.raises(SettingsError) as caught:
        s.require("slack_bot_token", "slack_signing_secret")
    message = str(caught.value)
    assert "\n" not in message
    assert "SLACK_SIGNING_SECRET" in message
    assert "SLACK_BOT_TOKEN" not in message
    assert BOT_TOKEN not in message


def test_require_names_the_first_missing_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        settings(tmp_path).require("slack_bot_token", "slack_signing_secret")


def test_require_passes_when_everything_is_set(tmp_path: Path) -> None:
    s = settings(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)
    s.require("slack_bot_token", "slack_signing_secret")
    s.require()


def test_secrets_can_be_files_a_mounted_secret_gives(tmp_path: Path) -> None:
    (tmp_path / "bot").write_text(BOT_TOKEN + "\n")
    (tmp_path / "signing").write_text(SIGNING_SECRET)
    s = settings(tmp_path, SLACK_BOT_TOKEN_FILE=str(tmp_path / "bot"),
                 SLACK_SIGNING_SECRET_FILE=str(tmp_path / "signing"))  # fmt: skip
    assert (s.slack_bot_token, s.slack_signing_secret) == (BOT_TOKEN, SIGNING_SECRET)
    said = error(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_BOT_TOKEN_FILE=str(tmp_path / "bot"))
    assert said == "SLACK_BOT_TOKEN: set SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE, not both"
    said = error(tmp_path, SLACK_SIGNING_SECRET_FILE=str(tmp_path / "missing"))
    assert said.startswith("SLACK_SIGNING_SECRET_FILE: cannot read") and SIGNING_SECRET not in said
    (tmp_path / "bad").write_text("not-a-token")
    said = error(tmp_path, SLACK_BOT_TOKEN_FILE=str(tmp_path / "bad"))
    assert "not-a-token" not in said and said.startswith("SLACK_BOT_TOKEN: expected a token")
