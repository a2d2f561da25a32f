"""Example agent: a moving-average crossover on every symbol it is given.

Buys when the fast average crosses above the slow one and the RSI is not overbought,
sells when it crosses back below. One position per symbol, 10% of the portfolio each.
"""

import backtrader as bt


class SmaCross(bt.Strategy):
    params = (
        ("fast", 10),
        ("slow", 30),
        ("rsi_period", 14),
        ("rsi_max", 70),
        ("stake_pct", 0.10),
    )

    def __init__(self):
        self.fast = {d._name: bt.ind.SMA(d.close, period=self.p.fast) for d in self.datas}
        self.slow = {d._name: bt.ind.SMA(d.close, period=self.p.slow) for d in self.datas}
        self.cross = {
            d._name: bt.ind.CrossOver(self.fast[d._name], self.slow[d._name]) for d in self.datas
        }
        self.rsi = {d._name: bt.ind.RSI(d.close, period=self.p.rsi_period) for d in self.datas}

    def next(self):
        for d in self.datas:
            name = d._name
            position = self.getposition(d)
            if not position and self.cross[name][0] > 0 and self.rsi[name][0] < self.p.rsi_max:
                size = int(self.broker.getvalue() * self.p.stake_pct / d.close[0])
                if size > 0:
                    self.log(f"BUY {size} {name} at about {d.close[0]:.2f}")
                    self.buy(data=d, size=size)
            elif position and self.cross[name][0] < 0:
                self.log(f"SELL {position.size} {name} at about {d.close[0]:.2f}")
                self.close(data=d)

    def log(self, text):
        print(f"{self.datetime.date(0)} {text}")
