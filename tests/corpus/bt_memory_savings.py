"""A handful of standard indicators plus a two-line custom one, trading on the custom
line; at the end it counts the memory cells every line buffer holds.

Adapted from backtrader's samples/memory-savings/memory-savings.py (``TestInd`` and
``St``); the sample only measured memory, this one also trades. The sample named each
indicator with ``ind.__class__.__name__``, which validation refuses as a double-underscore
attribute: ``type(ind).__name__`` says the same.
Idioms: a custom indicator with two lines from ``__init__`` line math (the second an SMA
of the first), unnamed indicators (``btind.Stochastic()``), ``plotinfo`` changes,
``getindicators``/``getobservers`` and ``line.array`` walked in ``stop``, ``super().stop()``.
"""

import backtrader as bt
import backtrader.indicators as btind


class CloseToHigh(bt.Indicator):
    lines = ("a", "b")

    def __init__(self):
        self.lines.a = gap = self.data.close - self.data.high
        self.lines.b = btind.SMA(gap, period=20)


class CountCells(bt.Strategy):
    params = (("lendetails", True),)

    def __init__(self):
        btind.SMA()
        btind.Stochastic()
        btind.RSI()
        btind.MACD()
        btind.CCI()
        self.gap = CloseToHigh()
        self.gap.plotinfo.plot = False

    def next(self):
        if not self.position and self.gap.a[0] > self.gap.b[0]:
            self.buy(size=5)
        elif self.position and self.gap.a[0] < self.gap.b[0]:
            self.close()

    def detail(self, msg):
        if self.p.lendetails:
            print(msg)

    def cells(self, owner):
        return sum(len(line.array) for line in owner.lines)

    def walk(self, ind, depth):
        own = self.cells(ind)
        below = sum(self.walk(sub, depth + 1) for sub in ind.getindicators())
        self.detail(f"---- indicator {depth} {type(ind).__name__}: {own} cells, {below} below")
        return own + below

    def stop(self):
        super().stop()
        total = sum(self.cells(d) for d in self.datas)
        total += sum(self.walk(ind, 0) for ind in self.getindicators())
        total += sum(self.cells(obs) for obs in self.getobservers())
        print(f"Total memory cells used: {total}")
