"""Percentiles the latency benchmarks quote (imported by the scripts next to it)."""

from __future__ import annotations


def p99(xs: list[float]) -> float:
    """The 99th percentile, nearest rank."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
