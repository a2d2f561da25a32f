"""A limit entry below the close sent with its stop as a child order, so the stop only
becomes active once the entry fills; an unfilled entry is cancelled on the next signal.

Adapted from backtrader's samples/stop-trading/stop-loss-approaches.py
(``AutoStopOrStopTrail`` with ``buy_limit``).
Idioms: ``transmit=False`` / ``parent=``, ``self.cancel``, a class attribute default
(``buy_order = None``), ``order.Cancelled``.
"""

import backtrader as bt


class Agent(bt.Strategy):
    params = (("fast_ma", 10), ("slow_ma", 20), ("stop_loss", 0.02), ("buy_limit", 0.005))

    buy_order = None

    def __init__(self):
        self.crossup = bt.ind.CrossUp(
            bt.ind.EMA(period=self.p.fast_ma), bt.ind.EMA(period=self.p.slow_ma)
        )

    def notify_order(self, order):
        if order.status == order.Cancelled:
            print(f"CANCEL@price: {order.created.price:.2f} {'buy' if order.isbuy() else 'sell'}")
        elif order.status == order.Completed:
            side = "BUY " if order.isbuy() else "SELL"
            print(f"{side}@price: {order.executed.price:.2f}")

    def next(self):
        if self.position or not self.crossup > 0:
            return
        if self.buy_order:
            self.cancel(self.buy_order)
        close = self.data.close[0]
        self.buy_order = self.buy(
            price=close * (1.0 - self.p.buy_limit), exectype=bt.Order.Limit, transmit=False
        )
        self.sell(
            exectype=bt.Order.Stop, price=close * (1.0 - self.p.stop_loss), parent=self.buy_order
        )
