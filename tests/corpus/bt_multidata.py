"""Signals from the second data, orders on both: a long-only crossover of data1's close.

Adapted from backtrader's samples/multidata-strategy/multidata-strategy.py
(``MultiDataStrategy``).
Idioms: two datas, an indicator on ``self.data1``, ``CrossOver(self.data1.close, sma)``,
orders with ``data=``, a ``self.log`` helper, printing in ``next``, ``stop``.
"""

import backtrader as bt


class TwoDataCross(bt.Strategy):
    # backtrader also takes params as a dict (the sample's form); the rest of the corpus uses
    # the tuple form
    params = dict(period=15, stake=10, printout=True)  # noqa: RUF012

    def log(self, txt, dt=None):
        if self.p.printout:
            when = bt.num2date(dt or self.data.datetime[0])
            print(f"{when.isoformat()}, {txt}")

    def __init__(self):
        self.orderid = None
        average = bt.ind.MovAv.SMA(self.data1, period=self.p.period)
        self.signal = bt.ind.CrossOver(self.data1.close, average)

    def notify_order(self, order):
        if order.status in (bt.Order.Submitted, bt.Order.Accepted):
            return
        if order.status == order.Completed:
            kind = "BUY" if order.isbuy() else "SELL"
            self.log(f"{kind} COMPLETE, {order.executed.price:.2f}", order.executed.dt)
        elif order.status in (order.Expired, order.Canceled, order.Margin):
            self.log(f"{order.Status[order.status]} ,")
        self.orderid = None

    def next(self):
        if self.orderid:
            return
        if self.p.printout:
            print(
                "lengths:",
                len(self),
                len(self.data0),
                len(self.data1),
                self.data0.datetime.datetime(),
                self.data1.datetime.datetime(),
            )
        if not self.position:
            if self.signal > 0.0:
                self.log(f"BUY CREATE , {self.data1.close[0]:.2f}")
                self.buy(size=self.p.stake)
                self.buy(data=self.data1, size=self.p.stake)
        elif self.signal < 0.0:
            self.log(f"SELL CREATE , {self.data1.close[0]:.2f}")
            self.sell(size=self.p.stake)
            self.sell(data=self.data1, size=self.p.stake)

    def stop(self):
        print(f"start value {self.broker.startingcash:.2f}, end value {self.broker.getvalue():.2f}")
