"""TRADEOPS_DIGESTS: which channels get a digest, and at what UTC time."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError


def settings(tmp_path: Path, digests: str | None) -> Settings:
    env = {"TRADEOPS_HOME": str(tmp_path / "home")}
    if digests is not None:
        env["TRADEOPS_DIGESTS"] = digests
    return Settings.from_env(env)


@pytest.mark.parametrize("value", [None, "", "  ", ",", " , ,"])
def test_unset_or_empty_means_no_digests(tmp_path: Path, value: str | None) -> None:
    assert settings(tmp_path, value).digests == ()


def test_channels_and_times_in_order(tmp_path: Path) -> None:
    got = settings(tmp_path, "C0123ABCD@09:00,C0456@17:30").digests
    assert got == (("C0123ABCD", "09:00"), ("C0456", "17:30"))


def test_spaces_around_entries_and_a_trailing_comma_are_fine(tmp_path: Path) -> None:
    got = settings(tmp_path, " C0123ABCD@09:00 , G0456@23:59, ").digests
    assert got == (("C0123ABCD", "09:00"), ("G0456", "23:59"))


def test_one_channel_may_have_several_times_and_repeats_count_once(tmp_path: Path) -> None:
    got = settings(tmp_path, "C01@09:00,C01@17:30,C01@09:00").digests
    assert got == (("C01", "09:00"), ("C01", "17:30"))


def test_short_ids_are_ids_too(tmp_path: Path) -> None:
    assert settings(tmp_path, "C1@07:05").digests == (("C1", "07:05"),)


def test_midnight_and_the_last_minute_of_the_day(tmp_path: Path) -> None:
    assert settings(tmp_path, "C01@00:00,C02@23:59").digests == (
        ("C01", "00:00"), ("C02", "23:59"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        "C0123ABCD",  # no time
        "C0123ABCD@",  # empty time
        "@09:00",  # no channel
        "C0123ABCD@24:00",  # not a 24-hour time
        "C0123ABCD@09:60",
        "C0123ABCD@9:00",  # HH:MM, two digits
        "C0123ABCD@09:00:00",
        "C0123ABCD@09h00",
        "#general@09:00",  # a channel name, not an id
        "C@09:00",
        "c0123abcd@09:00",  # ids are upper case
        "C0123ABCD@09:00@10:00",
        "C0123ABCD 09:00",
    ],
)
def test_a_malformed_entry_is_named_in_one_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(tmp_path, f"C0999@08:00,{bad}")
    message = str(caught.value)
    assert message.startswith("TRADEOPS_DIGESTS: ")
    assert repr(bad) in message
    assert "\n" not in message
    assert "C0999" not in message  # the good entry is not blamed
