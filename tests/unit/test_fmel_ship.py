"""FmelShipper: a paper session's record reaches a remote FMEL store as it grows, checked
part by part (the chain recomputed from the last shipped head), each part once, the summary
only when it matches what was sent; a part that does not verify stops shipping for good."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import backtrader as bt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.data import synthetic_frame
from runtime.fmel import FMELRecorder, store
from workers.collect import Trusted
from workers.fmel_ship import FmelShipper

RUN = "paper-r1"


class Every5th(bt.Strategy):  # type: ignore[misc]
    def __init__(self) -> None:
        self.sma = bt.indicators.SMA(period=5)

    def next(self) -> None:
        if len(self) % 5 == 0:
            self.close() if self.position else self.buy()


class Collected:
    """What a store got, in order (the FmelStream port)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []
        self.fail = False

    def ingest_rows(
        self, run_id: str, rows: Sequence[Mapping[str, Any]],
        summary: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        assert run_id == RUN
        if self.fail:
            raise ConnectionError("the store is away")
        self.rows += [dict(r) for r in rows]
        if summary is not None:
            self.summaries.append(dict(summary))


TRUSTED = Trusted(run_id=RUN, agent_id="sma", agent_version="1", user_id="U1",
                  agent_sha256=None, parameters={}, data_checks=(), symbols=["SYN"])  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PAPER-mode record of 40 bars in parts of 10 rows (and its final summary)."""
    out = tmp_path_factory.mktemp("box") / "fmel"
    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.PandasData(dataname=synthetic_frame(40, seed=5)), name="SYN")
    cerebro.addstrategy(Every5th)
    cerebro.addanalyzer(FMELRecorder, out=str(out), run_id=RUN, agent_id="sma",
                        agent_version="1", user_id="U1", mode="PAPER", batch_rows=10)  # fmt: skip
    cerebro.run()
    assert len(list((out / store.DECISIONS / RUN).glob("part-*.parquet"))) == 4
    return out


class Session:
    """A session's out/ folder, written part by part as a running session would."""

    def __init__(self, recorded: Path, out: Path) -> None:
        self.recorded, self.out = recorded, out
        self.parts = sorted((recorded / store.DECISIONS / RUN).glob("part-*.parquet"))
        self.final = pq.read_table(recorded / store.SUMMARIES / f"{RUN}.parquet").to_pylist()[0]
        self.rows_dir = out / "fmel" / store.DECISIONS / RUN
        self.rows_dir.mkdir(parents=True)
        self.written = 0

    def flush(self, parts: int = 1) -> None:
        """The next parts, then a summary of what is written (as each flush does)."""
        for part in self.parts[self.written:self.written + parts]:
            shutil.copy(part, self.rows_dir / part.name)
        self.written += parts
        rows = pq.read_table(self.rows_dir).sort_by("bar_number").to_pylist()
        self.summary({**self.final, "decisions": len(rows),
                      "chain_head": rows[-1]["complete_state_hash"],
                      "recorded_at": self.final["recorded_at"]
                      - timedelta(seconds=10 - self.written)})  # fmt: skip

    def summary(self, row: dict[str, Any]) -> None:
        table = pa.Table.from_pylist([row], schema=store.SUMMARY_SCHEMA)
        store.write_table(table, self.out / "fmel" / store.SUMMARIES / f"{RUN}.parquet")


@pytest.fixture
def session(recorded: Path, tmp_path: Path) -> Session:
    return Session(recorded, tmp_path / "out")


def shipper(session: Session, got: Collected) -> FmelShipper:
    return FmelShipper(session.out, TRUSTED, got, session.out.parent / "shipped.json")


def test_a_growing_record_arrives_part_by_part_and_verifies(session: Session) -> None:
    got = Collected()
    ship = shipper(session, got)
    assert ship.ship() == 0 and got.rows == []  # nothing written yet
    session.flush()
    assert ship.ship() == 10 and len(got.summaries) == 1
    assert store.verify_rows(RUN, got.rows, got.summaries[-1]).ok  # a session part-way
    assert ship.ship() == 0 and len(got.summaries) == 1  # nothing new: nothing sent
    session.flush(parts=3)
    assert ship.ship() == 30 and [r["bar_number"] for r in got.rows] == list(range(1, 41))
    assert store.verify_rows(RUN, got.rows, got.summaries[-1]).ok
    assert got.summaries[-1]["decisions"] == 40


def test_a_new_shipper_goes_on_from_the_cursor(session: Session) -> None:
    got = Collected()
    session.flush(parts=2)
    assert shipper(session, got).ship() == 20
    session.flush()
    assert shipper(session, got).ship() == 10  # a restarted supervisor: no part twice
    assert [r["bar_number"] for r in got.rows] == list(range(1, 31))


def test_a_store_that_is_away_gets_the_same_part_next_time(session: Session) -> None:
    got = Collected()
    ship = shipper(session, got)
    session.flush()
    got.fail = True
    with pytest.raises(ConnectionError):
        ship.ship()
    got.fail = False
    assert ship.ship() == 10 and store.verify_rows(RUN, got.rows, got.summaries[-1]).ok


def test_a_summary_ahead_of_the_rows_waits(session: Session) -> None:
    got = Collected()
    session.flush()
    ahead = {**session.final, "recorded_at": session.final["recorded_at"] + timedelta(1)}
    session.summary(ahead)  # claims 40 decisions over 10 rows
    ship = shipper(session, got)
    assert ship.ship() == 10 and got.summaries == [] and ship.refused is None


def tampered(session: Session, change: Any) -> None:
    part = session.rows_dir / "part-00001.parquet"
    rows = pq.read_table(part).to_pylist()
    change(rows)
    os.remove(part)
    store.write_table(pa.Table.from_pylist(rows, schema=store.DECISION_SCHEMA), part)


@pytest.mark.parametrize("what, change", [
    ("a value rewritten", lambda rows: rows[3].update(portfolio_value=1e9)),
    ("a bar dropped", lambda rows: rows.pop(4)),
    ("another run's rows", lambda rows: [r.update(run_id="other") for r in rows]),
    ("a backtest's rows", lambda rows: [r.update(mode="BACKTEST") for r in rows]),
])  # fmt: skip
def test_a_part_that_does_not_verify_stops_shipping_for_good(
    session: Session, what: str, change: Any
) -> None:
    got = Collected()
    session.flush(parts=2)
    tampered(session, change)
    session.flush(parts=2)
    ship = shipper(session, got)
    ship.ship()
    assert len(got.rows) == 10, what  # the first part only
    assert "part-00001" in str(ship.refused), ship.refused
    assert got.summaries == []  # nothing claims the chain past what was sent
    assert shipper(session, got).ship() == 0 and len(got.rows) == 10  # remembered


def test_links_and_strange_files_are_refused(session: Session, tmp_path: Path) -> None:
    got = Collected()
    session.flush()
    (session.rows_dir / "part-00007.parquet").symlink_to(session.parts[1])
    ship = shipper(session, got)
    assert ship.ship() == 0 and "not a regular file" in str(ship.refused)
