"""Two signal strategies in one file; the one named Agent runs.

Adapted from backtrader's samples/strategy-selection/strategy-selection.py (``St0`` and
``St1``; the sample's fetcher that picks one by index is replaced by the ``Agent`` name).
Idioms: several ``bt.Strategy`` subclasses in a file, ``CrossOver(self.data.close, sma)``.
"""

import backtrader as bt


class TwoAverages(bt.SignalStrategy):
    def __init__(self):
        cross = bt.ind.CrossOver(bt.ind.SMA(period=10), bt.ind.SMA(period=30))
        self.signal_add(bt.SIGNAL_LONG, cross)


class Agent(bt.SignalStrategy):
    def __init__(self):
        cross = bt.ind.CrossOver(self.data.close, bt.ind.SMA(period=10))
        self.signal_add(bt.SIGNAL_LONG, cross)
