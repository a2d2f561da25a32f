"""Equity / drawdown chart rendered headless with matplotlib's Agg canvas.

Only the object API is used (``Figure`` + ``FigureCanvasAgg``): no pyplot global state and no
``cerebro.plot()`` (which wants a GUI backend), so this is safe in worker threads and on
machines without a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

__all__ = ["MAX_POINTS", "render_equity_chart"]

#: Series longer than this are decimated (min/max per bucket) before drawing.
MAX_POINTS = 4000

_WIDTH_IN, _HEIGHT_IN, _DPI = 12.0, 7.0, 100
_EQUITY_COLOR = "#1f5fa8"
_BENCH_COLOR = "#8a8a8a"
_DD_COLOR = "#c0392b"


def _decimation_index(series: list[np.ndarray], max_points: int) -> np.ndarray:
    """Indices keeping the first/last point and each bucket's min and max of every series."""
    n = series[0].size
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // (2 * len(series)))
    size = math.ceil(n / buckets)
    full = (n // size) * size
    keep = [np.array([0, n - 1])]
    for s in series:
        filled = np.where(np.isfinite(s), s, np.nan)
        lo = np.where(np.isnan(filled), np.inf, filled)
        hi = np.where(np.isnan(filled), -np.inf, filled)
        offsets = np.arange(0, full, size)
        keep.append(lo[:full].reshape(-1, size).argmin(axis=1) + offsets)
        keep.append(hi[:full].reshape(-1, size).argmax(axis=1) + offsets)
        if full < n:
            keep.append(np.array([full + lo[full:].argmin(), full + hi[full:].argmax()]))
    return np.unique(np.concatenate(keep))


def _drawdown_pct(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        finite = np.where(np.isfinite(values), values, -np.inf)
        peak = np.maximum.accumulate(finite)
        dd = np.where(peak > 0, (values / peak - 1.0) * 100.0, 0.0)
    return np.where(np.isfinite(dd), dd, 0.0)


def _value_formatter(values: np.ndarray) -> FuncFormatter:
    finite = values[np.isfinite(values)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    if span <= 0:
        span = abs(float(finite[0])) if finite.size else 1.0
    decimals = int(min(6, max(0, 2 - math.floor(math.log10(span))))) if span > 0 else 2
    return FuncFormatter(lambda x, _pos: f"{x:,.{decimals}f}")


def _scaled_benchmark(benchmark: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    if benchmark.shape != values.shape:
        raise ValueError(
            f"benchmark has {benchmark.shape[0]} points but values has {values.shape[0]}"
        )
    idx = np.flatnonzero(np.isfinite(benchmark) & (benchmark != 0))
    start_idx = np.flatnonzero(np.isfinite(values))
    if idx.size == 0 or start_idx.size == 0:
        return None
    return benchmark / benchmark[idx[0]] * values[start_idx[0]]


def _return_label(name: str, series: np.ndarray) -> str:
    finite = series[np.isfinite(series)]
    if finite.size < 1 or finite[0] == 0:
        return name
    return f"{name} ({(finite[-1] / finite[0] - 1.0) * 100.0:+.2f}%)"


def render_equity_chart(
    dates: np.ndarray,
    values: np.ndarray,
    path: Path,
    *,
    title: str,
    benchmark: np.ndarray | None = None,
) -> Path:
    """Write a ~1200x700 PNG: equity (and optional benchmark) on top, drawdown % below.

    ``dates`` are datetime64 (or anything numpy converts to it), ``values`` the portfolio value
    per date. ``benchmark`` (same length, e.g. the buy-and-hold close series) is rescaled to
    start at the first portfolio value. Returns ``path``.
    """
    path = Path(path)
    x = np.asarray(dates).astype("datetime64[us]")
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"dates {x.shape} and values {y.shape} must be 1-d of the same length")
    bench = None
    if benchmark is not None:
        bench = _scaled_benchmark(np.asarray(benchmark, dtype=np.float64), y)
    dd = _drawdown_pct(y)

    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.suptitle(title, fontsize=14, fontweight="bold")

    if y.size == 0:
        ax_eq.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_eq.transAxes)
        ax_eq.set_yticks([])
        ax_dd.set_yticks([])
        ax_dd.set_xticks([])
    else:
        series = [y, dd] if bench is None else [y, dd, bench]
        keep = _decimation_index(series, MAX_POINTS)
        xn = mdates.date2num(x[keep])
        width = 1.6 if keep.size < 1000 else 1.0
        marker = "o" if y.size <= 2 else None
        ax_eq.plot(
            xn,
            y[keep],
            color=_EQUITY_COLOR,
            lw=width,
            marker=marker,
            label=_return_label("Strategy", y),
        )
        if bench is not None:
            ax_eq.plot(
                xn,
                bench[keep],
                color=_BENCH_COLOR,
                lw=width,
                ls="--",
                marker=marker,
                label=_return_label("Buy & hold", bench),
            )
        ax_eq.legend(loc="best", framealpha=0.85, edgecolor="none", fontsize=10)
        ax_eq.yaxis.set_major_formatter(
            _value_formatter(y if bench is None else np.concatenate((y, bench)))
        )

        ddk = dd[keep]
        ax_dd.fill_between(xn, ddk, 0.0, color=_DD_COLOR, alpha=0.35, lw=0)
        ax_dd.plot(xn, ddk, color=_DD_COLOR, lw=0.8, marker=marker)
        low = float(ddk.min())
        ax_dd.set_ylim(low * 1.1 if low < 0 else -1.0, 0.5 if low > -5 else abs(low) * 0.05)
        ax_dd.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=None))

        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        ax_dd.xaxis.set_major_locator(locator)
        ax_dd.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if xn.size == 1 or xn[0] == xn[-1]:
            ax_dd.set_xlim(xn[0] - 1.0, xn[-1] + 1.0)
        else:
            ax_dd.set_xlim(xn[0], xn[-1])

    ax_eq.set_ylabel("Portfolio value", fontsize=11)
    ax_dd.set_ylabel("Drawdown", fontsize=11)
    for ax in (ax_eq, ax_dd):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path
