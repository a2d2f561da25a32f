"""Strategies shared by the tests: typical agents plus probes of what FMEL should see.

Every strategy here derives from :class:`Observed`, which keeps the strategy's own view
of the run (its ``notify_order`` sequence, the orders it placed, the fills it was told
about, and per bar its stage, value, cash, positions and indicator values) so tests can
compare the FMEL record against an independent source, and compare runs with and
without the recorder.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import backtrader as bt


class Observed(bt.Strategy):  # type: ignore[misc]
    """Keeps the strategy's own view of the run (see module docstring)."""

    # attribute names of indicators whose value at each bar goes to ``self.bars``
    observe: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []  # (bar, ref, status, size, price)
        self.placed: list[tuple[Any, ...]] = []  # (bar, ref, side, symbol, size, type, price)
        self.fills: list[tuple[Any, ...]] = []  # (bar, ref, symbol, size, price, comm, pnl)
        self.bars: list[dict[str, Any]] = []
        self.live: set[int] = set()  # refs of orders still alive
        self._ref_no: dict[int, int] = {}

    # ----------------------------------------------------------- bookkeeping
    def _ref(self, ref: int) -> int:
        """Order refs renumbered per run (backtrader counts them process-wide)."""
        return self._ref_no.setdefault(ref, len(self._ref_no) + 1)

    def _place(self, order: bt.Order | None) -> bt.Order | None:
        if order is not None:
            price = order.created.price
            self.placed.append(
                (
                    len(self),
                    self._ref(order.ref),
                    "BUY" if order.isbuy() else "SELL",
                    order.data._name,
                    float(order.created.size),
                    order.getordername(),
                    None if price is None else float(price),
                )
            )
            self.live.add(order.ref)
        return order

    def buy(self, *args: Any, **kwargs: Any) -> bt.Order | None:
        return self._place(super().buy(*args, **kwargs))

    def sell(self, *args: Any, **kwargs: Any) -> bt.Order | None:
        return self._place(super().sell(*args, **kwargs))

    def notify_order(self, order: bt.Order) -> None:
        ref = self._ref(order.ref)
        self.events.append(
            (len(self), ref, order.getstatusname(), order.executed.size, order.executed.price)
        )
        if order.status in (order.Partial, order.Completed):
            for bit in order.executed.iterpending():
                self.fills.append(
                    (
                        len(self),
                        ref,
                        order.data._name,
                        bit.size,
                        bit.price,
                        bit.comm,
                        bit.pnl,
                    )
                )
        if not order.alive():
            self.live.discard(order.ref)

    def _observe(self, stage: str) -> None:
        positions = []
        for d in self.datas:
            pos = self.getposition(d)
            if pos.size:
                # the record values a position at the bar's close; read the real line
                # (not d.close) so this bookkeeping does not count as a data access
                close = d.lines.close.array[d.lines.close.idx]
                positions.append((d._name, pos.size, pos.price, pos.size * close))
        indicators = {}
        for name in self.observe:
            holder = getattr(self, name)
            if isinstance(holder, dict):
                for key, ind in holder.items():
                    indicators[f"{name}[{key}]"] = ind.lines[0].array[ind.lines[0].idx]
            elif isinstance(holder.lines, list) or holder.lines.size() == 1:
                indicators[name] = holder.lines[0].array[holder.lines[0].idx]
            else:  # a multi-line indicator: one value per line, named by its alias
                for li, alias in enumerate(holder.lines.getlinealiases()):
                    line = holder.lines[li]
                    indicators[f"{name}.{alias}"] = line.array[line.idx]
        self.bars.append(
            {
                "bar": len(self),
                "stage": stage,
                "value": self.broker.getvalue(),
                "cash": self.broker.getcash(),
                "positions": positions,
                "indicators": indicators,
            }
        )

    def prenext(self) -> None:
        self._observe("PRENEXT")

    def nextstart(self) -> None:
        self._observe("NEXTSTART")
        self.decide()

    def next(self) -> None:
        self._observe("NEXT")
        self.decide()

    def decide(self) -> None:
        """The strategy's logic, run on each bar after warm-up."""


# --------------------------------------------------------------- the agents
class MinimalStrategy(Observed):
    """The seed's minimal agent: buy if flat, else sell, every bar."""

    def decide(self) -> None:
        if not self.position:
            self.buy()
        else:
            self.sell()


class AdvancedStrategy(Observed):
    """The seed's advanced agent: SMA(20) + RSI(14) entries, 2% of cash a trade."""

    params = (("sma_period", 20), ("rsi_period", 14), ("rsi_low", 30), ("rsi_high", 70))
    observe = ("sma", "rsi")

    def __init__(self) -> None:
        super().__init__()
        self.sma = bt.ind.SMA(self.data.close, period=self.p.sma_period)
        self.rsi = bt.ind.RSI(self.data.close, period=self.p.rsi_period)
        self.order: bt.Order | None = None

    def notify_order(self, order: bt.Order) -> None:
        super().notify_order(order)
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            self.order = None

    def decide(self) -> None:
        if self.order:
            return
        close = self.data.close[0]
        if not self.position:
            if self.rsi[0] < self.p.rsi_low and close > self.sma[0]:
                size = int(self.broker.getcash() * 0.02 / close)
                if size > 0:
                    self.order = self.buy(size=size)
        elif self.rsi[0] > self.p.rsi_high or close < self.sma[0] * 0.95:
            self.order = self.close()


class BracketStrategy(Observed):
    """Limit entry with a stop-loss and a take-profit (``buy_bracket``)."""

    observe = ("sma",)

    def __init__(self) -> None:
        super().__init__()
        self.sma = bt.ind.SMA(self.data.close, period=10)

    def decide(self) -> None:
        if self.live or self.position:
            return
        close = self.data.close[0]
        if close > self.sma[0]:
            self.buy_bracket(
                size=10,
                price=close * 0.995,
                valid=timedelta(days=5),
                stopprice=close * 0.97,
                stopargs={"valid": None},  # the entry expires, the exits do not
                limitprice=close * 1.03,
                limitargs={"valid": None},
            )


class StopOrderStrategy(Observed):
    """Breakout entries with Stop orders, exits with StopLimit orders."""

    observe = ("highest", "lowest")

    def __init__(self) -> None:
        super().__init__()
        self.highest = bt.ind.Highest(self.data.high, period=10)
        self.lowest = bt.ind.Lowest(self.data.low, period=10)

    def decide(self) -> None:
        if self.live:
            return
        if not self.position:
            self.buy(size=5, exectype=bt.Order.Stop, price=self.highest[0], valid=timedelta(days=7))
        else:
            stop = self.lowest[0]
            self.sell(
                size=self.position.size,
                exectype=bt.Order.StopLimit,
                price=stop,
                plimit=stop * 0.99,
                valid=timedelta(days=7),
            )


class MultiSymbolStrategy(Observed):
    """Per-data SMA and momentum held in dicts keyed by symbol."""

    observe = ("smas", "moms")

    def __init__(self) -> None:
        super().__init__()
        self.smas = {d._name: bt.ind.SMA(d.close, period=15) for d in self.datas}
        self.moms = {d._name: bt.ind.Momentum(d.close, period=5) for d in self.datas}

    def decide(self) -> None:
        for d in self.datas:
            held = self.getposition(d).size
            sma, mom = self.smas[d._name][0], self.moms[d._name][0]
            if not held and d.close[0] > sma and mom > 0:
                self.buy(data=d, size=10)
            elif held and d.close[0] < sma:
                self.close(data=d)


class LineExpressionStrategy(Observed):
    """Line objects built from expressions in ``__init__`` (backtrader samples do this):
    comparisons, arithmetic, delayed lines, logic functions, a ratio of two datas, a
    multi-line indicator and an indicator of an indicator. Every one is held by an
    attribute, in creation order, so the record's names are known."""

    observe = ("sma", "above", "gap", "dist", "high1", "hh", "green", "both", "either",
               "pick", "lo", "hi", "ratio", "macd", "rsi", "rsi_sma")  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.sma = bt.ind.SMA(self.data.close, period=10)
        self.above = self.data.close > self.sma
        self.gap = self.data.close - self.sma
        self.dist = self.gap / self.sma
        self.high1 = self.data.high(-1)
        self.hh = bt.ind.Highest(self.high1, period=20)
        self.green = self.data.close > self.data.open
        self.both = bt.And(self.above, self.green)
        self.either = bt.Or(self.above, self.green)
        self.pick = bt.If(self.above, self.data.close, self.sma)
        self.lo = bt.Min(self.data.low, self.sma)
        self.hi = bt.Max(self.data.high, self.sma)
        self.ratio = self.data0.close / self.data1.close
        self.macd = bt.ind.MACD(self.data.close)
        self.rsi = bt.ind.RSI(self.data.close, period=14)
        self.rsi_sma = bt.ind.SMA(self.rsi, period=5)

    def decide(self) -> None:
        close = self.data.close
        if not self.position:
            if self.both[0] and close > self.lo and self.ratio[0] > 0:
                self.buy(size=5)
        elif close < self.sma or self.rsi_sma[0] > 70:
            self.close()


class RebalanceStrategy(Observed):
    """Every few bars: 60% in the best 10-bar performer, 30% in the middle, 0 in the worst."""

    params = (("every", 5),)
    observe = ("roc",)

    def __init__(self) -> None:
        super().__init__()
        self.roc = {d._name: bt.ind.ROC(d.close, period=10) for d in self.datas}

    def decide(self) -> None:
        if len(self) % self.p.every:
            return
        ranked = sorted(self.datas, key=lambda d: self.roc[d._name][0])
        targets = {id(d): 0.3 for d in ranked}
        targets[id(ranked[0])] = 0.0
        targets[id(ranked[-1])] = 0.6
        for d in ranked:  # worst first: sell before buying
            self.order_target_percent(data=d, target=targets[id(d)])


class PrintingStrategy(Observed):
    """Prints on every bar and on each order event (every 50th bar to stderr too);
    trades every third bar. ``self.printed`` keeps what was printed, per bar."""

    def __init__(self) -> None:
        super().__init__()
        self.printed: dict[int, list[str]] = {}

    def say(self, text: str, stream: Any = None) -> None:
        self.printed.setdefault(len(self), []).append(text)
        print(text, file=stream or sys.stdout)

    def notify_order(self, order: bt.Order) -> None:
        super().notify_order(order)
        self.say(f"order {self._ref(order.ref)} {order.getstatusname()}")

    def decide(self) -> None:
        self.say(f"bar {len(self)} close {self.data.close[0]:.4f}")
        if len(self) % 50 == 0:
            self.say(f"warning: bar {len(self)} is a round number", sys.stderr)
        if len(self) % 3 == 0:
            if not self.position:
                self.buy(size=2)
            else:
                self.close()


class ChattyBracketStrategy(BracketStrategy):
    """The bracket agent, printing a line every tenth bar."""

    def decide(self) -> None:
        if len(self) % 10 == 0:
            print(f"bar {len(self)}: sma {self.sma[0]:.4f}")
        super().decide()


# ------------------------------------------------------- data-access probes
class PrevCloseReader(Observed):
    """Reads the current and the previous close through ``self.data.close``."""

    def decide(self) -> None:
        if len(self) > 1 and self.data.close[0] > self.data.close[-1]:
            pass


class HeldLineReader(Observed):
    """Reads three bars back through a line kept in an attribute in ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        self.dataclose = self.datas[0].close

    def decide(self) -> None:
        if len(self) > 3:
            _ = self.dataclose[-3]


class DictHeldReader(Observed):
    """Reads two bars back through lines kept in a dict in ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = {d._name: d.close for d in self.datas}

    def decide(self) -> None:
        if len(self) > 2:
            _ = self.closes["AAPL"][-2]


class IndicatorOnlyReader(Observed):
    """Reads its indicator but never a data line (and places no order: creating one
    reads the current close)."""

    def __init__(self) -> None:
        super().__init__()
        self.sma = bt.ind.SMA(self.data.close, period=5)

    def decide(self) -> None:
        _ = self.sma[0] > self.sma[-1]


class LookAheadReader(Observed):
    """Reads the previous close, then peeks at the next one (preloaded data only)."""

    def decide(self) -> None:
        if len(self) > 1:
            _ = self.data.close[-1]
        if len(self.data) < self.data.buflen():
            _ = self.data.close[1]


class MultiFieldReader(Observed):
    """Reads several fields of two datas, at different depths."""

    def decide(self) -> None:
        if len(self) > 5:
            _ = self.datas[0].open[0] + self.datas[0].high[-2]
            _ = self.datas[1].volume.get(ago=0, size=5)


class RaisingStrategy(Observed):
    """Prints, then fails on bar ``fail_at``."""

    params = (("fail_at", 10),)

    def decide(self) -> None:
        print(f"bar {len(self)}")
        if len(self) == self.p.fail_at:
            raise RuntimeError("strategy failed on purpose")
