"""FMELRecorder overhead: the same backtest with and without the recorder, alternating.

    python benchmarks/fmel_overhead.py [--bars 50000] [--pairs 9] [--exactbars 0]
    python benchmarks/fmel_overhead.py --against OTHER_VENV/bin/python [--pairs 9]

Prints the median of the pairwise wall-time ratios (with / without; target <= 1.10 in
backtrader's default mode), the same for CPU time (which also counts the recorder's
Parquet writer thread, overlapped with the backtest in wall time), and the peak-memory
ratio of one run of each in a fresh process (target <= 1.3).

``--against PYTHON`` compares two dependency sets side by side: each pair runs in a fresh
process of this interpreter and of the other one (a virtual environment with other numpy,
pandas, pyarrow… and this checkout installed), alternating, and the medians of both are
printed with their package versions.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import backtrader as bt

from runtime.data import synthetic_frame
from runtime.fmel import FMELRecorder


class Bench(bt.Strategy):  # type: ignore[misc]
    """A typical agent: two averages, an RSI, reads of the current and previous close."""

    params = (("fast", 10), ("slow", 30))

    def __init__(self) -> None:
        self.fast = bt.ind.SMA(period=self.p.fast)
        self.slow = bt.ind.SMA(period=self.p.slow)
        self.cross = bt.ind.CrossOver(self.fast, self.slow)
        self.rsi = bt.ind.RSI(period=14)

    def next(self) -> None:
        close = self.data.close
        if not self.position:
            if self.cross[0] > 0 and close[0] > close[-1] and self.rsi[0] < 70:
                self.buy()
        elif self.cross[0] < 0 or self.rsi[0] > 80:
            self.close()


def run_once(bars: int, record: bool, exactbars: int, out: str) -> tuple[float, float, float]:
    frame = synthetic_frame(bars, seed=7, start="1900-01-01", freq="D")
    cerebro = bt.Cerebro(exactbars=exactbars)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="SYN")
    cerebro.addstrategy(Bench)
    if record:
        cerebro.addanalyzer(FMELRecorder, out=out)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    cerebro.run()
    return time.process_time() - cpu0, time.perf_counter() - wall0, cerebro.broker.getvalue()


def peak_rss_mb(bars: int, record: bool, exactbars: int) -> float:
    """Peak RSS of a fresh process that runs one backtest (this script with --child)."""
    cmd = [sys.executable, __file__, "--child", str(int(record)), "--bars", str(bars)]
    out = subprocess.run([*cmd, "--exactbars", str(exactbars)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


VERSIONS = (
    "import numpy, pandas, pyarrow; "
    "print(numpy.__version__, pandas.__version__, pyarrow.__version__)"
)


def one_pair(bars: int, exactbars: int) -> dict[str, float]:
    """Warm up, then one run without and one with the recorder (for ``--against``)."""
    out = tempfile.mkdtemp(prefix="fmel-bench-")
    run_once(2_000, True, exactbars, out)
    _, without, v0 = run_once(bars, False, exactbars, out)
    _, with_, v1 = run_once(bars, True, exactbars, out)
    assert v0 == v1, "recording changed the final value"
    return {"without": without, "with": with_}


def compare(other: str, pairs: int, bars: int, exactbars: int) -> None:
    pythons = {"this": sys.executable, "other": other}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in pythons}
    for i in range(pairs):
        for name in list(pythons)[:: 1 if i % 2 == 0 else -1]:
            cmd = [pythons[name], __file__, "--one-pair", "--bars", str(bars)]
            done = subprocess.run([*cmd, "--exactbars", str(exactbars)], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            got[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = statistics.median
    for name, python in pythons.items():
        versions = subprocess.run([python, "-c", VERSIONS], capture_output=True, text=True)
        runs = got[name]
        ratio = med(r["with"] / r["without"] for r in runs)
        print(
            f"{name:5} numpy/pandas/pyarrow {versions.stdout.strip()}: without "
            f"{med(r['without'] for r in runs):.3f}s with {med(r['with'] for r in runs):.3f}s "
            f"wall ratio {ratio:.3f}  ({pairs} pairs)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=50_000)
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--exactbars", type=int, default=0)
    ap.add_argument("--against", default=None, help="another venv's python: compare the two")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-pair", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.against:
        compare(args.against, args.pairs, args.bars, args.exactbars)
        return
    if args.one_pair:
        print(json.dumps(one_pair(args.bars, args.exactbars)))
        return
    if args.child is not None:
        run_once(args.bars, bool(args.child), args.exactbars, tempfile.mkdtemp())
        print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        return
    out = tempfile.mkdtemp(prefix="fmel-bench-")
    run_once(2_000, True, args.exactbars, out)  # warm caches and imports
    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    ratios: dict[str, list[float]] = {"cpu": [], "wall": []}
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {}
        for record in order:
            c, w, value = run_once(args.bars, record, args.exactbars, out)
            cpu[record].append(c)
            wall[record].append(w)
            got[record] = (c, w, value)
        assert got[True][2] == got[False][2], "recording changed the final value"
        ratios["cpu"].append(got[True][0] / got[False][0])
        ratios["wall"].append(got[True][1] / got[False][1])
    mem = {rec: peak_rss_mb(args.bars, rec, args.exactbars) for rec in (False, True)}
    med = statistics.median
    print(f"bars={args.bars} pairs={args.pairs} exactbars={args.exactbars}")
    print(f"cpu  median without={med(cpu[False]):.3f}s with={med(cpu[True]):.3f}s")
    print(f"wall median without={med(wall[False]):.3f}s with={med(wall[True]):.3f}s")
    per_bar = (med(cpu[True]) - med(cpu[False])) / args.bars * 1e6
    print(f"recorder cost per bar (cpu): {per_bar:.2f} us")
    print(f"median pairwise wall-time ratio: {med(ratios['wall']):.3f}  (target <= 1.10)")
    print(f"median pairwise cpu-time ratio:  {med(ratios['cpu']):.3f}")
    print(
        f"peak RSS without={mem[False]:.1f} MB with={mem[True]:.1f} MB "
        f"ratio={mem[True] / mem[False]:.3f}  (target <= 1.30)"
    )


if __name__ == "__main__":
    main()
