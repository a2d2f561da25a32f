"""Always in the market: each crossover reverses the position with a doubling sizer.

Adapted from backtrader's samples/sizertest/sizertest.py (``CloseSMA`` with the
``FixedReverser`` sizer).
Idioms: a sizer reading ``self.strategy.getposition(data)``, short positions, reversal
trades (one fill closes a trade and opens the next).
"""

import backtrader as bt


class FixedReverser(bt.Sizer):
    params = (("stake", 3),)

    def _getsizing(self, comminfo, cash, data, isbuy):
        held = self.strategy.getposition(data).size
        return self.p.stake * (2 if held else 1)


class ReversingCross(bt.Strategy):
    params = (("period", 20),)

    def __init__(self):
        self.crossover = bt.ind.CrossOver(self.data, bt.ind.SMA(self.data, period=self.p.period))
        self.setsizer(FixedReverser())

    def next(self):
        if self.crossover > 0:
            self.buy()
        elif self.crossover < 0:
            self.sell()
