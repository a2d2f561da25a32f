"""Gold against the S&P 500: a rolling correlation of the two closes, with a trade on
each data when they decouple.

Adapted from backtrader's samples/gold-vs-sp500/gold-vs-sp500.py (``PearsonR`` and
``MACrossOver``); the correlation uses numpy instead of scipy, and the sample, which only
plots, now trades: long gold above its SMA while the correlation is low, long the index
above its SMA otherwise.
Idioms: a custom indicator over two datas (``_mindatas = 2``, ``PeriodN``, ``next`` setting
``self.lines.correlation[0]`` from ``get(size=...)``), an indicator class as a parameter,
``plotmaster=``/``subplot=`` keyword arguments, orders on ``data=``.
"""

import backtrader as bt
import numpy as np


class PearsonR(bt.ind.PeriodN):
    _mindatas = 2
    lines = ("correlation",)
    params = (("period", 20),)

    def next(self):
        a = np.asarray(self.data0.get(size=self.p.period))
        b = np.asarray(self.data1.get(size=self.p.period))
        self.lines.correlation[0] = float(np.corrcoef(a, b)[0, 1])


class GoldVsIndex(bt.Strategy):
    params = (("ma", bt.ind.MovAv.SMA), ("pd1", 20), ("pd2", 20), ("decoupled", 0.2))

    def __init__(self):
        self.ma_gold = self.p.ma(self.data0, period=self.p.pd1, subplot=True)
        self.ma_index = self.p.ma(self.data1, period=self.p.pd2, plotmaster=self.ma_gold)
        self.corr = PearsonR(self.data0, self.data1)

    def next(self):
        gold, index = self.data0, self.data1
        want_gold = self.corr[0] < self.p.decoupled and gold.close[0] > self.ma_gold[0]
        want_index = not want_gold and index.close[0] > self.ma_index[0]
        for data, want in ((gold, want_gold), (index, want_index)):
            held = self.getposition(data).size
            if want and not held:
                self.buy(data=data, size=10)
            elif held and not want:
                self.close(data=data)
