"""Close-over-SMA crossover with a stop-limit entry above the close, valid four days.

Adapted from backtrader's samples/order-execution/order-execution.py
(``OrderExecutionStrategy`` with ``exectype='StopLimit'``); the trigger is 1% above the
close and the limit 2% (the sample's 3% and 1% almost never fill on daily bars).
Idioms: ``exectype=bt.Order.StopLimit`` with ``plimit`` and a ``valid`` date, prices
computed as line arithmetic in ``next`` (``self.data.close * 1.03``), ``order.created.dt``,
a ``log`` helper accepting float datetimes.
"""

import datetime

import backtrader as bt


class StopLimitEntries(bt.Strategy):
    params = (("smaperiod", 15), ("perc1", 1), ("perc2", 2), ("valid", 4))

    def log(self, txt, dt=None):
        dt = dt or self.data.datetime[0]
        if isinstance(dt, float):
            dt = bt.num2date(dt)
        print(f"{dt.isoformat()}, {txt}")

    def __init__(self):
        self.buysell = bt.ind.CrossOver(self.data.close, bt.ind.SMA(period=self.p.smaperiod))
        self.order = None

    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted):
            self.log("ORDER ACCEPTED/SUBMITTED", dt=order.created.dt)
            self.order = order
            return
        if order.status == order.Expired:
            self.log("BUY EXPIRED")
        elif order.status == order.Completed:
            side = "BUY" if order.isbuy() else "SELL"
            self.log(
                f"{side} EXECUTED, price {order.executed.price:.2f}, "
                f"cost {order.executed.value:.2f}, comm {order.executed.comm:.2f}"
            )
        self.order = None

    def next(self):
        if self.order:
            return
        if self.position:
            if self.buysell < 0:
                self.log(f"SELL CREATE, {self.data.close[0]:.2f}")
                self.sell()
        elif self.buysell > 0:
            valid = self.data.datetime.date(0) + datetime.timedelta(days=self.p.valid)
            price = self.data.close * (1.0 + self.p.perc1 / 100.0)
            plimit = self.data.close * (1.0 + self.p.perc2 / 100.0)
            self.buy(exectype=bt.Order.StopLimit, price=price, valid=valid, plimit=plimit)
            self.log(
                f"BUY CREATE, StopLimit, price {price:.2f}, valid {valid:%Y-%m-%d}, "
                f"limit {plimit:.2f}"
            )
