"""SMA crossover, in and out, written so it can also run with cheat-on-open (it then
decides in ``next_open``); with the default broker it decides in ``next``.

Adapted from backtrader's samples/cheat-on-open/cheat-on-open.py (``St``).
Idioms: reading ``self.cerebro.p.cheat_on_open``, moving averages built in a list
comprehension and unpacked into ``CrossOver(*mas)``, an indicator class as a parameter,
``next_open``, a helper method called from ``next``.
"""

import backtrader as bt


class MaybeCheat(bt.Strategy):
    params = (("periods", [10, 30]), ("matype", bt.ind.SMA))

    def __init__(self):
        self.cheating = self.cerebro.p.cheat_on_open
        mas = [self.p.matype(period=n) for n in self.p.periods]
        self.signal = bt.ind.CrossOver(*mas)
        self.order = None

    def notify_order(self, order):
        if order.status != order.Completed:
            return
        self.order = None
        print(
            f"{bt.num2date(order.executed.dt).date()} "
            f"{'Buy' if order.isbuy() else 'Sell'} executed at {order.executed.price}"
        )

    def operate(self, fromopen):
        if self.order is not None:
            return
        if self.position:
            if self.signal < 0:
                self.order = self.close()
        elif self.signal > 0:
            print(
                f"{self.data.datetime.date()} send buy, from open {fromopen}, "
                f"close {self.data.close[0]}"
            )
            self.order = self.buy()

    def next(self):
        if not self.cheating:
            self.operate(fromopen=False)

    def next_open(self):
        if self.cheating:
            self.operate(fromopen=True)
