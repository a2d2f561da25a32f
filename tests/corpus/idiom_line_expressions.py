"""Line expressions built once in ``__init__`` and read as signals in ``next``.

Idioms: ``self.data.close > sma`` kept as a boolean line and tested both as
``self.above[0]`` and as the bare line object; ``(self.data.close - sma) / sma`` as a
relative deviation compared with a number; a sum of two expressions; unary minus.
"""

import backtrader as bt


class DeviationBands(bt.Strategy):
    params = (("period", 20), ("stretch", 0.03))

    def __init__(self):
        sma = bt.ind.SMA(self.data.close, period=self.p.period)
        self.above = self.data.close > sma
        self.deviation = (self.data.close - sma) / sma
        self.range_pct = (self.data.high - self.data.low) / self.data.close
        self.negdev = -self.deviation

    def next(self):
        if not self.position:
            if self.above[0] and self.deviation[0] < self.p.stretch:
                self.buy(size=10)
            elif self.negdev > self.p.stretch and self.range_pct[0] < 0.05:
                self.buy(size=5)
        elif not self.above or self.deviation[0] > 2 * self.p.stretch:
            self.close()
