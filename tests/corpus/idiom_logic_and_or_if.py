"""Entry and exit conditions combined with backtrader's logic functions.

Idioms: ``bt.And`` and ``bt.Or`` over comparison lines, ``bt.If`` choosing between two
lines, ``bt.All`` / ``bt.Any`` over several conditions, a signal line read in ``next``.
"""

import backtrader as bt


class LogicGates(bt.Strategy):
    params = (("fast", 10), ("slow", 30), ("rsi_low", 40), ("rsi_high", 70))

    def __init__(self):
        close = self.data.close
        fast, slow = bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow)
        rsi = bt.ind.RSI(period=14)
        self.trend_up = bt.And(fast > slow, close > fast)
        self.stretched = bt.Or(rsi > self.p.rsi_high, close < slow)
        # a stop level that follows the fast average in an uptrend, the slow one otherwise
        self.stop_level = bt.If(fast > slow, fast * 0.98, slow * 0.97)
        self.all_green = bt.All(close > self.data.open, close > close(-1), rsi > self.p.rsi_low)
        self.any_red = bt.Any(close < self.data.open(-1), rsi < 30)

    def next(self):
        if not self.position:
            if self.trend_up[0] and self.all_green[0]:
                self.buy(size=10)
        elif self.stretched[0] or (self.any_red[0] and self.data.close[0] < self.stop_level[0]):
            self.close()
