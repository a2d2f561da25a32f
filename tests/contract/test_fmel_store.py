"""The FmelStore contract: the in-memory fake, the local Parquet store and BigQuery (on a real
bqemulator) behave the same.

Records come the way every run's do: a real backtrader run recorded by FMELRecorder into a
folder, read back and verified by the trusted collect step, then ingested.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import backtrader as bt
import pytest

from infra.local.fmel import LocalFmelStore
from runtime.data import synthetic_frame
from runtime.fmel import FMELRecorder
from tests.bq_server import BqEmulator, bq_server_fixture, new_dataset  # noqa: F401
from tests.fakes import InMemoryFmelStore
from workers.collect import Record, Trusted, read_record
from workers.ports import FmelStore


class EveryFifthBar(bt.Strategy):  # type: ignore[misc]
    def next(self) -> None:
        if len(self) % 5 == 0:
            self.close() if self.position else self.buy()


def record_of(tmp_path: Path, run_id: str, bars: int = 60) -> Record:
    """A run's verified record, as the trusted side gets it out of a box."""
    box = tmp_path / run_id
    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.PandasData(dataname=synthetic_frame(bars, seed=3)), name="SYN")
    cerebro.addstrategy(EveryFifthBar)
    cerebro.addanalyzer(FMELRecorder, out=str(box / "fmel"), run_id=run_id, agent_id="a",
                        agent_version="1", user_id="U1")  # fmt: skip
    cerebro.run()
    trusted = Trusted(
        run_id=run_id, agent_id="a", agent_version="1", user_id="U1",
        agent_sha256=None, parameters={}, data_checks=[], symbols=["SYN"],
    )  # fmt: skip
    record = read_record(box, trusted)
    assert record is not None
    return record


@pytest.fixture(params=["memory", "local", "bigquery"])
def fmel(request: pytest.FixtureRequest, tmp_path: Path) -> FmelStore:
    if request.param == "memory":
        return InMemoryFmelStore()
    if request.param == "bigquery":  # a new dataset per test on the session's bqemulator
        from infra.gcp.bigquery import BigQueryFmelStore  # google.* only when asked

        server: BqEmulator = request.getfixturevalue("bq_server")
        client = server.client()
        request.addfinalizer(client.close)
        return BigQueryFmelStore(client, new_dataset(), timeout_s=20)
    return LocalFmelStore(tmp_path / "store")


@pytest.fixture
def ingested(fmel: FmelStore, tmp_path: Path) -> Callable[..., Record]:
    def ingest(run_id: str, bars: int = 60) -> Record:
        record = record_of(tmp_path, run_id, bars)
        fmel.ingest(run_id, record)
        return record

    return ingest


def test_an_ingested_run_reads_back_whole_and_verifies(
    fmel: FmelStore, ingested: Callable[..., Record]
) -> None:
    record = ingested("r1")
    rows = fmel.decisions("r1")
    assert [r["bar_number"] for r in rows] == list(range(1, 61))
    assert rows == record.decisions.sort_by("bar_number").to_pylist()
    summary = fmel.summary("r1")
    assert summary is not None and summary["decisions"] == 60
    assert summary["chain_head"] == rows[-1]["complete_state_hash"]
    check = fmel.verify("r1")
    assert check.ok and check.rows == 60 and check.chain_head == summary["chain_head"]


def test_the_last_rows_and_the_acting_ones_are_asked_for_not_filtered_after(
    fmel: FmelStore, ingested: Callable[..., Record]
) -> None:
    ingested("r1")
    every = fmel.decisions("r1")
    assert fmel.decisions("r1", last=3) == every[-3:]
    assert fmel.decisions("r1", last=0) == []
    acting = [r for r in every if r["action"] in ("ORDERED", "TRADED")]
    assert acting and len(acting) < len(every)
    assert fmel.decisions("r1", acting_only=True) == acting
    assert fmel.decisions("r1", acting_only=True, last=2) == acting[-2:]


def test_a_run_without_a_record(fmel: FmelStore, ingested: Callable[..., Record]) -> None:
    ingested("r1")
    assert fmel.summary("nope") is None
    assert fmel.decisions("nope") == [] and fmel.decisions("nope", acting_only=True) == []
    check = fmel.verify("nope")
    assert not check.ok and check.rows == 0


def test_recorded_runs_newest_first_and_a_retry_replaces_its_run(
    fmel: FmelStore, ingested: Callable[..., Record], tmp_path: Path
) -> None:
    import time

    assert fmel.recorded() == []
    ingested("r1")
    time.sleep(0.02)  # the local store orders by the files' times
    ingested("r2", bars=40)
    assert fmel.recorded() == ["r2", "r1"]
    fmel.ingest("r2", record_of(tmp_path / "again", "r2", bars=30))  # a retried job's record
    assert len(fmel.decisions("r2")) == 30 and fmel.verify("r2").ok
    assert fmel.recorded()[0] == "r2"
