"""Cycles through every order type on a simple schedule so each gets placed, filled,
expired or cancelled: market, close, limit, stop, stop-limit, stop-trail, and exits by
``close()``, ``sell`` and ``cancel``.

Idioms: ``exectype=bt.Order.Market/Close/Limit/Stop/StopLimit/StopTrail``, ``price``,
``plimit``, ``trailamount``, ``valid`` as a bar count (``valid=bt.Order.DAY``) and as a
date, ``self.cancel`` of a stale order, ``notify_order`` for every status,
``order.isbuy``/``order.executed``.
"""

import datetime

import backtrader as bt


class OrderKinds(bt.Strategy):
    params = (("every", 7), ("hold", 4), ("stale", 4))

    def __init__(self):
        self.kinds = ["market", "close", "limit", "stop", "stoplimit", "stoptrail"]
        self.turn = 0
        self.pending = None
        self.entered = 0
        self.limit_exit_failed = False

    def notify_order(self, order):
        status = order.getstatusname()
        side = "buy" if order.isbuy() else "sell"
        if order.status in (order.Submitted, order.Accepted):
            return
        print(
            f"{self.data.datetime.date()} {side} {order.ref} {status} "
            f"{order.executed.size}@{order.executed.price:.2f}"
        )
        if order.status == order.Completed and order.isbuy():
            self.entered = len(self)
        if not order.alive() and self.pending is not None and order.ref == self.pending.ref:
            self.pending = None
            if order.status == order.Expired and order.issell():
                self.limit_exit_failed = True

    def enter(self, kind):
        close = self.data.close[0]
        until = self.data.datetime.date() + datetime.timedelta(days=12)
        if kind == "market":
            return self.buy(size=10)
        if kind == "close":
            return self.buy(size=10, exectype=bt.Order.Close)
        if kind == "limit":
            return self.buy(size=10, exectype=bt.Order.Limit, price=close * 0.99, valid=until)
        if kind == "stop":
            return self.buy(size=10, exectype=bt.Order.Stop, price=close * 1.01, valid=until)
        if kind == "stoplimit":
            return self.buy(
                size=10,
                exectype=bt.Order.StopLimit,
                price=close * 1.005,
                plimit=close * 1.015,
                valid=until,
            )
        return self.buy(size=10, exectype=bt.Order.StopTrail, trailamount=close * 0.01)

    def next(self):
        if self.pending is not None:
            if len(self) - self.pending.plen >= self.p.stale:
                self.cancel(self.pending)
            return
        if self.position:
            if len(self) - self.entered >= self.p.hold:
                if self.turn % 2 or self.limit_exit_failed:
                    self.pending = self.close()
                    self.limit_exit_failed = False
                else:  # a day order: if it does not fill it expires, and close() follows
                    self.pending = self.sell(
                        size=self.position.size,
                        exectype=bt.Order.Limit,
                        price=self.data.close[0] * 0.999,
                        valid=bt.Order.DAY,
                    )
            return
        if len(self) % self.p.every == 0:
            kind = self.kinds[self.turn % len(self.kinds)]
            self.turn += 1
            print(f"{self.data.datetime.date()} entering with a {kind} order")
            self.pending = self.enter(kind)
