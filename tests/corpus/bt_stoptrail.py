"""Enter on a fast-over-slow SMA cross and protect the position with a trailing stop.

Adapted from backtrader's samples/stoptrail/trail.py (``St`` with a 2% trail percent).
Idioms: ``CrossUp``, ``exectype=bt.Order.StopTrail`` with ``trailpercent``, line
arithmetic inside ``next`` (``self.data.close * (1 - x)`` gives a number there),
``order.created.price``, printing in ``next``.
"""

import backtrader as bt


class TrailingStop(bt.Strategy):
    params = (("p1", 10), ("p2", 30), ("trailpercent", 0.02))

    def __init__(self):
        self.crup = bt.ind.CrossUp(bt.ind.SMA(period=self.p.p1), bt.ind.SMA(period=self.p.p2))
        self.order = None

    def next(self):
        if not self.position:
            if self.crup:
                self.buy()
                self.order = None
            return
        if self.order is None:
            self.order = self.sell(exectype=bt.Order.StopTrail, trailpercent=self.p.trailpercent)
        level = self.data.close * (1.0 - self.p.trailpercent)
        print(
            ",".join(
                str(x)
                for x in (self.datetime.date(), self.data.close[0], self.order.created.price, level)
            )
        )
