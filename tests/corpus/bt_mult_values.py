"""Three datas, each entered on its own weekday with a bracket, and closed by hand after
its own holding period (which also cancels the bracket's stop).

Adapted from backtrader's samples/multi-example/mult-values.py (``St`` with
``usebracket=True, rawbracket=False`` and its ``TestSizer``).
Idioms: orders kept in a dict keyed by the data object, ``enumerate(self.datas)``,
``d._name``, ``buy_bracket(data=d, oargs=...)``, ``self.cancel``, a printing sizer,
``self.getposition(d)``, ``order.data``.
"""

import datetime

import backtrader as bt


class LoudSizer(bt.Sizer):
    params = (("stake", 1),)

    def _getsizing(self, comminfo, cash, data, isbuy):
        size = self.p.stake * (1 if isbuy else 2)
        print(
            f"{self.strategy.datetime.date()} data {data._name} "
            f"{'buy' if isbuy else 'sell'} sized to {size}"
        )
        return size


class WeekdayBrackets(bt.Strategy):
    params = (
        ("enter", [1, 3, 4]),
        ("hold", [7, 10, 15]),
        ("pentry", 0.015),
        ("plimits", 0.03),
        ("valid", 10),
    )

    def __init__(self):
        self.o = dict()
        self.holding = dict()
        self.setsizer(LoudSizer())

    def notify_order(self, order):
        if order.status == order.Submitted:
            return
        print(
            f"{self.datetime.date()} {order.data._name} order {order.ref} {order.getstatusname()}"
        )
        if not order.alive():
            mine = self.o[order.data]
            mine[mine.index(order)] = None
            if all(x is None for x in mine):
                mine.clear()

    def next(self):
        day = self.datetime.date()
        for i, d in enumerate(self.datas):
            size = self.getposition(d).size
            if not size and not self.o.get(d):
                if day.weekday() == self.p.enter[i]:
                    price = d.close[0] * (1.0 - self.p.pentry)
                    self.o[d] = self.buy_bracket(
                        data=d,
                        price=price,
                        stopprice=price * (1.0 - self.p.plimits),
                        limitprice=price * (1.0 + self.p.plimits),
                        oargs=dict(valid=datetime.timedelta(self.p.valid)),
                    )
                    print(f"{day} {d._name} bracket " + " ".join(str(o.ref) for o in self.o[d]))
                    self.holding[d] = 0
            elif size:
                self.holding[d] += 1
                if self.holding[d] >= self.p.hold[i]:
                    closing = self.close(data=d)
                    self.o[d].append(closing)
                    print(f"{day} {d._name} manual close {closing.ref}")
                    if self.o[d][1] is not None:
                        self.cancel(self.o[d][1])
