"""Enter and leave at random (seeded), with orders executed at the bar's close.

Adapted from backtrader's samples/order-close/close-daily.py (``St``); the session-end
filter is not needed, and the dice come from a seeded generator so every run is the same.
Idioms: ``exectype=bt.Order.Close`` for ``buy`` and ``close``, ``random.Random``,
``strftime`` on bar dates, printing from ``notify_order``.
"""

import random

import backtrader as bt


class CloseOrders(bt.Strategy):
    params = (("seed", 7),)

    def __init__(self):
        self.order = None
        self.dice = random.Random(self.p.seed)

    def notify_order(self, order):
        if order.status == order.Completed:
            now = self.data.datetime.datetime().strftime("%a %Y-%m-%d")
            done = bt.num2date(order.executed.dt).strftime("%a %Y-%m-%d")
            print(f"{now}: {'BUY ' if order.isbuy() else 'SELL'} EXECUTED, on: {done}")
            self.order = None

    def next(self):
        if self.order:
            return
        if self.dice.randint(0, 5) == 0:
            stamp = self.data.datetime.datetime().strftime("%a %Y-%m-%d %H:%M:%S")
            if self.position:
                print(f"{stamp}: SELL CREATED")
                self.order = self.close(exectype=bt.Order.Close)
            else:
                print(f"{stamp}: BUY  CREATED")
                self.order = self.buy(exectype=bt.Order.Close)
