"""The seed's full-featured agent: an SMA trend filter, RSI pull-back entries, a stop below the
entry, and position sizes that risk 2% of the portfolio on each trade.

Sizing: a trade stopped out loses about ``stop_pct`` of its value, so a position worth
``portfolio value * risk_percent / stop_pct`` (40% of the portfolio with the defaults) risks
2% of it. (The seed sized ``2% of cash / price`` shares: 0 shares of SPY with 10,000 of cash,
so it never traded.)
"""

import backtrader as bt


class AdvancedStrategy(bt.Strategy):
    params = (
        ("sma_period", 100),  # the trend: only buy above it
        ("rsi_period", 14),
        ("rsi_entry", 45),  # a pull-back within the trend
        ("rsi_exit", 70),  # overbought: take the profit
        ("stop_pct", 0.05),  # exit 5% below the entry price
        ("risk_percent", 0.02),  # of the portfolio, lost if the stop is hit
    )

    def __init__(self):
        self.sma = bt.indicators.SMA(period=self.p.sma_period)
        self.rsi = bt.indicators.RSI(period=self.p.rsi_period)
        self.order = None

    def next(self):
        if self.order:  # one order at a time
            return
        if not self.position:
            if self.rsi[0] < self.p.rsi_entry and self.data.close[0] > self.sma[0]:
                size = self.calculate_position_size()
                if size > 0:
                    self.order = self.buy(size=size)
        else:
            stop = self.position.price * (1 - self.p.stop_pct)
            if self.rsi[0] > self.p.rsi_exit or self.data.close[0] < stop:
                self.order = self.close()

    def calculate_position_size(self):
        price = self.data.close[0]
        risk_amount = self.broker.getvalue() * self.p.risk_percent
        size = int(risk_amount / (price * self.p.stop_pct))
        return min(size, int(self.broker.getcash() * 0.95 / price))  # never beyond the cash

    def notify_order(self, order):
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected):
            self.order = None
