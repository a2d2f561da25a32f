"""EMA crossover entries; once the buy fills, a stop 2% under the fill price is sent from
``notify_order``.

Adapted from backtrader's samples/stop-trading/stop-loss-approaches.py
(``ManualStopOrStopTrail`` over ``BaseStrategy``).
Idioms: strategy inheritance (a base class and the ``Agent`` subclass), orders sent from
``notify_order``, ``exectype=bt.Order.Stop``, ``CrossUp`` of two EMAs.
"""

import backtrader as bt


class EmaBase(bt.Strategy):
    params = (("fast_ma", 10), ("slow_ma", 20))

    def __init__(self):
        fast = bt.ind.EMA(period=self.p.fast_ma)
        slow = bt.ind.EMA(period=self.p.slow_ma)
        self.crossup = bt.ind.CrossUp(fast, slow)


class Agent(EmaBase):
    params = (("stop_loss", 0.02),)

    def notify_order(self, order):
        if order.status != order.Completed:
            return
        if not self.position:
            print(f"SELL@price: {order.executed.price:.2f}")
            return
        print(f"BUY @price: {order.executed.price:.2f}")
        self.sell(exectype=bt.Order.Stop, price=order.executed.price * (1.0 - self.p.stop_loss))

    def next(self):
        if not self.position and self.crossup > 0:
            self.buy()
