"""Data lines kept on the strategy and used every way backtrader allows.

Idioms: ``self.dataclose = self.datas[0].close`` then ``self.dataclose[0] > x``, the bare
line in a comparison (``if self.dataclose > self.sma:``, ``self.dataclose < 100``),
``self.data.close.get(size=5)``, ``self.data.lines.high``, ``self.data0.l.low``,
``self.datas[0].volume[-1]``, ``len(self.dataclose)``, a ``log`` helper with the bar date.
"""

import backtrader as bt


class StoredLines(bt.Strategy):
    params = (("period", 15), ("floor", 100.0))

    def log(self, txt):
        print(f"{self.datas[0].datetime.date(0).isoformat()} {txt}")

    def __init__(self):
        self.dataclose = self.datas[0].close
        self.datahigh = self.data.lines.high
        self.datalow = self.data0.l.low
        self.sma = bt.ind.SMA(self.datas[0], period=self.p.period)
        self.order = None

    def notify_order(self, order):
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            self.log(f"order {order.ref} {order.getstatusname()}")
            self.order = None

    def next(self):
        last5 = self.data.close.get(size=5)
        if len(last5) < 5 or self.order:
            return
        rising = last5[-1] > last5[0]
        if len(self.dataclose) % 50 == 0:
            self.log(
                f"close {self.dataclose[0]:.2f} high {self.datahigh[0]:.2f} "
                f"low {self.datalow[0]:.2f} volume[-1] {self.datas[0].volume[-1]:.0f}"
            )
        if not self.position:
            if self.dataclose > self.sma and rising and self.dataclose[0] > self.p.floor:
                self.log(f"BUY CREATE {self.dataclose[0]:.2f}")
                self.order = self.buy(size=10)
            elif self.dataclose < 100:
                self.order = self.buy(size=1)
        elif self.dataclose < self.sma or (not rising and self.dataclose[0] < self.dataclose[-1]):
            self.log(f"SELL CREATE {self.dataclose[0]:.2f}")
            self.order = self.close()
