"""Two datas where the second starts months later: the strategy trades the first one
from ``prenext`` while the second has no bars yet, says when both are there in
``nextstart``, then trades both in ``next``.

Idioms: ``prenext``/``nextstart`` overrides, ``len(d)`` to see which datas have bars,
``d.datetime.date(0)`` per data, ``super().nextstart()``, orders on the late data only once
it has bars. Run on SPY and LATE (the harness's copy of GLD that starts later).
"""

import backtrader as bt


class LateStarter(bt.Strategy):
    params = (("hold", 5),)

    def __init__(self):
        self.entered = {}
        self.fast = [bt.ind.SMA(d.close, period=5) for d in self.datas]

    def trade(self, d, i):
        size = self.getposition(d).size
        if not size and d.close[0] > d.close[-1]:
            self.buy(data=d, size=5)
            self.entered[i] = len(d)
        elif size and len(d) - self.entered.get(i, 0) >= self.p.hold:
            self.close(data=d)

    def prenext(self):
        ready = [i for i, d in enumerate(self.datas) if len(d)]
        if len(self) % 40 == 1:
            print(f"prenext {len(self)}: datas with bars {ready}")
        for i in ready:
            if len(self.datas[i]) > 1:
                self.trade(self.datas[i], i)

    def nextstart(self):
        dates = ", ".join(str(d.datetime.date(0)) for d in self.datas)
        print(f"nextstart at strategy bar {len(self)}: {dates}")
        super().nextstart()

    def next(self):
        for i, d in enumerate(self.datas):
            if self.fast[i][0] > self.fast[i][-1] or self.getposition(d).size:
                self.trade(d, i)
