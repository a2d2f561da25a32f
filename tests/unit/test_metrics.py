"""MetricsAnalyzer: cross-checked against backtrader's own analyzers and plain numpy."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, NamedTuple

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from runtime.metrics import MAX_TRADES, RESULT_KEYS, TRADE_KEYS, MetricsAnalyzer, periods_per_year

CASH = 100_000.0
COMMISSION = 0.001


def make_frame(seed: int, periods: int = 320, start: str = "2021-01-04") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.bdate_range(start, periods=periods)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, periods)))
    open_ = close * np.exp(rng.normal(0.0, 0.004, periods))
    spread = np.abs(rng.normal(0.0, 0.006, periods))
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.integers(1_000, 10_000, periods).astype(float),
            "openinterest": 0.0,
        },
        index=index,
    )


class Fill(NamedTuple):
    """A completed order as the strategy saw it."""

    symbol: str
    size: float  # signed
    price: float
    bar: int  # len(data) when it filled
    when: datetime


class Recorder(bt.Strategy):
    """Base: records closed trades, fills and exposure itself, for independent checks."""

    def __init__(self) -> None:
        self.closed_pnl: list[float] = []
        self.exposed: list[bool] = []
        self.fills: list[Fill] = []

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed:
            self.closed_pnl.append(trade.pnlcomm)

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            data = order.data
            when = data.datetime.datetime(0)
            self.fills.append(
                Fill(data._name, order.executed.size, order.executed.price, len(data), when)
            )

    def _record(self) -> None:
        self.exposed.append(any(self.getposition(d).size != 0 for d in self.datas))

    def prenext(self) -> None:
        self._record()

    def next(self) -> None:
        self._record()


class BuyAndHold(Recorder):
    def next(self) -> None:
        super().next()
        if not self.position:
            self.buy(size=500)


class SmaCross(Recorder):
    params = (("fast", 3), ("slow", 8))

    def __init__(self) -> None:
        super().__init__()
        self.cross = bt.ind.CrossOver(
            bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow)
        )

    def next(self) -> None:
        super().next()
        if self.cross[0] > 0:
            self.order_target_size(target=400)
        elif self.cross[0] < 0:
            self.order_target_size(target=-400)


class NeverTrades(Recorder):
    pass


class Scaling(Recorder):
    """Scales in and out of long and short positions in two datas: additions, partial exits,
    additions after a partial exit, reversals."""

    TARGETS = (100, 300, 150, 250, 0, -200, -50, -250, 100, 0)

    def next(self) -> None:
        super().next()
        if len(self) % 3:
            return
        step = len(self) // 3
        for i, data in enumerate(self.datas):
            target = self.TARGETS[(step + 3 * i) % len(self.TARGETS)]
            self.order_target_size(data=data, target=target)


class Schedule(Recorder):
    """Orders each bar's target size from ``targets`` (bar number -> size)."""

    params = (("targets", {}),)

    def next(self) -> None:
        super().next()
        if len(self) in self.p.targets:
            self.order_target_size(target=self.p.targets[len(self)])


class Flipper(Recorder):
    """Long 10, then short 10, then long…: a trade closes on every bar."""

    def next(self) -> None:
        super().next()
        self.order_target_size(target=10 if len(self) % 2 else -10)


class TwoData(Recorder):
    """Rotates a long position between the two datas every 7 bars."""

    def next(self) -> None:
        super().next()
        if len(self) % 7:
            return
        hold, drop = (self.datas[0], self.datas[1]) if (len(self) // 7) % 2 else self.datas[::-1]
        self.order_target_size(data=drop, target=0)
        self.order_target_size(data=hold, target=300)


def run(
    strategy: type[bt.Strategy],
    frames: list[pd.DataFrame],
    names: list[str] | None = None,
    *,
    runonce: bool = True,
) -> tuple[Any, bt.Cerebro]:
    cerebro = bt.Cerebro(runonce=runonce, stdstats=False)
    for i, frame in enumerate(frames):
        feed = bt.feeds.PandasData(dataname=frame)
        if names is None:
            cerebro.adddata(feed)
        else:
            cerebro.adddata(feed, name=names[i])
    cerebro.addstrategy(strategy)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="ta")
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="dd")
    strat = cerebro.run()[0]
    return strat, cerebro


def value_series(strat: Any) -> np.ndarray:
    _, values = strat.analyzers.metrics.equity_curve()
    return np.concatenate(([CASH], values))


SCENARIOS = {
    "buy_and_hold": (BuyAndHold, [make_frame(1)], ["AAA"]),
    "sma_cross": (SmaCross, [make_frame(2)], ["BBB"]),
    "two_data": (TwoData, [make_frame(3), make_frame(4)], ["CCC", "DDD"]),
    "scaling": (Scaling, [make_frame(9), make_frame(10)], ["EEE", "FFF"]),
}


@pytest.fixture(params=[True, False], ids=["runonce", "next"])
def runonce(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(params=list(SCENARIOS))
def scenario(request: pytest.FixtureRequest, runonce: bool) -> tuple[Any, bt.Cerebro, str]:
    strategy, frames, names = SCENARIOS[request.param]
    strat, cerebro = run(strategy, frames, names, runonce=runonce)
    return strat, cerebro, request.param


def test_keys_and_json_clean(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, _ = scenario
    result = strat.analyzers.metrics.get_analysis()
    assert list(result) == list(RESULT_KEYS)
    json.dumps(result, allow_nan=False)  # raises on NaN / inf

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)
        else:
            assert obj is None or type(obj) in (int, float, str), repr(obj)

    walk(result)


def test_final_value_matches_broker(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, cerebro, _ = scenario
    result = strat.analyzers.metrics.get_analysis()
    assert result["initial_value"] == CASH
    assert result["final_value"] == pytest.approx(cerebro.broker.getvalue(), rel=1e-12)
    assert result["portfolio_net_pnl"] == pytest.approx(cerebro.broker.getvalue() - CASH)
    assert result["portfolio_return_pct"] == pytest.approx(
        (cerebro.broker.getvalue() / CASH - 1) * 100
    )


def test_trades_match_trade_analyzer(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, name = scenario
    result = strat.analyzers.metrics.get_analysis()
    ta = strat.analyzers.ta.get_analysis()
    assert result["total_trades"] == ta.total.total > 0
    assert result["trades_open"] == ta.total.get("open", 0)
    assert result["trades_closed"] == ta.total.get("closed", 0)
    assert result["total_trades"] == result["trades_open"] + result["trades_closed"]
    if name == "buy_and_hold":
        assert result["trades_open"] == 1
        assert result["trades_closed"] == 0
        return
    assert result["trades_closed"] > 5
    assert result["total_net_pnl"] == pytest.approx(ta.pnl.net.total, rel=1e-9, abs=1e-9)
    # backtrader counts pnl >= 0 as won; no breakeven trade exists with commission charged
    assert 0.0 not in strat.closed_pnl
    assert result["win_trades"] == ta.won.total
    assert result["loss_trades"] == ta.lost.total
    assert result["max_consecutive_wins"] == ta.streak.won.longest
    assert result["max_consecutive_losses"] == ta.streak.lost.longest
    assert result["average_trade_duration_bars"] == pytest.approx(ta.len.average)


def test_trade_statistics_from_recorded_trades(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, name = scenario
    result = strat.analyzers.metrics.get_analysis()
    pnl = np.array(strat.closed_pnl)
    if name == "buy_and_hold":  # nothing closed: trade figures are undefined, not zero
        assert pnl.size == 0
        for key in ("win_rate_pct", "profit_factor", "expectancy", "sqn", "average_win_pnl"):
            assert result[key] is None, key
        return
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    assert result["trades_closed"] == pnl.size
    assert result["win_rate_pct"] == pytest.approx(wins.size / pnl.size * 100)
    assert result["average_win_pnl"] == pytest.approx(wins.mean())
    assert result["average_loss_pnl"] == pytest.approx(losses.mean())
    assert result["profit_factor"] == pytest.approx(wins.sum() / abs(losses.sum()))
    assert result["expectancy"] == pytest.approx(pnl.mean())
    assert result["sqn"] == pytest.approx(math.sqrt(pnl.size) * pnl.mean() / pnl.std(ddof=1))


def test_drawdown_matches_backtrader(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, _ = scenario
    result = strat.analyzers.metrics.get_analysis()
    dd = strat.analyzers.dd.get_analysis()
    assert result["max_drawdown_pct"] > 0
    assert result["max_drawdown_pct"] == pytest.approx(dd.max.drawdown, rel=1e-12)
    assert result["max_drawdown_money"] == pytest.approx(dd.max.moneydown, rel=1e-12)
    assert result["max_drawdown_duration_bars"] == dd.max.len


def test_return_ratios_match_numpy(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, _ = scenario
    result = strat.analyzers.metrics.get_analysis()
    values = value_series(strat)
    returns = values[1:] / values[:-1] - 1
    n = returns.size
    sharpe = returns.mean() / returns.std(ddof=1) * math.sqrt(252)
    downside = math.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    annualized = ((values[-1] / values[0]) ** (252 / n) - 1) * 100
    assert result["sharpe_ratio"] == pytest.approx(sharpe, rel=1e-9)
    assert result["sortino_ratio"] == pytest.approx(returns.mean() / downside * math.sqrt(252))
    assert result["annualized_return_pct"] == pytest.approx(annualized)
    assert result["calmar_ratio"] == pytest.approx(annualized / result["max_drawdown_pct"])
    # annual returns compound to the total return; first year measured from the cash
    annual = result["annual_returns"]
    assert list(annual) == ["2021", "2022"]
    growth = np.prod([1 + pct / 100 for pct in annual.values()])
    assert growth == pytest.approx(values[-1] / CASH)
    dates, bar_values = strat.analyzers.metrics.equity_curve()
    last_2021 = bar_values[dates < np.datetime64("2022-01-01")][-1]
    assert annual["2021"] == pytest.approx((last_2021 / CASH - 1) * 100)


def test_equity_curve_dates_and_exposure(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, name = scenario
    result = strat.analyzers.metrics.get_analysis()
    dates, values = strat.analyzers.metrics.equity_curve()
    frame = SCENARIOS[name][1][0]
    assert dates.dtype == np.dtype("datetime64[us]")
    np.testing.assert_array_equal(dates, frame.index.to_numpy().astype("datetime64[us]"))
    assert values.shape == dates.shape == (len(strat),)
    exposed = np.array(strat.exposed)
    assert exposed.size == len(strat)
    assert result["exposure_pct"] == pytest.approx(exposed[1:].mean() * 100)
    if name == "buy_and_hold":
        assert result["exposure_pct"] == pytest.approx(100.0)


def test_buy_and_hold_and_per_symbol(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, name = scenario
    _, frames, names = SCENARIOS[name]
    result = strat.analyzers.metrics.get_analysis()
    per_symbol = result["per_symbol"]
    assert list(per_symbol) == names
    expected_bh = [(f["close"].iloc[-1] / f["close"].iloc[0] - 1) * 100 for f in frames]
    for symbol, frame_bh, data in zip(names, expected_bh, strat.datas, strict=True):
        assert per_symbol[symbol]["buy_and_hold_return_pct"] == pytest.approx(frame_bh)
        assert per_symbol[symbol]["final_position"] == strat.getposition(data).size
    assert result["buy_and_hold_return_pct"] == pytest.approx(np.mean(expected_bh))
    assert sum(s["net_pnl"] for s in per_symbol.values()) == pytest.approx(
        result["total_net_pnl"], abs=1e-9
    )
    assert sum(s["trades_closed"] for s in per_symbol.values()) == result["trades_closed"]
    assert sum(s["win_trades"] for s in per_symbol.values()) == result["win_trades"]
    assert sum(s["loss_trades"] for s in per_symbol.values()) == result["loss_trades"]
    if name == "two_data":
        assert all(s["trades_closed"] > 0 for s in per_symbol.values())


def test_buy_and_hold_pnl() -> None:
    frame = make_frame(1)
    strat, _ = run(BuyAndHold, [frame], ["AAA"])
    result = strat.analyzers.metrics.get_analysis()
    entry = frame["open"].iloc[1]  # ordered on bar 1, filled at bar 2's open
    expected = 500 * (frame["close"].iloc[-1] - entry) - 500 * entry * COMMISSION
    assert result["portfolio_net_pnl"] == pytest.approx(expected)
    assert result["total_net_pnl"] == 0.0  # nothing closed
    assert result["win_rate_pct"] is None
    assert result["profit_factor"] is None
    assert result["per_symbol"]["AAA"]["final_position"] == 500


def test_never_trading_strategy(runonce: bool) -> None:
    strat, cerebro = run(NeverTrades, [make_frame(5)], runonce=runonce)
    result = strat.analyzers.metrics.get_analysis()
    json.dumps(result, allow_nan=False)
    assert result["final_value"] == result["initial_value"] == cerebro.broker.getvalue() == CASH
    assert result["portfolio_return_pct"] == 0.0
    assert result["annualized_return_pct"] == 0.0
    for key in (
        "total_trades",
        "trades_open",
        "trades_closed",
        "win_trades",
        "loss_trades",
        "max_consecutive_wins",
        "max_consecutive_losses",
        "max_drawdown_duration_bars",
    ):
        assert result[key] == 0, key
    for key in (
        "sharpe_ratio",
        "sortino_ratio",
        "calmar_ratio",
        "sqn",
        "win_rate_pct",
        "average_win_pnl",
        "average_loss_pnl",
        "profit_factor",
        "expectancy",
        "average_trade_duration_bars",
    ):
        assert result[key] is None, key
    assert result["total_net_pnl"] == 0.0
    assert result["max_drawdown_pct"] == 0.0
    assert result["max_drawdown_money"] == 0.0
    assert result["exposure_pct"] == 0.0
    assert result["annual_returns"] == {"2021": 0.0, "2022": 0.0}
    assert list(result["per_symbol"]) == ["data0"]
    assert result["per_symbol"]["data0"]["final_position"] == 0


def test_unnamed_datas_and_late_start(runonce: bool) -> None:
    """A second data starting later must not leak garbage closes into the metrics."""
    early, late = make_frame(6), make_frame(7, periods=280, start="2021-03-01")
    strat, cerebro = run(TwoData, [early, late], runonce=runonce)
    result = strat.analyzers.metrics.get_analysis()
    json.dumps(result, allow_nan=False)
    assert list(result["per_symbol"]) == ["data0", "data1"]
    bh_late = (late["close"].iloc[-1] / late["close"].iloc[0] - 1) * 100
    assert result["per_symbol"]["data1"]["buy_and_hold_return_pct"] == pytest.approx(bh_late)
    assert result["final_value"] == pytest.approx(cerebro.broker.getvalue(), rel=1e-12)


def test_replayed_data_one_row_per_bar() -> None:
    frame = make_frame(8)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.replaydata(bt.feeds.PandasData(dataname=frame), timeframe=bt.TimeFrame.Weeks)
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(CASH)
    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    strat = cerebro.run()[0]
    _, values = strat.analyzers.metrics.equity_curve()
    assert values.size == len(strat) < len(frame)
    assert values[-1] == pytest.approx(cerebro.broker.getvalue())
    assert strat.analyzers.metrics.get_analysis()["final_value"] == pytest.approx(values[-1])


def _dates(step: str, n: int = 50) -> np.ndarray:
    return np.datetime64("2021-01-04T09:30") + np.arange(n) * np.timedelta64(1, step)


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (pd.bdate_range("2021-01-04", periods=50).to_numpy(), 252.0),
        (pd.date_range("2021-01-01", periods=50, freq="D").to_numpy(), 252.0),
        (_dates("h"), 252 * 6.5),
        (_dates("m"), 252 * 390.0),
        (_dates("W"), 52.0),
        (pd.date_range("2021-01-31", periods=24, freq="ME").to_numpy(), 12.0),
        (_dates("D", 1), None),
    ],
)
def test_periods_per_year(dates: np.ndarray, expected: float | None) -> None:
    assert periods_per_year(dates) == (None if expected is None else pytest.approx(expected))


def test_buy_and_hold_curve_ends_at_the_buy_and_hold_return() -> None:
    from runtime.data import synthetic_frame

    cerebro = bt.Cerebro()
    for i, name in enumerate(("AAA", "BBB")):
        cerebro.adddata(bt.feeds.PandasData(dataname=synthetic_frame(120, seed=i)), name=name)
    cerebro.addstrategy(bt.Strategy)
    cerebro.addanalyzer(MetricsAnalyzer, _name="m")
    m = cerebro.run()[0].analyzers.m
    curve = m.buy_and_hold_curve()
    assert len(curve) == len(m.equity_curve()[1])
    assert curve[0] == pytest.approx(10_000.0)
    expected = m.get_analysis()["buy_and_hold_return_pct"]
    assert (curve[-1] / 10_000.0 - 1) * 100 == pytest.approx(expected)


# ------------------------------------------------------------------ the per-trade list
def expected_trades(fills: list[Fill], *, intraday: bool = False) -> list[dict[str, Any]]:
    """Closed trades from the fills alone: one position per symbol, a trade from leaving zero
    to coming back to it (a fill across zero closes one and opens the next); pnl is the cash
    the round trip made, commission the run's rate on each part."""
    building: dict[str, dict[str, Any]] = {}
    closed: list[dict[str, Any]] = []
    form = "%Y-%m-%dT%H:%M:%S" if intraday else "%Y-%m-%d"
    for fill in fills:
        left = fill.size
        while left:
            t = building.setdefault(
                fill.symbol,
                {
                    "pos": 0.0,
                    "peak": 0.0,
                    "cash": 0.0,
                    "comm": 0.0,
                    "in": [0.0, 0.0],
                    "out": [0.0, 0.0],
                },
            )
            pos = t["pos"]
            adding = pos == 0 or (pos > 0) == (left > 0)
            part = left if adding else math.copysign(min(abs(left), abs(pos)), left)
            if pos == 0:
                t["long"], t["bar"], t["when"] = part > 0, fill.bar, fill.when
            side = t["in"] if adding else t["out"]
            side[0] += abs(part)
            side[1] += abs(part) * fill.price
            t["cash"] -= part * fill.price
            t["comm"] += abs(part) * fill.price * COMMISSION
            t["pos"] = pos + part
            t["peak"] = max(t["peak"], abs(t["pos"]))
            left -= part
            if t["pos"] == 0:
                del building[fill.symbol]
                closed.append(
                    {
                        "symbol": fill.symbol,
                        "direction": "long" if t["long"] else "short",
                        "entry_date": t["when"].strftime(form),
                        "exit_date": fill.when.strftime(form),
                        "size": t["peak"],
                        "entry_price": t["in"][1] / t["in"][0],
                        "exit_price": t["out"][1] / t["out"][0],
                        "pnl": t["cash"],
                        "pnl_net": t["cash"] - t["comm"],
                        "bars_held": fill.bar - t["bar"],
                    }
                )
    return closed


def assert_same_trades(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(TRADE_KEYS)
        for key in ("symbol", "direction", "entry_date", "exit_date", "size", "bars_held"):
            assert g[key] == e[key], (key, g, e)
        for key in ("entry_price", "exit_price", "pnl", "pnl_net"):
            assert g[key] == pytest.approx(e[key], rel=1e-9, abs=1e-6), (key, g, e)


def test_trade_list_matches_the_fills(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, name = scenario
    result = strat.analyzers.metrics.get_analysis()
    expected = expected_trades(strat.fills)
    assert result["trades_closed"] == len(expected)
    assert_same_trades(result["trades"], expected)
    assert [t["pnl_net"] for t in result["trades"]] == pytest.approx(strat.closed_pnl)
    per_symbol = {
        s: sum(t["pnl_net"] for t in result["trades"] if t["symbol"] == s)
        for s in result["per_symbol"]
    }
    for symbol, pnl in per_symbol.items():
        assert result["per_symbol"][symbol]["net_pnl"] == pytest.approx(pnl, abs=1e-9)
    if name in ("sma_cross", "scaling"):
        assert {t["direction"] for t in result["trades"]} == {"long", "short"}
    if name in ("two_data", "scaling"):
        assert {t["symbol"] for t in result["trades"]} == set(SCENARIOS[name][2])
    if name == "scaling":  # 100 -> 300 -> 150 -> 250 -> 0; -200 -> -50 -> -250 -> +100 -> 0
        shapes = {(t["direction"], t["size"]) for t in result["trades"]}
        assert shapes == {("long", 300), ("short", 250), ("long", 100)}


def price_ladder(periods: int = 12) -> pd.DataFrame:
    """Opens 101, 102, … from the second bar: bar ``k`` (1-based) opens at ``100 + k - 1``."""
    price = 100.0 + np.arange(periods)
    return pd.DataFrame(
        {
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price,
            "volume": 1_000.0,
            "openinterest": 0.0,
        },
        index=pd.bdate_range("2021-01-04", periods=periods),
    )


def test_trade_list_by_hand() -> None:
    """Scale in and out of a long, then a short covered in part and reversed into a long.
    Orders at bar k fill at bar k+1's open, 100 + k."""
    targets = {1: 100, 2: 300, 3: 150, 4: 0, 5: -200, 6: -50, 7: 100, 8: 0}
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=price_ladder()), name="AAA")
    cerebro.addstrategy(Schedule, targets=targets)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    strat = cerebro.run()[0]
    long1, short, long2 = strat.analyzers.metrics.get_analysis()["trades"]
    # +100 @101, +200 @102, -150 @103, -150 @104
    assert long1["direction"] == "long" and long1["size"] == 300
    assert (long1["entry_date"], long1["exit_date"]) == ("2021-01-05", "2021-01-08")
    assert long1["entry_price"] == pytest.approx((100 * 101 + 200 * 102) / 300)
    assert long1["exit_price"] == pytest.approx(103.5)
    assert long1["pnl"] == pytest.approx(550.0)
    assert long1["pnl_net"] == pytest.approx(550.0 - 0.001 * (10_100 + 20_400 + 15_450 + 15_600))
    assert long1["bars_held"] == 3
    # -200 @105, +150 @106, then +150 @107: 50 covers the short, 100 opens a long
    assert short["direction"] == "short" and short["size"] == 200
    assert short["entry_price"] == 105.0
    assert short["exit_price"] == pytest.approx((150 * 106 + 50 * 107) / 200)
    assert short["pnl"] == pytest.approx(-250.0)
    assert short["pnl_net"] == pytest.approx(-250.0 - 0.001 * (21_000 + 15_900 + 5_350))
    assert (short["exit_date"], short["bars_held"]) == ("2021-01-13", 2)
    # +100 @107 (the reversal), -100 @108
    assert long2["direction"] == "long" and long2["size"] == 100
    assert (long2["entry_price"], long2["exit_price"]) == (107.0, 108.0)
    assert long2["entry_date"] == short["exit_date"] == "2021-01-13"
    assert long2["pnl"] == pytest.approx(100.0)
    assert long2["pnl_net"] == pytest.approx(100.0 - 0.001 * (10_700 + 10_800))


def test_trade_list_keeps_the_last_max_trades(runonce: bool) -> None:
    strat, _ = run(Flipper, [make_frame(11, periods=MAX_TRADES + 200)], ["AAA"], runonce=runonce)
    result = strat.analyzers.metrics.get_analysis()
    expected = expected_trades(strat.fills)
    assert result["trades_closed"] == len(expected) > MAX_TRADES
    assert len(result["trades"]) == MAX_TRADES
    assert_same_trades(result["trades"], expected[-MAX_TRADES:])


def test_intraday_trades_carry_the_time() -> None:
    frame = make_frame(12, periods=200)
    frame.index = pd.date_range("2021-03-01 09:30", periods=200, freq="h")
    strat, _ = run(SmaCross, [frame], ["AAA"])
    trades = strat.analyzers.metrics.get_analysis()["trades"]
    assert trades
    for t in trades:
        for key in ("entry_date", "exit_date"):
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", t[key]), t[key]
    assert_same_trades(trades, expected_trades(strat.fills, intraday=True))


# ------------------------------------------------------------------ monthly returns
def test_monthly_returns_compound_to_the_total(scenario: tuple[Any, bt.Cerebro, str]) -> None:
    strat, _, _ = scenario
    result = strat.analyzers.metrics.get_analysis()
    monthly = result["monthly_returns"]
    dates, values = strat.analyzers.metrics.equity_curve()
    months = sorted({str(d)[:7] for d in dates.astype("datetime64[M]")})
    assert list(monthly) == months  # every month with a bar, in order
    growth = np.prod([1 + pct / 100 for pct in monthly.values()])
    assert growth == pytest.approx(result["final_value"] / CASH, rel=1e-12)
    assert (growth - 1) * 100 == pytest.approx(result["portfolio_return_pct"], abs=1e-9)
    # each month from the last value of the one before (the first from the cash)
    month_of = dates.astype("datetime64[M]")
    last_jan = values[month_of == np.datetime64("2021-01")][-1]
    last_feb = values[month_of == np.datetime64("2021-02")][-1]
    assert monthly["2021-01"] == pytest.approx((last_jan / CASH - 1) * 100)
    assert monthly["2021-02"] == pytest.approx((last_feb / last_jan - 1) * 100)
    # the months of a year compound to its annual return
    in_2021 = [pct for month, pct in monthly.items() if month.startswith("2021")]
    year = (np.prod([1 + pct / 100 for pct in in_2021]) - 1) * 100
    assert year == pytest.approx(result["annual_returns"]["2021"])
