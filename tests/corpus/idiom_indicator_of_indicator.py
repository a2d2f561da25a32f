"""Smoothed oscillators: an SMA of the RSI against the RSI itself, with position size
from an EMA of the ATR.

Idioms: an indicator fed another indicator (``SMA(rsi)``, ``EMA(atr)``), ``CrossUp`` and
``CrossDown`` of two indicators, ``CrossOver`` against a number, ``bt.ind.PctChange`` of an
indicator, sizing from indicator values.
"""

import math

import backtrader as bt


class SmoothedRsi(bt.Strategy):
    params = (("rsi", 14), ("smooth", 9), ("atr", 14), ("risk", 100.0))

    def __init__(self):
        self.rsi = bt.ind.RSI(self.data, period=self.p.rsi)
        self.rsi_sma = bt.ind.SMA(self.rsi, period=self.p.smooth)
        self.atr_ema = bt.ind.EMA(bt.ind.ATR(self.data, period=self.p.atr), period=10)
        self.up = bt.ind.CrossUp(self.rsi, self.rsi_sma)
        self.down = bt.ind.CrossDown(self.rsi, self.rsi_sma)
        self.mid = bt.ind.CrossOver(self.rsi, 50.0)
        self.rsi_speed = bt.ind.PctChange(self.rsi_sma, period=3)

    def next(self):
        if not self.position:
            if self.up[0] and self.rsi_speed[0] > -0.05:
                size = max(1, math.floor(self.p.risk / self.atr_ema[0]))
                self.buy(size=size)
        elif self.down[0] or self.mid[0] < 0:
            self.close()
