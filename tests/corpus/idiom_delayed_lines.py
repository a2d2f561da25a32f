"""Breakout of the previous 20 highs, exit under the previous 10 lows, filtered by a
five-bar momentum: every reference is a delayed line.

Idioms: ``bt.ind.Highest(self.data.high(-1), period=20)``, ``Lowest(self.data.low(-1))``,
``self.data.close(-1)`` kept as a line, ``self.data.close(0) - self.data.close(-5)``,
a delayed indicator (``sma(-3)``), reading ``[-1]`` in ``next``.
"""

import backtrader as bt


class DelayedBreakout(bt.Strategy):
    params = (("entry", 20), ("exit", 10), ("momentum", 5))

    def __init__(self):
        self.upper = bt.ind.Highest(self.data.high(-1), period=self.p.entry)
        self.lower = bt.ind.Lowest(self.data.low(-1), period=self.p.exit)
        self.prev_close = self.data.close(-1)
        self.momentum = self.data.close(0) - self.data.close(-self.p.momentum)
        sma = bt.ind.SMA(period=10)
        self.sma_rising = sma > sma(-3)

    def next(self):
        if not self.position:
            breakout = self.data.close[0] > self.upper[0]
            if breakout and self.momentum[0] > 0 and self.sma_rising[0]:
                self.buy(size=10)
        elif self.data.close[0] < self.lower[0] or (
            self.prev_close[0] > self.data.close[0]
            and self.momentum[0] < 0
            and self.data.close[-1] < self.prev_close[-1]
        ):
            self.close()
