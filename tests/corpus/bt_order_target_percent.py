"""Order to a target percent of the portfolio that follows the calendar.

Adapted from backtrader's samples/order_target/order_target.py (``TheStrategy`` with
``use_target_percent``): the target is the day of the month (mirrored in even months),
as a percent.
Idioms: ``order_target_percent``, ``broker.get_value([data])``, one pending order at a
time tracked through ``notify_order``, printing in ``next``.
"""

import backtrader as bt


class TargetPercent(bt.Strategy):
    def start(self):
        self.order = None

    def notify_order(self, order):
        if not order.alive():
            self.order = None

    def next(self):
        dt = self.data.datetime.date()
        total = self.broker.get_value()
        mine = self.broker.get_value([self.data])
        print(
            f"{len(self):04d} - {dt.isoformat()} - size {self.position.size:02d} - "
            f"value {total:.2f} - in data {mine / total:.2f}"
        )
        if self.order:
            return
        day = dt.day
        if dt.month % 2 == 0:
            day = 31 - day
        self.order = self.order_target_percent(target=day / 100.0)
