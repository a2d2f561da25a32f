"""render_equity_chart: headless PNG output for normal, long and degenerate series."""

from __future__ import annotations

import struct
from pathlib import Path

import backtrader as bt
import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.dates import date2num, num2date
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runtime.chart import (
    MAX_MARKERS,
    MAX_POINTS,
    _decimation_index,
    equity_figure,
    exposure,
    render_equity_chart,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def business_days(n: int) -> np.ndarray:
    return np.busday_offset("2021-01-04", np.arange(n), roll="forward").astype("datetime64[us]")


def test_renders_png_with_benchmark(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    values = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    out = render_equity_chart(
        business_days(n),
        values,
        tmp_path / "sub" / "equity.png",
        title="SMA cross",
        benchmark=closes,
    )
    assert out == tmp_path / "sub" / "equity.png"
    width, height = png_size(out)
    assert 1000 <= width <= 1400 and 600 <= height <= 800
    assert out.stat().st_size > 20_000  # real content, not an empty canvas


def test_does_not_touch_pyplot_state(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    render_equity_chart(business_days(10), np.linspace(1, 2, 10), tmp_path / "a.png", title="t")
    assert matplotlib.get_backend() == backend


@pytest.mark.parametrize(
    ("n", "values"),
    [
        (2, np.array([10_000.0, 10_250.0])),
        (2, np.array([10_000.0, 10_000.0])),
        (1, np.array([10_000.0])),
        (250, np.full(250, 10_000.0)),
        (0, np.array([])),
        (5, np.array([1.0, np.nan, 0.9, np.inf, 1.1])),
    ],
    ids=["two-points", "two-flat", "single", "flat", "empty", "non-finite"],
)
def test_degenerate_series(tmp_path: Path, n: int, values: np.ndarray) -> None:
    out = render_equity_chart(
        business_days(n), values, tmp_path / "c.png", title="edge", benchmark=values.copy()
    )
    assert png_size(out)[0] > 0


def test_long_series_is_decimated_but_keeps_extremes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 100_000
    dates = np.datetime64("2020-01-02T09:30") + np.arange(n).astype("timedelta64[m]")
    values = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.0005, n)))
    values[12_345] = values.max() * 1.5  # a spike that must survive decimation
    values[54_321] = values.min() * 0.5
    keep = _decimation_index([values], MAX_POINTS)
    assert keep.size <= MAX_POINTS + 2
    assert {0, n - 1, 12_345, 54_321} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    out = render_equity_chart(dates, values, tmp_path / "long.png", title="minutes")
    assert png_size(out) == (1200, 700)


def test_mismatched_lengths_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_equity_chart(business_days(3), np.ones(4), tmp_path / "x.png", title="t")
    with pytest.raises(ValueError):
        render_equity_chart(
            business_days(3), np.ones(3), tmp_path / "y.png", title="t", benchmark=np.ones(2)
        )


# ------------------------------------------------------------------ what the chart says
def legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()]


def marker_lines(fig: Figure, shape: str) -> list[Line2D]:
    return [line for line in fig.axes[0].get_lines() if line.get_marker() == shape]


def test_legend_says_buy_and_hold_is_fully_invested_and_how_invested_the_strategy_was() -> None:
    n = 50
    values = np.linspace(10_000.0, 10_450.0, n)  # +4.50 %
    closes = np.linspace(80.0, 89.84, n)  # +12.30 %
    fig = equity_figure(business_days(n), values, title="t", benchmark=closes, invested_pct=31.4)
    assert legend_texts(fig) == [
        "Strategy (+4.50%, invested 31% of the time)",
        "Buy & hold, fully invested (+12.30%)",
    ]
    assert legend_texts(equity_figure(business_days(n), values, title="t")) == ["Strategy (+4.50%)"]


def test_trade_markers_sit_on_the_equity_line_at_their_bars() -> None:
    n = 40
    dates = business_days(n)
    values = 10_000.0 + np.arange(n) * 10.0
    entries, exits = dates[[3, 20]], dates[[9, 31]]
    fig = equity_figure(dates, values, title="t", entries=entries, exits=exits)
    (up,) = marker_lines(fig, "^")
    (down,) = marker_lines(fig, "v")
    np.testing.assert_allclose(
        up.get_xydata(), [[date2num(dates[3]), values[3]], [date2num(dates[20]), values[20]]]
    )
    np.testing.assert_allclose(down.get_xydata()[:, 1], values[[9, 31]])
    assert up.get_linestyle() == "None" and down.get_linestyle() == "None"
    assert to_hex(up.get_color()) == "#1e8449" and to_hex(down.get_color()) == "#c0392b"
    assert "Trade entry (2)" in legend_texts(fig) and "Trade exit (2)" in legend_texts(fig)


def test_too_many_trades_are_not_marked_but_said(tmp_path: Path) -> None:
    n = 1_000
    dates = business_days(n)
    opened, closed = dates[0:n:2][:MAX_MARKERS], dates[1:n:2][:MAX_MARKERS]
    fig = equity_figure(dates, np.linspace(1, 2, n), title="t", entries=opened, exits=closed)
    assert not marker_lines(fig, "^") and not marker_lines(fig, "v")
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert notes == ["300 entries and 300 exits: too many to mark"]
    few = equity_figure(
        dates, np.linspace(1, 2, n), title="t", entries=opened[:150], exits=closed[:150]
    )
    assert marker_lines(few, "^") and marker_lines(few, "v") and not few.axes[0].texts


def test_exposure_is_the_share_of_the_value_in_positions() -> None:
    values = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 0.0, np.nan])
    cash = np.array([100.0, 70.0, 40.0, 130.0, -50.0, 10.0, 5.0])  # 130: a short; -50: leverage
    np.testing.assert_allclose(exposure(values, cash), [0.0, 0.3, 0.6, 0.3, 1.5, 0.0, 0.0])
    assert exposure(np.array([100.0]), np.array([-900.0]))[0] == 2.0  # clipped
    with pytest.raises(ValueError):
        exposure(np.ones(3), np.ones(2))


def test_the_exposure_panel_shows_the_share_invested() -> None:
    n = 30
    values = np.full(n, 1_000.0)
    cash = np.where(np.arange(n) < 10, 1_000.0, 250.0)
    fig = equity_figure(business_days(n), values, title="t", cash=cash)
    assert len(fig.axes) == 3
    panel = fig.axes[2]
    assert panel.get_ylabel() == "Invested"
    (line,) = panel.get_lines()
    np.testing.assert_allclose(line.get_ydata(), np.where(np.arange(n) < 10, 0.0, 75.0))
    assert len(equity_figure(business_days(n), values, title="t").axes) == 2


def test_a_backtest_chart_marks_every_trade_and_shows_its_exposure(tmp_path: Path) -> None:
    from runtime.data import synthetic_frame
    from runtime.metrics import MetricsAnalyzer

    class Swing(bt.Strategy):
        def next(self) -> None:
            if len(self) % 15 == 0:
                self.order_target_percent(target=0.0 if self.position else 0.5)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=synthetic_frame(200, seed=3)), name="AAA")
    cerebro.addstrategy(Swing)
    cerebro.addanalyzer(MetricsAnalyzer, _name="m")
    m = cerebro.run()[0].analyzers.m
    result = m.get_analysis()
    dates, values = m.equity_curve()
    entries, exits = m.trade_marks()
    assert entries.size == result["total_trades"] and exits.size == result["trades_closed"] > 3
    fig = equity_figure(
        dates,
        values,
        title="t",
        benchmark=m.buy_and_hold_curve(),
        cash=m.cash_curve(),
        entries=entries,
        exits=exits,
        invested_pct=result["exposure_pct"],
    )
    (up,) = marker_lines(fig, "^")
    opened_at = np.searchsorted(dates, entries)
    np.testing.assert_allclose(up.get_ydata(), values[opened_at])
    first_entry = num2date(up.get_xdata()[0]).date().isoformat()
    assert first_entry == result["trades"][0]["entry_date"]
    invested = fig.axes[2].get_lines()[0].get_ydata()
    assert 40 < invested.max() <= 55  # half the value, give or take the day's move
    assert f"invested {result['exposure_pct']:.0f}% of the time" in legend_texts(fig)[0]
    out = render_equity_chart(
        dates,
        values,
        tmp_path / "c.png",
        title="t",
        cash=m.cash_curve(),
        entries=entries,
        exits=exits,
    )
    assert png_size(out) == (1200, 700)
