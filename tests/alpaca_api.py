"""A local stand-in for Alpaca: the paper trading REST API and the market-data stream.

STYLE.md 6: alpaca-py's real clients talk to real servers here, over Alpaca's wire
protocols::

    with AlpacaAPI(cash=10_000) as api:
        TradingClient(api.api_key, api.secret_key, paper=True, url_override=api.base_url)
        StockDataStream(api.api_key, api.secret_key, url_override=api.stream_url)

REST (``/v2``, ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` checked, errors as Alpaca's
``{"code", "message"}`` bodies): ``GET account``, ``GET positions[/SYMBOL]``,
``POST orders`` (market and limit; a reused ``client_order_id`` → 422, a buy beyond the
cash → 403), ``GET orders`` (``status``, ``limit``, ``direction``, ``symbols``),
``GET orders/ID``, ``GET orders:by_client_order_id``, ``DELETE orders/ID``.

Market data (a WebSocket server): ``connected``, ``auth``, ``subscribe``/``unsubscribe``
to ``bars``, then a ``b`` message per pushed bar; msgpack when the client sends
``Content-Type: application/msgpack`` (alpaca-py always does), JSON otherwise.

The market moves only when a test calls :meth:`AlpacaAPI.push_bar`: open orders of that
symbol fill at the bar (market orders at its open, limit orders when the bar reaches the
limit, at the open or the limit), at most ``liquidity`` shares per order per bar; cash and
positions follow; then the bar goes out to the stream's subscribers. ``orders`` records
every order created, so a test can tell an order was sent once.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

API_KEY = "PKSTANDIN0000000001"
SECRET = "stand-in-secret-0001"
ACCOUNT_ID = "5d9ae3c4-0f3a-4c36-9d8f-000000000001"
OPEN = ("new", "accepted", "pending_new", "partially_filled")
ENDED = ("filled", "canceled", "expired", "rejected", "done_for_day", "replaced")
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds",
            "corrections", "cancelErrors")  # fmt: skip

Json = dict[str, Any]
Reply = tuple[int, Any]  # HTTP status, JSON body (None: no body)


def _error(status: int, code: int, message: str) -> Reply:
    return status, {"code": code, "message": message}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dec(x: float) -> str:
    """Alpaca sends amounts as decimal strings."""
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Order:
    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    qty: float
    time_in_force: str
    limit_price: float | None
    created_at: datetime
    status: str = "new"
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None

    def to_json(self) -> Json:
        def ts(dt: datetime | None) -> str | None:
            return None if dt is None else _iso(dt)

        return {
            "id": self.id, "client_order_id": self.client_order_id,
            "created_at": ts(self.created_at), "updated_at": ts(self.updated_at or self.created_at),
            "submitted_at": ts(self.created_at), "filled_at": ts(self.filled_at),
            "expired_at": ts(self.expired_at), "canceled_at": ts(self.canceled_at),
            "failed_at": ts(self.failed_at), "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.symbol)),
            "symbol": self.symbol, "asset_class": "us_equity", "notional": None,
            "qty": _dec(self.qty), "filled_qty": _dec(self.filled_qty),
            "filled_avg_price": None if self.filled_avg_price is None
            else _dec(self.filled_avg_price),
            "order_class": "simple", "order_type": self.type, "type": self.type,
            "side": self.side, "time_in_force": self.time_in_force,
            "limit_price": None if self.limit_price is None else _dec(self.limit_price),
            "stop_price": None, "status": self.status, "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }  # fmt: skip


@dataclass
class _Subscriber:
    ws: ServerConnection
    msgpack: bool
    authenticated: bool = False
    bars: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.lock = threading.Lock()  # bars are sent from the test's thread

    def send(self, messages: list[Json]) -> None:
        if self.msgpack:
            frame: bytes | str = msgpack.packb(messages)
        else:
            frame = json.dumps(messages, default=_json_time)
        # a client that went away (a killed session) misses the bar, as with Alpaca
        with self.lock, contextlib.suppress(ConnectionClosed):
            self.ws.send(frame)

    def decode(self, frame: bytes | str) -> Any:
        if isinstance(frame, bytes) and self.msgpack:
            return msgpack.unpackb(frame)
        return json.loads(frame)


def _json_time(value: Any) -> str:
    if isinstance(value, msgpack.Timestamp):
        return _iso(value.to_datetime())
    raise TypeError(f"not JSON: {type(value).__name__}")


class AlpacaAPI:
    """Alpaca's paper REST API and market-data stream on 127.0.0.1 (free ports).

    Use as a context manager. ``positions`` seeds the account: ``{"AAPL": (10, 90.0)}``
    (negative quantities are shorts). Thread-safe.
    """

    def __init__(
        self,
        *,
        cash: float = 100_000.0,
        positions: Mapping[str, tuple[float, float]] | None = None,
        liquidity: float | None = None,
        api_key: str = API_KEY,
        secret_key: str = SECRET,
    ) -> None:
        self.api_key, self.secret_key = api_key, secret_key
        self.liquidity = liquidity  # max shares filled per order per bar (None: all)
        self.cash = float(cash)
        self.calls: list[tuple[str, str, int]] = []  # method, path, HTTP status
        self._positions = {s: [float(q), float(p)] for s, (q, p) in (positions or {}).items()}
        self._last: dict[str, float] = {}
        self._orders: list[_Order] = []
        self._subscribers: list[_Subscriber] = []
        self.subscriptions = 0  # subscribe requests answered, ever (a restart adds one)
        self._lose: list[tuple[str, str]] = []
        self._cond = threading.Condition(threading.RLock())
        self._sending = threading.Lock()  # bars go out in the order they were pushed
        self._http: ThreadingHTTPServer | None = None
        self._ws: Server | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = [
            ("GET", re.compile(r"/v2/account"), self._account),
            ("GET", re.compile(r"/v2/positions"), self._all_positions),
            ("GET", re.compile(r"/v2/positions/(?P<symbol>[^/]+)"), self._position),
            ("GET", re.compile(r"/v2/orders"), self._list_orders),
            ("POST", re.compile(r"/v2/orders"), self._create_order),
            ("GET", re.compile(r"/v2/orders:by_client_order_id"), self._by_client_id),
            ("GET", re.compile(r"/v2/orders/(?P<order_id>[^/]+)"), self._get_order),
            ("DELETE", re.compile(r"/v2/orders/(?P<order_id>[^/]+)"), self._cancel_order),
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> AlpacaAPI:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.api = self  # type: ignore[attr-defined]
        self._ws = serve(self._stream, "127.0.0.1", 0)
        rest = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02},
                                name="alpaca-rest", daemon=True)  # fmt: skip
        stream = threading.Thread(target=self._ws.serve_forever, name="alpaca-stream", daemon=True)
        rest.start()
        stream.start()
        return self

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.shutdown()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> AlpacaAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def stream_url(self) -> str:
        assert self._ws is not None
        return f"ws://127.0.0.1:{self._ws.socket.getsockname()[1]}/v2/iex"

    # ------------------------------------------------------------------ what tests see
    @property
    def orders(self) -> list[Json]:
        """Every order created, as Alpaca shows it now, oldest first."""
        with self._cond:
            return [o.to_json() for o in self._orders]

    def order(self, client_order_id: str) -> Json:
        with self._cond:
            return self._find(client_order_id).to_json()

    def positions(self) -> dict[str, tuple[float, float]]:
        with self._cond:
            return {s: (q, p) for s, (q, p) in self._positions.items()}

    def account(self) -> Json:
        with self._cond:
            return self._account_json()

    def subscribed(self, symbol: str) -> bool:
        with self._cond:
            return any(symbol in s.bars for s in self._subscribers)

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked on every change here)."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}")

    # ------------------------------------------------------------------ what tests do
    def push_bar(
        self, symbol: str, time: datetime, o: float, h: float, l: float, c: float,  # noqa: E741
        v: float = 1000.0,
    ) -> None:  # fmt: skip
        """A new bar of ``symbol`` (``time``: its start, timezone-aware): fill, then send."""
        assert time.tzinfo is not None, "bar times are timezone-aware"
        with self._sending:
            with self._cond:
                for order in [o_ for o_ in self._orders if o_.symbol == symbol]:
                    if order.status in OPEN:
                        self._match(order, time, o, h, l)
                self._last[symbol] = c
                self._cond.notify_all()
                subscribers = [s for s in self._subscribers if symbol in s.bars or "*" in s.bars]
            message = {"T": "b", "S": symbol, "o": o, "h": h, "l": l, "c": c, "v": v,
                       "t": msgpack.Timestamp.from_datetime(time), "n": 1, "vw": c}  # fmt: skip
            for subscriber in subscribers:
                subscriber.send([message])

    def end_order(self, client_order_id: str, status: str) -> None:
        """Alpaca ends an order on its own: ``canceled``, ``expired``, ``rejected``…"""
        assert status in ENDED
        with self._cond:
            order = self._find(client_order_id)
            order.status, order.updated_at = status, _now()
            stamp = {"canceled": "canceled_at", "expired": "expired_at", "rejected": "failed_at"}
            if status in stamp:
                setattr(order, stamp[status], order.updated_at)
            self._cond.notify_all()

    def lose_next_response(self, method: str, path: str) -> None:
        """Handle the next ``method path`` request, then drop the connection unanswered."""
        with self._cond:
            self._lose.append((method, path))

    # ------------------------------------------------------------------ matching
    def _match(self, order: _Order, when: datetime, o: float, h: float, l: float) -> None:  # noqa: E741
        price: float | None = o
        if order.limit_price is not None:
            if order.side == "buy":
                price = min(o, order.limit_price) if l <= order.limit_price else None
            else:
                price = max(o, order.limit_price) if h >= order.limit_price else None
        if price is None:
            return
        qty = order.qty - order.filled_qty
        if self.liquidity is not None:
            qty = min(qty, self.liquidity)
        self._fill(order, qty, price, when)

    def _fill(self, order: _Order, qty: float, price: float, when: datetime) -> None:
        signed = qty if order.side == "buy" else -qty
        self.cash -= signed * price
        held, avg = self._positions.get(order.symbol, (0.0, 0.0))
        size = held + signed
        if size == 0:
            self._positions.pop(order.symbol, None)
        else:
            if held == 0 or (held > 0) == (signed > 0):
                avg = (held * avg + signed * price) / size
            elif (held > 0) != (size > 0):  # flipped side
                avg = price
            self._positions[order.symbol] = [size, avg]
        paid = (order.filled_avg_price or 0.0) * order.filled_qty + price * qty
        order.filled_qty += qty
        order.filled_avg_price = paid / order.filled_qty
        order.updated_at = _now()
        if order.filled_qty >= order.qty:
            order.status, order.filled_at = "filled", when
        else:
            order.status = "partially_filled"

    # ------------------------------------------------------------------ REST
    def handle(self, method: str, path: str, query: Mapping[str, str], body: Any) -> Reply:
        for verb, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if verb == method and match:
                with self._cond:
                    reply: Reply = route(query=query, body=body, **match.groupdict())
                    self._cond.notify_all()
                    return reply
        return _error(404, 40410000, "endpoint not found")

    def authorized(self, headers: Any) -> bool:
        return (
            headers.get("APCA-API-KEY-ID") == self.api_key
            and headers.get("APCA-API-SECRET-KEY") == self.secret_key
        )

    def take_lost(self, method: str, path: str) -> bool:
        with self._cond:
            if (method, path) in self._lose:
                self._lose.remove((method, path))
                return True
            return False

    def record(self, method: str, path: str, status: int) -> None:
        with self._cond:
            self.calls.append((method, path, status))
            self._cond.notify_all()

    def _account_json(self) -> Json:
        values = [q * self._last.get(s, p) for s, (q, p) in self._positions.items()]
        long_mv, short_mv = sum(v for v in values if v > 0), sum(v for v in values if v < 0)
        equity = self.cash + long_mv + short_mv
        money = {k: _dec(v) for k, v in (("cash", self.cash), ("equity", equity),
                 ("portfolio_value", equity), ("last_equity", equity),
                 ("buying_power", max(self.cash, 0.0)), ("long_market_value", long_mv),
                 ("short_market_value", short_mv))}  # fmt: skip
        return {
            "id": ACCOUNT_ID, "account_number": "PA3STANDIN", "status": "ACTIVE",
            "currency": "USD", "multiplier": "1", "shorting_enabled": True,
            "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
            "trade_suspended_by_user": False, "pattern_day_trader": False,
            "created_at": "2024-01-02T00:00:00Z", "initial_margin": "0",
            "maintenance_margin": "0", "sma": "0", "accrued_fees": "0", **money,
        }  # fmt: skip

    def _account(self, **_: Any) -> Reply:
        return 200, self._account_json()

    def _position_json(self, symbol: str) -> Json:
        qty, avg = self._positions[symbol]
        price = self._last.get(symbol, avg)
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)), "symbol": symbol,
            "exchange": "NASDAQ", "asset_class": "us_equity", "asset_marginable": True,
            "avg_entry_price": _dec(avg), "qty": _dec(qty), "qty_available": _dec(qty),
            "side": "long" if qty > 0 else "short", "market_value": _dec(qty * price),
            "cost_basis": _dec(qty * avg), "unrealized_pl": _dec(qty * (price - avg)),
            "current_price": _dec(price), "lastday_price": _dec(price), "change_today": "0",
        }  # fmt: skip

    def _all_positions(self, **_: Any) -> Reply:
        return 200, [self._position_json(s) for s in sorted(self._positions)]

    def _position(self, symbol: str, **_: Any) -> Reply:
        if symbol not in self._positions:
            return _error(404, 40410000, "position does not exist")
        return 200, self._position_json(symbol)

    def _list_orders(self, query: Mapping[str, str], **_: Any) -> Reply:
        status = query.get("status", "open")
        wanted = {"open": OPEN, "closed": ENDED, "all": OPEN + ENDED}.get(status)
        if wanted is None:
            return _error(422, 40010001, f"invalid status: {status}")
        symbols = set(filter(None, query.get("symbols", "").split(",")))
        found = [o for o in self._orders
                 if o.status in wanted and (not symbols or o.symbol in symbols)]  # fmt: skip
        if query.get("direction", "desc") == "desc":
            found.reverse()
        limit = min(int(query.get("limit", 50)), 500)
        return 200, [o.to_json() for o in found[:limit]]

    def _create_order(self, body: Any, **_: Any) -> Reply:
        if not isinstance(body, dict):
            return _error(422, 40010001, "request body must be a JSON object")
        refusal = _invalid(body)
        if refusal:
            return _error(422, 40010001, refusal)
        cid = str(body.get("client_order_id") or uuid.uuid4())
        if len(cid) > 128:
            return _error(422, 40010001, "client_order_id must be no more than 128 characters")
        if any(o.client_order_id == cid for o in self._orders):
            return _error(422, 40010001, "client_order_id must be unique")
        qty, limit = float(body["qty"]), body.get("limit_price")
        price = float(limit) if limit is not None else self._last.get(body["symbol"])
        if body["side"] == "buy" and price is not None and qty * price > self.cash:
            return _error(403, 40310000, "insufficient buying power")
        order = _Order(
            id=str(uuid.uuid4()), client_order_id=cid, symbol=body["symbol"],
            side=body["side"], type=body["type"], qty=qty,
            time_in_force=body["time_in_force"],
            limit_price=None if limit is None else float(limit), created_at=_now(),
        )  # fmt: skip
        self._orders.append(order)
        return 200, order.to_json()

    def _get_order(self, order_id: str, **_: Any) -> Reply:
        order = next((o for o in self._orders if o.id == order_id), None)
        if order is None:
            return _error(404, 40410000, "order not found")
        return 200, order.to_json()

    def _by_client_id(self, query: Mapping[str, str], **_: Any) -> Reply:
        cid = query.get("client_order_id", "")
        order = next((o for o in self._orders if o.client_order_id == cid), None)
        if order is None:
            return _error(404, 40410000, "order not found")
        return 200, order.to_json()

    def _cancel_order(self, order_id: str, **_: Any) -> Reply:
        order = next((o for o in self._orders if o.id == order_id), None)
        if order is None:
            return _error(404, 40410000, "order not found")
        if order.status not in OPEN:
            return _error(422, 42210000, "order is not cancelable")
        order.status, order.canceled_at = "canceled", _now()
        order.updated_at = order.canceled_at
        return 204, None

    def _find(self, client_order_id: str) -> _Order:
        return next(o for o in self._orders if o.client_order_id == client_order_id)

    # ------------------------------------------------------------------ stream
    def _stream(self, ws: ServerConnection) -> None:
        wants_msgpack = ws.request is not None and (
            ws.request.headers.get("Content-Type") == "application/msgpack"
        )
        client = _Subscriber(ws, msgpack=wants_msgpack)
        client.send([{"T": "success", "msg": "connected"}])
        with self._cond:
            self._subscribers.append(client)
        try:
            for frame in ws:
                if not self._on_message(client, client.decode(frame)):
                    break
        finally:
            with self._cond:
                self._subscribers.remove(client)

    def _on_message(self, client: _Subscriber, msg: Any) -> bool:
        """Answer one client message; False closes the connection."""
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "auth":
            if msg.get("key") != self.api_key or msg.get("secret") != self.secret_key:
                client.send([{"T": "error", "code": 402, "msg": "auth failed"}])
                return False
            client.authenticated = True
            client.send([{"T": "success", "msg": "authenticated"}])
        elif not client.authenticated:
            client.send([{"T": "error", "code": 401, "msg": "not authenticated"}])
        elif action in ("subscribe", "unsubscribe"):
            with self._cond:
                change = set(msg.get("bars", []))
                bars = client.bars | change if action == "subscribe" else client.bars - change
                client.bars = frozenset(bars)
                self.subscriptions += action == "subscribe"
                self._cond.notify_all()
            reply: dict[str, list[str]] = {k: [] for k in CHANNELS} | {"bars": sorted(client.bars)}
            client.send([{"T": "subscription", **reply}])
        else:
            client.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        return True


def _invalid(body: Json) -> str | None:
    """Why Alpaca (or this stand-in) would refuse the order body, if it would."""
    if not body.get("symbol"):
        return "symbol is required"
    if body.get("notional") is not None:
        return "notional orders are not supported by this stand-in"
    try:
        if float(body.get("qty", 0)) <= 0:
            return "qty must be > 0"
    except (TypeError, ValueError):
        return "qty must be a number"
    if body.get("side") not in ("buy", "sell"):
        return "side must be buy or sell"
    if body.get("type") not in ("market", "limit"):
        return f"order type {body.get('type')} is not supported by this stand-in"
    if body.get("time_in_force") not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
        return "invalid time_in_force"
    if body.get("type") == "limit" and body.get("limit_price") is None:
        return "limit_price is required"
    return None


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        api: AlpacaAPI = self.server.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not api.authorized(self.headers):
            status, body = _error(401, 40110000, "request is not authorized")
        else:
            try:
                status, body = api.handle(method, url.path, query, json.loads(raw or b"null"))
            except json.JSONDecodeError:
                status, body = _error(400, 40010000, "malformed JSON")
        api.record(method, url.path, status)
        if api.take_lost(method, url.path):
            self.close_connection = True
            return
        self._reply(status, body)

    def _reply(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
