"""Order to a target value (and, every fourth week, to a target size) from the calendar.

Adapted from backtrader's samples/order_target/order_target.py (``TheStrategy`` with
``use_target_value``; the ``use_target_size`` branch is used too).
Idioms: ``order_target_value``, ``order_target_size``, a pending-order guard.
"""

import backtrader as bt


class TargetValue(bt.Strategy):
    params = (("unit", 1000.0),)

    def start(self):
        self.order = None

    def notify_order(self, order):
        if not order.alive():
            self.order = None

    def next(self):
        if self.order:
            return
        dt = self.data.datetime.date()
        amount = dt.day if dt.month % 2 else 31 - dt.day
        if dt.isocalendar()[1] % 4 == 0:
            self.order = self.order_target_size(target=amount // 3)
        else:
            self.order = self.order_target_value(target=amount * self.p.unit / 10.0)
