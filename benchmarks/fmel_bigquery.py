"""The FMEL store on BigQuery (bqemulator here) beside the local Parquet store, alternating.

    python benchmarks/fmel_bigquery.py [--rows 20000] [--ingest-rows 50000] [--pairs 5]

- ``/fmel`` reply: what the desk reads for ``/fmel RUN`` (the summary, the last 10 decisions
  that ordered or traded) of a ``--rows`` run, and the same with ``verify`` (every row read
  back and the chain recomputed): medians per store. Slack's acknowledgement allows 3 s.
- ingest of a ``--ingest-rows`` backtest record (one Parquet load job on BigQuery): medians.

bqemulator runs on this machine (DuckDB), so these are the emulator's figures, not
BigQuery's: they show what our adapter costs (queries built, rows converted), not Google's
latency, and the emulator reports no bytes scanned.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import backtrader as bt

from infra.emulators.bigquery import BqEmulator, new_dataset
from infra.gcp.bigquery import BigQueryFmelStore
from infra.local.fmel import LocalFmelStore
from runtime.data import synthetic_frame
from runtime.fmel import FMELRecorder
from workers.collect import Record, Trusted, read_record
from workers.ports import FmelStore


class Trader(bt.Strategy):  # type: ignore[misc]
    """Orders now and then, so a tail of acting decisions exists to be found."""

    def __init__(self) -> None:
        self.fast = bt.ind.SMA(period=10)
        self.slow = bt.ind.SMA(period=30)
        self.cross = bt.ind.CrossOver(self.fast, self.slow)

    def next(self) -> None:
        if self.cross[0] > 0 and not self.position:
            self.buy()
        elif self.cross[0] < 0 and self.position:
            self.close()


def record(folder: Path, run_id: str, bars: int) -> Record:
    cerebro = bt.Cerebro()
    frame = synthetic_frame(bars, seed=11, start="1900-01-01", freq="D")
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="SYN")
    cerebro.addstrategy(Trader)
    cerebro.addanalyzer(FMELRecorder, out=str(folder / run_id / "fmel"), run_id=run_id,
                        agent_id="bench", agent_version="1", user_id="U1")  # fmt: skip
    cerebro.run()
    trusted = Trusted(
        run_id=run_id, agent_id="bench", agent_version="1", user_id="U1",
        agent_sha256=None, parameters={}, data_checks=[], symbols=["SYN"],
    )  # fmt: skip
    found = read_record(folder / run_id, trusted)
    assert found is not None
    return found


def fmel_reply(store: FmelStore, run_id: str, verify: bool) -> None:
    """What ``Desk.fmel`` reads for one ``/fmel`` answer."""
    acting = store.decisions(run_id, last=10, acting_only=True)
    assert acting, "the run has no acting decisions"
    assert store.summary(run_id) is not None
    if verify:
        assert store.verify(run_id).ok


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--ingest-rows", type=int, default=50_000)
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="bqb-", dir="/tmp") as tmp, BqEmulator() as bq:
        folder = Path(tmp)
        stores: dict[str, FmelStore] = {
            "local": LocalFmelStore(folder / "local"),
            "bigquery": BigQueryFmelStore(bq.client(), new_dataset()),
        }
        print(f"recording a {args.rows}-bar and a {args.ingest_rows}-bar run…", file=sys.stderr)
        small, big = record(folder, "reply", args.rows), record(folder, "ingest", args.ingest_rows)
        for store in stores.values():
            store.ingest("reply", small)
        reply: dict[str, list[float]] = {k: [] for k in stores}
        verified: dict[str, list[float]] = {k: [] for k in stores}
        ingest: dict[str, list[float]] = {k: [] for k in stores}
        for _ in range(args.pairs):
            for name, store in stores.items():  # alternating: local, bigquery, local, …
                reply[name].append(timed(lambda s=store: fmel_reply(s, "reply", False)))
                verified[name].append(timed(lambda s=store: fmel_reply(s, "reply", True)))
                ingest[name].append(timed(lambda s=store: s.ingest("ingest", big)))
        for name in stores:
            print(f"{name:>8}: /fmel reply ({args.rows} rows) median "
                  f"{med(reply[name]) * 1000:.0f} ms, with verify {med(verified[name]):.2f} s; "
                  f"ingest of {args.ingest_rows} rows median {med(ingest[name]):.2f} s "
                  f"({args.pairs} each)")  # fmt: skip


if __name__ == "__main__":
    main()
