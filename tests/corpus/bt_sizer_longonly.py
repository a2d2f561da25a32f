"""Close-over-SMA crossover where a custom sizer keeps the book long-only.

Adapted from backtrader's samples/sizertest/sizertest.py (``CloseSMA`` with the
``LongOnly`` sizer, which the sample passes to cerebro and the strategy sets here).
Idioms: a ``bt.Sizer`` subclass with ``_getsizing``, ``self.setsizer``,
``CrossOver(self.data, sma)`` (a data as a line), ``broker.getposition``.
"""

import backtrader as bt


class LongOnly(bt.Sizer):
    params = (("stake", 5),)

    def _getsizing(self, comminfo, cash, data, isbuy):
        if isbuy:
            return self.p.stake
        if not self.broker.getposition(data).size:
            return 0  # nothing to sell
        return self.p.stake


class CloseSMA(bt.Strategy):
    params = (("period", 15),)

    def __init__(self):
        sma = bt.indicators.SMA(self.data, period=self.p.period)
        self.crossover = bt.indicators.CrossOver(self.data, sma)
        self.setsizer(LongOnly())

    def next(self):
        if self.crossover > 0:
            self.buy()
        elif self.crossover < 0:
            self.sell()
