"""The shortest signal strategy: go long while a 10-bar SMA is above a 30-bar SMA.

Adapted from backtrader's samples/sigsmacross/sigsmacross2.py (``SmaCross``).
Idioms: ``bt.SignalStrategy`` without a ``next`` of its own, indicators not kept on self.
"""

import backtrader as bt


class MinimalSignalCross(bt.SignalStrategy):
    def __init__(self):
        cross = bt.ind.CrossOver(bt.ind.SMA(period=10), bt.ind.SMA(period=30))
        self.signal_add(bt.SIGNAL_LONG, cross)
