"""A Keltner-style channel and a one-line trend score, both defined in this file with
line arithmetic in ``__init__``.

Idioms: ``bt.Indicator`` subclasses with ``lines = (...)``, ``params``, ``alias``,
``plotinfo``/``plotlines``, lines assigned from expressions of other indicators in
``__init__`` (one indicator with three lines, one with a single line), a custom indicator
fed another custom indicator's line, delayed lines inside an indicator.
"""

import backtrader as bt


class Channel(bt.Indicator):
    alias = ("KChannel",)
    lines = ("mid", "upper", "lower")
    params = (("period", 20), ("atrs", 2.0))
    # backtrader reads these class attributes as dicts
    plotinfo = dict(subplot=False)  # noqa: RUF012
    plotlines = dict(mid=dict(ls="--"))  # noqa: RUF012

    def __init__(self):
        self.lines.mid = bt.ind.EMA(self.data.close, period=self.p.period)
        band = self.p.atrs * bt.ind.ATR(self.data, period=self.p.period)
        self.lines.upper = self.lines.mid + band
        self.lines.lower = self.lines.mid - band


class TrendScore(bt.Indicator):
    lines = ("score",)
    params = (("lag", 5),)

    def __init__(self):
        line = self.data
        self.lines.score = (line - line(-self.p.lag)) / line(-self.p.lag) * 100.0


class ChannelBreak(bt.Strategy):
    def __init__(self):
        self.chan = Channel(self.data, period=20, atrs=1.5)
        self.score = TrendScore(self.chan.mid, lag=5)

    def next(self):
        if not self.position:
            if self.data.close[0] > self.chan.upper[0] and self.score.score[0] > 0:
                self.buy(size=10)
        elif self.data.close[0] < self.chan.mid[0] or self.score[0] < -1.0:
            self.close()
