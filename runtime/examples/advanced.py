"""The seed's full-featured agent: SMA trend filter, RSI entries, 2% risk sizing."""

import backtrader as bt


class AdvancedStrategy(bt.Strategy):
    params = (
        ("sma_period", 20),
        ("rsi_period", 14),
        ("risk_percent", 0.02),
    )

    def __init__(self):
        self.sma = bt.indicators.SMA(period=self.p.sma_period)
        self.rsi = bt.indicators.RSI(period=self.p.rsi_period)
        self.order = None

    def next(self):
        if self.order:
            return
        if not self.position:
            if self.rsi < 30 and self.data.close > self.sma:
                size = self.calculate_position_size()
                self.order = self.buy(size=size)
        else:
            if self.rsi > 70 or self.data.close < self.sma * 0.95:
                self.order = self.close()

    def calculate_position_size(self):
        risk_amount = self.broker.cash * self.p.risk_percent
        return int(risk_amount / self.data.close)

    def notify_order(self, order):
        if order.status in [order.Completed]:
            self.order = None
