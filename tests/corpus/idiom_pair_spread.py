"""Pairs trade on the price ratio of two datas: short the rich leg and buy the cheap one
when the ratio's z-score is stretched, unwind near the mean.

Idioms: ``self.data0.close / self.data1.close`` in ``__init__``, indicators over that
ratio (``SMA``, ``StandardDeviation``), line arithmetic combining them into a z-score,
a custom indicator taking two datas (``Spread(self.data0, self.data1)`` with
``self.data0``/``self.data1`` inside), orders on both legs, short selling.
"""

import backtrader as bt


class Spread(bt.Indicator):
    lines = ("spread", "beta")
    params = (("period", 30),)

    def __init__(self):
        a, b = self.data0.close, self.data1.close
        self.lines.beta = bt.ind.SMA(a, period=self.p.period) / bt.ind.SMA(b, period=self.p.period)
        self.lines.spread = a - self.lines.beta * b


class PairRatio(bt.Strategy):
    params = (("period", 30), ("entry", 1.5), ("exit", 0.3), ("stake", 10))

    def __init__(self):
        self.ratio = self.data0.close / self.data1.close
        mean = bt.ind.SMA(self.ratio, period=self.p.period)
        spread_sd = bt.ind.StandardDeviation(self.ratio, period=self.p.period)
        self.z = (self.ratio - mean) / spread_sd
        self.spread = Spread(self.data0, self.data1, period=self.p.period)

    def next(self):
        z = self.z[0]
        held = self.getposition(self.data0).size
        if not held:
            if z > self.p.entry:
                self.sell(data=self.data0, size=self.p.stake)
                self.buy(data=self.data1, size=round(self.p.stake * self.spread.beta[0]))
            elif z < -self.p.entry:
                self.buy(data=self.data0, size=self.p.stake)
                self.sell(data=self.data1, size=round(self.p.stake * self.spread.beta[0]))
        elif abs(z) < self.p.exit:
            self.close(data=self.data0)
            self.close(data=self.data1)
