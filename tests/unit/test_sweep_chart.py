"""render_heatmap: a headless PNG for any grid a sweep makes, within a bounded size."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from workers.sweep_chart import MAX_PIXELS, heatmap_figure, render_heatmap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height: with PIL when it is installed (it reads the whole image), else from
    the IHDR header."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    header = struct.unpack(">II", data[16:24])
    try:
        from PIL import Image
    except ImportError:
        return header
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == header
        return image.size


def draw(path: Path, **over: Any) -> Path:
    kwargs: dict[str, Any] = {
        "x_name": "fast",
        "x_values": [5, 10, 15],
        "y_name": "slow",
        "y_values": [20, 40],
        "z": [[1.2, 0.4, -0.3], [0.9, 1.7, 0.1]],
        "metric": "sharpe",
        "higher_is_better": True,
        "title": "sma_cross v3 · Sharpe by fast and slow",
        "best": (1, 1),
        **over,
    }
    return render_heatmap(path, **kwargs)


def texts(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_writes_a_png(tmp_path: Path) -> None:
    out = draw(tmp_path / "sub" / "heatmap.png")
    assert out == tmp_path / "sub" / "heatmap.png"
    width, height = png_size(out)
    assert 400 <= width <= MAX_PIXELS and 300 <= height <= MAX_PIXELS
    assert out.stat().st_size > 10_000  # real content


def test_never_loads_pyplot_or_a_gui_backend(tmp_path: Path) -> None:
    """Checked in a fresh interpreter: this one may have loaded pyplot for other tests."""
    script = (
        "import sys; from pathlib import Path; from workers.sweep_chart import render_heatmap; "
        "render_heatmap(Path(sys.argv[1]), x_name='a', x_values=[1], y_name='b', y_values=[1], "
        "z=[[1.0]], metric='m', higher_is_better=True, title='t'); "
        "bad = [m for m in ('matplotlib.pyplot', 'tkinter', 'matplotlib.backends.backend_tkagg') "
        "if m in sys.modules]; print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "one.png")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MPLBACKEND": "TkAgg"},  # what a desktop may set: it must not matter
    )
    assert done.stdout.strip() == "[]"
    png_size(tmp_path / "one.png")


def test_cells_carry_two_decimals_and_failed_ones_a_dash(tmp_path: Path) -> None:
    z = [[1.234, None, -0.5], [None, 2.0, float("nan")]]
    fig = heatmap_figure(
        x_name="fast",
        x_values=[5, 10, 15],
        y_name="slow",
        y_values=[20, 40],
        z=z,
        metric="sharpe",
        higher_is_better=True,
        title="t",
    )
    assert sorted(texts(fig)) == sorted(["1.23", "—", "-0.50", "—", "2.00", "—"])
    png_size(draw(tmp_path / "none.png", z=z, best=None))


def test_all_failed_still_draws(tmp_path: Path) -> None:
    png_size(draw(tmp_path / "all.png", z=[[None] * 3, [None] * 3], best=None))


def test_green_is_good_whichever_way_the_metric_points() -> None:
    """The best value is drawn green: high for Sharpe, low for drawdown."""

    def best_colour(higher: bool) -> str:
        fig = heatmap_figure(
            x_name="a",
            x_values=[1, 2],
            y_name="b",
            y_values=[1],
            z=[[1.0, 9.0]],
            metric="m",
            higher_is_better=higher,
            title="t",
        )
        image = fig.axes[0].images[0]
        cell = 1 if higher else 0
        return to_hex(image.cmap(image.norm(image.get_array()[0, cell])))

    for higher in (True, False):
        r, g, b = (int(best_colour(higher)[i : i + 2], 16) for i in (1, 3, 5))
        assert g > r and g > b


def test_the_best_cell_is_outlined() -> None:
    fig = heatmap_figure(
        x_name="a",
        x_values=[1, 2, 3],
        y_name="b",
        y_values=[1, 2],
        z=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        metric="m",
        higher_is_better=True,
        title="t",
        best=(1, 2),
    )
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1 and boxes[0].get_xy() == (1.5, 0.5)


def test_a_single_row(tmp_path: Path) -> None:
    out = draw(tmp_path / "row.png", y_name="only", y_values=[14], z=[[0.1, 0.2, 0.3]], best=(0, 2))
    width, height = png_size(out)
    assert width >= height  # a strip, not a tower


def test_text_and_bool_ticks_are_their_values(tmp_path: Path) -> None:
    fig = heatmap_figure(
        x_name="trend",
        x_values=[True, False],
        y_name="mode",
        y_values=["sma", "ema", "a-very-long-mode-name"],
        z=[[1.0, 2.0], [3.0, None], [0.5, 0.25]],
        metric="return",
        higher_is_better=True,
        title="t",
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["true", "false"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sma", "ema", "a-very-long-m…"]
    assert ax.get_xlabel() == "trend" and ax.get_ylabel() == "mode"
    assert fig.axes[1].get_ylabel() == "return"  # the colour bar
    png_size(draw(tmp_path / "text.png", x_values=["a", "b", "c"], y_values=[0.5, 1.5]))


def test_a_30_by_30_grid_stays_within_bounds(tmp_path: Path) -> None:
    z = [
        [(r * 31 + c) % 17 / 4 - 2 if (r + c) % 11 else None for c in range(30)] for r in range(30)
    ]
    out = draw(
        tmp_path / "big.png",
        x_values=list(range(30)),
        y_values=[f"{v / 10:g}" for v in range(30)],
        z=z,
        best=(29, 29),
        metric="drawdown",
        higher_is_better=False,
    )
    width, height = png_size(out)
    assert width <= MAX_PIXELS and height <= MAX_PIXELS
    fig = heatmap_figure(
        x_name="x",
        x_values=list(range(30)),
        y_name="y",
        y_values=list(range(30)),
        z=z,
        metric="m",
        higher_is_better=True,
        title="t",
    )
    assert "0.25" not in texts(fig)  # too many cells to print values in
    assert set(texts(fig)) == {"—"}  # the failed ones are still marked


def test_a_huge_grid_stays_within_bounds(tmp_path: Path) -> None:
    n = 120
    z = [[float(r - c) for c in range(n)] for r in range(n)]
    out = draw(
        tmp_path / "huge.png", x_values=list(range(n)), y_values=list(range(n)), z=z, best=(0, 0)
    )
    width, height = png_size(out)
    assert width <= MAX_PIXELS and height <= MAX_PIXELS


@pytest.mark.parametrize(
    "over",
    [
        {"z": [[1.0, 2.0, 3.0]]},  # one row short
        {"z": [[1.0, 2.0], [3.0, 4.0]]},  # rows too short
        {"z": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]},  # one row too long
        {"x_values": [], "z": [[], []]},
        {"y_values": [], "z": []},
        {"best": (2, 0)},
        {"best": (0, -1)},
    ],
)
def test_a_shape_mismatch_or_empty_grid_raises(tmp_path: Path, over: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        draw(tmp_path / "bad.png", **over)
    assert not (tmp_path / "bad.png").exists()
