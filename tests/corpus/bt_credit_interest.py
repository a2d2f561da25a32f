"""Long/short SMA crossover written as ``bt.Signal`` indicators, plus an exit signal that
never fires.

Adapted from backtrader's samples/credit-interest/credit-interest.py (``SMACrossOver``,
``NoExit`` and ``St``); the signals the sample adds through cerebro are added by the
strategy, and the credit-interest commission scheme is left out (default broker).
Idioms: ``bt.Signal`` subclasses (one setting ``self.lines.signal`` in ``__init__``, one in
``next``), ``SIGNAL_LONGSHORT`` / ``SIGNAL_LONGEXIT``, ``itertools.count`` as a class
attribute, ``notify_trade``.
"""

import itertools

import backtrader as bt


class SMACrossOver(bt.Signal):
    params = (("p1", 10), ("p2", 30))

    def __init__(self):
        fast = bt.indicators.SMA(period=self.p.p1)
        slow = bt.indicators.SMA(period=self.p.p2)
        self.lines.signal = bt.indicators.CrossOver(fast, slow)


class NoExit(bt.Signal):
    def next(self):
        self.lines.signal[0] = 0.0


class LongShortSignals(bt.SignalStrategy):
    opcounter = itertools.count(1)

    def __init__(self):
        self.signal_add(bt.SIGNAL_LONGSHORT, SMACrossOver())
        self.signal_add(bt.SIGNAL_LONGEXIT, NoExit())
        self.setsizer(bt.sizers.FixedSize(stake=4))

    def notify_order(self, order):
        if order.status == bt.Order.Completed:
            side = "BUY " if order.isbuy() else "SELL"
            print(
                f"{next(self.opcounter):02d} {order.data.datetime.datetime()} {side} "
                f"size {order.executed.size:+d} price {order.executed.price:.2f}"
            )

    def notify_trade(self, trade):
        if trade.isclosed:
            print(f"trade closed: gross {trade.pnl:.2f} net {trade.pnlcomm:.2f}")
