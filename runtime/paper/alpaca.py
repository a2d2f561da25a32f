"""Alpaca for paper mode: live bars from its market-data stream, orders on its paper account.

* :class:`AlpacaSource` is a :class:`~runtime.paper.sources.BarSource` over alpaca-py's
  ``StockDataStream``: bar messages of the subscribed symbols become :class:`Bar` s in a
  thread-safe queue. The stream runs in a background thread and reconnects by itself;
  bars missed while it was away are not fetched again.
* :class:`AlpacaBroker` is a backtrader broker over alpaca-py's ``TradingClient``
  (``paper=True``). See its docstring for what it does and does not support.
* :func:`alpaca_credentials` reads the API key pair from the environment or from secret
  files. The values never appear in a message, a ``repr`` or a log line.

Only this module knows alpaca-py; it is imported when paper mode is asked to use Alpaca.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import backtrader as bt
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.live.stock import StockDataStream
from alpaca.data.models.bars import Bar as AlpacaBar
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, PositionSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
)

from runtime.paper.sources import Bar
from runtime.secret_env import read_secret

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- credentials
class AlpacaSettingsError(ValueError):
    """A missing or unreadable Alpaca setting; the one-line message names the variable."""


class AlpacaCredentials(NamedTuple):
    """The key pair; a plain ``(api_key, secret_key)`` tuple whose repr hides both."""

    api_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "AlpacaCredentials(api_key=<hidden>, secret_key=<hidden>)"


def alpaca_credentials(env: Mapping[str, str]) -> AlpacaCredentials:
    """``ALPACA_API_KEY``/``ALPACA_SECRET_KEY``, each given directly or as ``…_FILE``
    (the path of a file holding it, as secret mounts do)."""
    return AlpacaCredentials(_secret(env, "ALPACA_API_KEY"), _secret(env, "ALPACA_SECRET_KEY"))


def _secret(env: Mapping[str, str], name: str) -> str:
    try:
        text = read_secret(env, name)
    except ValueError as exc:
        raise AlpacaSettingsError(str(exc)) from None
    if text is None:
        raise AlpacaSettingsError(f"{name} is not set (or set {name}_FILE to a file holding it)")
    if not text:
        raise AlpacaSettingsError(f"{name}_FILE: {env[f'{name}_FILE'].strip()} is empty")
    return text


def trading_client(credentials: tuple[str, str], *, url: str | None = None) -> TradingClient:
    """A client of the *paper* trading API (``url`` points it elsewhere, e.g. a stand-in)."""
    api_key, secret_key = credentials
    return TradingClient(api_key, secret_key, paper=True, url_override=url)


def stock_data_stream(
    credentials: tuple[str, str], *, url: str | None = None, feed: str = "iex"
) -> StockDataStream:
    """A market-data stream client; ``feed`` is ``iex`` (free) or ``sip``."""
    api_key, secret_key = credentials
    return StockDataStream(api_key, secret_key, feed=DataFeed(feed), url_override=url)


# --------------------------------------------------------------------------- bars
class AlpacaSource:
    """Live bars of Alpaca's market-data stream, as a ``BarSource``.

    Bars are handed out in arrival order; per symbol, a bar at or before the last one
    handed out (or at or before ``after``) is dropped, so a reconnect that repeats a bar
    does not repeat it here. :meth:`finished` turns true only when the stream thread has
    ended (after :meth:`close`, or when Alpaca refuses the subscription) and the queue
    is empty.
    """

    def __init__(
        self,
        api_key: str = "",
        secret_key: str = "",
        *,
        url: str | None = None,
        feed: str = "iex",
        stream: StockDataStream | None = None,
    ) -> None:
        """Either the key pair (with the stream's ``url`` and ``feed``) or a ready ``stream``."""
        if stream is None and not (api_key and secret_key):
            raise ValueError("AlpacaSource needs the API key pair or a StockDataStream")
        self._stream = stream or stock_data_stream((api_key, secret_key), url=url, feed=feed)
        self._bars: queue.Queue[Bar] = queue.Queue()
        self._last: dict[str, datetime] = {}  # touched only by the stream thread
        self._after: datetime | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_ready = threading.Event()

    def start(self, symbols: tuple[str, ...], *, after: datetime | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError("AlpacaSource.start() was already called")
        if not symbols:
            raise ValueError("AlpacaSource needs at least one symbol")
        self._after = None if after is None else _utc(after)
        self._stream.subscribe_bars(self._on_bar, *symbols)
        self._thread = threading.Thread(target=self._run, name="alpaca-bars", daemon=True)
        self._thread.start()

    def next_bar(self, timeout_s: float) -> Bar | None:
        try:
            return self._bars.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            return None

    def finished(self) -> bool:
        thread = self._thread
        return thread is not None and not thread.is_alive() and self._bars.empty()

    def close(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if self._loop_ready.wait(timeout=5) and self._loop is not None:
            stopping = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with suppress(Exception):
                stopping.result(timeout=5)
        thread.join(timeout=5)

    async def _shutdown(self) -> None:
        await self._stream.stop_ws()
        # Closing the socket wakes a receive that would otherwise wait out its 5 s timeout.
        await self._stream.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:
            log.exception("the Alpaca bar stream stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_ready.set()
        # StockDataStream.run() is asyncio.run() of this; running it on a loop of our own
        # lets close() reach the loop without waiting for the stream to start.
        await self._stream._run_forever()

    async def _on_bar(self, message: AlpacaBar | dict[Any, Any]) -> None:
        bar = _model(message, AlpacaBar)
        self._accept(
            Bar(
                symbol=bar.symbol,
                time=_utc(bar.timestamp),
                open=float(bar.open),
                high=float(bar.high),
                low=float(bar.low),
                close=float(bar.close),
                volume=float(bar.volume),
            )
        )

    def _accept(self, bar: Bar) -> None:
        floor = self._last.get(bar.symbol, self._after)
        if floor is not None and bar.time <= floor:
            log.debug("dropped %s bar at %s (not after %s)", bar.symbol, bar.time, floor)
            return
        self._last[bar.symbol] = bar.time
        self._bars.put(bar)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --------------------------------------------------------------------------- broker
class AlpacaError(RuntimeError):
    """Alpaca refused or did not answer at start: check the keys and the URL, then retry."""


def symbol_of(data: Any) -> str:
    """The Alpaca symbol of a data feed: its name (``cerebro.adddata(feed, name=SYM)``)."""
    name = getattr(data, "_name", "") or getattr(data, "_dataname", "")
    return name if isinstance(name, str) else ""


class _Positions(defaultdict[str, Any]):
    """Positions by symbol; indexing with a data feed looks up the feed's symbol."""

    def __init__(self) -> None:
        super().__init__(bt.Position)

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(key if isinstance(key, str) else symbol_of(key))


@dataclass
class _Tracked:
    """A backtrader order live on Alpaca, with the fills notified so far."""

    order: Any
    alpaca_id: UUID
    symbol: str
    filled: float = 0.0
    avg_price: float = 0.0


OrderId = Callable[[Any, int], str]
_M = TypeVar("_M")


class AlpacaBroker(bt.broker.BrokerBase):
    """A backtrader broker trading on an Alpaca *paper* account.

    What it does:

    * market and limit orders, buy and sell, of ``size`` shares, go to Alpaca at once
      (from ``buy``/``sell``) with a deterministic ``client_order_id``: the order's
      ``client_order_id`` info if the strategy gave one (``self.buy(client_order_id=…)``),
      else ``order_id(order, n)`` if given, else ``f"{run_id}-{bar}-{n}"`` (``bar`` the
      strategy's bar count, ``n`` the order's number within that bar, from 1). When Alpaca
      refuses it as a duplicate (or the POST got no answer), the existing order is looked up
      and adopted if it is the same order (symbol, side, quantity): a restart that replays
      a bar does not trade twice;
    * notifications: Submitted, then Accepted once Alpaca holds the order, Partial and
      Completed per fill (price = the fill's own average price), Canceled (also for
      ``replaced``), Expired (``expired``, ``done_for_day``), Rejected with the reason in
      ``order.info.reason``. Fills are found by polling each open order
      (``get_order_by_id``) from :meth:`next`, at most every ``poll_interval_s``;
    * cash and value are the account's ``cash`` and ``equity``, refreshed on each poll;
      ``getvalue(datas)`` is the positions of those feeds at their last close;
    * positions start as the account's (``use_positions``), so ``getposition`` matches
      Alpaca; fills update them locally. Fills of orders that happened before ``start``
      (seen in the last 500 orders) are notified on adoption without being counted twice.

    What it does not do (such orders are Rejected with a reason saying so, never sent):
    stop, stop-limit, trailing, bracket/OCO/parent-child orders, and feeds without a name.
    ``valid`` is not mapped date for date: no ``valid`` means ``gtc``, any ``valid`` means
    ``day`` (fractional sizes are always ``day``, as Alpaca requires). Limit prices are
    rounded to the cent (to 1/100 cent below $1). Short-selling rules, buying power and
    margin are Alpaca's: a refusal comes back as a rejection. No commission is charged
    (cash is the account's). Open orders left from before a restart are not adopted unless
    the strategy places them again; positions are reconciled only at start; trades already
    open at start are not in backtrader's trade list. The ``trade_updates`` stream is not
    used: polling is simpler and survives reconnects without gaps.
    """

    params = (
        ("poll_interval_s", 1.0),  # how often next() asks Alpaca about open orders
        ("use_positions", True),  # start from the account's positions
    )

    def __init__(
        self,
        *,
        client: TradingClient,
        run_id: str | None = None,
        order_id: OrderId | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._client = client
        self._run_id = run_id or uuid.uuid4().hex[:12]
        self._order_id = order_id
        self._clock = clock
        self.orders: list[Any] = []  # every order created, in order (FMEL reads it)
        self.positions = _Positions()
        self._open: dict[int, _Tracked] = {}
        self._notifs: deque[Any] = deque()
        self._earlier_fills: dict[str, tuple[float, float]] = {}
        self._bar, self._in_bar = -1, 0
        self._polled = -math.inf
        self._cash = self._value = 0.0
        self.startingcash = self.startingvalue = 0.0  # backtrader's writer reads them

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        super().start()
        try:
            self._refresh_account()
            self.startingcash, self.startingvalue = self._cash, self._value
            if self.p.use_positions:
                self._adopt_positions(self._client.get_all_positions())
                self._note_earlier_fills()
        except (APIError, OSError) as exc:
            raise AlpacaError(f"Alpaca paper account unavailable: {_describe(exc)}") from None

    def stop(self) -> None:
        if self._open:
            ids = ", ".join(t.order.info.get("client_order_id", "?") for t in self._open.values())
            log.warning("stopping with orders still open on Alpaca: %s", ids)
        super().stop()

    # ------------------------------------------------------------ account
    def getcash(self) -> float:
        return self._cash

    get_cash = getcash

    def getvalue(self, datas: Iterable[Any] | None = None) -> float:
        if datas is None:
            return self._value
        return float(sum(self.getposition(d).size * d.close[0] for d in datas))

    get_value = getvalue

    def getposition(self, data: Any) -> Any:
        return self.positions[data]

    def orderstatus(self, order: Any) -> int:
        return int(order.status)

    # ------------------------------------------------------------ orders
    def buy(self, owner: Any, data: Any, size: float, **kwargs: Any) -> Any:
        comminfo = self.getcommissioninfo(data)
        return self._submit(_new_order(bt.BuyOrder, owner, data, size, comminfo, **kwargs))

    def sell(self, owner: Any, data: Any, size: float, **kwargs: Any) -> Any:
        comminfo = self.getcommissioninfo(data)
        return self._submit(_new_order(bt.SellOrder, owner, data, size, comminfo, **kwargs))

    def cancel(self, order: Any) -> bool:
        tracked = self._open.get(order.ref)
        if tracked is None:
            return False
        try:
            self._client.cancel_order_by_id(tracked.alpaca_id)
        except (APIError, OSError) as exc:  # e.g. already filled: the next poll says so
            log.info("cancel of %s not taken: %s", tracked.alpaca_id, _describe(exc))
        self._poll_order(tracked)
        return True

    # ------------------------------------------------------------ notifications
    def notify(self, order: Any) -> None:
        self._notifs.append(order.clone())

    def get_notification(self) -> Any:
        return self._notifs.popleft() if self._notifs else None

    def next(self) -> None:
        now = self._clock()
        if now - self._polled >= self.p.poll_interval_s:
            self._polled = now
            self.poll()

    def poll(self) -> None:
        """Ask Alpaca about every open order and the account, now."""
        for tracked in list(self._open.values()):
            self._poll_order(tracked)
        try:
            self._refresh_account()
        except (APIError, OSError) as exc:
            log.warning("Alpaca account not refreshed: %s", _describe(exc))

    # ------------------------------------------------------------ internals
    def _submit(self, order: Any) -> Any:
        self.orders.append(order)
        order.submit(self)
        self.notify(order)
        refusal = _unsupported(order)
        if refusal:
            return self._reject(order, refusal)
        cid = self._client_order_id(order)
        order.addinfo(client_order_id=cid)
        placed = self._place(order, cid)
        if isinstance(placed, str):
            return self._reject(order, placed)
        tracked = _Tracked(order, placed.id, symbol_of(order.data))
        self._open[order.ref] = tracked
        self._notify_earlier_fills(tracked, cid)
        self._apply(tracked, placed)
        return order

    def _client_order_id(self, order: Any) -> str:
        given = order.info.get("client_order_id")
        if given:
            return str(given)
        bar = len(order.owner) if order.owner is not None else len(order.data)
        if bar != self._bar:
            self._bar, self._in_bar = bar, 0
        self._in_bar += 1
        if self._order_id is not None:
            return self._order_id(order, self._in_bar)
        return f"{self._run_id}-{bar}-{self._in_bar}"

    def _place(self, order: Any, cid: str) -> AlpacaOrder | str:
        """The order as Alpaca holds it, or why it is not there."""
        try:
            return _alpaca_order(self._client.submit_order(_request(order, cid)))
        except APIError as exc:
            if exc.status_code not in (409, 422):  # 422: duplicate client_order_id
                return f"Alpaca refused the order: {_describe(exc)}"
            refusal = f"Alpaca refused the order: {_describe(exc)}"
        except OSError as exc:  # requests' errors are OSErrors: the order may have landed
            refusal = f"Alpaca did not answer, and has no order {cid}: {_describe(exc)}"
        existing = self._find(cid)
        if existing is None:
            return refusal
        mismatch = _mismatch(existing, order)
        if mismatch:
            return f"client_order_id {cid} already names another Alpaca order ({mismatch})"
        log.info("order %s was already on Alpaca (%s): adopted", cid, existing.id)
        return existing

    def _find(self, cid: str) -> AlpacaOrder | None:
        try:
            return _alpaca_order(self._client.get_order_by_client_id(cid))
        except (APIError, OSError) as exc:
            log.info("no Alpaca order %s found: %s", cid, _describe(exc))
            return None

    def _reject(self, order: Any, reason: str) -> Any:
        log.info("order %s rejected: %s", order.ref, reason)
        order.addinfo(reason=reason)
        order.reject(self)
        self.notify(order)
        return order

    def _poll_order(self, tracked: _Tracked) -> None:
        try:
            latest = _alpaca_order(self._client.get_order_by_id(tracked.alpaca_id))
        except (APIError, OSError) as exc:
            log.warning("order %s not polled: %s", tracked.alpaca_id, _describe(exc))
            return
        self._apply(tracked, latest)

    def _apply(self, tracked: _Tracked, latest: AlpacaOrder) -> None:
        """Notify what changed on Alpaca since the last look at this order."""
        order = tracked.order
        if order.status == bt.Order.Submitted and latest.status != OrderStatus.REJECTED:
            order.accept(self)
            self.notify(order)
        filled = _num(latest.filled_qty)
        if filled > tracked.filled:
            qty = filled - tracked.filled
            avg = _num(latest.filled_avg_price)
            price = (avg * filled - tracked.avg_price * tracked.filled) / qty
            tracked.filled, tracked.avg_price = filled, avg
            when = bt.date2num(latest.filled_at) if latest.filled_at else order.data.datetime[0]
            _execute(order, qty, price, when, self.positions[tracked.symbol])
            _mark_filled(order, complete=latest.status == OrderStatus.FILLED)
            self.notify(order)
        ending = _ENDINGS.get(latest.status)
        if ending is not None or latest.status == OrderStatus.FILLED:
            del self._open[order.ref]
        if ending is not None:
            ending(self, order)
            self.notify(order)

    def _notify_earlier_fills(self, tracked: _Tracked, cid: str) -> None:
        """An adopted order's fills from before ``start`` are in the adopted positions
        already: notify them, booked against a copy of the position."""
        qty, avg = self._earlier_fills.pop(cid, (0.0, 0.0))
        if qty <= 0:
            return
        order, held = tracked.order, self.positions[tracked.symbol]
        signed = qty if order.isbuy() else -qty
        before = bt.Position(held.size - signed, held.price)
        order.accept(self)
        self.notify(order)
        _execute(order, qty, avg, order.data.datetime[0], before)
        _mark_filled(order, complete=qty >= abs(order.size))
        self.notify(order)
        tracked.filled, tracked.avg_price = qty, avg

    def _refresh_account(self) -> None:
        account = self._client.get_account()
        account = _model(account, TradeAccount)
        self._cash, self._value = _num(account.cash), _num(account.equity)

    def _adopt_positions(self, held: Any) -> None:
        for pos in (_model(p, AlpacaPosition) for p in held):
            size = abs(_num(pos.qty)) * (-1 if pos.side == PositionSide.SHORT else 1)
            self.positions[pos.symbol] = bt.Position(size, _num(pos.avg_entry_price))
            log.info("adopted Alpaca position: %s %s at %s", pos.symbol, size, pos.avg_entry_price)

    def _note_earlier_fills(self) -> None:
        recent = self._client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
        for o in (_alpaca_order(o) for o in recent):
            if _num(o.filled_qty) > 0:
                self._earlier_fills[o.client_order_id] = (
                    _num(o.filled_qty),
                    _num(o.filled_avg_price),
                )
            if o.status not in _ENDINGS and o.status != OrderStatus.FILLED:
                log.warning(
                    "order %s was open on Alpaca before this start: followed only if the "
                    "strategy places it again",
                    o.client_order_id,
                )


def _expire(broker: AlpacaBroker, order: Any) -> None:
    order.status = bt.Order.Expired  # Order.expire() refuses market orders


def _alpaca_reject(broker: AlpacaBroker, order: Any) -> None:
    order.addinfo(reason="rejected by Alpaca")
    order.reject(broker)


_ENDINGS: dict[OrderStatus, Callable[[AlpacaBroker, Any], None]] = {
    OrderStatus.CANCELED: lambda broker, order: order.cancel(),
    OrderStatus.REPLACED: lambda broker, order: order.cancel(),
    OrderStatus.EXPIRED: _expire,
    OrderStatus.DONE_FOR_DAY: _expire,
    OrderStatus.REJECTED: _alpaca_reject,
}


def _new_order(
    cls: Any,
    owner: Any,
    data: Any,
    size: float,
    comminfo: Any,
    *,
    price: float | None = None,
    plimit: float | None = None,
    exectype: int | None = None,
    valid: Any = None,
    tradeid: int = 0,
    oco: Any = None,
    trailamount: float | None = None,
    trailpercent: float | None = None,
    parent: Any = None,
    transmit: bool = True,
    **info: Any,
) -> Any:
    """A backtrader order from ``Strategy.buy``/``sell`` arguments; extra ones go to info."""
    order = cls(
        owner=owner, data=data, size=size, price=price, pricelimit=plimit, exectype=exectype,
        valid=valid, tradeid=tradeid, oco=oco, trailamount=trailamount,
        trailpercent=trailpercent, parent=parent, transmit=transmit,
    )  # fmt: skip
    order.addinfo(**info)
    order.addcomminfo(comminfo)
    return order


def _execute(order: Any, qty: float, price: float, when: float, position: Any) -> None:
    """Book a fill of ``qty`` shares on ``order`` and ``position``, as BackBroker does."""
    size = qty if order.isbuy() else -qty
    old_price = position.price
    psize, pprice, opened, closed = position.update(size, price)
    comminfo = order.comminfo
    pnl = comminfo.profitandloss(-closed, old_price, price)
    closedvalue = comminfo.getoperationcost(closed, old_price)
    openedvalue = comminfo.getoperationcost(opened, price)
    order.execute(
        when, size, price, closed, closedvalue, 0.0, opened, openedvalue, 0.0, 0.0, pnl,
        psize, pprice,
    )  # fmt: skip


def _mark_filled(order: Any, *, complete: bool) -> None:
    if complete:
        order.completed()
    else:
        order.partial()


def _unsupported(order: Any) -> str | None:
    if not symbol_of(order.data):
        return "the data feed has no name: add it with cerebro.adddata(feed, name=SYMBOL)"
    if order.exectype not in (bt.Order.Market, bt.Order.Limit):
        return f"{order.getordername()} orders are not supported on Alpaca (market, limit only)"
    if order.parent is not None or not order.transmit or order.oco is not None:
        return "bracket, OCO and parent/child orders are not supported on Alpaca"
    return None


def _request(order: Any, cid: str) -> OrderRequest:
    qty = abs(float(order.size))
    day = order.valid is not None or not qty.is_integer()
    common: dict[str, Any] = {
        "symbol": symbol_of(order.data),
        "qty": qty,
        "side": OrderSide.BUY if order.isbuy() else OrderSide.SELL,
        "time_in_force": TimeInForce.DAY if day else TimeInForce.GTC,
        "client_order_id": cid,
    }
    if order.exectype == bt.Order.Limit:
        return LimitOrderRequest(limit_price=_tick(order.created.price), **common)
    return MarketOrderRequest(**common)


def _tick(price: float) -> float:
    """Alpaca refuses sub-penny limit prices (4 decimals are allowed below $1)."""
    return round(float(price), 2 if price >= 1 else 4)


def _mismatch(existing: AlpacaOrder, order: Any) -> str | None:
    side = OrderSide.BUY if order.isbuy() else OrderSide.SELL
    same = (
        existing.symbol == symbol_of(order.data)
        and existing.side == side
        and _num(existing.qty) == abs(float(order.size))
    )
    shown = existing.side.value if existing.side is not None else "?"
    return None if same else f"{shown} {existing.qty} {existing.symbol}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        try:
            message = exc.message
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        return f"{message} (HTTP {exc.status_code})"
    return str(exc) or type(exc).__name__


def _num(value: str | float | None) -> float:
    return float(value) if value not in (None, "") else 0.0


def _model(value: object, cls: type[_M]) -> _M:
    if not isinstance(value, cls):
        raise TypeError(f"expected an alpaca {cls.__name__}: is the client in raw_data mode?")
    return value


def _alpaca_order(value: object) -> AlpacaOrder:
    return _model(value, AlpacaOrder)
