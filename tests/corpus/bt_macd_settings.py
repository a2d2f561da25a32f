"""MACD crossover entries in a falling-SMA market, an ATR stop that only ratchets up, and
a sizer spending a fixed share of the cash.

Adapted from backtrader's samples/macd-settings/macd-settings.py (``TheStrategy`` and the
``FixedPerc`` sizer); the sample's backtrader-version switch is dropped (it read
``bt.__version__``, a double-underscore attribute that validation refuses).
Idioms: ``MACD`` lines ``.macd``/``.signal``, ``CrossOver`` of two indicator lines,
``ATR``, a delayed indicator in line arithmetic (``sma - sma(-10)``),
``comminfo.getsize`` in a sizer, ``close()`` on a manual stop.
"""

import backtrader as bt


class FixedPerc(bt.Sizer):
    params = (("perc", 0.20),)

    def _getsizing(self, comminfo, cash, data, isbuy):
        return comminfo.getsize(data.close[0], self.p.perc * cash)


class MacdAtr(bt.Strategy):
    params = (
        ("macd1", 12),
        ("macd2", 26),
        ("macdsig", 9),
        ("atrperiod", 14),
        ("atrdist", 3.0),
        ("smaperiod", 30),
        ("dirperiod", 10),
    )

    def __init__(self):
        self.macd = bt.indicators.MACD(
            self.data,
            period_me1=self.p.macd1,
            period_me2=self.p.macd2,
            period_signal=self.p.macdsig,
        )
        self.mcross = bt.indicators.CrossOver(self.macd.macd, self.macd.signal)
        self.atr = bt.indicators.ATR(self.data, period=self.p.atrperiod)
        self.sma = bt.indicators.SMA(self.data, period=self.p.smaperiod)
        self.smadir = self.sma - self.sma(-self.p.dirperiod)
        self.setsizer(FixedPerc())

    def start(self):
        self.order = None
        self.pstop = 0.0

    def notify_order(self, order):
        if not order.alive():
            self.order = None

    def next(self):
        if self.order:
            return
        if not self.position:
            if self.mcross[0] > 0.0 and self.smadir < 0.0:
                self.order = self.buy()
                self.pstop = self.data.close[0] - self.atr[0] * self.p.atrdist
        else:
            price = self.data.close[0]
            if price < self.pstop:
                self.close()
            else:
                self.pstop = max(self.pstop, price - self.atr[0] * self.p.atrdist)
