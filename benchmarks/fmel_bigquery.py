"""The FMEL store on BigQuery (bqemulator here) beside the local Parquet store, alternating.

    python benchmarks/fmel_bigquery.py [--rows 20000] [--ingest-rows 50000] [--pairs 5]

- ``/fmel`` reply: what the desk reads for ``/fmel RUN`` (the summary, the last 10 decisions
  that ordered or traded) of a ``--rows`` run, and the same with ``verify`` (every row read
  back and the chain recomputed): medians per store. Slack's acknowledgement allows 3 s.
- ingest of a ``--ingest-rows`` backtest record (one Parquet load job on BigQuery): medians.

bqemulator runs on this machine (DuckDB), so these are the emulator's figures, not
BigQuery's: they show what our adapter costs (queries built, rows converted), not Google's
latency, and the emulator reports no bytes scanned.

- bytes: what BigQuery would bill for one ``/fmel`` of the ``--rows`` run and store for it,
  worked out from the run's own rows by BigQuery's published sizes (``logical_bytes``): a
  query reads the columns it names in the blocks it scans, at least 10 MB billed a query.
  With the clustering (the reads filter on ``agent_id, run_id``) the blocks scanned are the
  run's; without it, every block of the table: ``--table-runs`` runs like this one. Real
  pruning is by block, so these are the two ends, not a measurement.
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
from infra.gcp.bigquery import BigQueryFmelStore, logical_bytes
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


MB, GIB, TIB = 1e6, 2**30, 2**40
MIN_BILLED = 10 * MB  # per query (on-demand)
USD_PER_TIB_SCANNED = 6.25  # on-demand, US multi-region
USD_PER_GIB_MONTH = 0.02  # active logical storage


def bytes_figures(run: Record, table_runs: int) -> str:
    """The bytes one /fmel reads and one backtest stores, clustered and not."""
    decisions, summary = run.decisions, run.summary
    run_bytes = logical_bytes(decisions)  # the decisions query names every column
    summary_bytes = logical_bytes(summary)
    agent_bytes = logical_bytes(summary, ["agent_id", "run_id"])
    recorded_bytes = logical_bytes(summary, ["run_id", "recorded_at"])  # fmel_run_id's list
    clustered = [agent_bytes, summary_bytes, run_bytes]  # the summaries are clustered by run
    unclustered = [x * table_runs for x in clustered]
    # the list of recorded runs scans the whole summaries table either way
    clustered.append(recorded_bytes * table_runs)
    unclustered.append(recorded_bytes * table_runs)

    def billed(scans: list[int]) -> float:
        return sum(max(MIN_BILLED, x) for x in scans)

    def usd(x: float) -> str:
        return f"${x / TIB * USD_PER_TIB_SCANNED:.5f}"

    per_row = run_bytes / decisions.num_rows
    stored = (run_bytes + summary_bytes) / GIB
    return "\n".join([
        f"   bytes: {decisions.num_rows} decisions are {run_bytes / MB:.1f} MB "
        f"({per_row:.0f} B a row); stored, {stored * USD_PER_GIB_MONTH * 100:.3f} cents a month",
        f"          one /fmel, clustered: reads {sum(clustered) / MB:.1f} MB, bills "
        f"{billed(clustered) / MB:.0f} MB ({usd(billed(clustered))})",
        f"          one /fmel, not clustered, {table_runs} such runs in the table: reads "
        f"{sum(unclustered) / GIB:.2f} GiB ({usd(billed(unclustered))})",
    ])  # fmt: skip


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--ingest-rows", type=int, default=50_000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--table-runs", type=int, default=1000)
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
        print(bytes_figures(small, args.table_runs))


if __name__ == "__main__":
    main()
