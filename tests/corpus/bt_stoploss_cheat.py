"""EMA crossover entries with the protective stop sent in the same ``next`` as the buy.

Adapted from backtrader's samples/stop-trading/stop-loss-approaches.py
(``ManualStopOrStopTrailCheat``). The sample turns on cheat-on-close from the strategy
(``self.broker.set_coc(True)``) so the buy fills at the signal bar's close; validation
refuses that call (an agent may not change how the broker fills orders), so here the buy
fills at the next open like any market order, with the stop already waiting.
Idioms: ``super().__init__()`` in a subclass, a buy and a stop sell in the same bar,
the stop priced from the signal bar's close.
"""

import backtrader as bt


class EmaBase(bt.Strategy):
    params = (("fast_ma", 10), ("slow_ma", 20))

    def __init__(self):
        self.crossup = bt.ind.CrossUp(
            bt.ind.EMA(period=self.p.fast_ma), bt.ind.EMA(period=self.p.slow_ma)
        )


class Agent(EmaBase):
    params = (("stop_loss", 0.02),)

    def __init__(self):
        super().__init__()
        self.entries = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            side = "BUY " if order.isbuy() else "SELL"
            print(f"{side}@price: {order.executed.price:.2f}")

    def next(self):
        if not self.position and self.crossup > 0:
            self.entries += 1
            self.buy()
            self.sell(exectype=bt.Order.Stop, price=self.data.close[0] * (1.0 - self.p.stop_loss))
