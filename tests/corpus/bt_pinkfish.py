"""Buy at the close on a new 20-bar high, sell two bars later.

Adapted from backtrader's samples/pinkfish-challenge/pinkfish-challenge.py (``St``); the
replay filters that split each bar in two are not used, and the Highest indicator is
created in ``__init__`` instead of ``start``.
Idioms: comparing two line objects in ``next`` (``self.data.high == self.highest``),
``self.data.high.get(size=19, ago=-1)``, ``exectype=bt.Order.Close``, a call counter and
CSV-style printing in ``next``.
"""

import backtrader as bt


class NewHighs(bt.Strategy):
    params = (("highperiod", 20), ("sellafter", 2), ("market", False))

    def __init__(self):
        self.highest = bt.ind.Highest(self.data.high, period=self.p.highperiod, subplot=False)

    def start(self):
        self.callcounter = 0
        self.inmarket = 0
        print("Calls,Len Strat,Len Data,Datetime,Open,High,Low,Close,Volume,OpenInterest")

    def notify_order(self, order):
        if order.isbuy() and order.status == order.Completed:
            when = self.data.num2date(order.executed.dt).strftime("%Y-%m-%d")
            print("-- BUY Completed on:", when, "price", order.executed.price)

    def next(self):
        self.callcounter += 1
        d = self.data0
        row = [
            f"{self.callcounter:04d}",
            f"{len(self):04d}",
            f"{len(d):04d}",
            d.datetime.datetime(0).isoformat(),
        ]
        row += [
            f"{x:.2f}"
            for x in (d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0], d.openinterest[0])
        ]
        print(",".join(row))
        if not self.position:
            if self.data.high == self.highest:
                print(f"High {self.data.high[0]:.2f} = Highest {self.highest[0]:.2f}")
                print("previous 19 highs:", list(self.data.high.get(size=19, ago=-1)))
                kind = bt.Order.Market if self.p.market else bt.Order.Close
                self.buy(exectype=kind)
                self.inmarket = len(self)
        elif len(self) - self.inmarket >= self.p.sellafter:
            self.sell()
