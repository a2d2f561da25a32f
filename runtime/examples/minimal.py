"""The seed's minimal agent: in and out of the market on alternate bars."""

import backtrader as bt


class MinimalStrategy(bt.Strategy):
    def next(self):
        if not self.position:
            self.buy()
        else:
            self.sell()
