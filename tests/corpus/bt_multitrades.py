"""Long/short close-over-SMA crossover that spreads its positions over three trade ids.

Adapted from backtrader's samples/multitrades/multitrades.py (``MultiTradeStrategy`` with
``mtrade=True``; the sample's trade observer is left out).
Idioms: ``tradeid=`` on ``buy``/``sell``/``close``, ``itertools.cycle`` kept on self,
``next(iterator)`` inside ``next``, short selling, ``notify_trade`` with ``justopened``.
"""

import itertools

import backtrader as bt


class MultiTrade(bt.Strategy):
    params = (("period", 15), ("stake", 1), ("printout", True), ("onlylong", False))

    def log(self, txt, dt=None):
        if self.p.printout:
            print(f"{bt.num2date(dt or self.data.datetime[0]).isoformat()}, {txt}")

    def __init__(self):
        self.order = None
        sma = bt.ind.MovAv.SMA(self.data, period=self.p.period)
        self.signal = bt.ind.CrossOver(self.data.close, sma)
        self.tradeid = itertools.cycle([0, 1, 2])
        self.curtradeid = 0

    def next(self):
        if self.order:
            return
        if self.signal > 0.0:
            if self.position:
                self.log(f"CLOSE SHORT , {self.data.close[0]:.2f}")
                self.close(tradeid=self.curtradeid)
            self.curtradeid = next(self.tradeid)
            self.log(f"BUY CREATE , {self.data.close[0]:.2f} (trade id {self.curtradeid})")
            self.buy(size=self.p.stake, tradeid=self.curtradeid)
        elif self.signal < 0.0:
            if self.position:
                self.log(f"CLOSE LONG , {self.data.close[0]:.2f}")
                self.close(tradeid=self.curtradeid)
            if not self.p.onlylong:
                self.curtradeid = next(self.tradeid)
                self.log(f"SELL CREATE , {self.data.close[0]:.2f} (trade id {self.curtradeid})")
                self.sell(size=self.p.stake, tradeid=self.curtradeid)

    def notify_order(self, order):
        if order.status in (bt.Order.Submitted, bt.Order.Accepted):
            return
        if order.status == order.Completed:
            side = "BUY" if order.isbuy() else "SELL"
            self.log(f"{side} COMPLETE, {order.executed.price:.2f}", order.executed.dt)
        elif order.status in (order.Expired, order.Canceled, order.Margin):
            self.log(f"{order.Status[order.status]} ,")
        self.order = None

    def notify_trade(self, trade):
        if trade.isclosed:
            self.log(f"TRADE PROFIT, GROSS {trade.pnl:.2f}, NET {trade.pnlcomm:.2f}")
        elif trade.justopened:
            self.log(f"TRADE OPENED, SIZE {trade.size:2d}, id {trade.tradeid}")
