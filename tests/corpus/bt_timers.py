"""A timer at each session start that buys (once) and, every fourth firing, sells; the
strategy prints every bar, including the warm-up bars.

Adapted from backtrader's samples/timers/scheduled.py (``St`` with ``timer=True``); the
sample's cheat timer that buys is replaced by a plain timer, and a periodic sell is added
so trades close.
Idioms: ``self.add_timer(when=bt.timer.SESSION_START, ...)``, ``notify_timer``,
``prenext`` calling ``next``, ``date().isocalendar()``, an unnamed ``bt.ind.SMA()``.
"""

import datetime

import backtrader as bt


class SessionTimer(bt.Strategy):
    params = (("when", bt.timer.SESSION_START), ("offset", datetime.timedelta()), ("weekdays", []))

    def __init__(self):
        bt.ind.SMA()
        self.add_timer(when=self.p.when, offset=self.p.offset, weekdays=self.p.weekdays)
        self.fired = 0

    def prenext(self):
        self.next()

    def next(self):
        _, week, weekday = self.datetime.date().isocalendar()
        d = self.data
        print(
            f"{len(self)}, {self.datetime.datetime()}, week {week}, day {weekday}, "
            f"O {d.open[0]} H {d.high[0]} L {d.low[0]} C {d.close[0]}"
        )

    def notify_timer(self, timer, when, *args, **kwargs):
        self.fired += 1
        print(f"timer {timer.p.tid} fired at {when} (#{self.fired})")
        if not self.position and self.fired % 4 == 1:
            self.buy(size=3)
        elif self.position and self.fired % 4 == 3:
            self.close()

    def notify_order(self, order):
        if order.status == order.Completed:
            print(f"-- {self.data.datetime.date()} executed at {order.executed.price}")
