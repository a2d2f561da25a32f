"""Relative strength of stocks against bonds, with the second data coupled to the
strategy's clock.

Idioms: ``self.data1.close()`` (a coupled line, as used to mix timeframes),
``self.data0.close / self.data1.close()`` in ``__init__``, an SMA over that ratio,
``self.data1`` orders, ``order_target_percent`` on two datas.
"""

import backtrader as bt


class StocksOverBonds(bt.Strategy):
    params = (("period", 30),)

    def __init__(self):
        bonds = self.data1.close()
        self.ratio = self.data0.close / bonds
        self.ratio_sma = bt.ind.SMA(self.ratio, period=self.p.period)
        self.regime = 0

    def next(self):
        regime = 1 if self.ratio[0] > self.ratio_sma[0] else -1
        if regime == self.regime:
            return
        self.regime = regime
        stocks, bonds = (0.6, 0.3) if regime > 0 else (0.2, 0.7)
        self.order_target_percent(data=self.data0, target=stocks)
        self.order_target_percent(data=self.data1, target=bonds)
