"""The FMEL store in BigQuery (DESIGN.md section 6): tables ``trading_decisions`` and
``run_summaries`` of one dataset, created on first write when missing.

Columns are the Arrow ones of :mod:`runtime.fmel.store`, mapped as:

- string, int64, float64, timestamp[us, UTC] -> STRING, INT64, FLOAT64, TIMESTAMP;
- a list -> a REPEATED field (a list of structs -> REPEATED RECORD);
- a map (``indicators`` of a decision, ``actions`` of a summary) -> REPEATED RECORD
  ``<key, value>``, not JSON: an indicator is NaN until it has enough bars (JSON has no NaN),
  and verification needs the indicators in their order (BigQuery's JSON does not keep it);
- who, which bar and the hashes are REQUIRED; the rest NULLABLE (a NULL list reads back ``[]``).

``trading_decisions`` is partitioned by the month of ``timestamp`` and clustered by
``agent_id, run_id``. By month, not by day as DESIGN.md first said: a timestamp is a bar's
time, so a daily backtest over 16 years touches 4,000 day partitions, the most one load job
or DML statement may write, and a table holds at most 10,000 (about 40 years of trading
days over all runs); by month, that is 333 and 833 years. Every read here filters on the
clustering columns in their order (the agent first, from the run's summary), which is what
prunes blocks; the partitions only serve analyses over a time range.

A backtest's record goes in as one Parquet load job for its rows and one for its summary,
after a DML ``DELETE`` of the run's earlier record (a retry replaces it). A paper session's
rows and its summaries stream in (:meth:`BigQueryFmelStore.ingest_rows`): nothing of a paper
run is ever deleted (rows still in the streaming buffer cannot be), each summary is appended
and the latest ``recorded_at`` wins.

Rows are checked before anything is sent (types, required fields, the run id): BigQuery
refuses a bad row only after the upload, and emulators accept what it would refuse. Reads are
parameterised queries that filter and limit in BigQuery and return rows exactly as the local
store does (so :meth:`verify` recomputes the same hashes).

Client errors become the port's: a missing dataset or table on read is an unknown run (empty
answers); a refused permission or a rejected request :class:`NeedsOperator`; a rate limit, a
5xx, a timeout or a lost connection :class:`Temporary`.
"""

from __future__ import annotations

import io
import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

from runtime.fmel import encoding as enc
from runtime.fmel import store
from workers.collect import Record
from workers.ports import ACTING, NeedsOperator, Temporary

log = logging.getLogger(__name__)

DECISIONS = store.DECISIONS
SUMMARIES = store.SUMMARIES
TIMEOUT_S = 60.0  # each request's, and the deadline of the client's retries of one call
STREAM_ROWS = 500  # rows per streaming insert (Google's advice: up to 500 per request)
LOAD_WAIT_S = 600.0  # for a load job to finish (one given up on may still land later)
_IDENTITY = ("run_id", "agent_id", "agent_version", "user_id", "mode")
REQUIRED_DECISION = (
    *_IDENTITY,
    *("bar_number", "stage", "timestamp", "recorded_at", "action"),
    *("state_hash", "complete_state_hash"),
)
REQUIRED_SUMMARY = (
    *_IDENTITY,
    *("decisions", "first_bar", "genesis", "chain_head", "encoding_version", "recorded_at"),
)
MODES = ("BACKTEST", "PAPER")
_ENUMS = {"mode": MODES, "stage": enc.STAGES, "action": enc.ACTIONS}
# BigQuery's TIMESTAMP range, in microseconds since the epoch
_TS_MIN_US, _TS_MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_CLIENT_ERRORS = (
    api_exceptions.GoogleAPIError,  # HTTP errors, RetryError
    auth_exceptions.GoogleAuthError,
    requests.RequestException,
    OSError,  # ConnectionError, TimeoutError (concurrent.futures' too)
)
_RETRYABLE_403 = frozenset({"rateLimitExceeded", "quotaExceeded", "backendError"})


class RowRefused(NeedsOperator):
    """A row that BigQuery would refuse (or an emulator wrongly keep): nothing was sent."""


# ---------------------------------------------------------------- schema mapping
def _bq_field(field: pa.Field, *, required: bool = False, repeated: bool = False) -> Any:
    typ = field.type
    mode = "REPEATED" if repeated else "REQUIRED" if required else "NULLABLE"
    if pa.types.is_list(typ):
        return _bq_field(pa.field(field.name, typ.value_type), repeated=True)
    if pa.types.is_map(typ):
        pairs = pa.struct([pa.field("key", typ.key_type), pa.field("value", typ.item_type)])
        return _bq_field(pa.field(field.name, pairs), repeated=True)
    if pa.types.is_struct(typ):
        subfields = [_bq_field(typ.field(i)) for i in range(typ.num_fields)]
        return bigquery.SchemaField(field.name, "RECORD", mode=mode, fields=subfields)
    return bigquery.SchemaField(field.name, _scalar_type(typ), mode=mode)


def _scalar_type(typ: pa.DataType) -> str:
    if pa.types.is_string(typ):
        return "STRING"
    if pa.types.is_int64(typ):
        return "INT64"
    if pa.types.is_float64(typ):
        return "FLOAT64"
    if pa.types.is_timestamp(typ):
        return "TIMESTAMP"
    raise TypeError(f"no BigQuery type for Arrow {typ}")


def bq_schema(schema: pa.Schema, required: Sequence[str]) -> list[Any]:
    """The BigQuery columns of an FMEL Arrow schema (the mapping in the module's docstring)."""
    return [_bq_field(f, required=f.name in required) for f in schema]


def _load_type(typ: pa.DataType) -> pa.DataType:
    """The Arrow type written to Parquet for a load job: maps become lists of key/value."""
    if pa.types.is_map(typ):
        pairs = pa.struct([pa.field("key", typ.key_type, nullable=False), ("value", typ.item_type)])
        return pa.list_(pairs)
    return typ


def _load_schema(schema: pa.Schema, required: Sequence[str]) -> pa.Schema:
    """Required columns are written non-nullable, so the file's own schema matches the table
    (BigQuery refuses a NULLABLE Parquet column for a REQUIRED one)."""
    return pa.schema(
        pa.field(f.name, _load_type(f.type), nullable=f.name not in required) for f in schema
    )


DECISION_COLUMNS = bq_schema(store.DECISION_SCHEMA, REQUIRED_DECISION)
SUMMARY_COLUMNS = bq_schema(store.SUMMARY_SCHEMA, REQUIRED_SUMMARY)
_DECISION_LOAD = _load_schema(store.DECISION_SCHEMA, REQUIRED_DECISION)
_SUMMARY_LOAD = _load_schema(store.SUMMARY_SCHEMA, REQUIRED_SUMMARY)
_MAP_COLUMNS = {
    name: [f.name for f in schema if pa.types.is_map(f.type)]
    for name, schema in ((DECISIONS, store.DECISION_SCHEMA), (SUMMARIES, store.SUMMARY_SCHEMA))
}
_SELECT_DECISIONS = ", ".join(f"`{f.name}`" for f in store.DECISION_SCHEMA)
_SELECT_SUMMARY = ", ".join(f"`{f.name}`" for f in store.SUMMARY_SCHEMA)


@dataclass(frozen=True)
class Scan:
    """What one query read: BigQuery bills by ``bytes_processed`` (None if not told)."""

    kind: str
    bytes_processed: int | None
    bytes_billed: int | None
    sql: str = ""


class BigQueryFmelStore:
    """FMEL rows and run summaries in ``dataset`` of the client's project.

    ``client`` is built by the caller (credentials, project, endpoint). ``timeout_s`` bounds
    each request and, through ``retry`` and ``job_retry`` (the client's policies, given that
    deadline), all attempts of one call: the client's own defaults retry for 10 minutes.
    ``load_wait_s`` bounds the wait for a load job, longer: a job given up on keeps running,
    and would land beside the retry's rows. ``scans`` keeps what the last queries read.
    """

    def __init__(
        self,
        client: bigquery.Client,
        dataset: str,
        *,
        location: str | None = None,
        timeout_s: float = TIMEOUT_S,
        load_wait_s: float = LOAD_WAIT_S,
        retry: Retry | None = None,
        job_retry: Retry | None = None,
    ) -> None:
        self.client = client
        self.dataset = bigquery.DatasetReference(client.project, dataset)
        self.location = location
        self.timeout_s = timeout_s
        self.load_wait_s = max(load_wait_s, timeout_s)
        self.retry = retry or DEFAULT_RETRY.with_deadline(timeout_s)
        self.job_retry = job_retry or DEFAULT_JOB_RETRY.with_deadline(2 * timeout_s)
        self.scans: deque[Scan] = deque(maxlen=100)
        self._ready = False
        self._agents: dict[str, str] = {}  # run id -> agent id, as the summaries say

    @property
    def decisions_table(self) -> str:
        return f"{self.dataset.project}.{self.dataset.dataset_id}.{DECISIONS}"

    @property
    def summaries_table(self) -> str:
        return f"{self.dataset.project}.{self.dataset.dataset_id}.{SUMMARIES}"

    # ------------------------------------------------------------------ writing
    def ingest(self, run_id: str, record: Record) -> None:
        decisions = checked_decisions(record.decisions, run_id)
        summary = checked_summary(record.summary, run_id)
        self.ensure()
        agent = str(summary["agent_id"][0])
        with self._errors("store the FMEL record of", run_id):
            self._delete(DECISIONS, run_id, agent)
            self._delete(SUMMARIES, run_id)
            self._load(DECISIONS, decisions.cast(_DECISION_LOAD))
            self._load(SUMMARIES, summary.cast(_SUMMARY_LOAD))

    def ingest_rows(
        self,
        run_id: str,
        rows: Sequence[Mapping[str, Any]],
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a few rows of a run (a paper session's latest bars), then its summary
        when given, by streaming: the summary read back is the latest one sent. Rows are
        shaped as :meth:`decisions` returns them; any row that does not fit refuses the
        whole batch, before anything is sent."""
        table = rows_table(rows, store.DECISION_SCHEMA, REQUIRED_DECISION, "row")
        decisions = checked_decisions(table, run_id)
        summary_table = None
        if summary is not None:
            one = rows_table([summary], store.SUMMARY_SCHEMA, REQUIRED_SUMMARY, "summary")
            summary_table = checked_summary(one, run_id)
        self.ensure()
        with self._errors("store FMEL rows of", run_id):
            for start in range(0, decisions.num_rows, STREAM_ROWS):
                self._stream(DECISIONS, decisions.slice(start, STREAM_ROWS), run_id)
            if summary_table is not None:
                self._stream(SUMMARIES, summary_table, run_id)

    def ensure(self) -> None:
        """Create the dataset and its two tables where missing (once per store)."""
        if self._ready:
            return
        with self._errors("create the FMEL tables in", self.dataset.dataset_id):
            try:
                self.client.get_dataset(self.dataset, retry=self.retry, timeout=self.timeout_s)
            except api_exceptions.NotFound:
                found = bigquery.Dataset(self.dataset)
                if self.location:
                    found.location = self.location
                self.client.create_dataset(
                    found, exists_ok=True, retry=self.retry, timeout=self.timeout_s
                )
            self._ensure_table(DECISIONS, DECISION_COLUMNS, partitioned=True)
            self._ensure_table(SUMMARIES, SUMMARY_COLUMNS, partitioned=False)
        self._ready = True

    def _ensure_table(self, name: str, columns: list[Any], *, partitioned: bool) -> None:
        ref = self.dataset.table(name)
        try:
            existing = self.client.get_table(ref, retry=self.retry, timeout=self.timeout_s)
        except api_exceptions.NotFound:
            table = bigquery.Table(ref, schema=columns)
            if partitioned:
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.MONTH, field="timestamp"
                )
                table.clustering_fields = ["agent_id", "run_id"]
            else:
                table.clustering_fields = ["run_id"]
            self.client.create_table(
                table, exists_ok=True, retry=self.retry, timeout=self.timeout_s
            )
            return
        if _shape(existing.schema) != _shape(columns):
            raise NeedsOperator(
                f"BigQuery table {self._where(name)} exists with other columns than the FMEL "
                "record's (DESIGN.md section 6): migrate or drop it, or configure another dataset"
            )

    def _delete(self, name: str, run_id: str, agent: str | None = None) -> None:
        where, params = _run_filter(run_id, agent)
        sql = f"DELETE FROM `{self._where(name)}` WHERE {where}"  # noqa: S608 - our names
        self._run(sql, params)

    def _load(self, name: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=DECISION_COLUMNS if name == DECISIONS else SUMMARY_COLUMNS,
        )
        options = bigquery.ParquetOptions()
        options.enable_list_inference = True  # a Parquet LIST is a REPEATED field
        config.parquet_options = options
        job = self.client.load_table_from_file(
            buffer,
            self.dataset.table(name),
            job_config=config,
            job_id_prefix="fmel_load_",
            num_retries=3,  # an upload failing with a 5xx: tried again after 1, 2, 4 s
            location=self.location,
            timeout=self.timeout_s,
        )
        job.result(retry=self.retry, timeout=self.load_wait_s)
        log.debug("loaded %d rows into %s (job %s)", table.num_rows, name, job.job_id)

    def _stream(self, name: str, table: pa.Table, run_id: str) -> None:
        maps = _MAP_COLUMNS[name]
        rows = [_json_row(row, maps) for row in table.to_pylist()]
        # insert ids let BigQuery drop a row the client sent twice (best effort, a minute)
        if name == DECISIONS:
            ids = [f"{run_id}/{row['bar_number']}/{row['state_hash']}" for row in rows]
        else:
            ids = [f"{run_id}/summary/{row['chain_head']}/{row['decisions']}" for row in rows]
        refused = self.client.insert_rows_json(
            self.dataset.table(name),
            rows,
            row_ids=ids,
            retry=self.retry,
            timeout=self.timeout_s,
        )
        if refused:
            raise NeedsOperator(
                f"BigQuery refused FMEL rows of run {run_id} in {self._where(name)}: "
                f"{str(refused)[:500]}"
            )

    # ------------------------------------------------------------------ reading
    def summary(self, run_id: str) -> dict[str, Any] | None:
        sql = (
            f"SELECT {_SELECT_SUMMARY} FROM `{self.summaries_table}` "  # noqa: S608 - our names
            "WHERE run_id = @run ORDER BY recorded_at DESC LIMIT 1"
        )
        rows = self._select("summary", sql, [_run_param(run_id)], run_id)
        if not rows:
            return None
        row = _read_row(rows[0], "actions")
        row["actions"] = dict(row["actions"])
        self._agents[run_id] = row["agent_id"]
        return row

    def _agent_of(self, run_id: str) -> str | None:
        """The run's agent (from its summary, kept: it never changes), so that reads filter
        on the first clustering column too; None for a run with no summary yet."""
        if run_id not in self._agents:
            sql = f"SELECT agent_id FROM `{self.summaries_table}` WHERE run_id = @run LIMIT 1"  # noqa: S608
            rows = self._select("agent", sql, [_run_param(run_id)], run_id)
            if not rows:
                return None
            self._agents[run_id] = rows[0]["agent_id"]
        return self._agents[run_id]

    def decisions(
        self, run_id: str, *, last: int | None = None, acting_only: bool = False
    ) -> list[dict[str, Any]]:
        if last is not None and last <= 0:
            return []
        where, params = _run_filter(run_id, self._agent_of(run_id))
        if acting_only:
            where += " AND action IN UNNEST(@acting)"
            params.append(bigquery.ArrayQueryParameter("acting", "STRING", list(ACTING)))
        sql = f"SELECT {_SELECT_DECISIONS} FROM `{self.decisions_table}` WHERE {where} "  # noqa: S608
        if last is None:
            sql += "ORDER BY bar_number"
        else:
            sql += "ORDER BY bar_number DESC LIMIT @n"
            params.append(bigquery.ScalarQueryParameter("n", "INT64", last))
        rows = [_read_row(r, "indicators") for r in self._select("decisions", sql, params, run_id)]
        return rows if last is None else rows[::-1]

    def verify(self, run_id: str) -> store.Verification:
        return store.verify_rows(run_id, self.decisions(run_id), self.summary(run_id))

    def recorded(self) -> list[str]:
        """Runs by their summaries' ``recorded_at``, the newest first (a paper session whose
        rows stream in is listed once it sends its summary)."""
        sql = (
            f"SELECT run_id FROM `{self.summaries_table}` "  # noqa: S608 - our names
            "GROUP BY run_id ORDER BY MAX(recorded_at) DESC, run_id DESC"
        )
        return [row["run_id"] for row in self._select("recorded", sql, [], "the runs")]

    def bytes_processed(self) -> int:
        """The bytes the kept :attr:`scans` read, as BigQuery reported them."""
        return sum(s.bytes_processed or 0 for s in self.scans)

    # ------------------------------------------------------------------ helpers
    def _where(self, name: str) -> str:
        return f"{self.dataset.project}.{self.dataset.dataset_id}.{name}"

    def _select(self, kind: str, sql: str, params: list[Any], subject: str) -> list[Any]:
        """The query's rows; none when the dataset or table does not exist (yet)."""
        with self._errors(f"read FMEL {kind} of", subject):
            try:
                return self._run(sql, params, kind=kind)
            except api_exceptions.NotFound:
                return []
            except api_exceptions.Forbidden:
                # BigQuery says 404 for a missing dataset, bqemulator 403: either way an
                # unknown run, unless the dataset is there and we may not read it
                if self._dataset_missing():
                    return []
                raise

    def _run(self, sql: str, params: list[Any], *, kind: str = "delete") -> list[Any]:
        """The query's rows. A failed job is run again under ``job_retry`` (our deadline):
        the client's own job retry also wraps the job's creation in a 10-minute one."""
        rows: list[Any] = self.job_retry(self._run_once)(sql, params, kind)
        return rows

    def _run_once(self, sql: str, params: list[Any], kind: str) -> list[Any]:
        config = bigquery.QueryJobConfig(query_parameters=params)
        job = self.client.query(
            sql,
            job_config=config,
            location=self.location,
            retry=self.retry,
            timeout=self.timeout_s,
            job_retry=None,
        )
        rows = list(job.result(retry=self.retry, timeout=self.timeout_s, job_retry=None))
        scan = Scan(kind, job.total_bytes_processed, job.total_bytes_billed, sql)
        self.scans.append(scan)
        log.debug("FMEL %s query scanned %s bytes", kind, scan.bytes_processed)
        return rows

    def _dataset_missing(self) -> bool:
        try:
            self.client.get_dataset(self.dataset, retry=self.retry, timeout=self.timeout_s)
        except api_exceptions.NotFound:
            return True
        return False

    @contextmanager
    def _errors(self, action: str, subject: str) -> Iterator[None]:
        try:
            yield
        except api_exceptions.NotFound as exc:  # the dataset or a table went away meanwhile
            self._ready = False
            raise Temporary(
                f"BigQuery dataset {self.dataset.dataset_id!r} or its tables vanished while "
                f"trying to {action} {subject}; they are created again on the next attempt"
            ) from exc
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, f"{action} {subject} in {self.dataset.dataset_id}") from exc


def _shape(columns: Sequence[Any]) -> list[tuple[Any, ...]]:
    """What of a schema must match: names, standard types, modes, nested fields."""
    legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}
    return [
        (c.name, legacy.get(c.field_type, c.field_type), c.mode or "NULLABLE", _shape(c.fields))
        for c in columns
    ]


def _translate(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, api_exceptions.RetryError):
        return Temporary(f"BigQuery kept failing to {what}: {exc.cause or exc}")
    status = getattr(exc, "code", None)
    status = status if isinstance(status, int) else None
    reasons = {e.get("reason") for e in getattr(exc, "errors", None) or () if isinstance(e, dict)}
    if status in (401, 403) and not reasons & _RETRYABLE_403:
        return NeedsOperator(
            f"BigQuery refused to {what} ({status}): the credentials likely lack a BigQuery "
            f"role on the dataset (roles/bigquery.dataEditor and jobUser): {exc}"
        )
    if status is not None and (status in (403, 408, 429) or status >= 500):
        return Temporary(f"BigQuery could not {what} ({status}): {exc}")
    if status is None and isinstance(exc, requests.RequestException | OSError):
        return Temporary(f"could not reach BigQuery to {what}: {exc}")
    if isinstance(exc, auth_exceptions.TransportError):
        return Temporary(f"could not reach Google's token endpoint to {what}: {exc}")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return NeedsOperator(f"no usable Google credentials to {what}: {exc}")
    return NeedsOperator(f"BigQuery rejected the request to {what}: {exc}")


def _run_param(run_id: str) -> Any:
    return bigquery.ScalarQueryParameter("run", "STRING", run_id)


def _run_filter(run_id: str, agent: str | None) -> tuple[str, list[Any]]:
    """A run's rows: by the clustering columns in their order when the agent is known
    (BigQuery prunes blocks on a later clustering column only after the earlier ones)."""
    if agent is None:
        return "run_id = @run", [_run_param(run_id)]
    agent_param = bigquery.ScalarQueryParameter("agent", "STRING", agent)
    return "agent_id = @agent AND run_id = @run", [agent_param, _run_param(run_id)]


def _read_row(row: Any, map_column: str) -> dict[str, Any]:
    """A result row as the local store gives it: the map column as (key, value) pairs."""
    out = dict(row.items())
    out[map_column] = [(p["key"], p["value"]) for p in out[map_column] or ()]
    return out


def _json_row(row: Mapping[str, Any], maps: Sequence[str]) -> dict[str, Any]:
    out = {k: _json_value(v) for k, v in row.items() if v is not None}
    for name in maps:  # a map column is a REPEATED RECORD <key, value>
        if name in out:
            out[name] = [{"key": k, "value": v} for k, v in out[name]]
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


# ---------------------------------------------------------------- what BigQuery bills
def logical_bytes(table: pa.Table, columns: Sequence[str] | None = None) -> int:
    """The logical size BigQuery gives ``columns`` (all by default) of ``table``'s rows, by
    its published rules: a STRING is 2 bytes plus its UTF-8 length, an INT64, FLOAT64 or
    TIMESTAMP 8, a NULL 0, a RECORD the sum of its fields, a REPEATED field the sum of its
    items (a map column is a REPEATED RECORD <key, value>). On-demand queries bill the
    bytes of the columns they read in the blocks they scan (at least 10 MB a query), and
    storage bills this size per month."""
    names = list(columns) if columns is not None else table.column_names
    return sum(_array_bytes(chunk) for name in names for chunk in table[name].chunks)


def _array_bytes(array: pa.Array) -> int:
    typ = array.type
    if pa.types.is_map(typ):  # a list of <key, value>
        return _array_bytes(array.cast(_load_type(typ)))
    if pa.types.is_list(typ):
        return _array_bytes(array.flatten())
    if pa.types.is_struct(typ):
        fields = array.flatten()  # the parent's NULLs carried into each field
        return sum(_array_bytes(field) for field in fields)
    present = len(array) - array.null_count
    if pa.types.is_string(typ):
        lengths = pc.binary_length(array)
        return 2 * present + int(pc.sum(lengths).as_py() or 0)
    return 8 * present  # INT64, FLOAT64, TIMESTAMP: the FMEL columns' other types


# ---------------------------------------------------------------- checking rows
def checked_decisions(table: pa.Table, run_id: str) -> pa.Table:
    """``table`` if BigQuery would take every row as this run's; :class:`RowRefused` if not."""
    _check_table(table, store.DECISION_SCHEMA, REQUIRED_DECISION, run_id, "FMEL row")
    return table


def checked_summary(table: pa.Table, run_id: str) -> pa.Table:
    _check_table(table, store.SUMMARY_SCHEMA, REQUIRED_SUMMARY, run_id, "FMEL run summary")
    if table.num_rows != 1:
        raise RowRefused(f"the FMEL run summary of run {run_id} is {table.num_rows} rows, not one")
    return table


def _check_table(
    table: pa.Table, schema: pa.Schema, required: Sequence[str], run_id: str, what: str
) -> None:
    if not table.schema.equals(schema, check_metadata=False):
        raise RowRefused(f"{what}s of run {run_id} do not have the FMEL columns")
    for name in required:
        if table[name].null_count:
            raise RowRefused(f"an {what} of run {run_id} has no {name} (required)")
    if not pc.all(pc.equal(table["run_id"], run_id)).as_py() and table.num_rows:
        other = pc.filter(table["run_id"], pc.not_equal(table["run_id"], run_id))[0]
        raise RowRefused(f"an {what} sent as run {run_id}'s is run {other.as_py()!r}'s")
    for name, allowed in _ENUMS.items():
        if name in table.column_names and table.num_rows:
            bad = pc.filter(table[name], pc.invert(pc.is_in(table[name], pa.array(allowed))))
            if len(bad):
                raise RowRefused(f"an {what} of run {run_id} has {name} {bad[0].as_py()!r}")
    for field in schema:
        column = table[field.name]
        if pa.types.is_timestamp(field.type) and table.num_rows:
            span = pc.min_max(column.cast(pa.int64())).as_py()
            low, high = span["min"], span["max"]
            if low is not None and not _TS_MIN_US <= low <= high <= _TS_MAX_US:
                raise RowRefused(f"an {what} of run {run_id} has {field.name} out of range")
        if any(_null_items(chunk) for chunk in column.chunks):
            raise RowRefused(f"an {what} of run {run_id} has a NULL inside list {field.name}")


def _null_items(array: pa.Array) -> bool:
    """Whether a list anywhere inside ``array`` holds a NULL (BigQuery's arrays cannot)."""
    typ = array.type
    if pa.types.is_map(typ):
        return _null_items(array.items)
    if pa.types.is_list(typ):
        items = array.flatten()
        return bool(items.null_count) or _null_items(items)
    if pa.types.is_struct(typ):
        return any(_null_items(array.field(i)) for i in range(typ.num_fields))
    return False


def rows_table(
    rows: Sequence[Mapping[str, Any]], schema: pa.Schema, required: Sequence[str], what: str
) -> pa.Table:
    """Python rows as an Arrow table of ``schema``, each value checked for its exact type
    first (pyarrow alone would take ``1.0`` as an INT64, ``True`` as a FLOAT64, a string as a
    list of characters, a naive datetime as UTC)."""
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise RowRefused(f"FMEL {what} {i} is not a mapping")
        unknown = set(row) - set(schema.names)
        if unknown:
            raise RowRefused(f"FMEL {what} {i} has unknown columns {sorted(unknown)}")
        for field in schema:
            value = row.get(field.name)
            if value is None:
                if field.name in required:
                    raise RowRefused(f"FMEL {what} {i} has no {field.name} (required)")
                continue
            _check_value(value, field.type, f"FMEL {what} {i}, column {field.name}")
    maps = [f.name for f in schema if pa.types.is_map(f.type)]
    prepared = [dict(row) for row in rows]
    for row in prepared:
        for name in maps:
            if isinstance(row.get(name), Mapping):
                row[name] = list(row[name].items())
    return pa.Table.from_pylist(prepared, schema=schema)


def _check_value(value: Any, typ: pa.DataType, where: str) -> None:
    if pa.types.is_map(typ):
        pairs = list(value.items()) if isinstance(value, Mapping) else value
        _check_list(pairs, where)
        for pair in pairs:
            if not isinstance(pair, list | tuple) or len(pair) != 2 or pair[0] is None:
                raise RowRefused(f"{where}: {pair!r:.80} is not a (key, value) pair")
            _check_value(pair[0], typ.key_type, where)
            if pair[1] is not None:
                _check_value(pair[1], typ.item_type, where)
    elif pa.types.is_list(typ):
        _check_list(value, where)
        for item in value:
            if item is None:
                raise RowRefused(f"{where}: a list cannot hold NULL")
            _check_value(item, typ.value_type, where)
    elif pa.types.is_struct(typ):
        if not isinstance(value, Mapping):
            raise RowRefused(f"{where}: expected a record, got {value!r:.80}")
        names = [typ.field(i).name for i in range(typ.num_fields)]
        if set(value) - set(names):
            raise RowRefused(f"{where}: unknown fields {sorted(set(value) - set(names))}")
        for i, name in enumerate(names):
            if value.get(name) is not None:
                _check_value(value[name], typ.field(i).type, f"{where}.{name}")
    elif not _scalar_ok(value, typ):
        raise RowRefused(f"{where}: expected {_scalar_type(typ)}, got {value!r:.80}")


def _check_list(value: Any, where: str) -> None:
    if not isinstance(value, list | tuple):
        raise RowRefused(f"{where}: expected a list, got {value!r:.80}")


def _scalar_ok(value: Any, typ: pa.DataType) -> bool:
    if isinstance(value, bool):
        return False
    if pa.types.is_string(typ):
        return isinstance(value, str)
    if pa.types.is_int64(typ):
        return isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX
    if pa.types.is_float64(typ):
        return isinstance(value, int | float)
    if pa.types.is_timestamp(typ):
        return isinstance(value, datetime) and value.utcoffset() is not None
    return False
