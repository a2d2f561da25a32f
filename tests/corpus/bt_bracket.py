"""A bracket on each upward crossover: limit entry below the close, a stop under it and
a take-profit limit above it, placed with ``buy_bracket``.

Adapted from backtrader's samples/bracket/bracket.py (``St`` with ``usebracket=True``).
Idioms: ``buy_bracket`` with ``stopargs``/``limitargs``, ``valid`` as a ``timedelta``,
order references kept in a list until they die, ``getstatusname``.
"""

import datetime

import backtrader as bt


class BracketCross(bt.Strategy):
    params = (
        ("ma", bt.ind.SMA),
        ("p1", 5),
        ("p2", 15),
        ("limit", 0.005),
        ("limdays", 3),
        ("limdays2", 1000),
    )

    def __init__(self):
        fast, slow = self.p.ma(period=self.p.p1), self.p.ma(period=self.p.p2)
        self.cross = bt.ind.CrossOver(fast, slow)
        self.orefs = []

    def notify_order(self, order):
        print(
            f"{self.data.datetime.date(0)}: order {order.ref} "
            f"{'Buy' if order.isbuy() else 'Sell'} {order.getstatusname()}"
        )
        if not order.alive() and order.ref in self.orefs:
            self.orefs.remove(order.ref)

    def next(self):
        if self.orefs or self.position:
            return
        if self.cross > 0.0:
            close = self.data.close[0]
            entry = close * (1.0 - self.p.limit)
            stop = entry - 0.02 * close
            take = entry + 0.02 * close
            orders = self.buy_bracket(
                price=entry,
                valid=datetime.timedelta(self.p.limdays),
                stopprice=stop,
                stopargs=dict(valid=datetime.timedelta(self.p.limdays2)),
                limitprice=take,
                limitargs=dict(valid=datetime.timedelta(self.p.limdays2)),
            )
            self.orefs = [o.ref for o in orders]
