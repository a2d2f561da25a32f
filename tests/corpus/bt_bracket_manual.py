"""The same bracket as bt_bracket, built by hand from three linked orders.

Adapted from backtrader's samples/bracket/bracket.py (``St`` with ``usebracket=False``).
Idioms: ``transmit=False`` and ``parent=`` to link a limit entry with a stop and a limit
exit, ``exectype=bt.Order.Limit``/``bt.Order.Stop``, ``self.datetime.date()``.
"""

import datetime

import backtrader as bt


class ManualBracket(bt.Strategy):
    params = (("p1", 5), ("p2", 15), ("limit", 0.005), ("limdays", 3), ("limdays2", 1000))

    def __init__(self):
        self.cross = bt.ind.CrossOver(bt.ind.SMA(period=self.p.p1), bt.ind.SMA(period=self.p.p2))
        self.orefs = []

    def notify_order(self, order):
        print(f"{self.data.datetime.date(0)}: ref {order.ref} {order.getstatusname()}")
        if not order.alive() and order.ref in self.orefs:
            self.orefs.remove(order.ref)

    def next(self):
        if self.orefs or self.position or self.cross <= 0.0:
            return
        close = self.data.close[0]
        entry = close * (1.0 - self.p.limit)
        lower = entry - 0.02 * close
        upper = entry + 0.02 * close
        far = datetime.timedelta(self.p.limdays2)
        main = self.buy(
            exectype=bt.Order.Limit,
            price=entry,
            valid=datetime.timedelta(self.p.limdays),
            transmit=False,
        )
        stop = self.sell(
            exectype=bt.Order.Stop, price=lower, valid=far, parent=main, transmit=False
        )
        take = self.sell(
            exectype=bt.Order.Limit, price=upper, valid=far, parent=main, transmit=True
        )
        print(
            f"{self.datetime.date()}: entry {main.ref} at {entry:.2f}, stop {stop.ref} "
            f"at {lower:.2f}, target {take.ref} at {upper:.2f}"
        )
        self.orefs = [main.ref, stop.ref, take.ref]
