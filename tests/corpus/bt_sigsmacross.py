"""Long-only moving-average crossover as a SignalStrategy, with a fixed stake sizer.

Adapted from backtrader's samples/sigsmacross/sigsmacross.py (``SmaCross``); the sizer
that the sample adds to cerebro is set by the strategy itself.
Idioms: ``bt.SignalStrategy`` with ``signal_add``, ``CrossOver`` of two SMAs,
``setsizer``, printing from ``notify_order``/``notify_trade``.
"""

import backtrader as bt


class SignalCross(bt.SignalStrategy):
    params = (("sma1", 10), ("sma2", 20), ("stake", 10))

    def __init__(self):
        fast = bt.ind.SMA(period=self.p.sma1)
        slow = bt.ind.SMA(period=self.p.sma2)
        self.signal_add(bt.SIGNAL_LONG, bt.ind.CrossOver(fast, slow))
        self.setsizer(bt.sizers.FixedSize(stake=self.p.stake))

    def notify_order(self, order):
        if not order.alive():
            side = "buy" if order.isbuy() else "sell"
            print(
                f"{bt.num2date(order.executed.dt)} {side} "
                f"{order.executed.size}@{order.executed.price}"
            )

    def notify_trade(self, trade):
        if trade.isclosed:
            print(f"profit {trade.pnlcomm}")
