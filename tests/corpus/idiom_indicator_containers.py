"""Momentum rotation over four datas with indicators kept in a dict and a list.

Idioms: ``self.smas = {d._name: bt.ind.SMA(d) ...}``, ``self.rocs = [bt.ind.ROC(d) ...]``
over ``enumerate(self.datas)``, a dict of dicts keyed by data index, ``self.getposition``,
ranking datas in ``next``, ``order_target_percent(data=...)``, ``notify_order`` naming the
data.
"""

import backtrader as bt


class Rotation(bt.Strategy):
    params = (("period", 30), ("top", 2), ("rebalance", 21))

    def __init__(self):
        self.smas = {d._name: bt.ind.SMA(d.close, period=self.p.period) for d in self.datas}
        self.rocs = [bt.ind.ROC(d.close, period=self.p.period) for d in self.datas]
        self.bands = {
            i: {"high": bt.ind.Highest(d.high, period=10), "low": bt.ind.Lowest(d.low, period=10)}
            for i, d in enumerate(self.datas)
        }
        self.counter = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            print(
                f"{order.data._name}: {'bought' if order.isbuy() else 'sold'} "
                f"{abs(order.executed.size)} at {order.executed.price:.2f}"
            )

    def next(self):
        self.counter += 1
        if self.counter % self.p.rebalance:
            return
        ranked = sorted(range(len(self.datas)), key=lambda i: self.rocs[i][0], reverse=True)
        chosen = set()
        for i in ranked[: self.p.top]:
            d = self.datas[i]
            if d.close[0] > self.smas[d._name][0] and d.close[0] > self.bands[i]["low"][0]:
                chosen.add(i)
        for i, d in enumerate(self.datas):
            target = 0.45 if i in chosen else 0.0
            if target or self.getposition(d).size:
                self.order_target_percent(data=d, target=target)
