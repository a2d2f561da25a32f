"""Cash and commission oddities are said in the result's warnings (in-process runs)."""

from __future__ import annotations

from pathlib import Path

from runtime.backtest import BacktestRequest, run_backtest
from runtime.paths import EXAMPLES_DIR

GREEDY = """
import backtrader as bt


class Greedy(bt.Strategy):
    def next(self):
        if not self.position:
            self.buy(size=1000)  # about 300,000 of SPY: refused with 10,000 of cash
"""


def test_orders_refused_for_lack_of_cash_are_said(tmp_path: Path) -> None:
    agent = tmp_path / "greedy.py"
    agent.write_text(GREEDY)
    doc = run_backtest(BacktestRequest(agent_file=agent))
    assert doc["error"] is None
    (said,) = doc["warnings"]
    refused = doc["monitoring"]["orders_rejected"]
    assert refused > 1 and said.startswith(f"{refused} orders were refused for lack of cash")


def test_cash_below_one_share_and_a_commission_far_too_high_are_said() -> None:
    req = BacktestRequest(agent_file=EXAMPLES_DIR / "sma_cross.py", symbols=("SPY", "TLT"),
                          cash=200.0, commission=0.05)  # fmt: skip
    said = run_backtest(req)["warnings"]
    assert any(w.startswith("cash 200.00 buys not one share of SPY at its first") for w in said)
    assert not any("TLT" in w for w in said)  # TLT's first close is under 200
    assert any(w.startswith("commission 5.00% of each trade's value") for w in said)


def test_a_plain_run_has_no_money_warnings() -> None:
    doc = run_backtest(BacktestRequest(agent_file=EXAMPLES_DIR / "sma_cross.py", commission=0.001))
    assert doc["warnings"] == []
