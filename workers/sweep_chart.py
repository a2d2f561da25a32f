"""A parameter sweep's heatmap: one metric over two swept parameters, as a PNG.

Drawn headless like ``runtime/chart.py`` (``Figure`` + ``FigureCanvasAgg``, never pyplot):
sweeps run in worker threads on machines without a display.

What the heatmap says, so it cannot be misread:

- green is always good: RdYlGn when higher is better, reversed when lower is (drawdown);
- a combination whose run failed is grey and marked "—", never a colour that reads as a value;
- the best combination is outlined;
- each cell carries its value while the grid is small enough to read (at most
  :data:`ANNOTATE_MAX` on a side); beyond, the colour bar is the key.

The image grows with the grid but never past :data:`MAX_PIXELS` on a side, and tick labels
are thinned so that a 100-value axis still reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["ANNOTATE_MAX", "MAX_PIXELS", "heatmap_figure", "render_heatmap"]

#: Cells carry their value when the grid is at most this many on each side.
ANNOTATE_MAX = 15
#: Neither side of the PNG is larger than this, whatever the grid.
MAX_PIXELS = 1600

_DPI = 100
_CELL_IN = 0.62  # a cell's side while the image has room (a "-1.23" fits at 8 pt)
_MIN_WIDTH_IN, _MIN_HEIGHT_IN = 6.0, 4.0
_MARGIN_W_IN, _MARGIN_H_IN = 3.2, 2.2  # axis labels, ticks, colour bar, title
_MAX_TICKS = 40  # tick labels on an axis at most; beyond, every k-th
_LABEL_CHARS = 14  # a text tick value longer than this is cut with "…"
_FAILED_COLOR = "#bdbdbd"
_BEST_COLOR = "#111111"


def render_heatmap(
    path: Path,
    *,
    x_name: str,
    x_values: Sequence[Any],
    y_name: str,
    y_values: Sequence[Any],
    z: Sequence[Sequence[float | None]],
    metric: str,
    higher_is_better: bool,
    title: str,
    best: tuple[int, int] | None = None,
) -> Path:
    """Write the PNG of :func:`heatmap_figure` to ``path`` (its folder made); returns it."""
    path = Path(path)
    fig = heatmap_figure(
        x_name=x_name,
        x_values=x_values,
        y_name=y_name,
        y_values=y_values,
        z=z,
        metric=metric,
        higher_is_better=higher_is_better,
        title=title,
        best=best,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def heatmap_figure(
    *,
    x_name: str,
    x_values: Sequence[Any],
    y_name: str,
    y_values: Sequence[Any],
    z: Sequence[Sequence[float | None]],
    metric: str,
    higher_is_better: bool,
    title: str,
    best: tuple[int, int] | None = None,
) -> Figure:
    """The heatmap of ``z[row][col]``, the metric for ``y_values[row]`` and
    ``x_values[col]`` (None: that run failed); ``best`` is the (row, col) outlined.

    ``ValueError`` when the grid is empty, ``z`` is not ``len(y_values)`` rows of
    ``len(x_values)`` cells, or ``best`` lies outside it: a caller's mistake, not a chart.
    """
    values = _grid(z, len(x_values), len(y_values))
    if best is not None:
        _check_best(best, values.shape)
    rows, cols = values.shape
    fig = Figure(figsize=_figsize(rows, cols), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize=14, fontweight="bold")

    cmap = colormaps["RdYlGn" if higher_is_better else "RdYlGn_r"].with_extremes(bad=_FAILED_COLOR)
    norm = _norm(values)
    masked = np.ma.masked_invalid(values)
    image = ax.imshow(masked, cmap=cmap, norm=norm, origin="lower", aspect="auto")
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(metric, fontsize=11)
    bar.ax.tick_params(labelsize=10)

    _ticks(ax, x_values, y_values)
    ax.set_xlabel(x_name, fontsize=11)
    ax.set_ylabel(y_name, fontsize=11)
    ax.tick_params(labelsize=_tick_size(max(rows, cols)))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if max(rows, cols) <= ANNOTATE_MAX:
        _annotate(ax, values, cmap, norm)
    else:
        _mark_failed(ax, values)
    if best is not None:
        _outline(ax, best, max(rows, cols))
    return fig


def _grid(z: Sequence[Sequence[float | None]], cols: int, rows: int) -> np.ndarray:
    """``z`` as a float array, NaN where a run failed (None, or a value that is not finite)."""
    if rows == 0 or cols == 0:
        raise ValueError("the grid is empty: both parameters need at least one value")
    if len(z) != rows:
        raise ValueError(f"z has {len(z)} rows but there are {rows} y values")
    for i, row in enumerate(z):
        if len(row) != cols:
            raise ValueError(f"row {i} of z has {len(row)} cells but there are {cols} x values")
    return np.array([[_cell(v) for v in row] for row in z], dtype=np.float64)


def _cell(v: float | None) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    number = float(v)
    return number if math.isfinite(number) else math.nan


def _check_best(best: tuple[int, int], shape: tuple[int, ...]) -> None:
    row, col = best
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(f"best cell {best} is outside the {shape[0]}×{shape[1]} grid")


def _figsize(rows: int, cols: int) -> tuple[float, float]:
    """Room for each cell while that stays within :data:`MAX_PIXELS`; smaller cells beyond."""
    most = MAX_PIXELS / _DPI
    width = min(most, max(_MIN_WIDTH_IN, _MARGIN_W_IN + _CELL_IN * cols))
    height = min(most, max(_MIN_HEIGHT_IN, _MARGIN_H_IN + _CELL_IN * rows))
    return width, height


def _norm(values: np.ndarray) -> Normalize:
    """The colour scale over the values that exist; a placeholder when every run failed."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Normalize(vmin=0.0, vmax=1.0)
    low, high = float(finite.min()), float(finite.max())
    if low == high:  # one value everywhere: the middle colour, not the bad end
        pad = abs(low) * 0.05 or 1.0
        return Normalize(vmin=low - pad, vmax=high + pad)
    return Normalize(vmin=low, vmax=high)


def _ticks(ax: Any, x_values: Sequence[Any], y_values: Sequence[Any]) -> None:
    """Every value as its text while they fit; every k-th beyond :data:`_MAX_TICKS`."""
    xs, ys = _every(len(x_values)), _every(len(y_values))
    ax.set_xticks(xs, [_label(x_values[i]) for i in xs])
    ax.set_yticks(ys, [_label(y_values[i]) for i in ys])
    long_x = max((len(_label(x_values[i])) for i in xs), default=0)
    if long_x > 4 or len(xs) > 12:
        ax.tick_params(axis="x", labelrotation=45)
        for text in ax.get_xticklabels():
            text.set_horizontalalignment("right")
            text.set_rotation_mode("anchor")


def _every(n: int) -> list[int]:
    step = max(1, math.ceil(n / _MAX_TICKS))
    return list(range(0, n, step))


def _label(value: Any) -> str:
    """A parameter value as the command takes it: ``true``, ``0.5``, ``20``, ``ema``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value).replace("\n", " ")
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _tick_size(side: int) -> float:
    return 10.0 if side <= 15 else 8.0 if side <= 40 else 6.0


def _annotate(ax: Any, values: np.ndarray, cmap: Any, norm: Normalize) -> None:
    """Each cell's value (two decimals), dark or light for its colour; "—" where it failed."""
    rows, cols = values.shape
    size = 9.0 if max(rows, cols) <= 8 else 7.5
    for r in range(rows):
        for c in range(cols):
            v = values[r, c]
            if math.isnan(v):
                ax.text(c, r, "—", ha="center", va="center", fontsize=size, color="#555555")
                continue
            color = "white" if _luminance(cmap(norm(v))) < 0.45 else "black"
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=size, color=color)


def _mark_failed(ax: Any, values: np.ndarray) -> None:
    """Too many cells to print values: failed ones still get their "—" while they are few
    enough to read (the grey says it on its own beyond)."""
    rows, cols = np.nonzero(np.isnan(values))
    if rows.size == 0 or max(values.shape) > 2 * _MAX_TICKS:
        return
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        ax.text(c, r, "—", ha="center", va="center", fontsize=6, color="#555555")


def _luminance(rgba: Any) -> float:
    r, g, b = to_rgb(rgba)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _outline(ax: Any, best: tuple[int, int], side: int) -> None:
    row, col = best
    width = 2.5 if side <= ANNOTATE_MAX else 1.5
    box = Rectangle((col - 0.5, row - 0.5), 1.0, 1.0, fill=False, lw=width, ec=_BEST_COLOR)
    ax.add_patch(box)
