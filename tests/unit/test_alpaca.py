"""runtime.paper.alpaca: alpaca-py's real clients against the local Alpaca stand-in.

The broker runs in a real ``Cerebro``. ``MirrorFeed`` pushes each bar to the stand-in as it
hands it to backtrader, so the market moves in step with the strategy: an order placed at
bar N fills at bar N+1's open, and backtrader hears of it before the strategy's bar N+1.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest
from alpaca.common.exceptions import APIError
from websockets.sync.client import connect

from runtime.paper.alpaca import (
    AlpacaBroker,
    AlpacaCredentials,
    AlpacaError,
    AlpacaSettingsError,
    AlpacaSource,
    alpaca_credentials,
    trading_client,
)
from runtime.paper.sources import Bar
from tests.alpaca_api import API_KEY, SECRET, AlpacaAPI

CREDS = AlpacaCredentials(API_KEY, SECRET)
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
Row = tuple[datetime, float, float, float, float]  # time, open, high, low, close
ORDERS = "/v2/orders"
Plan = dict[int, Callable[["Script"], None]]


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def rows(*opens_closes: tuple[float, float]) -> list[Row]:
    """Minute bars from ``(open, close)`` pairs; high/low a dollar beyond them."""
    return [(at(i), o, max(o, c) + 1, min(o, c) - 1, c) for i, (o, c) in enumerate(opens_closes)]


@pytest.fixture
def api() -> Iterator[AlpacaAPI]:
    with AlpacaAPI(cash=10_000) as server:
        yield server


# --------------------------------------------------------------------------- harness
class MirrorFeed(bt.feed.DataBase):
    """Hands ``rows`` to backtrader, pushing each to the stand-in first."""

    params = (("api", None), ("rows", ()))

    def islive(self) -> bool:  # no preloading: bars are loaded one at a time
        return True

    def start(self) -> None:
        super().start()
        self._rows = iter(self.p.rows)

    def _load(self) -> bool:
        row = next(self._rows, None)
        if row is None:
            return False
        t, o, h, l, c = row  # noqa: E741
        self.p.api.push_bar(self._name, t, o, h, l, c)
        _put(self, Bar(self._name, t, o, h, l, c, 1000.0))
        return True


class SourceFeed(bt.feed.DataBase):
    """A live feed over a BarSource, ending after ``count`` bars."""

    params = (("source", None), ("count", 0))

    def islive(self) -> bool:
        return True

    def start(self) -> None:
        super().start()
        self._seen = 0

    def _load(self) -> bool | None:
        if self._seen >= self.p.count:
            return False
        bar = self.p.source.next_bar(0.05)
        if bar is None:
            return None
        self._seen += 1
        _put(self, bar)
        return True


def _put(feed: Any, bar: Bar) -> None:
    lines = feed.lines
    lines.datetime[0] = bt.date2num(bar.time)
    for name in ("open", "high", "low", "close", "volume"):
        getattr(lines, name)[0] = getattr(bar, name)
    lines.openinterest[0] = 0.0


class Script(bt.Strategy):
    """Runs ``plan[bar]`` at that bar; notes every notification and what it saw each bar."""

    params: tuple[tuple[str, Any], ...] = (("plan", {}),)

    def __init__(self) -> None:
        self.notes: list[tuple[int, str, float, float]] = []
        self.orders: list[Any] = []  # the notified order clones
        self.placed: list[Any] = []  # what buy()/sell() returned
        self.seen: dict[int, tuple[float, float, float, float]] = {}

    def notify_order(self, order: Any) -> None:
        self.notes.append((len(self), order.getstatusname(), order.executed.size,
                           round(order.executed.price, 6)))  # fmt: skip
        self.orders.append(order)

    def next(self) -> None:
        pos = self.position
        self.seen[len(self)] = (pos.size, pos.price, self.broker.getcash(), self.broker.getvalue())
        action = self.p.plan.get(len(self))
        if action is not None:
            action(self)


def broker_for(api: AlpacaAPI, run_id: str = "run1", **params: Any) -> AlpacaBroker:
    client = trading_client(CREDS, url=api.base_url)
    params.setdefault("poll_interval_s", 0)
    return AlpacaBroker(client=client, run_id=run_id, **params)


def run(api: AlpacaAPI, bars: Sequence[Row], plan: Plan, broker: AlpacaBroker | None = None,
        symbol: str = "AAPL") -> Script:  # fmt: skip
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.setbroker(broker or broker_for(api))
    cerebro.adddata(MirrorFeed(api=api, rows=list(bars)), name=symbol)
    cerebro.addstrategy(Script, plan=plan)
    (strategy,) = cerebro.run()
    return strategy


def buy(size: float, **kw: Any) -> Callable[[Script], None]:
    return lambda s: s.placed.append(s.buy(size=size, **kw))


def posts(api: AlpacaAPI) -> list[int]:
    return [status for method, path, status in api.calls if method == "POST" and path == ORDERS]


# --------------------------------------------------------------------------- broker
def test_a_buy_becomes_an_alpaca_order_filled_at_the_next_open(api: AlpacaAPI) -> None:
    strat = run(api, rows((100, 100), (101, 102), (102, 103)), {1: buy(10)})

    assert strat.notes == [(2, "Submitted", 0, 0), (2, "Accepted", 0, 0), (2, "Completed", 10, 101)]
    (order,) = api.orders
    assert (order["client_order_id"], order["side"], order["qty"], order["type"]) == (
        "run1-1-1", "buy", "10", "market",
    )  # fmt: skip
    assert (order["status"], order["filled_avg_price"], order["time_in_force"]) == (
        "filled", "101", "gtc",
    )  # fmt: skip
    assert strat.seen[2][:3] == (10, 101, 10_000 - 1010)
    account = api.account()
    assert api.positions() == {"AAPL": (10, 101)}
    assert strat.seen[3][2:] == (float(account["cash"]), float(account["equity"]))
    assert float(account["equity"]) == 10_000 - 1010 + 10 * 103


def test_order_ids_are_deterministic_per_bar(api: AlpacaAPI) -> None:
    def two(s: Script) -> None:
        s.buy(size=1)
        s.sell(size=1)

    run(api, rows((100, 100), (100, 100), (100, 100)), {1: two, 2: buy(1)})
    assert [o["client_order_id"] for o in api.orders] == ["run1-1-1", "run1-1-2", "run1-2-1"]


def test_a_restart_adopts_the_order_already_on_alpaca(api: AlpacaAPI) -> None:
    bars, plan = rows((100, 100), (101, 101), (102, 102)), {1: buy(10)}
    run(api, bars, plan)
    assert [o["status"] for o in api.orders] == ["filled"]

    again = run(api, bars, plan, broker=broker_for(api))  # the same run, restarted

    assert len(api.orders) == 1, "the restart sent the order again"
    assert posts(api) == [200, 422]  # Alpaca refused the duplicate client_order_id
    assert again.notes == [(2, "Submitted", 0, 0), (2, "Accepted", 0, 0), (2, "Completed", 10, 101)]
    assert again.seen[1][:2] == (10, 101)  # adopted at start
    assert again.seen[3][:2] == (10, 101), "the adopted fill was counted twice"
    assert api.positions() == {"AAPL": (10, 101)}


def test_a_different_run_is_a_different_order(api: AlpacaAPI) -> None:
    bars, plan = rows((100, 100), (101, 101), (102, 102)), {1: buy(10)}
    run(api, bars, plan)
    run(api, rows((102, 102), (103, 103)), plan, broker=broker_for(api, run_id="run2"))
    assert [o["client_order_id"] for o in api.orders] == ["run1-1-1", "run2-1-1"]
    assert api.positions() == {"AAPL": (20, 102)}


def test_a_lost_answer_to_the_order_post_is_not_a_second_order(api: AlpacaAPI) -> None:
    def lose_then_buy(s: Script) -> None:
        api.lose_next_response("POST", "/v2/orders")
        s.buy(size=10)

    strat = run(api, rows((100, 100), (101, 101), (102, 102)), {1: lose_then_buy})
    assert posts(api) == [200]
    assert len(api.orders) == 1
    assert strat.notes[-1] == (2, "Completed", 10, 101)


def test_a_client_order_id_of_another_order_is_rejected(api: AlpacaAPI) -> None:
    def twice(s: Script) -> None:
        s.buy(size=10, client_order_id="mine")
        s.buy(size=3, client_order_id="mine")

    strat = run(api, rows((100, 100), (101, 101)), {1: twice})
    rejected = [o for o in strat.orders if o.status == bt.Order.Rejected]
    assert len(rejected) == 1 and rejected[0].size == 3
    assert rejected[0].info.reason == (
        "client_order_id mine already names another Alpaca order (buy 10 AAPL)"
    )
    assert [(o["client_order_id"], o["qty"]) for o in api.orders] == [("mine", "10")]


def test_positions_existing_at_start_are_adopted() -> None:
    with AlpacaAPI(cash=1_000, positions={"AAPL": (5, 90.0), "MSFT": (-2, 300.0)}) as api:
        broker = broker_for(api)
        strat = run(api, rows((100, 100), (104, 104), (104, 104)), {1: Script.close}, broker)
        assert strat.seen[1][:2] == (5, 90)
        assert broker.positions["MSFT"].size == -2
        assert strat.notes[-1] == (2, "Completed", -5, 104)
        assert strat.orders[-1].executed.pnl == pytest.approx(5 * (104 - 90))
        assert strat.seen[2][:3] == (0, 0, 1_000 + 5 * 104)
        assert api.positions() == {"MSFT": (-2, 300)}


def test_without_use_positions_the_account_positions_are_ignored() -> None:
    with AlpacaAPI(positions={"AAPL": (5, 90.0)}) as api:
        strat = run(api, rows((100, 100), (101, 101)), {}, broker_for(api, use_positions=False))
        assert strat.seen[1][:2] == (0, 0)


def test_partial_fills_notify_each_then_complete() -> None:
    with AlpacaAPI(liquidity=6) as api:
        strat = run(api, rows((100, 100), (101, 101), (103, 103), (104, 104)), {1: buy(10)})
        assert strat.notes[2:] == [(2, "Partial", 6, 101), (3, "Completed", 10, 101.8)]
        assert [bit.size for bit in _bits(strat.orders[-1])] == [6, 4]
        assert strat.seen[2][0] == 6 and strat.seen[3][:2] == (10, 101.8)


def _bits(order: Any) -> list[Any]:
    return list(order.executed.exbits)


def test_a_limit_order_fills_at_its_price_or_better(api: AlpacaAPI) -> None:
    plan = {1: buy(10, exectype=bt.Order.Limit, price=99.123)}
    strat = run(api, rows((100, 100), (101, 101), (100, 99), (97, 97)), plan)
    (order,) = api.orders
    assert (order["type"], order["limit_price"]) == ("limit", "99.12")
    assert strat.notes[-1] == (3, "Completed", 10, 99.12)  # bar 3's low reached the limit


def test_cancel_is_notified_and_the_order_cancelled_on_alpaca(api: AlpacaAPI) -> None:
    plan = {1: buy(10, exectype=bt.Order.Limit, price=50), 2: lambda s: s.cancel(s.placed[0])}
    strat = run(api, rows((100, 100), (101, 101), (102, 102)), plan)
    assert [n[1] for n in strat.notes] == ["Submitted", "Accepted", "Canceled"]
    assert strat.notes[-1][0] == 3
    assert api.orders[0]["status"] == "canceled"


@pytest.mark.parametrize(
    ("status", "notified"),
    [("canceled", "Canceled"), ("expired", "Expired"), ("done_for_day", "Expired"),
     ("rejected", "Rejected")],
)  # fmt: skip
def test_orders_ended_by_alpaca_are_notified(api: AlpacaAPI, status: str, notified: str) -> None:
    end = {2: lambda s: api.end_order("run1-1-1", status)}
    plan = {1: buy(10, exectype=bt.Order.Limit, price=50), **end}
    strat = run(api, rows((100, 100), (101, 101), (102, 102)), plan)
    assert [n[1] for n in strat.notes] == ["Submitted", "Accepted", notified]
    if status == "rejected":
        assert strat.orders[-1].info.reason == "rejected by Alpaca"


def test_a_refused_order_is_rejected_with_alpacas_reason() -> None:
    with AlpacaAPI(cash=1_000) as api:
        strat = run(api, rows((100, 100), (101, 101)), {1: buy(100)})
        assert [n[1] for n in strat.notes] == ["Submitted", "Rejected"]
        assert strat.orders[-1].info.reason == (
            "Alpaca refused the order: insufficient buying power (HTTP 403)"
        )
        assert api.orders == [] and posts(api) == [403]


def test_unsupported_orders_are_rejected_without_reaching_alpaca(api: AlpacaAPI) -> None:
    def bracket(s: Script) -> None:
        s.buy(size=1, exectype=bt.Order.Stop, price=120)
        s.buy_bracket(size=1, price=100, stopprice=90, limitprice=110)

    strat = run(api, rows((100, 100), (101, 101)), {1: bracket})
    reasons = [o.info.reason for o in strat.orders if o.status == bt.Order.Rejected]
    assert reasons[0] == "Stop orders are not supported on Alpaca (market, limit only)"
    assert "bracket" in reasons[1] and len(reasons) == 4
    assert posts(api) == []


def test_start_says_when_alpaca_refuses_the_keys(api: AlpacaAPI) -> None:
    client = trading_client(("wrong", "keys"), url=api.base_url)
    with pytest.raises(AlpacaError, match=r"request is not authorized \(HTTP 401\)"):
        AlpacaBroker(client=client).start()


# --------------------------------------------------------------------------- stand-in
def test_the_stand_in_checks_keys_and_refuses_a_reused_client_order_id(api: AlpacaAPI) -> None:
    from alpaca.trading.requests import MarketOrderRequest

    with pytest.raises(APIError) as refused:
        trading_client(("PKnope", "nope"), url=api.base_url).get_account()
    assert refused.value.status_code == 401
    client = trading_client(CREDS, url=api.base_url)
    request = MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                 client_order_id="x")  # fmt: skip
    client.submit_order(request)
    with pytest.raises(APIError) as duplicate:
        client.submit_order(request)
    assert (duplicate.value.status_code, duplicate.value.message) == (
        422, "client_order_id must be unique",
    )  # fmt: skip
    assert api.order("x")["qty"] == "1" and len(api.orders) == 1


def test_the_stream_speaks_json_to_a_client_that_does_not_ask_for_msgpack(api: AlpacaAPI) -> None:
    with connect(api.stream_url) as ws:
        assert json.loads(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(json.dumps({"action": "auth", "key": API_KEY, "secret": SECRET}))
        assert json.loads(ws.recv(timeout=5)) == [{"T": "success", "msg": "authenticated"}]
        ws.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        assert json.loads(ws.recv(timeout=5))[0]["bars"] == ["AAPL"]
        api.push_bar("AAPL", T0, 1, 2, 0.5, 1.5, 100)
        (bar,) = json.loads(ws.recv(timeout=5))
    assert bar == {"T": "b", "S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 100,
                   "t": "2024-01-02T14:30:00Z", "n": 1, "vw": 1.5}  # fmt: skip


# --------------------------------------------------------------------------- source
def started_source(api: AlpacaAPI, symbols: tuple[str, ...], after: datetime | None = None
                   ) -> AlpacaSource:  # fmt: skip
    source = AlpacaSource(*CREDS, url=api.stream_url)
    source.start(symbols, after=after)
    api.wait_for("the subscription", lambda: all(api.subscribed(s) for s in symbols))
    return source


def test_the_source_turns_bar_messages_into_bars_and_drops_old_ones(api: AlpacaAPI) -> None:
    source = started_source(api, ("AAPL", "MSFT"), after=at(1))
    try:
        for symbol, minute in [("AAPL", 0), ("AAPL", 1), ("AAPL", 2), ("MSFT", 2), ("AAPL", 2),
                               ("AAPL", 1), ("AAPL", 3)]:  # fmt: skip
            api.push_bar(symbol, at(minute), 10 + minute, 12, 9, 11, 500)
        got: list[Bar | None] = [source.next_bar(5) for _ in range(3)]
        assert source.next_bar(0.2) is None
        assert not source.finished()
    finally:
        began = time.monotonic()
        source.close()
        closing = time.monotonic() - began
    assert got == [Bar("AAPL", at(2), 12, 12, 9, 11, 500), Bar("MSFT", at(2), 12, 12, 9, 11, 500),
                   Bar("AAPL", at(3), 13, 12, 9, 11, 500)]  # fmt: skip
    assert got[0] is not None and got[0].time.tzinfo == UTC
    assert source.finished()
    assert closing < 2, f"close() took {closing:.1f}s"


def test_close_right_after_start_returns_promptly(api: AlpacaAPI) -> None:
    source = AlpacaSource(*CREDS, url=api.stream_url)
    source.start(("AAPL",))
    began = time.monotonic()
    source.close()
    assert time.monotonic() - began < 2
    assert source.finished()


def test_live_bars_drive_a_strategy_trading_through_the_broker(
    api: AlpacaAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.paper.alpaca")
    source = started_source(api, ("AAPL",))
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.setbroker(broker_for(api))
    cerebro.adddata(SourceFeed(source=source, count=3), name="AAPL")
    cerebro.addstrategy(Script, plan={1: buy(10)})
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.extend(cerebro.run()), daemon=True)
    runner.start()
    try:
        api.push_bar("AAPL", at(0), 100, 101, 99, 100)
        api.wait_for("the order", lambda: len(api.orders) == 1)
        api.push_bar("AAPL", at(1), 101, 102, 100, 101)
        api.push_bar("AAPL", at(2), 102, 103, 101, 102)
        runner.join(timeout=10)
    finally:
        source.close()
    assert not runner.is_alive()
    (strat,) = result
    assert strat.notes == [(2, "Submitted", 0, 0), (2, "Accepted", 0, 0), (2, "Completed", 10, 101)]
    assert strat.seen[3][:3] == (10, 101, float(api.account()["cash"]))
    assert API_KEY not in caplog.text and SECRET not in caplog.text


# --------------------------------------------------------------------------- credentials
def test_credentials_from_the_environment() -> None:
    env = {"ALPACA_API_KEY": "PKabc", "ALPACA_SECRET_KEY": "s3cret"}
    assert alpaca_credentials(env) == ("PKabc", "s3cret")


def test_credentials_from_secret_files(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("PKfile\n")
    (tmp_path / "secret").write_text("  filesecret \n")
    env = {"ALPACA_API_KEY_FILE": str(tmp_path / "key"),
           "ALPACA_SECRET_KEY_FILE": str(tmp_path / "secret")}  # fmt: skip
    api_key, secret_key = alpaca_credentials(env)
    assert (api_key, secret_key) == ("PKfile", "filesecret")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ALPACA_SECRET_KEY": "s3cret"}, "ALPACA_API_KEY is not set"),
        ({"ALPACA_API_KEY": "PKabc"}, "ALPACA_SECRET_KEY is not set"),
        ({"ALPACA_API_KEY": "PKabc", "ALPACA_API_KEY_FILE": "/x", "ALPACA_SECRET_KEY": "s3cret"},
         "set ALPACA_API_KEY or ALPACA_API_KEY_FILE, not both"),
        ({"ALPACA_API_KEY": "PKabc", "ALPACA_SECRET_KEY_FILE": "/nonexistent/s3cret-file"},
         "ALPACA_SECRET_KEY_FILE: cannot read /nonexistent/s3cret-file"),
        ({"ALPACA_API_KEY": "PKabc", "ALPACA_SECRET_KEY": " "}, "ALPACA_SECRET_KEY is not set"),
    ],
)  # fmt: skip
def test_missing_credentials_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(AlpacaSettingsError) as raised:
        alpaca_credentials(env)
    message = str(raised.value)
    assert message.startswith(named) and "\n" not in message
    assert "PKabc" not in message and "s3cret" not in message.replace("s3cret-file", "")


def test_an_empty_secret_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    env = {"ALPACA_API_KEY": "PKabc", "ALPACA_SECRET_KEY_FILE": str(tmp_path / "empty")}
    with pytest.raises(AlpacaSettingsError, match=r"^ALPACA_SECRET_KEY_FILE: .*empty is empty$"):
        alpaca_credentials(env)


def test_credentials_never_show_their_values() -> None:
    creds = alpaca_credentials({"ALPACA_API_KEY": "PKabc", "ALPACA_SECRET_KEY": "s3cret"})
    for shown in (repr(creds), str(creds), f"{creds}", f"{creds!r}", str([creds])):
        assert "PKabc" not in shown and "s3cret" not in shown
