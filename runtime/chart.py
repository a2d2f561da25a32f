"""Equity / drawdown / exposure chart rendered headless with matplotlib's Agg canvas.

Only the object API is used (``Figure`` + ``FigureCanvasAgg``): no pyplot global state and no
``cerebro.plot()`` (which wants a GUI backend), so this is safe in worker threads and on
machines without a display. :func:`equity_figure` builds the figure (what tests inspect);
:func:`render_equity_chart` writes it as a PNG.

What the chart says, so it cannot be misread:

- the strategy's value, with its return and the share of bars it held a position
  ("Strategy (+4.50%, invested 31% of the time)"), and trade entries (green ▲) and exits
  (red ▼) on the bars where they filled; more than :data:`MAX_MARKERS` are not drawn (they
  would smear into a band), and the chart says so;
- buy and hold of the same data, equal weights, *fully invested* from the first bar, rescaled
  to the same starting value, labelled as such: a strategy that holds 10 % of its cash in the
  market is not compared with it without saying so;
- the drawdown from the running peak, in %;
- the share of the portfolio invested at each bar, ``|value - cash| / value`` (a short counts
  like a long), clipped to 0..200 %.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

__all__ = ["MAX_MARKERS", "MAX_POINTS", "equity_figure", "exposure", "render_equity_chart"]

#: Series longer than this are decimated (min/max per bucket) before drawing.
MAX_POINTS = 4000
#: Trade markers (entries and exits together) drawn at most; beyond, none are.
MAX_MARKERS = 300

_WIDTH_IN, _HEIGHT_IN, _DPI = 12.0, 7.0, 100
_EQUITY_COLOR = "#1f5fa8"
_BENCH_COLOR = "#8a8a8a"
_DD_COLOR = "#c0392b"
_EXPOSURE_COLOR = "#7b5ea7"
_ENTRY_COLOR = "#1e8449"
_EXIT_COLOR = "#c0392b"
_MAX_EXPOSURE = 2.0


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


def _return_label(name: str, series: np.ndarray, *notes: str) -> str:
    finite = series[np.isfinite(series)]
    figures = list(notes)
    if finite.size >= 1 and finite[0] != 0:
        figures.insert(0, f"{(finite[-1] / finite[0] - 1.0) * 100.0:+.2f}%")
    return f"{name} ({', '.join(figures)})" if figures else name


def exposure(values: np.ndarray, cash: np.ndarray) -> np.ndarray:
    """The share of the portfolio in positions per bar, ``|value - cash| / value`` (long or
    short alike), clipped to 0..2; 0 where the value is not positive or not finite."""
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(cash, dtype=np.float64)
    if c.shape != v.shape:
        raise ValueError(f"cash has {c.shape[0]} points but values has {v.shape[0]}")
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.abs(v - c) / v
    share = np.where((v > 0) & np.isfinite(share), share, 0.0)
    return np.clip(share, 0.0, _MAX_EXPOSURE)


def _bars_of(x: np.ndarray, when: np.ndarray | None) -> np.ndarray:
    """Indices of the bars at (or, between bars, right after) the datetimes ``when``."""
    if when is None or x.size == 0:
        return np.empty(0, dtype=np.int64)
    stamps = np.asarray(when).astype("datetime64[us]")
    return np.clip(np.searchsorted(x, stamps, side="left"), 0, x.size - 1)


def render_equity_chart(
    dates: np.ndarray,
    values: np.ndarray,
    path: Path,
    *,
    title: str,
    benchmark: np.ndarray | None = None,
    cash: np.ndarray | None = None,
    entries: np.ndarray | None = None,
    exits: np.ndarray | None = None,
    invested_pct: float | None = None,
) -> Path:
    """Write a ~1200x700 PNG of :func:`equity_figure` to ``path``; returns ``path``."""
    path = Path(path)
    fig = equity_figure(
        dates,
        values,
        title=title,
        benchmark=benchmark,
        cash=cash,
        entries=entries,
        exits=exits,
        invested_pct=invested_pct,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def equity_figure(
    dates: np.ndarray,
    values: np.ndarray,
    *,
    title: str,
    benchmark: np.ndarray | None = None,
    cash: np.ndarray | None = None,
    entries: np.ndarray | None = None,
    exits: np.ndarray | None = None,
    invested_pct: float | None = None,
) -> Figure:
    """Equity (and the buy-and-hold benchmark, trade markers) on top, drawdown % below, and
    with ``cash`` the share invested at the bottom.

    ``dates`` are datetime64 (or anything numpy converts to it), ``values`` the portfolio value
    per date. ``benchmark`` (same length, e.g. the buy-and-hold curve) is rescaled to start at
    the first portfolio value. ``cash`` (same length) is the broker's cash per date.
    ``entries`` / ``exits`` are the datetimes of the bars where trades opened / closed.
    ``invested_pct`` (the result's ``exposure_pct``) goes into the strategy's label.
    """
    x = np.asarray(dates).astype("datetime64[us]")
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"dates {x.shape} and values {y.shape} must be 1-d of the same length")
    bench = None
    if benchmark is not None:
        bench = _scaled_benchmark(np.asarray(benchmark, dtype=np.float64), y)
    share = None if cash is None else exposure(y, cash)
    dd = _drawdown_pct(y)

    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ratios = [3, 1] if share is None else [3, 1, 1]
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    ax_eq, ax_dd = axes[0], axes[1]
    ax_ex = axes[2] if share is not None else None
    fig.suptitle(title, fontsize=14, fontweight="bold")

    if y.size == 0:
        ax_eq.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_eq.transAxes)
        for ax in axes:
            ax.set_yticks([])
        axes[-1].set_xticks([])
    else:
        series = [s for s in (y, dd, bench, share) if s is not None]
        keep = _decimation_index(series, MAX_POINTS)
        xn = mdates.date2num(x[keep])
        width = 1.6 if keep.size < 1000 else 1.0
        marker = "o" if y.size <= 2 else None
        invested = [] if invested_pct is None else [f"invested {invested_pct:.0f}% of the time"]
        ax_eq.plot(
            xn,
            y[keep],
            color=_EQUITY_COLOR,
            lw=width,
            marker=marker,
            label=_return_label("Strategy", y, *invested),
        )
        if bench is not None:
            ax_eq.plot(
                xn,
                bench[keep],
                color=_BENCH_COLOR,
                lw=width,
                ls="--",
                marker=marker,
                label=_return_label("Buy & hold, fully invested", bench),
            )
        _trade_markers(ax_eq, x, y, _bars_of(x, entries), _bars_of(x, exits))
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

        if ax_ex is not None and share is not None:
            shown = share[keep] * 100.0
            ax_ex.fill_between(xn, shown, 0.0, color=_EXPOSURE_COLOR, alpha=0.35, lw=0)
            ax_ex.plot(xn, shown, color=_EXPOSURE_COLOR, lw=0.8, marker=marker)
            ax_ex.set_ylim(0.0, max(100.0, float(shown.max())) * 1.05)
            ax_ex.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))

        bottom = axes[-1]
        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if xn.size == 1 or xn[0] == xn[-1]:
            bottom.set_xlim(xn[0] - 1.0, xn[-1] + 1.0)
        else:
            bottom.set_xlim(xn[0], xn[-1])

    ax_eq.set_ylabel("Portfolio value", fontsize=11)
    ax_dd.set_ylabel("Drawdown", fontsize=11)
    if ax_ex is not None:
        ax_ex.set_ylabel("Invested", fontsize=11)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig


def _trade_markers(
    ax: Any, x: np.ndarray, y: np.ndarray, opened: np.ndarray, closed: np.ndarray
) -> None:
    """Entries ▲ and exits ▼ on the equity line at their bars; when there are more than
    :data:`MAX_MARKERS`, a note instead (hundreds of markers only smear the line)."""
    count = opened.size + closed.size
    if count == 0:
        return
    if count > MAX_MARKERS:
        note = f"{opened.size:,} entries and {closed.size:,} exits: too many to mark"
        ax.text(0.01, 0.02, note, transform=ax.transAxes, fontsize=9, color=_BENCH_COLOR)
        return
    kinds = ((opened, "^", _ENTRY_COLOR, "Trade entry"), (closed, "v", _EXIT_COLOR, "Trade exit"))
    for bars, shape, color, name in kinds:
        if bars.size:
            ax.plot(
                mdates.date2num(x[bars]),
                y[bars],
                ls="none",
                marker=shape,
                ms=7,
                color=color,
                markeredgecolor="white",
                markeredgewidth=0.6,
                label=f"{name} ({bars.size:,})",
                zorder=3,
            )
