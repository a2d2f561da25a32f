"""Custom indicators computed bar by bar in ``next``: an up/down streak counter and a
two-line rolling z-score of the close.

Idioms: ``bt.Indicator`` with ``next`` setting ``self.lines.x[0]`` from previous values
(``self.lines.streak[-1]``), ``self.addminperiod``, a two-line indicator computed in
``next`` with ``statistics`` on ``self.data.get(size=...)``, ``prenext`` in an indicator,
``self.l`` shorthand.
"""

import statistics

import backtrader as bt


class Streak(bt.Indicator):
    lines = ("streak",)

    def __init__(self):
        self.addminperiod(2)

    def prenext(self):
        self.lines.streak[0] = 0.0

    def next(self):
        last = self.lines.streak[-1]
        if self.data[0] > self.data[-1]:
            self.lines.streak[0] = last + 1 if last > 0 else 1.0
        elif self.data[0] < self.data[-1]:
            self.lines.streak[0] = last - 1 if last < 0 else -1.0
        else:
            self.lines.streak[0] = 0.0


class ZScore(bt.Indicator):
    lines = ("z", "spread")
    params = (("period", 20),)

    def __init__(self):
        self.addminperiod(self.p.period)

    def next(self):
        window = list(self.data.get(size=self.p.period))
        mean = statistics.fmean(window)
        sd = statistics.pstdev(window)
        self.l.spread[0] = self.data[0] - mean
        self.l.z[0] = self.l.spread[0] / sd if sd else 0.0


class StreakReversion(bt.Strategy):
    def __init__(self):
        self.streak = Streak(self.data.close)
        self.zs = ZScore(self.data.close, period=20)

    def next(self):
        if not self.position:
            if self.streak[0] <= -3 and self.zs.z[0] < -1.0:
                self.buy(size=10)
        elif self.zs.z[0] > 0.5 or self.streak[0] >= 3:
            self.close()
