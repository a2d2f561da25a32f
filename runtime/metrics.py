"""Backtest metrics: a backtrader analyzer collecting per-bar state, summarised with numpy.

Usage::

    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    strat = cerebro.run()[0]
    result = strat.analyzers.metrics.get_analysis()   # plain, JSON-serialisable dict
    dates, values = strat.analyzers.metrics.equity_curve()

Collection (hot path, once per strategy bar, in ``notify_cashvalue``): the strategy datetime,
the broker value and cash, and for every data its position size and close are appended to
``array.array`` buffers. Closed trades are recorded in ``notify_trade``, and the executions
that make them up in ``notify_order`` (per order, not per bar). Nothing is computed
until ``stop()``. Nothing is rounded; the caller formats. Undefined figures are ``None``,
never NaN or inf.

Definitions
-----------
*Value series*: ``V = [initial_value, v_1, ..., v_n]`` where ``v_i`` is the broker value at the
close of strategy bar ``i`` (as delivered by ``notify_cashvalue``) and ``n`` the number of bars.

- ``initial_value``: ``strategy.broker.startingcash``.
- ``final_value``: ``v_n`` (equals ``cerebro.broker.getvalue()`` after the run);
  ``initial_value`` when no bar was seen.
- ``portfolio_net_pnl`` = final - initial; ``portfolio_return_pct`` = (final / initial - 1) * 100.
- *returns*: the ``n`` per-bar simple returns of ``V``, ``r_i = V_i / V_{i-1} - 1`` (the first
  one measured from the initial value, so the returns compound exactly to the total return).
- *ppy* (periods per year), from the median spacing ``s`` of the bar datetimes:
  ``s < 6.5 h``: ``252 * 6.5 h / s`` (hourly -> 1638, 1-minute -> 98280);
  ``s < 4 days``: 252 (daily / business-day bars); ``< 11 days``: 52; ``< 45 days``: 12;
  ``< 135 days``: 4; otherwise 1. Undefined with fewer than two bars.
- ``sharpe_ratio`` = mean(r) / std(r, ddof=1) * sqrt(ppy), risk-free rate 0; None with fewer than
  2 returns or zero variance.
- ``sortino_ratio`` = mean(r) / DD * sqrt(ppy), ``DD = sqrt(mean(min(r, 0)^2))`` (downside
  deviation over all returns, positive returns counting as zero); None if DD is 0 or fewer than
  2 returns.
- ``annualized_return_pct`` = ((final / initial) ^ (ppy / n) - 1) * 100.
- ``calmar_ratio`` = annualized_return_pct / max_drawdown_pct; None without a drawdown.
- Drawdown, from the running peak ``P`` of ``V``: ``max_drawdown_money`` = max(P - V),
  ``max_drawdown_pct`` = max((P - V) / P * 100) (a positive number; the two maxima may occur at
  different bars, as in ``bt.analyzers.DrawDown``), ``max_drawdown_duration_bars`` = the longest
  run of consecutive bars with ``V < P``.
- Trades (closed trades, in closing order, net pnl = ``trade.pnlcomm``): a win has pnl > 0, a
  loss pnl < 0 (a breakeven trade is neither, and breaks both streaks). ``total_trades`` =
  ``trades_closed + trades_open``, ``trades_open`` = trades still open at the end;
  ``win_rate_pct`` = wins / closed * 100; ``total_net_pnl`` = sum of net pnl;
  ``average_win_pnl`` / ``average_loss_pnl`` = mean pnl of wins / of losses (the latter negative);
  ``profit_factor`` = gross wins / abs(gross losses) (None without losing trades);
  ``expectancy`` = mean net pnl per closed trade; ``sqn`` = sqrt(N) * mean(pnl) / std(pnl, ddof=1)
  (None for N < 2 or zero spread); ``max_consecutive_wins`` / ``max_consecutive_losses``;
  ``average_trade_duration_bars`` = mean ``trade.barlen``.
- ``exposure_pct``: percent of bars 2..n where any data has a non-zero position (the first bar is
  excluded because an order placed on it cannot have filled yet); None with fewer than 2 bars.
- ``buy_and_hold_return_pct``: equal-weighted mean over the datas of
  (last close / first close - 1) * 100, using the closes seen on the strategy's bars.
- ``annual_returns``: ``{"2021": pct, ...}`` from the last value of each calendar year; the first
  year is measured from ``initial_value``, later years from the previous year's last value.
- ``monthly_returns``: ``{"2021-01": pct, ...}``, the same per calendar month (only months with
  bars appear); they compound to ``portfolio_return_pct``.
- ``per_symbol``: ``{symbol: {net_pnl, trades_closed, win_trades, loss_trades, final_position,
  buy_and_hold_return_pct}}``; symbol is ``data._name``, or ``data<i>`` when unnamed (a
  duplicate name gets ``#<i>`` appended). ``net_pnl`` sums closed trades only, so the per-symbol
  ``net_pnl`` values add up to ``total_net_pnl``.
- ``trades``: the last :data:`MAX_TRADES` closed trades, in closing order (``trades_closed``
  says how many there were in all), each ``{symbol, direction, entry_date, exit_date, size,
  entry_price, exit_price, pnl, pnl_net, bars_held}``. A trade is backtrader's: it opens when a
  data's position (per ``tradeid``) leaves zero and closes when it returns to zero; an order
  that reverses a position closes one trade and opens the next. ``direction`` is ``long`` or
  ``short``; ``entry_date`` / ``exit_date`` are the bar datetimes of the first and of the
  closing execution, written ``YYYY-MM-DD``, or ``YYYY-MM-DDTHH:MM:SS`` when the run's bars are
  intraday (median spacing under 6.5 hours, as for *ppy*), the same form for every trade of a
  run; ``size`` = the largest absolute size the trade held; ``entry_price`` = the
  size-weighted mean price of the executions that opened or added to it, ``exit_price`` = that
  of the executions that reduced or closed it; ``pnl`` = ``trade.pnl`` (gross), ``pnl_net`` =
  ``trade.pnlcomm`` (after commission), ``bars_held`` = ``trade.barlen``. ``size``,
  ``entry_price`` and ``exit_price`` are None if the trade's orders were never notified (a
  broker that does not notify them; backtrader's own always does).

Datetimes are the strategy's bar datetimes as backtrader stores them (naive; UTC unless the
feed says otherwise), e.g. daily CSV feeds carry the end-of-session time 23:59:59.999989.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Any, Literal, NamedTuple

import backtrader as bt
import numpy as np

__all__ = ["MAX_TRADES", "RESULT_KEYS", "TRADE_KEYS", "MetricsAnalyzer", "periods_per_year"]

RESULT_KEYS: tuple[str, ...] = (
    "initial_value",
    "final_value",
    "portfolio_return_pct",
    "portfolio_net_pnl",
    "annualized_return_pct",
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "sqn",
    "max_drawdown_pct",
    "max_drawdown_money",
    "max_drawdown_duration_bars",
    "total_trades",
    "trades_open",
    "trades_closed",
    "win_trades",
    "loss_trades",
    "win_rate_pct",
    "total_net_pnl",
    "average_win_pnl",
    "average_loss_pnl",
    "profit_factor",
    "expectancy",
    "max_consecutive_wins",
    "max_consecutive_losses",
    "average_trade_duration_bars",
    "exposure_pct",
    "buy_and_hold_return_pct",
    "annual_returns",
    "monthly_returns",
    "per_symbol",
    "trades",
)

#: Closed trades listed in ``trades`` (the last ones); ``trades_closed`` counts them all.
MAX_TRADES = 500

#: The fields of one entry of ``trades``.
TRADE_KEYS: tuple[str, ...] = (
    "symbol",
    "direction",
    "entry_date",
    "exit_date",
    "size",
    "entry_price",
    "exit_price",
    "pnl",
    "pnl_net",
    "bars_held",
)

# backtrader stores datetimes as float days since 0001-01-01 plus one (proleptic ordinal).
_UNIX_EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000
_US_PER_SECOND = 1_000_000
_TRADING_DAY_SECONDS = 6.5 * 3600.0
_DAY_SECONDS = 86400.0


def _median_spacing_s(dates: np.ndarray) -> float | None:
    """The median positive step of ``dates`` (datetime64) in seconds; None without one."""
    if len(dates) < 2:
        return None
    steps = np.diff(dates.astype("datetime64[us]").astype(np.int64)) / 1e6
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else None


def periods_per_year(dates: np.ndarray) -> float | None:
    """Bars per year inferred from the median spacing of ``dates`` (datetime64); see module doc."""
    spacing = _median_spacing_s(dates)
    if spacing is None:
        return None
    if spacing < _TRADING_DAY_SECONDS:
        return 252.0 * _TRADING_DAY_SECONDS / spacing
    days = spacing / _DAY_SECONDS
    if days < 4:
        return 252.0
    if days < 11:
        return 52.0
    if days < 45:
        return 12.0
    if days < 135:
        return 4.0
    return 1.0


def _bt_num2datetime64(nums: np.ndarray) -> np.ndarray:
    """Vectorised ``bt.num2date``: backtrader float datetimes -> ``datetime64[us]``."""
    if nums.size == 0:
        return np.empty(0, dtype="datetime64[us]")
    days = np.floor(nums)
    frac_us = np.rint((nums - days) * _US_PER_DAY).astype(np.int64)
    # Same float-noise compensation as backtrader's num2date.
    sub = frac_us % _US_PER_SECOND
    frac_us = np.where(sub < 10, frac_us - sub, frac_us)
    frac_us = np.where(sub > 999_990, frac_us - sub + _US_PER_SECOND, frac_us)
    us = (days.astype(np.int64) - _UNIX_EPOCH_ORDINAL) * _US_PER_DAY + frac_us
    return us.astype("datetime64[us]")


def _clean(obj: Any) -> Any:
    """Plain Python types only; NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    raise TypeError(f"unexpected value in metrics: {obj!r}")


def _ratio(num: float, den: float) -> float | None:
    if den == 0 or not math.isfinite(num) or not math.isfinite(den):
        return None
    return num / den


def _longest_run(mask: np.ndarray) -> int:
    if mask.size == 0 or not mask.any():
        return 0
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def _first_last_finite(x: np.ndarray) -> tuple[float, float] | None:
    idx = np.flatnonzero(np.isfinite(x))
    if idx.size == 0:
        return None
    return float(x[idx[0]]), float(x[idx[-1]])


def _pct_change(first: float, last: float) -> float | None:
    r = _ratio(last, first)
    return None if r is None else (r - 1.0) * 100.0


def _plain_size(size: float) -> int | float:
    return int(size) if float(size).is_integer() else float(size)


class _Legs:
    """The executions of one trade being built, applied as ``Trade.update`` applies them."""

    __slots__ = ("in_size", "in_value", "out_size", "out_value", "peak", "size")

    def __init__(self) -> None:
        self.size = self.peak = 0.0
        self.in_size = self.in_value = self.out_size = self.out_value = 0.0

    def add(self, size: float, price: float) -> bool:
        """One execution of ``size`` (signed) at ``price``; True when it closes the trade."""
        old = self.size
        self.size = new = old + size
        if abs(new) > abs(old):  # opened or added to
            self.peak = max(self.peak, abs(new))
            self.in_size += abs(size)
            self.in_value += abs(size) * price
        else:  # reduced or closed
            self.out_size += abs(size)
            self.out_value += abs(size) * price
        return bool(old) and not new


class _ClosedTrade(NamedTuple):
    data: int  # index into the strategy's datas, -1 if not one of them
    long: bool
    opened: float  # backtrader datetimes
    closed: float
    size: float | None
    entry_price: float | None
    exit_price: float | None
    pnl: float
    pnl_net: float
    bars: int


class MetricsAnalyzer(bt.Analyzer):
    """Portfolio, risk and trade metrics for any ``bt.Cerebro`` run (definitions: module doc).

    ``get_analysis()`` returns a plain dict with exactly :data:`RESULT_KEYS`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rets: dict[str, Any] = {}
        self._dt = array("d")
        self._value = array("d")
        self._cash = array("d")
        self._pos: list[array[float]] = []
        self._close: list[array[float]] = []
        self._trade_pnl = array("d")
        self._trade_barlen = array("q")
        self._trade_data = array("q")
        self._open_refs: set[int] = set()
        self._closed_refs: set[int] = set()
        self._closed_trades: deque[_ClosedTrade] = deque(maxlen=MAX_TRADES)
        self._opened_dt = array("d")  # every trade's opening and closing bar (for the chart)
        self._closed_dt = array("d")
        # per (data, tradeid): the trade being built, and built ones (with their closing bar)
        # waiting for their notify_trade
        self._legs: dict[tuple[int, int], _Legs] = {}
        self._built: dict[tuple[int, int], deque[tuple[int, _Legs]]] = {}
        self._data_index: dict[int, int] = {}
        self._per_data: list[tuple[Any, Any, Any, Any, Any]] = []
        self._pending: list[tuple[Any, Any, Any, Any, Any]] = []
        self._last_len = -1

    def create_analysis(self) -> None:
        self.rets = {}

    # -- collection ----------------------------------------------------------------------------

    def start(self) -> None:
        strategy = self.strategy
        self._initial = float(strategy.broker.startingcash)
        self._strat_len = strategy.__len__
        self._dtline = strategy.lines.datetime
        self._getposition = strategy.broker.getposition
        self._dt_append = self._dt.append
        self._value_append = self._value.append
        self._cash_append = self._cash.append
        per_data = []
        for i, data in enumerate(self.datas):
            pos, close = array("d"), array("d")
            self._pos.append(pos)
            self._close.append(close)
            self._data_index[id(data)] = i
            per_data.append((data, data.lines.close, pos, close, i))
        self._per_data = per_data
        # Datas without a bar yet (later start): their close must not be read. Once every
        # data has delivered a bar the check is skipped.
        self._pending = list(per_data)

    def notify_cashvalue(self, cash: float, value: float) -> None:
        n = self._strat_len()
        if n == self._last_len:  # same bar notified again (e.g. replayed data): overwrite
            self._record_replace(cash, value)
            return
        self._last_len = n
        self._dt_append(self._dtline[0])
        self._value_append(value)
        self._cash_append(cash)
        getposition = self._getposition
        if self._pending:
            self._pending = [p for p in self._pending if not len(p[0])]
            nan = math.nan
            pending = {p[4] for p in self._pending}
            for data, close_line, pos, close, i in self._per_data:
                pos.append(getposition(data).size)
                close.append(nan if i in pending else close_line[0])
            return
        for data, close_line, pos, close, _i in self._per_data:
            pos.append(getposition(data).size)
            close.append(close_line[0])

    def _record_replace(self, cash: float, value: float) -> None:
        if not self._value:
            return
        self._dt[-1] = self._dtline[0]
        self._value[-1] = value
        self._cash[-1] = cash
        for data, close_line, pos, close, _i in self._per_data:
            pos[-1] = self._getposition(data).size
            if len(data):
                close[-1] = close_line[0]

    def notify_order(self, order: Any) -> None:
        """Each execution into the trade it belongs to, split as ``Strategy._addnotification``
        splits it (the closing part first, then the opening part). Backtrader notifies an
        order before the trades it changed, so ``notify_trade`` finds the trade built."""
        if not order.executed.size:
            return
        data = order.data if order.data._compensate is None else order.data._compensate
        key = (id(data), order.tradeid)
        for bit in order.executed.iterpending():
            for size in (bit.closed, bit.opened):
                if not size:
                    continue
                legs = self._legs.get(key)
                if legs is None:
                    legs = self._legs[key] = _Legs()
                if legs.add(size, bit.price):
                    del self._legs[key]
                    self._built.setdefault(key, deque()).append((len(data), legs))

    def notify_trade(self, trade: Any) -> None:
        ref = trade.ref
        if trade.isclosed:
            self._open_refs.discard(ref)
            if ref not in self._closed_refs:
                self._closed_refs.add(ref)
                self._trade_pnl.append(trade.pnlcomm)
                self._trade_barlen.append(trade.barlen)
                index = self._data_index.get(id(trade.data), -1)
                self._trade_data.append(index)
                self._closed_trades.append(self._closed_trade(trade, index))
                self._closed_dt.append(trade.dtclose)
        elif trade.justopened:
            self._open_refs.add(ref)
            self._opened_dt.append(trade.dtopen)

    def _closed_trade(self, trade: Any, index: int) -> _ClosedTrade:
        legs = self._built_legs((id(trade.data), trade.tradeid), trade.barclose)
        return _ClosedTrade(
            data=index,
            long=bool(getattr(trade, "long", True)),
            opened=trade.dtopen,
            closed=trade.dtclose,
            size=None if legs is None else legs.peak,
            entry_price=None if legs is None else _ratio(legs.in_value, legs.in_size),
            exit_price=None if legs is None else _ratio(legs.out_value, legs.out_size),
            pnl=trade.pnl,
            pnl_net=trade.pnlcomm,
            bars=trade.barlen,
        )

    def _built_legs(self, key: tuple[int, int], bar: int) -> _Legs | None:
        """The executions of the trade of ``key`` closed on ``bar`` (older leftovers, which
        backtrader never notified as closed, are dropped)."""
        built = self._built.get(key)
        while built and built[0][0] < bar:
            built.popleft()
        if built and built[0][0] == bar:
            return built.popleft()[1]
        return None

    # -- results -------------------------------------------------------------------------------

    def equity_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(bar datetimes as ``datetime64[us]``, broker value at each bar close)."""
        return (
            _bt_num2datetime64(np.frombuffer(self._dt, dtype=np.float64)),
            np.array(self._value, dtype=np.float64),
        )

    def buy_and_hold_curve(self) -> np.ndarray:
        """The initial value held equally in every data from its first close (for the chart).

        A data that has not started yet counts as cash until its first bar.
        """
        curves = []
        for close in self._close:
            c = np.frombuffer(close, dtype=np.float64)
            seen = np.isfinite(c)
            if not seen.any():
                continue
            first = c[np.argmax(seen)]
            curves.append(np.where(seen, c / first, 1.0))
        if not curves:
            return np.full(len(self._value), self._initial)
        return np.asarray(self._initial * np.mean(curves, axis=0), dtype=np.float64)

    def trade_marks(self) -> tuple[np.ndarray, np.ndarray]:
        """The bar datetimes (``datetime64[us]``) where trades opened, and where they closed:
        every trade's, not only the listed ones (for the chart's markers)."""
        return (
            _bt_num2datetime64(np.frombuffer(self._opened_dt, dtype=np.float64)),
            _bt_num2datetime64(np.frombuffer(self._closed_dt, dtype=np.float64)),
        )

    def cash_curve(self) -> np.ndarray:
        """Broker cash at each bar close (aligned with :meth:`equity_curve`)."""
        return np.array(self._cash, dtype=np.float64)

    def stop(self) -> None:
        self.rets = self._compute()

    def get_analysis(self) -> dict[str, Any]:
        return self.rets

    def _symbols(self) -> list[str]:
        names: list[str] = []
        for i, data in enumerate(self.datas):
            name = getattr(data, "_name", "") or f"data{i}"
            if name in names:
                name = f"{name}#{i}"
            names.append(name)
        return names

    def _compute(self) -> dict[str, Any]:
        initial = self._initial
        dates, bar_values = self.equity_curve()
        n = bar_values.size
        final = float(bar_values[-1]) if n else initial
        values = np.concatenate(([initial], bar_values))

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            returns = values[1:] / values[:-1] - 1.0
            ppy = periods_per_year(dates)

            sharpe = sortino = annualized = None
            if returns.size >= 2 and np.isfinite(returns).all():
                mean = float(returns.mean())
                std = float(returns.std(ddof=1))
                downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
                if ppy is not None:
                    s = _ratio(mean, std)
                    sharpe = None if s is None else s * math.sqrt(ppy)
                    s = _ratio(mean, downside)
                    sortino = None if s is None else s * math.sqrt(ppy)
            growth = _ratio(final, initial)
            if ppy is not None and n and growth is not None and growth >= 0:
                annualized = (growth ** (ppy / n) - 1.0) * 100.0

            peak = np.maximum.accumulate(values)
            money_down = peak - values
            pct_down = np.where(peak > 0, money_down / peak * 100.0, np.nan)
            max_dd_money = float(money_down.max())
            max_dd_pct = float(np.nanmax(pct_down)) if np.isfinite(pct_down).any() else None
            dd_duration = _longest_run((values < peak)[1:])
            calmar = None
            if annualized is not None and max_dd_pct:
                calmar = annualized / max_dd_pct

        trades = self._trade_stats()

        positions = (
            np.vstack([np.frombuffer(p, dtype=np.float64) for p in self._pos])
            if self._pos
            else np.zeros((0, n))
        )
        exposure = None
        if n >= 2:
            exposure = float((positions[:, 1:] != 0).any(axis=0).mean() * 100.0)

        symbols = self._symbols()
        bh: list[float | None] = []
        for close in self._close:
            fl = _first_last_finite(np.frombuffer(close, dtype=np.float64))
            bh.append(None if fl is None else _pct_change(*fl))
        bh_defined = [b for b in bh if b is not None]
        bh_mean = float(np.mean(bh_defined)) if bh_defined else None

        pnl = np.frombuffer(self._trade_pnl, dtype=np.float64)
        tdata = np.frombuffer(self._trade_data, dtype=np.int64)
        per_symbol: dict[str, Any] = {}
        for i, name in enumerate(symbols):
            mine = pnl[tdata == i]
            per_symbol[name] = {
                "net_pnl": float(mine.sum()),
                "trades_closed": int(mine.size),
                "win_trades": int((mine > 0).sum()),
                "loss_trades": int((mine < 0).sum()),
                "final_position": _plain_size(positions[i, -1]) if n else 0,
                "buy_and_hold_return_pct": bh[i],
            }

        result: dict[str, Any] = {
            "initial_value": initial,
            "final_value": final,
            "portfolio_return_pct": _pct_change(initial, final),
            "portfolio_net_pnl": final - initial,
            "annualized_return_pct": annualized,
            "sharpe_ratio": sharpe,
            "sortino_ratio": sortino,
            "calmar_ratio": calmar,
            "sqn": trades.pop("sqn"),
            "max_drawdown_pct": max_dd_pct,
            "max_drawdown_money": max_dd_money,
            "max_drawdown_duration_bars": dd_duration,
            **trades,
            "exposure_pct": exposure,
            "buy_and_hold_return_pct": bh_mean,
            "annual_returns": self._period_returns(dates, bar_values, initial, "Y"),
            "monthly_returns": self._period_returns(dates, bar_values, initial, "M"),
            "per_symbol": per_symbol,
            "trades": self._trade_list(symbols, dates),
        }
        result = {key: result[key] for key in RESULT_KEYS}
        cleaned: dict[str, Any] = _clean(result)
        return cleaned

    def _trade_stats(self) -> dict[str, Any]:
        pnl = np.frombuffer(self._trade_pnl, dtype=np.float64)
        barlen = np.frombuffer(self._trade_barlen, dtype=np.int64)
        closed = int(pnl.size)
        wins = pnl[pnl > 0]
        losses = pnl[pnl < 0]
        gross_win = float(wins.sum())
        gross_loss = float(losses.sum())
        sqn = None
        if closed >= 2:
            s = _ratio(float(pnl.mean()), float(pnl.std(ddof=1)))
            sqn = None if s is None else math.sqrt(closed) * s
        opened = len(self._open_refs)
        return {
            "sqn": sqn,
            "total_trades": closed + opened,
            "trades_open": opened,
            "trades_closed": closed,
            "win_trades": int(wins.size),
            "loss_trades": int(losses.size),
            "win_rate_pct": wins.size / closed * 100.0 if closed else None,
            "total_net_pnl": float(pnl.sum()),
            "average_win_pnl": float(wins.mean()) if wins.size else None,
            "average_loss_pnl": float(losses.mean()) if losses.size else None,
            "profit_factor": _ratio(gross_win, abs(gross_loss)),
            "expectancy": float(pnl.mean()) if closed else None,
            "max_consecutive_wins": _longest_run(pnl > 0),
            "max_consecutive_losses": _longest_run(pnl < 0),
            "average_trade_duration_bars": float(barlen.mean()) if closed else None,
        }

    def _trade_list(self, symbols: list[str], dates: np.ndarray) -> list[dict[str, Any]]:
        closed = list(self._closed_trades)
        if not closed:
            return []
        spacing = _median_spacing_s(dates)
        unit: Literal["s", "D"] = "s" if spacing and spacing < _TRADING_DAY_SECONDS else "D"
        opened = np.datetime_as_string(
            _bt_num2datetime64(np.array([t.opened for t in closed], dtype=np.float64)), unit=unit
        )
        exited = np.datetime_as_string(
            _bt_num2datetime64(np.array([t.closed for t in closed], dtype=np.float64)), unit=unit
        )
        return [
            {
                "symbol": symbols[t.data] if t.data >= 0 else "?",
                "direction": "long" if t.long else "short",
                "entry_date": str(entry),
                "exit_date": str(exit_),
                "size": None if t.size is None else _plain_size(t.size),
                "entry_price": t.entry_price,
                "exit_price": t.exit_price,
                "pnl": t.pnl,
                "pnl_net": t.pnl_net,
                "bars_held": t.bars,
            }
            for t, entry, exit_ in zip(closed, opened, exited, strict=True)
        ]

    @staticmethod
    def _period_returns(
        dates: np.ndarray, values: np.ndarray, initial: float, unit: str
    ) -> dict[str, float | None]:
        """Per calendar year (``unit`` "Y") or month ("M"), from each one's last value."""
        if values.size == 0:
            return {}
        periods = dates.astype(f"datetime64[{unit}]")
        last_idx = np.concatenate((np.flatnonzero(periods[1:] != periods[:-1]), [periods.size - 1]))
        out: dict[str, float | None] = {}
        prev = initial
        for i in last_idx:
            end = float(values[i])
            out[str(np.datetime_as_string(periods[i]))] = _pct_change(prev, end)
            prev = end
        return out
