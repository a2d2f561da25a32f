"""A paper session on Alpaca: `python -m runtime paper` with the Alpaca feed and broker, the
real alpaca-py clients talking to the local Alpaca stand-in (REST and the bars websocket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime.fmel import store
from tests.alpaca_api import API_KEY, SECRET, AlpacaAPI
from tests.conftest import REPO_ROOT

AGENT = """
import backtrader as bt

class Scheduled(bt.Strategy):
    def __init__(self):
        self.pending = None

    def notify_order(self, order):
        if not order.alive():
            self.pending = None

    def next(self):
        if len(self) >= 3 and not self.position and self.pending is None:
            self.pending = self.buy(size=5)
"""


def start_session(folder: Path, api: AlpacaAPI) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "ALPACA_"))}
    env |= {"ALPACA_API_KEY": API_KEY, "ALPACA_SECRET_KEY": SECRET,
            "ALPACA_API_URL": api.base_url, "ALPACA_DATA_STREAM_URL": api.stream_url}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "runtime", "paper", "--session", str(folder)],
                            cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE)  # fmt: skip


def push(api: AlpacaAPI, start: datetime, first: int, count: int) -> None:
    for i in range(first, first + count):
        price = 100.0 + i
        api.push_bar("SPY", start + timedelta(minutes=i), price, price + 1, price - 1, price + 0.5)


def wait_rows(folder: Path, run_id: str, n: int, api: AlpacaAPI) -> list[dict[str, Any]]:
    def enough() -> bool:
        return len(store.read_rows(folder / "out" / "fmel", run_id)) >= n

    try:
        api.wait_for(f"{n} FMEL rows", enough, timeout=30)
    except AssertionError:
        have = store.read_rows(folder / "out" / "fmel", run_id)
        raise AssertionError(f"{len(have)} rows of {n}; last {have[-1:]}") from None
    return store.read_rows(folder / "out" / "fmel", run_id)


def test_alpaca_session_orders_fills_and_a_restart_sends_nothing_twice(tmp_path: Path) -> None:
    folder = tmp_path / "paper-alp"
    folder.mkdir()
    (folder / "agent.py").write_text(AGENT)
    run_id = "paper-alpaca-1"
    (folder / "spec.json").write_text(json.dumps({
        "agent_id": "alp", "run_id": run_id, "agent_file": "agent.py", "symbols": ["SPY"],
        "feed": "alpaca", "flush_seconds": 0.2,
    }))  # fmt: skip
    t0 = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    with AlpacaAPI(cash=100_000.0) as api:
        proc = start_session(folder, api)
        try:
            api.wait_for("the session to subscribe", lambda: api.subscribed("SPY"), timeout=60)
            push(api, t0, 0, 3)  # the buy goes out on the third bar…
            api.wait_for("the buy", lambda: len(api.orders) == 1, timeout=30)
            push(api, t0, 3, 1)  # … and fills at the next bar's open
            api.wait_for("the fill", lambda: api.orders[0]["status"] == "filled", timeout=30)
            time.sleep(1.5)  # the broker polls its orders every second
            push(api, t0, 4, 2)
            try:
                wait_rows(folder, run_id, 6, api)
            except AssertionError:
                proc.kill()
                assert proc.stderr is not None
                raise AssertionError(proc.stderr.read().decode()[-3000:]) from None
            assert [o["side"] for o in api.orders] == ["buy"]
            assert api.orders[0]["status"] == "filled"
            assert api.positions()["SPY"][0] == 5
            proc.kill()  # no clean stop: the next session resumes from the stored rows
            proc.wait()
            before = api.subscriptions
        finally:
            if proc.poll() is None:
                proc.kill()
        again = start_session(folder, api)
        try:
            api.wait_for("the restart to subscribe", lambda: api.subscriptions > before,
                         timeout=60)  # fmt: skip
            push(api, t0, 6, 6)
            got = wait_rows(folder, run_id, 12, api)
            again.send_signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0
        finally:
            if again.poll() is None:
                again.kill()
        # the restarted session found the position at Alpaca and did not buy again
        assert [o["side"] for o in api.orders] == ["buy"]
        assert api.positions()["SPY"][0] == 5
    # one chain across the restart; the fills are in the record
    verified = store.verify_run(folder / "out" / "fmel", run_id)
    assert verified.ok, verified
    assert [r["bar_number"] for r in got] == list(range(1, len(got) + 1))
    filled = [f for r in got for f in r["fills"]]
    assert filled and filled[0]["size"] == 5 and filled[0]["symbol"] == "SPY"
    assert "ALPACA" not in (folder / "out" / "state.json").read_text()
