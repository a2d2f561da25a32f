"""A channel from ``bt.Max``/``bt.Min`` of indicators, a direction from ``bt.Cmp``, and a
ratio guarded by ``bt.DivByZero``.

Idioms: ``bt.Max``/``bt.Min`` over lines and numbers, ``bt.Cmp`` (-1/0/1),
``bt.CmpEx``, ``bt.DivByZero``, ``bt.DivZeroByZero``, ``bt.Sum``.
"""

import backtrader as bt


class MinMaxCmp(bt.Strategy):
    params = (("period", 20),)

    def __init__(self):
        d = self.data
        ema = bt.ind.EMA(period=self.p.period)
        sma = bt.ind.SMA(period=self.p.period)
        self.ceiling = bt.Max(ema, sma, d.close(-1))
        self.floor = bt.Min(ema, sma)
        self.direction = bt.Cmp(ema, sma)  # 1 when the EMA leads
        self.where = bt.CmpEx(d.close, self.ceiling, -1.0, 0.0, 1.0)
        body = d.close - d.open
        span = d.high - d.low
        self.body_share = bt.DivByZero(body, span, zero=0.0)
        self.vol_ratio = bt.DivZeroByZero(d.volume, d.volume(-1), single=2.0, dual=1.0)
        self.up_days = bt.Sum(d.close > d.open, d.close(-1) > d.open(-1))

    def next(self):
        if not self.position:
            if self.direction[0] > 0 and self.where[0] > 0 and self.body_share[0] > 0.3:
                self.buy(size=8)
        elif self.data.close[0] < self.floor[0] or (
            self.up_days[0] == 0 and self.vol_ratio[0] > 1.5
        ):
            self.close()
