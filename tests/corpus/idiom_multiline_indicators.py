"""A trend system voting with five multi-line indicators.

Idioms: lines of multi-line indicators by name and by ``.lines.x``: ``MACD`` (macd, signal,
``MACDHisto.histo``), ``BollingerBands`` (top/mid/bot), ``Stochastic`` (percK/percD),
``DirectionalMovementIndex`` (plusDI/minusDI/adx) and ``Ichimoku`` (tenkan_sen, kijun_sen,
senkou spans shifted forward, chikou_span read from the future by backtrader itself);
``CrossOver`` between two lines of one indicator.
"""

import backtrader as bt


class IndicatorVote(bt.Strategy):
    def __init__(self):
        self.macd = bt.ind.MACDHisto(self.data)
        self.boll = bt.ind.BollingerBands(self.data, period=20, devfactor=2.0)
        self.stoch = bt.ind.Stochastic(self.data, period=14)
        self.dmi = bt.ind.DirectionalMovementIndex(self.data, period=14)
        self.cloud = bt.ind.Ichimoku(self.data)
        self.macd_cross = bt.ind.CrossOver(self.macd.macd, self.macd.signal)
        self.stoch_cross = bt.ind.CrossOver(self.stoch.lines.percK, self.stoch.lines.percD)

    def votes(self):
        close = self.data.close[0]
        span_top = max(self.cloud.senkou_span_a[0], self.cloud.senkou_span_b[0])
        return sum(
            (
                self.macd.histo[0] > 0,
                self.boll.lines.mid[0] < close < self.boll.lines.top[0],
                self.stoch.percK[0] > self.stoch.percD[0],
                self.dmi.plusDI[0] > self.dmi.minusDI[0] and self.dmi.adx[0] > 20,
                self.cloud.tenkan_sen[0] > self.cloud.kijun_sen[0] and close > span_top,
            )
        )

    def next(self):
        score = self.votes()
        if not self.position:
            if score >= 4 or (score >= 3 and self.macd_cross[0] > 0):
                self.buy(size=10)
        else:
            weak = self.stoch_cross[0] < 0 and score <= 2
            if score <= 1 or weak or self.data.close[0] < self.boll.bot[0]:
                self.close()
