"""An EMA crossover sized by a percent-of-cash sizer, whose bookkeeping lives in the
notifications: a trade journal from ``notify_trade``, order state from ``notify_order``.

Idioms: ``self.setsizer(bt.sizers.PercentSizer(percents=...))``, ``self.getsizer()``,
``notify_order`` keeping the pending order, ``notify_trade`` with ``pnl``/``pnlcomm``/
``barlen``, ``notify_cashvalue``, a ``self.log`` helper printing in ``next`` and ``stop``.
"""

import backtrader as bt


class Journal(bt.Strategy):
    params = (("fast", 8), ("slow", 21), ("percents", 30))

    def log(self, txt, dt=None):
        dt = dt or self.datas[0].datetime.date(0)
        print(f"{dt.isoformat()}, {txt}")

    def __init__(self):
        self.setsizer(bt.sizers.PercentSizer(percents=self.p.percents))
        self.cross = bt.ind.CrossOver(
            bt.ind.EMA(period=self.p.fast), bt.ind.EMA(period=self.p.slow)
        )
        self.order = None
        self.journal = []
        self.value = 0.0

    def notify_cashvalue(self, cash, value):
        self.value = value

    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted):
            return
        if order.status == order.Completed:
            self.log(
                f"{'BUY' if order.isbuy() else 'SELL'} EXECUTED {order.executed.size:+.0f} "
                f"@ {order.executed.price:.2f}"
            )
        else:
            self.log(f"order {order.getstatusname()}")
        self.order = None

    def notify_trade(self, trade):
        if trade.isclosed:
            self.journal.append((trade.barlen, trade.pnl, trade.pnlcomm))
            self.log(
                f"TRADE closed after {trade.barlen} bars: gross {trade.pnl:.2f}, "
                f"net {trade.pnlcomm:.2f}"
            )

    def next(self):
        self.log(f"close {self.data.close[0]:.2f} value {self.value:.2f}")
        if self.order:
            return
        if not self.position and self.cross > 0:
            self.order = self.buy()
        elif self.position and self.cross < 0:
            self.order = self.close()

    def stop(self):
        won = sum(1 for _, _, net in self.journal if net > 0)
        self.log(f"{len(self.journal)} trades, {won} won, sizer {type(self.getsizer()).__name__}")
