"""RSI signals, long and short, each with its own exit, as a SignalStrategy.

Adapted from backtrader's samples/kselrsi/ksignal.py (``TheStrategy``).
Idioms: ``signal_add`` with LONG/LONGEXIT/SHORT/SHORTEXIT, ``CrossUp``/``CrossDown``
against a number, negated comparisons as signals (``-(rsi > 50)``), an unnamed warm-up SMA,
``super().notify_order``, ``d.close[-1]`` on the order's data.
"""

import backtrader as bt


class RsiSignals(bt.SignalStrategy):
    params = (
        ("rsi_per", 14),
        ("rsi_upper", 65.0),
        ("rsi_lower", 35.0),
        ("rsi_out", 50.0),
        ("warmup", 35),
    )

    def __init__(self):
        if self.p.warmup:
            bt.indicators.SMA(period=self.p.warmup, plot=False)
        rsi = bt.indicators.RSI(
            period=self.p.rsi_per, upperband=self.p.rsi_upper, lowerband=self.p.rsi_lower
        )
        self.signal_add(bt.SIGNAL_LONG, bt.ind.CrossUp(rsi, self.p.rsi_lower))
        self.signal_add(bt.SIGNAL_LONGEXIT, -(rsi > self.p.rsi_out))
        self.signal_add(bt.SIGNAL_SHORT, -bt.ind.CrossDown(rsi, self.p.rsi_upper))
        self.signal_add(bt.SIGNAL_SHORTEXIT, rsi < self.p.rsi_out)

    def notify_order(self, order):
        super().notify_order(order)
        if order.status == order.Completed:
            d = order.data
            print(
                f"{'buy' if order.isbuy() else 'sell'}: size {order.executed.size} "
                f"at {order.executed.price:f}; close[-1] {d.close[-1]:f}, open {d.open[0]:f}"
            )
