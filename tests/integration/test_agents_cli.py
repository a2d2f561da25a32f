"""`tradeops agents add|list` and `tradeops runs`: the registry from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SMA_CROSS


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "REDIS_"))}
    env["TRADEOPS_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_add_list_and_versions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = cli(home, "agents", "add", str(SMA_CROSS), "--name", "trend")
    assert first.returncode == 0, first.stderr
    assert "Registered agent trend version 1" in first.stdout
    changed = tmp_path / "trend.py"
    changed.write_text(SMA_CROSS.read_text() + "\n# tuned\n")
    second = cli(home, "agents", "add", str(changed), "--json")
    assert json.loads(second.stdout)["version"] == 2
    listed = json.loads(cli(home, "agents", "list", "--json").stdout)
    assert [(a["name"], a["latest_version"]) for a in listed] == [("trend", 2)]
    assert "trend" in cli(home, "agents", "list").stdout
    assert cli(home, "runs").stdout.strip() == "No runs yet."


def test_a_rejected_upload_is_not_registered(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nimport backtrader as bt\nclass A(bt.Strategy):\n    pass\n")
    out = cli(home, "agents", "add", str(bad))
    assert out.returncode == 1
    assert "line 1: import of 'socket' is not allowed" in out.stdout
    assert "Only pre-approved packages are available" in out.stdout
    assert json.loads(cli(home, "agents", "list", "--json").stdout) == []


def test_bad_names_and_missing_files_are_usage_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = cli(home, "agents", "add", str(SMA_CROSS), "--name", "../etc")
    assert out.returncode == 2 and "agent name '../etc'" in out.stderr
    out = cli(home, "agents", "add", str(tmp_path / "nope.py"))
    assert out.returncode == 2 and "agent file not found" in out.stderr


def test_backtest_by_name_and_file_is_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    by_file = cli(home, "backtest", str(SMA_CROSS), "--json")
    assert by_file.returncode == 0, by_file.stderr
    doc = json.loads(by_file.stdout)
    by_name = cli(home, "backtest", "sma_cross@v1", "--json")
    assert by_name.returncode == 0, by_name.stderr
    again = json.loads(by_name.stdout)
    assert again["fmel"]["chain_head"] == doc["fmel"]["chain_head"]  # the same stored code
    runs = json.loads(cli(home, "runs", "sma_cross", "--json").stdout)
    assert [r["run_id"] for r in runs] == [again["run_id"], doc["run_id"]]
    assert all(r["status"] == "finished" and r["version"] == 1 for r in runs)
    unknown = cli(home, "backtest", "ghost")
    assert (
        unknown.returncode == 2 and "registered agent 'ghost' (agents: sma_cross)" in unknown.stderr
    )


TWO = """
import backtrader as bt


class First(bt.Strategy):
    pass


class Second(bt.Strategy):
    def next(self):
        if not self.position:
            self.buy()
"""


def test_a_version_keeps_the_strategy_it_was_registered_with(tmp_path: Path) -> None:
    home, two = tmp_path / "home", tmp_path / "two.py"
    two.write_text(TWO)
    refused = cli(home, "agents", "add", str(two))
    assert refused.returncode == 1 and "several strategies" in refused.stdout
    added = cli(home, "agents", "add", str(two), "--strategy", "Second")
    assert added.returncode == 0 and "strategy Second" in added.stdout, added.stdout
    again = cli(home, "backtest", "two@v1", "--start", "2024-01-01", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["strategy"]["name"] == "Second"
    other = cli(home, "backtest", "two", "--strategy", "First", "--start", "2024-01-01", "--json")
    assert json.loads(other.stdout)["strategy"]["name"] == "First"  # a run may pick another
    (latest, _) = json.loads(cli(home, "runs", "two", "--json").stdout)
    assert latest["parameters"]["strategy"] == "First"  # and says so, to be run again
