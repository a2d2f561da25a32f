"""Three limit entries at different depths in one OCO group: the first fill cancels the
other two; the position is closed after a holding period.

Adapted from backtrader's samples/oco/oco.py (``St`` with ``do_oco=True``).
Idioms: ``oco=`` order groups, ``valid`` as ``timedelta``, ``self.close()`` after N bars,
bound methods kept as attributes (``self._dobuy = self.buy``).
"""

import datetime

import backtrader as bt


class OneCancelsOthers(bt.Strategy):
    params = (
        ("p1", 5),
        ("p2", 15),
        ("limit", 0.005),
        ("limdays", 3),
        ("limdays2", 1000),
        ("hold", 10),
    )

    def __init__(self):
        self.cross = bt.ind.CrossOver(bt.ind.SMA(period=self.p.p1), bt.ind.SMA(period=self.p.p2))
        self.orefs = []
        self.holdstart = 0
        self._dobuy = self.buy
        self._doclose = self.close

    def notify_order(self, order):
        print(
            f"{self.data.datetime.date(0)}: ref {order.ref} "
            f"{'Buy' if order.isbuy() else 'Sell'} {order.getstatusname()}"
        )
        if order.status == order.Completed:
            self.holdstart = len(self)
        if not order.alive() and order.ref in self.orefs:
            self.orefs.remove(order.ref)

    def next(self):
        if self.orefs:
            return
        if self.position:
            if len(self) - self.holdstart >= self.p.hold:
                self._doclose()
            return
        if self.cross > 0.0:
            close = self.data.close[0]
            far = datetime.timedelta(self.p.limdays2)
            first = self._dobuy(
                exectype=bt.Order.Limit,
                size=1,
                price=close * (1.0 - self.p.limit),
                valid=datetime.timedelta(self.p.limdays),
            )
            second = self._dobuy(
                exectype=bt.Order.Limit,
                size=1,
                price=close * (1.0 - 4 * self.p.limit),
                valid=far,
                oco=first,
            )
            third = self._dobuy(
                exectype=bt.Order.Limit,
                size=1,
                price=close * (1.0 - 9 * self.p.limit),
                valid=far,
                oco=first,
            )
            self.orefs = [first.ref, second.ref, third.ref]
