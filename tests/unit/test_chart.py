"""render_equity_chart: headless PNG output for normal, long and degenerate series."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from runtime.chart import MAX_POINTS, _decimation_index, render_equity_chart

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
