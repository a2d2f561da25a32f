"""Buy the dip: go all in after a daily fall, get out a few bars later.

Adapted from backtrader's samples/btfd/btfd.py (strategy ``St``); the leverage observer
and command-line options are gone, the parameters are fixed.
Idioms: line arithmetic with a delayed line in ``__init__`` (``close / close(-1) - 1``),
``order_target_percent``, ``close()``, ``start``, ``notify_order``/``notify_trade`` printing.
"""

import backtrader as bt


class BuyTheDip(bt.Strategy):
    params = (
        ("fall", -0.01),  # a bar this much down (or more) triggers the entry
        ("hold", 2),  # bars to stay in once filled
        ("approach", "closeclose"),
        ("target", 0.95),  # fraction of the portfolio to put in
        ("prorder", True),
        ("prtrade", True),
    )

    def __init__(self):
        d = self.data
        if self.p.approach == "closeclose":
            self.pctdown = d.close / d.close(-1) - 1.0
        elif self.p.approach == "openclose":
            self.pctdown = d.close / d.open - 1.0
        elif self.p.approach == "highclose":
            self.pctdown = d.close / d.high - 1.0
        else:
            self.pctdown = d.low / d.high - 1.0
        self.barexit = 0

    def start(self):
        if self.p.prtrade:
            print("TRADE,Status,Date,Value,PnL,Commission")
        if self.p.prorder:
            print("ORDER,Type,Date,Price,Size,Commission")

    def next(self):
        if self.position:
            if len(self) >= self.barexit:
                self.close()
        elif self.pctdown <= self.p.fall:
            self.order_target_percent(target=self.p.target)
            self.barexit = len(self) + self.p.hold

    def notify_order(self, order):
        if order.status in (order.Margin, order.Rejected, order.Canceled):
            print("order did not go through:", order.getstatusname())
        elif order.status == order.Completed and self.p.prorder:
            side = "BUY" if order.isbuy() else "SELL"
            when = self.data.num2date(order.executed.dt).date().isoformat()
            fields = [
                "ORDER",
                side,
                when,
                order.executed.price,
                order.executed.size,
                order.executed.comm,
            ]
            print(",".join(str(x) for x in fields))

    def notify_trade(self, trade):
        if not self.p.prtrade:
            return
        if trade.isclosed:
            when = self.data.num2date(trade.dtclose).date().isoformat()
            print(
                ",".join(
                    str(x)
                    for x in ["TRADE", "CLOSE", when, trade.value, trade.pnl, trade.commission]
                )
            )
        elif trade.justopened:
            when = self.data.num2date(trade.dtopen).date().isoformat()
            print(
                ",".join(
                    str(x)
                    for x in ["TRADE", "OPEN", when, trade.value, trade.pnl, trade.commission]
                )
            )
