"""Long brackets above a rising SMA and short brackets below a falling one.

Idioms: ``buy_bracket`` and ``sell_bracket`` with ``price``/``stopprice``/``limitprice``,
``exectype=bt.Order.Market`` for the main order, ``limitexec``/``stopexec``, a list of
live orders, ``order.alive()``, ``position.size`` sign.
"""

import backtrader as bt


class BracketBothWays(bt.Strategy):
    params = (("period", 20), ("stop", 0.03), ("take", 0.05))

    def __init__(self):
        self.sma = bt.ind.SMA(period=self.p.period)
        self.slope = self.sma - self.sma(-5)
        self.live = []

    def notify_order(self, order):
        if order.status in (order.Completed, order.Canceled, order.Expired, order.Margin):
            print(
                f"{self.data.datetime.date()} {order.ref} {order.getstatusname()} "
                f"position {self.position.size}"
            )
        self.live = [o for o in self.live if o.alive()]

    def next(self):
        if self.live or self.position:
            return
        close = self.data.close[0]
        if close > self.sma[0] and self.slope[0] > 0:
            self.live = self.buy_bracket(
                size=10,
                exectype=bt.Order.Market,
                stopprice=close * (1 - self.p.stop),
                limitprice=close * (1 + self.p.take),
            )
        elif close < self.sma[0] and self.slope[0] < 0:
            self.live = self.sell_bracket(
                size=10,
                price=close * 1.002,
                exectype=bt.Order.Limit,
                stopprice=close * (1 + self.p.stop),
                limitprice=close * (1 - self.p.take),
                stopexec=bt.Order.Stop,
                limitexec=bt.Order.Limit,
            )
