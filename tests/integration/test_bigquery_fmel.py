"""BigQueryFmelStore beyond the contract: what only BigQuery has (partitioning, clustering, the
seed's SQL, streaming a paper session's rows) on a real bqemulator, rows refused before they
are sent, and client errors mapped to the port's.

The statuses bqemulator never sends for these calls (401, 403 of a real denial, 429, 503, a
hang) come from a stand-in HTTP server that answers every request with one status.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import backtrader as bt
import pyarrow as pa
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from infra.gcp.bigquery import BigQueryFmelStore, RowRefused
from runtime.data import synthetic_frame
from runtime.fmel import FMELRecorder
from runtime.fmel.store import DECISION_SCHEMA
from tests.bq_server import BqEmulator, bq_server_fixture, free_port, new_dataset  # noqa: F401
from workers.collect import Record, Trusted, read_record
from workers.ports import NeedsOperator, Temporary


class SmaEveryFifthBar(bt.Strategy):  # type: ignore[misc]
    def __init__(self) -> None:
        self.sma = bt.indicators.SMA(period=5)  # NaN for its first 4 bars

    def next(self) -> None:
        if len(self) % 5 == 0:
            self.close() if self.position else self.buy()


def record_of(tmp_path: Path, run_id: str, bars: int = 40, agent_id: str = "a") -> Record:
    box = tmp_path / f"{run_id}-{uuid.uuid4().hex[:6]}"
    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.PandasData(dataname=synthetic_frame(bars, seed=5)), name="SYN")
    cerebro.addstrategy(SmaEveryFifthBar)
    cerebro.addanalyzer(
        FMELRecorder,
        out=str(box / "fmel"),
        run_id=run_id,
        agent_id=agent_id,
        agent_version="1",
        user_id="U1",
    )
    cerebro.run()
    trusted = Trusted(
        run_id=run_id,
        agent_id=agent_id,
        agent_version="1",
        user_id="U1",
        agent_sha256=None,
        parameters={},
        data_checks=[],
        symbols=["SYN"],
    )
    record = read_record(box, trusted)
    assert record is not None
    return record


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN made equal to itself (indicators warming up)."""
    return [
        {**r, "indicators": [(k, "nan" if math.isnan(v) else v) for k, v in r["indicators"]]}
        for r in rows
    ]


@pytest.fixture
def client(bq_server: BqEmulator) -> Iterator[bigquery.Client]:
    made = bq_server.client()
    yield made
    made.close()


@pytest.fixture
def fmel(client: bigquery.Client) -> BigQueryFmelStore:
    return BigQueryFmelStore(client, new_dataset(), timeout_s=20)


def count(client: bigquery.Client, table: str, run_id: str) -> int:
    job = client.query(
        f"SELECT COUNT(*) AS n FROM `{table}` WHERE run_id = @run",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("run", "STRING", run_id)]
        ),
    )
    return int(next(iter(job.result(timeout=20)))["n"])


# ---------------------------------------------------------------- on bqemulator
def test_the_decisions_table_is_partitioned_by_month_and_clustered_by_agent_and_run(
    fmel: BigQueryFmelStore, client: bigquery.Client
) -> None:
    fmel.ensure()
    table = client.get_table(fmel.decisions_table)
    assert table.time_partitioning is not None
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("MONTH", "timestamp")
    assert table.clustering_fields == ["agent_id", "run_id"]
    columns = {f.name: f for f in table.schema}
    assert list(columns) == DECISION_SCHEMA.names
    assert (columns["timestamp"].field_type, columns["timestamp"].mode) == ("TIMESTAMP", "REQUIRED")
    assert (columns["actions_taken"].field_type, columns["actions_taken"].mode) == (
        "RECORD",
        "REPEATED",
    )
    assert [f.name for f in columns["indicators"].fields] == ["key", "value"]
    assert (columns["log"].field_type, columns["log"].mode) == ("STRING", "REPEATED")
    summaries = client.get_table(fmel.summaries_table)
    assert summaries.time_partitioning is None and summaries.num_rows == 0


def test_the_seeds_fmel_analysis_runs_verbatim(
    bq_server: BqEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    # the seed names `{project_id}.fmel.trading_decisions`: a project of its own, dataset fmel
    project_id = f"seed-{uuid.uuid4().hex[:12]}"
    client = bq_server.client(project_id)
    request.addfinalizer(client.close)
    agent_id = "seed-agent"
    record = record_of(tmp_path, "seed-run", bars=30, agent_id=agent_id)
    BigQueryFmelStore(client, "fmel", timeout_s=20).ingest("seed-run", record)
    BigQueryFmelStore(client, "fmel", timeout_s=20).ingest(
        "other-agent", record_of(tmp_path, "other-agent", bars=10, agent_id="b")
    )

    # --- the seed's "FMEL Analysis", as written (its client made for the emulator)
    query = f"""
    SELECT
        timestamp,
        bar_number,
        complete_state_hash,
        actions_taken
    FROM `{project_id}.fmel.trading_decisions`
    WHERE agent_id = @agent_id
    ORDER BY timestamp
"""

    job_config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("agent_id", "STRING", agent_id)]
    )

    results = client.query(query, job_config=job_config)

    # Analyze complete decision history
    for row in results:
        print(f"{row.timestamp}: Bar {row.bar_number}, Actions: {row.actions_taken}")
    # --- end of the seed's code

    lines = capsys.readouterr().out.splitlines()
    expected = record.decisions.sort_by("timestamp").to_pylist()
    assert len(lines) == len(expected) == 30
    for line, row in zip(lines, expected, strict=True):
        assert (
            line == f"{row['timestamp']}: Bar {row['bar_number']}, Actions: {row['actions_taken']}"
        )
    assert any("'side': 'BUY'" in line for line in lines)
    fetched = list(client.query(query, job_config=job_config).result(timeout=20))
    assert [r.complete_state_hash for r in fetched] == [r["complete_state_hash"] for r in expected]


def test_the_same_run_twice_is_one_copy(
    fmel: BigQueryFmelStore, client: bigquery.Client, tmp_path: Path
) -> None:
    record = record_of(tmp_path, "r1")
    fmel.ingest("r1", record)
    fmel.ingest("r1", record)
    assert count(client, fmel.decisions_table, "r1") == 40
    assert count(client, fmel.summaries_table, "r1") == 1
    retried = record_of(tmp_path, "r1", bars=25)  # a retried job's record replaces it
    fmel.ingest("r1", retried)
    assert count(client, fmel.decisions_table, "r1") == 25
    assert count(client, fmel.summaries_table, "r1") == 1
    check = fmel.verify("r1")
    assert check.ok and check.rows == 25 and check.chain_head == retried.summary_row["chain_head"]


def test_indicators_warming_up_keep_their_nan_and_order(
    fmel: BigQueryFmelStore, tmp_path: Path
) -> None:
    record = record_of(tmp_path, "r1")
    fmel.ingest("r1", record)
    rows = fmel.decisions("r1")
    assert math.isnan(rows[0]["indicators"][0][1]) and not math.isnan(rows[-1]["indicators"][0][1])
    assert comparable(rows) == comparable(record.decisions.to_pylist())
    assert fmel.summary("r1") == record.summary_row
    assert fmel.verify("r1").ok
    assert [s.kind for s in fmel.scans][-2:] == ["decisions", "summary"]


def test_reads_filter_on_the_clustering_columns_in_their_order(
    fmel: BigQueryFmelStore, tmp_path: Path
) -> None:
    fmel.ingest("r1", record_of(tmp_path, "r1"))
    fresh = BigQueryFmelStore(fmel.client, fmel.dataset.dataset_id)  # knows no agent yet
    assert len(fresh.decisions("r1", last=3, acting_only=True)) <= 3
    kinds = [s.kind for s in fresh.scans]
    assert kinds[-2:] == ["agent", "decisions"]  # the agent looked up once, from the summary
    assert "WHERE agent_id = @agent AND run_id = @run" in fresh.scans[-1].sql
    fresh.decisions("r1", last=3)
    assert [s.kind for s in fresh.scans][len(kinds):] == ["decisions"]  # kept
    assert fresh.decisions("nobody") == [] and "WHERE run_id = @run" in fresh.scans[-1].sql


def test_a_paper_sessions_rows_stream_in_batches_then_its_summary(
    fmel: BigQueryFmelStore, tmp_path: Path
) -> None:
    record = record_of(tmp_path, "p1")
    rows = record.decisions.to_pylist()
    fmel.ingest_rows("p1", rows[:7])
    fmel.ingest_rows("p1", [])
    assert comparable(fmel.decisions("p1")) == comparable(rows[:7])
    assert (
        fmel.summary("p1") is None
        and fmel.verify("p1").reason == "no run summary (run did not finish)"
    )
    early = {**record.summary_row, "decisions": 7, "chain_head": rows[6]["complete_state_hash"],
             "recorded_at": record.summary_row["recorded_at"] - timedelta(seconds=5)}  # fmt: skip
    fmel.ingest_rows("p1", [], summary=early)
    assert fmel.summary("p1") == early and fmel.verify("p1").ok  # a session part-way
    fmel.ingest_rows("p1", rows[7:], summary=record.summary_row)
    assert comparable(fmel.decisions("p1")) == comparable(rows)
    assert fmel.summary("p1") == record.summary_row  # appended: the latest one is read
    assert fmel.verify("p1").ok and fmel.recorded() == ["p1"]


# ---------------------------------------------------------------- refused before sending
def unreachable_store() -> BigQueryFmelStore:
    """A store whose every request would fail (nothing listens): a RowRefused from it was
    raised before anything was sent."""
    client = bigquery.Client(
        project="tradeops-test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{free_port()}"),
    )
    return BigQueryFmelStore(client, "fmel", timeout_s=0.2)


def row_of(tmp_path: Path, run_id: str = "r1") -> dict[str, Any]:
    return record_of(tmp_path, run_id, bars=10).decisions.to_pylist()[-1]


BAD_VALUES = [
    ("portfolio_value", "10000.0", "expected FLOAT64"),
    ("portfolio_value", True, "expected FLOAT64"),
    ("bar_number", 10.0, "expected INT64"),
    ("bar_number", 2**63, "expected INT64"),
    ("state_hash", None, "no state_hash"),
    ("timestamp", datetime(2020, 1, 1), "expected TIMESTAMP"),  # naive: which zone?
    ("timestamp", "2020-01-01T00:00:00Z", "expected TIMESTAMP"),
    ("log", "one message", "expected a list"),
    ("log", ["ok", None], "cannot hold NULL"),
    ("indicators", [("sma", "1.0")], "expected FLOAT64"),
    ("actions_taken", [{"side": "BUY", "qty": 1}], "unknown fields"),
    ("action", "SOLD", "action 'SOLD'"),
    ("surprise", 1, "unknown columns"),
]


@pytest.mark.parametrize(("column", "value", "message"), BAD_VALUES)
def test_a_row_of_the_wrong_type_is_refused_before_it_is_sent(
    tmp_path: Path, column: str, value: Any, message: str
) -> None:
    row = {**row_of(tmp_path), column: value}
    with pytest.raises(RowRefused, match=message):
        unreachable_store().ingest_rows("r1", [row])


def test_a_row_of_another_run_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    with pytest.raises(RowRefused, match="run 'r2'"):
        unreachable_store().ingest_rows("r1", [row_of(tmp_path, "r1"), row_of(tmp_path, "r2")])
    record = record_of(tmp_path, "r2", bars=10)
    with pytest.raises(RowRefused, match="run 'r2'"):
        unreachable_store().ingest("r1", record)
    summary = {**record.summary_row, "chain_head": None}
    with pytest.raises(RowRefused, match="no chain_head"):
        unreachable_store().ingest_rows("r2", [], summary=summary)


def test_a_record_whose_columns_are_not_the_fmel_ones_is_refused(tmp_path: Path) -> None:
    record = record_of(tmp_path, "r1", bars=10)
    bad = record.decisions.set_column(
        record.decisions.schema.get_field_index("bar_number"),
        "bar_number",
        record.decisions["bar_number"].cast(pa.float64()),
    )
    with pytest.raises(RowRefused, match="FMEL columns"):
        unreachable_store().ingest("r1", Record(bad, record.summary, record.summary_row, None))
    nulls = record.decisions.set_column(
        record.decisions.schema.get_field_index("state_hash"),
        "state_hash",
        pa.nulls(record.decisions.num_rows, pa.string()),
    )
    with pytest.raises(RowRefused, match="no state_hash"):
        unreachable_store().ingest("r1", Record(nulls, record.summary, record.summary_row, None))


def test_refused_rows_leave_nothing_behind(
    fmel: BigQueryFmelStore, client: bigquery.Client, tmp_path: Path
) -> None:
    good = row_of(tmp_path)
    with pytest.raises(RowRefused):
        fmel.ingest_rows("r1", [good, {**good, "bar_number": 11, "mode": "LIVE"}])
    fmel.ensure()
    assert count(client, fmel.decisions_table, "r1") == 0


def test_a_table_with_other_columns_needs_an_operator(
    fmel: BigQueryFmelStore, client: bigquery.Client, tmp_path: Path
) -> None:
    client.create_dataset(fmel.dataset)
    schema = [bigquery.SchemaField("run_id", "STRING")]
    client.create_table(bigquery.Table(fmel.decisions_table, schema=schema))
    with pytest.raises(NeedsOperator, match="other columns"):
        fmel.ingest("r1", record_of(tmp_path, "r1", bars=10))


# ---------------------------------------------------------------- errors, from a stand-in
@contextlib.contextmanager
def answering(status: int, reason: str = "", delay: float = 0.0) -> Iterator[str]:
    """An HTTP server answering every request with ``status`` and BigQuery's error body."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            time.sleep(delay)
            body = json.dumps(
                {
                    "error": {
                        "code": status,
                        "message": f"stand-in {status}",
                        "errors": [{"reason": reason, "message": f"stand-in {status}"}],
                    }
                }
            ).encode()
            with contextlib.suppress(OSError):  # the client may have given up
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def store_at(url: str, timeout_s: float = 0.5) -> BigQueryFmelStore:
    client = bigquery.Client(
        project="tradeops-test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=url),
    )
    return BigQueryFmelStore(client, "fmel", timeout_s=timeout_s)


ERRORS = [
    (403, "accessDenied", 0.0, NeedsOperator),
    (401, "unauthorized", 0.0, NeedsOperator),
    (400, "invalidQuery", 0.0, NeedsOperator),
    (403, "rateLimitExceeded", 0.0, Temporary),
    (429, "", 0.0, Temporary),
    (500, "backendError", 0.0, Temporary),
    (503, "", 0.0, Temporary),
    (200, "", 2.0, Temporary),  # no answer within the timeout
]


@pytest.mark.parametrize(("status", "reason", "delay", "expected"), ERRORS)
def test_client_errors_become_the_ports(
    tmp_path: Path, status: int, reason: str, delay: float, expected: type[Exception]
) -> None:
    record = record_of(tmp_path, "r1", bars=10)
    with answering(status, reason, delay) as url:
        store = store_at(url)
        started = time.monotonic()
        with pytest.raises(expected):
            store.decisions("r1")
        with pytest.raises(expected):
            store.ingest("r1", record)
        assert time.monotonic() - started < 10  # not the client's 10-minute default


def test_a_missing_dataset_reads_as_an_unknown_run() -> None:
    with answering(404, "notFound") as url:  # what BigQuery says for a missing dataset
        store = store_at(url)
        assert store.decisions("r1") == [] and store.summary("r1") is None
        assert store.recorded() == [] and not store.verify("r1").ok


# ---------------------------------------------------------------- a paper session's rows
@pytest.mark.slow
def test_a_paper_session_ships_its_decisions_to_bigquery_as_it_runs(
    bq_server: BqEmulator, client: bigquery.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRADEOPS_FMEL=bigquery with the local cluster: the supervisor checks the session's
    rows and streams them in while it runs; at its end the run verifies from BigQuery."""
    import os
    import signal
    import subprocess

    from infra.local.artifacts import LocalArtifactStore
    from infra.local.paper import LocalPaperCluster
    from runtime.paths import DEFAULT_DATA_DIR
    from tests.conftest import SMA_CROSS, processes_mentioning
    from workers.ports import PaperSpec, SessionStatus

    dataset = new_dataset()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq_server.url)
    monkeypatch.setenv("TRADEOPS_FMEL", f"bigquery://{client.project}/{dataset}")
    home = Path("/tmp") / f"tbq-{os.getpid()}-{time.monotonic_ns() % 10**6}"  # short: sockets
    artifacts = LocalArtifactStore(home / "artifacts")
    sha = artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    paper = LocalPaperCluster(home, data_dir=DEFAULT_DATA_DIR, fmel_dir=home / "fmel",
                              artifacts=artifacts, ship_fmel=True, flush_seconds=0.5)  # fmt: skip
    fmel = BigQueryFmelStore(client, dataset, timeout_s=20)
    try:
        paper.start(PaperSpec(agent="sma", version=1, sha256=sha, owner="U1", run_id="pp1",
                              symbols=("SPY",), cash=5000.0, bar_seconds=0.02))  # fmt: skip
        deadline = time.monotonic() + 90
        while not (running := fmel.decisions("pp1", last=1)):
            assert time.monotonic() < deadline, (home / "paper" / "paper-sma" / "supervisor.log")
            time.sleep(0.5)
        assert running[0]["mode"] == "PAPER"  # rows arrive while the session runs
        stopped = paper.stop("sma")
        assert stopped.status is SessionStatus.STOPPED
        check = fmel.verify("pp1")
        assert check.ok and check.reason is None and check.rows > running[0]["bar_number"]
        assert fmel.summary("pp1")["decisions"] == check.rows  # type: ignore[index]
        assert not (home / "fmel").exists()  # nothing linked into a local store
        log = (home / "paper" / "paper-sma" / "supervisor.log").read_text()
        assert "not shipped" not in log and "stopped:" not in log, log
    finally:
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(home)], check=False)
