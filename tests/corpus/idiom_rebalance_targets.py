"""A monthly 60/40 rebalance between stocks and bonds, with a momentum tilt.

Idioms: ``order_target_percent`` on two datas, ``order_target_size`` and
``order_target_value`` for the tilt, month changes from ``self.data.datetime.date()``,
``self.broker.getvalue()``/``getcash()``, ``notify_order`` printing.
"""

import backtrader as bt


class Rebalance(bt.Strategy):
    params = (("stocks", 0.6), ("bonds", 0.4), ("lookback", 63))

    def __init__(self):
        self.mom = bt.ind.Momentum(self.data0.close, period=self.p.lookback)
        self.month = None
        self.rounds = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            print(
                f"{self.data.datetime.date()} {order.data._name} "
                f"{order.executed.size:+.0f} @ {order.executed.price:.2f}; "
                f"cash {self.broker.getcash():.2f} value {self.broker.getvalue():.2f}"
            )

    def next(self):
        month = self.data.datetime.date().month
        if month == self.month:
            return
        self.month = month
        self.rounds += 1
        tilt = 0.1 if self.mom[0] > 0 else -0.1
        stocks, bonds = self.p.stocks + tilt, self.p.bonds - tilt - 0.05
        if self.rounds % 3 == 0:
            self.order_target_value(data=self.data0, target=self.broker.getvalue() * stocks)
            shares = int(self.broker.getvalue() * bonds / self.data1.close[0])
            self.order_target_size(data=self.data1, target=shares)
        else:
            self.order_target_percent(data=self.data0, target=stocks)
            self.order_target_percent(data=self.data1, target=bonds)
