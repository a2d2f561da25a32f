"""Backtest metrics: a backtrader analyzer collecting per-bar state, summarised with numpy.

Usage::

    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    strat = cerebro.run()[0]
    result = strat.analyzers.metrics.get_analysis()   # plain, JSON-serialisable dict
    dates, values = strat.analyzers.metrics.equity_curve()

Collection (hot path, once per strategy bar, in ``notify_cashvalue``): the strategy datetime,
the broker value and cash, and for every data its position size and close are appended to
``array.array`` buffers. Closed trades are recorded in ``notify_trade``. Nothing is computed
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
- ``per_symbol``: ``{symbol: {net_pnl, trades_closed, win_trades, loss_trades, final_position,
  buy_and_hold_return_pct}}``; symbol is ``data._name``, or ``data<i>`` when unnamed (a
  duplicate name gets ``#<i>`` appended). ``net_pnl`` sums closed trades only, so the per-symbol
  ``net_pnl`` values add up to ``total_net_pnl``.

Datetimes are the strategy's bar datetimes as backtrader stores them (naive; UTC unless the
feed says otherwise), e.g. daily CSV feeds carry the end-of-session time 23:59:59.999989.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import backtrader as bt
import numpy as np

__all__ = ["RESULT_KEYS", "MetricsAnalyzer", "periods_per_year"]

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
    "per_symbol",
)

# backtrader stores datetimes as float days since 0001-01-01 plus one (proleptic ordinal).
_UNIX_EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000
_US_PER_SECOND = 1_000_000
_TRADING_DAY_SECONDS = 6.5 * 3600.0
_DAY_SECONDS = 86400.0


def periods_per_year(dates: np.ndarray) -> float | None:
    """Bars per year inferred from the median spacing of ``dates`` (datetime64); see module doc."""
    if len(dates) < 2:
        return None
    steps = np.diff(dates.astype("datetime64[us]").astype(np.int64)) / 1e6
    steps = steps[steps > 0]
    if steps.size == 0:
        return None
    spacing = float(np.median(steps))
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

    def notify_trade(self, trade: Any) -> None:
        ref = trade.ref
        if trade.isclosed:
            self._open_refs.discard(ref)
            if ref not in self._closed_refs:
                self._closed_refs.add(ref)
                self._trade_pnl.append(trade.pnlcomm)
                self._trade_barlen.append(trade.barlen)
                self._trade_data.append(self._data_index.get(id(trade.data), -1))
        elif trade.justopened:
            self._open_refs.add(ref)

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
            "annual_returns": self._annual_returns(dates, bar_values, initial),
            "per_symbol": per_symbol,
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

    @staticmethod
    def _annual_returns(
        dates: np.ndarray, values: np.ndarray, initial: float
    ) -> dict[str, float | None]:
        if values.size == 0:
            return {}
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        last_idx = np.concatenate((np.flatnonzero(np.diff(years)), [years.size - 1]))
        out: dict[str, float | None] = {}
        prev = initial
        for i in last_idx:
            end = float(values[i])
            out[str(int(years[i]))] = _pct_change(prev, end)
            prev = end
        return out
