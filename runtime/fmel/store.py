"""FMEL rows on disk: Parquet files per run, read back with DuckDB.

Layout under the FMEL folder (``$TRADEOPS_HOME/fmel`` by default)::

    trading_decisions/<run_id>/part-00000.parquet   one file per flushed batch
    run_summaries/<run_id>.parquet                   one row when the run ends

Each run writes only its own files, each one written to a temporary name and renamed,
so many sandboxed runs can record at once and a reader never sees half a file. The
columns are those of BigQuery's ``fmel.trading_decisions`` and ``fmel.run_summaries``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runtime.fmel import encoding as enc

DECISIONS = "trading_decisions"
SUMMARIES = "run_summaries"

ORDER_T = pa.struct(
    [
        ("side", pa.string()),
        ("symbol", pa.string()),
        ("size", pa.float64()),
        ("type", pa.string()),
        ("price", pa.float64()),
        ("ref", pa.int64()),
    ]
)
FILL_T = pa.struct(
    [
        ("symbol", pa.string()),
        ("size", pa.float64()),
        ("price", pa.float64()),
        ("commission", pa.float64()),
        ("pnl", pa.float64()),
        ("ref", pa.int64()),
    ]
)
POSITION_T = pa.struct(
    [
        ("symbol", pa.string()),
        ("size", pa.float64()),
        ("price", pa.float64()),
        ("value", pa.float64()),
    ]
)
ACCESS_T = pa.struct(
    [
        ("symbol", pa.string()),
        ("fields", pa.list_(pa.string())),
        ("lookback", pa.int64()),
        ("lookahead", pa.int64()),
    ]
)
TS = pa.timestamp("us", tz="UTC")
# Columns worth dictionary-encoding; trying it on hashes (all distinct) costs time for nothing.
_DICT_COLUMNS = ["run_id", "agent_id", "agent_version", "user_id", "mode", "stage", "action"]

DECISION_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("agent_id", pa.string()),
        ("agent_version", pa.string()),
        ("user_id", pa.string()),
        ("mode", pa.string()),
        ("bar_number", pa.int64()),
        ("stage", pa.string()),
        ("timestamp", TS),
        ("recorded_at", TS),
        ("action", pa.string()),
        ("actions_taken", pa.list_(ORDER_T)),
        ("fills", pa.list_(FILL_T)),
        ("portfolio_value", pa.float64()),
        ("portfolio_cash", pa.float64()),
        ("positions", pa.list_(POSITION_T)),
        ("indicators", pa.map_(pa.string(), pa.float64())),
        ("data_accessed", pa.list_(ACCESS_T)),
        ("log", pa.list_(pa.string())),
        ("state_hash", pa.string()),
        ("complete_state_hash", pa.string()),
    ]
)

SUMMARY_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("agent_id", pa.string()),
        ("agent_version", pa.string()),
        ("user_id", pa.string()),
        ("mode", pa.string()),
        ("decisions", pa.int64()),
        ("actions", pa.map_(pa.string(), pa.int64())),
        ("first_bar", pa.int64()),
        ("first_timestamp", TS),
        ("last_timestamp", TS),
        ("genesis", pa.string()),
        ("chain_head", pa.string()),
        ("symbols", pa.list_(pa.string())),
        ("indicators", pa.list_(pa.string())),
        ("encoding_version", pa.int64()),
        ("log", pa.list_(pa.string())),
        ("recorded_at", TS),
    ]
)


@dataclass(frozen=True)
class RunHeader:
    run_id: str
    agent_id: str
    agent_version: str
    user_id: str
    mode: str
    symbols: tuple[str, ...]
    indicators: tuple[str, ...]


def _write_parquet(table: pa.Table, where: Any) -> None:
    pq.write_table(
        table, where, compression="zstd", use_dictionary=_DICT_COLUMNS, write_statistics=False
    )


def write_table(table: pa.Table, path: Path) -> None:
    """Replace ``path`` with ``table`` as Parquet, atomically (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_parquet(table, tmp)
    os.replace(tmp, path)


def _now_us() -> int:
    return time.time_ns() // 1000


class BatchWriter:
    """Turns the recorder's column buffers into Parquet files, one per batch (the recorder
    calls it from its writer thread)."""

    def __init__(self, root: Path, header: RunHeader) -> None:
        self.header = header
        self.run_dir = root / DECISIONS / header.run_id
        self.summary_path = root / SUMMARIES / f"{header.run_id}.parquet"
        self._part = _next_part(self.run_dir)
        nsym = len(header.symbols)
        self._sym = pa.array(list(header.symbols), pa.string())
        self._nsym = nsym
        self._ind_names = list(header.indicators)
        self._access_cache = pa.array([], pa.list_(ACCESS_T))

    def write_part(self, table: pa.Table) -> Path:
        """Write one batch's table (:meth:`batch_table`) as the run's next part file."""
        path = self.run_dir / f"part-{self._part:05d}.parquet"
        self._part += 1
        write_table(table, path)
        return path

    def warm_up(self) -> None:
        """Build and encode a throwaway batch and summary in memory, so that the first
        flush of a live session does not pay for pyarrow's first use (tens of ms)."""
        width = enc.N_HEAD + len(self._ind_names) + 3 * self._nsym
        sym = self.header.symbols[0] if self.header.symbols else "?"
        table = self.batch_table(
            matrix=np.ones((1, width)),
            access_codes=np.zeros(1, dtype=np.int64),
            access_patterns=[[{"symbol": sym, "fields": ["close"], "lookback": 0, "lookahead": 0}]],
            orders={0: [("BUY", sym, 1.0, "Market", None, 1)]},
            fills={0: [(sym, 1.0, 1.0, 0.0, 0.0, 1)]},
            logs={0: ["warm-up"]},
            state_hex=b"0" * 64,
            chained_hex=b"0" * 64,
        )
        _write_parquet(table, pa.BufferOutputStream())
        self._access_cache = pa.array([], pa.list_(ACCESS_T))  # it held the throwaway's
        summary = {"decisions": 0, "actions": {}, "first_bar": 1, "first_bar_us": None,
                   "last_bar_us": None, "genesis": "", "chain_head": ""}  # fmt: skip
        _write_parquet(self._summary_table(summary, []), pa.BufferOutputStream())

    def batch_table(
        self,
        *,
        matrix: np.ndarray,
        access_codes: np.ndarray,
        access_patterns: list[list[dict[str, Any]]],
        orders: Mapping[int, list[tuple[Any, ...]]],
        fills: Mapping[int, list[tuple[Any, ...]]],
        logs: Mapping[int, list[str]],
        state_hex: bytes,
        chained_hex: bytes,
    ) -> pa.Table:
        n = matrix.shape[0]
        h = self.header
        nind = len(self._ind_names)
        cols: dict[str, pa.Array] = {
            "run_id": pa.repeat(h.run_id, n),
            "agent_id": pa.repeat(h.agent_id, n),
            "agent_version": pa.repeat(h.agent_version, n),
            "user_id": pa.repeat(h.user_id, n),
            "mode": pa.repeat(h.mode, n),
            "bar_number": pa.array(matrix[:, 0].astype(np.int64)),
            "stage": _labels(matrix[:, 1], enc.STAGES),
            "timestamp": pa.array(matrix[:, 2].astype(np.int64), TS),
            "recorded_at": pa.repeat(pa.scalar(_now_us(), TS), n),
            "action": _labels(matrix[:, 3], enc.ACTIONS),
            "actions_taken": _sparse_lists(orders, n, ORDER_T, ORDER_T.names),
            "fills": _sparse_lists(fills, n, FILL_T, FILL_T.names),
            "portfolio_value": pa.array(matrix[:, 4]),
            "portfolio_cash": pa.array(matrix[:, 5]),
            "positions": self._positions(matrix[:, enc.N_HEAD + nind :]),
            "indicators": self._indicators(matrix[:, enc.N_HEAD : enc.N_HEAD + nind]),
            "data_accessed": self._accesses(access_codes, access_patterns),
            "log": _sparse_lists(logs, n, pa.string(), None),
            "state_hash": _hex_column(state_hex, n),
            "complete_state_hash": _hex_column(chained_hex, n),
        }
        return pa.Table.from_pydict(cols, schema=DECISION_SCHEMA)

    def _accesses(self, codes: np.ndarray, patterns: list[list[dict[str, Any]]]) -> pa.Array:
        if len(patterns) != len(self._access_cache):
            self._access_cache = pa.array(patterns, pa.list_(ACCESS_T))
        return self._access_cache.take(pa.array(codes))

    def _positions(self, block: np.ndarray) -> pa.Array:
        n = block.shape[0]
        trip = block.reshape(n, self._nsym, 3)
        held = trip[:, :, 0] != 0.0
        offsets = np.concatenate([[0], np.cumsum(held.sum(axis=1))]).astype(np.int32)
        sym_idx = np.nonzero(held)[1]
        values = trip[held]
        syms = self._sym.take(pa.array(sym_idx))
        struct = pa.StructArray.from_arrays(
            [syms, pa.array(values[:, 0]), pa.array(values[:, 1]), pa.array(values[:, 2])],
            fields=list(POSITION_T),
        )
        return pa.ListArray.from_arrays(pa.array(offsets), struct)

    def _indicators(self, block: np.ndarray) -> pa.Array:
        n, k = block.shape
        offsets = pa.array((np.arange(n + 1) * k).astype(np.int32))
        keys = pa.array(self._ind_names * n, pa.string())
        return pa.MapArray.from_arrays(offsets, keys, pa.array(block.reshape(-1)))

    def write_summary(self, summary: Mapping[str, Any], tail_log: list[str]) -> Path:
        write_table(self._summary_table(summary, tail_log), self.summary_path)
        return self.summary_path

    def _summary_table(self, summary: Mapping[str, Any], tail_log: list[str]) -> pa.Table:
        h = self.header
        first, last = summary["first_bar_us"], summary["last_bar_us"]
        row = {
            "run_id": h.run_id,
            "agent_id": h.agent_id,
            "agent_version": h.agent_version,
            "user_id": h.user_id,
            "mode": h.mode,
            "decisions": summary["decisions"],
            "actions": list(summary["actions"].items()),
            "first_bar": summary["first_bar"],
            "first_timestamp": None if first is None else int(first),
            "last_timestamp": None if last is None else int(last),
            "genesis": summary["genesis"],
            "chain_head": summary["chain_head"],
            "symbols": list(h.symbols),
            "indicators": list(h.indicators),
            "encoding_version": enc.ENCODING_VERSION,
            "log": tail_log,
            "recorded_at": _now_us(),
        }
        return pa.Table.from_pylist([row], schema=SUMMARY_SCHEMA)


def _next_part(run_dir: Path) -> int:
    """A resumed run (paper restart) appends after the parts already there."""
    if not run_dir.exists():
        return 0
    parts = [int(p.stem.split("-")[1]) for p in run_dir.glob("part-*.parquet")]
    return max(parts, default=-1) + 1


def _hex_column(joined: bytes, n: int) -> pa.Array:
    """n strings of 64 hex characters, straight from one buffer."""
    offsets = np.arange(0, 64 * n + 1, 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(joined))


def _labels(codes: np.ndarray, names: Sequence[str]) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(codes.astype(np.int64)))


def _sparse_lists(
    rows: Mapping[int, list[Any]], n: int, item: pa.DataType, names: Sequence[str] | None
) -> pa.Array:
    """A list column that is empty on most rows, built without a Python loop over them."""
    counts = np.zeros(n, dtype=np.int32)
    flat: list[Any] = []
    for i in sorted(rows):
        counts[i] = len(rows[i])
        flat.extend(rows[i])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    if names is not None:
        flat = [dict(zip(names, t, strict=True)) for t in flat]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, item))


def summary_json(path: Path) -> dict[str, Any]:
    """The run summary as plain JSON-able data."""
    row = pq.read_table(path).to_pylist()[0]
    row["actions"] = dict(row["actions"])
    for key in ("first_timestamp", "last_timestamp", "recorded_at"):
        row[key] = row[key].isoformat() if row[key] is not None else None
    return json.loads(json.dumps(row))


# ------------------------------------------------------------------ reading back
def decision_files(root: Path, run_id: str) -> list[Path]:
    """The run's part files: regular files only. A paper session's folder (the store links
    to it) is written by its agent, so a part that is a link (to another run's rows, say)
    or a FIFO is never read."""
    parts = sorted((root / DECISIONS / run_id).glob("part-*.parquet"))
    return [p for p in parts if stat.S_ISREG(p.lstat().st_mode)]


def _stored_file(path: Path) -> bool:
    """A regular file, or the store's one link to a paper session's regular file (a link
    that session made in its folder, to another run's summary say, is not followed)."""
    try:
        if path.is_symlink():
            path = path.parent / os.readlink(path)
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def connect(root: Path) -> Any:
    """A DuckDB connection with views ``trading_decisions`` and ``run_summaries``.

    The same SQL as on BigQuery's ``fmel`` dataset works against them, e.g.
    ``SELECT action, count(*) FROM trading_decisions WHERE run_id = ? GROUP BY 1``.
    """
    import duckdb

    con = duckdb.connect()
    for view, pattern, schema in (
        (DECISIONS, f"{root}/{DECISIONS}/*/part-*.parquet", DECISION_SCHEMA),
        (SUMMARIES, f"{root}/{SUMMARIES}/*.parquet", SUMMARY_SCHEMA),
    ):
        if list(root.glob(pattern[len(str(root)) + 1 :])):
            con.execute(
                f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{_sql_str(pattern)}', "  # noqa: S608 - views take no parameters; the path is the operator's, quoted
                "union_by_name = true)"
            )
        else:  # no run yet: an empty view with the right columns
            con.register(f"_{view}_empty", schema.empty_table())
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM _{view}_empty")  # noqa: S608
    return con


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def read_summary(root: Path, run_id: str) -> dict[str, Any] | None:
    path = root / SUMMARIES / f"{run_id}.parquet"
    if not _stored_file(path):
        return None
    row: dict[str, Any] = pq.read_table(path).to_pylist()[0]
    row["actions"] = dict(row["actions"] or [])
    return row


def read_rows(
    root: Path,
    run_id: str,
    *,
    last: int | None = None,
    columns: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """A run's rows in bar order (all, or the last ``last``; only those whose action is one
    of ``actions`` when given)."""
    files = decision_files(root, run_id)
    if not files:
        return []
    wanted = list(columns or [])
    read = [*wanted, "run_id"] if wanted and "run_id" not in wanted else wanted
    if wanted and actions is not None and "action" not in read:
        read.append("action")
    table = pq.ParquetDataset([str(f) for f in files]).read(columns=read or None)
    # a paper session writes its own parts: rows that claim another run are not this run's
    keep = pc.equal(table["run_id"], run_id)
    if actions is not None:
        keep = pc.and_(keep, pc.is_in(table["action"], value_set=pa.array(list(actions))))
    table = table.filter(keep).sort_by("bar_number")
    if wanted and "action" not in wanted and "action" in table.column_names:
        table = table.drop_columns(["action"])
    if wanted and "run_id" not in wanted:
        table = table.drop_columns(["run_id"])
    if last is not None:
        table = table.slice(max(0, table.num_rows - last))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def run_ids(root: Path) -> list[str]:
    base = root / DECISIONS
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []


def recent_run_ids(root: Path) -> list[str]:
    """:func:`run_ids`, the most recently written first."""
    base = root / DECISIONS

    def written(run_id: str) -> float:
        try:
            return (base / run_id).stat().st_mtime
        except OSError:  # gone meanwhile
            return 0.0

    return sorted(run_ids(root), key=lambda r: (written(r), r), reverse=True)


@dataclass(frozen=True)
class Verification:
    run_id: str
    ok: bool
    rows: int
    chain_head: str | None
    first_bad_bar: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "rows": self.rows,
            "chain_head": self.chain_head,
            "first_bad_bar": self.first_bad_bar,
            "reason": self.reason,
        }


def verify_run(root: Path, run_id: str) -> Verification:
    """Recompute every state hash and the chain from the stored rows.

    Names the first bar whose stored hashes do not match its stored content, a gap
    in the bar numbers, or a chain head that differs from the run summary's.
    """
    return verify_rows(run_id, read_rows(root, run_id), read_summary(root, run_id))


@dataclass(frozen=True)
class ChainLink:
    """Where a stretch of rows leaves the chain: its head and the next bar expected, or
    the first problem (``next_bar`` is then the bar where it is)."""

    head: str
    next_bar: int
    problem: str | None = None


def continue_chain(
    rows: Sequence[dict[str, Any]],
    symbols: Sequence[str],
    indicators: Sequence[str],
    prev: str,
    expected: int,
) -> ChainLink:
    """Recompute ``rows`` (in bar order) onto a chain whose head is ``prev`` and whose next
    bar is ``expected``: each row's state hash from its content, each link from the last."""
    for row in rows:
        bar = row["bar_number"]
        if bar != expected:
            missing = f"bar {expected} is missing (next stored bar is {bar})"
            return ChainLink(prev, expected, missing)
        names = [k for k, _ in row["indicators"] or ()]
        if names != list(indicators):
            return ChainLink(prev, bar, "indicator names changed")
        state = hashlib.sha256(enc.encode_row(row, symbols, indicators)).hexdigest()
        if state != row["state_hash"]:
            return ChainLink(prev, bar, "stored row does not match its state_hash")
        prev = enc.chain(prev, state)
        if prev != row["complete_state_hash"]:
            return ChainLink(prev, bar, "complete_state_hash breaks the chain")
        expected += 1
    return ChainLink(prev, expected)


def verify_rows(
    run_id: str, rows: Sequence[dict[str, Any]], summary: dict[str, Any] | None
) -> Verification:
    """``verify_run`` for rows (all of the run's, in bar order) and summary already read."""
    if not rows:
        return Verification(run_id, False, 0, None, reason="no FMEL rows for this run")
    if summary is not None:
        symbols, indicators = summary["symbols"], summary["indicators"]
        prev = summary["genesis"]
        if enc.genesis(symbols, indicators) != prev:
            return Verification(
                run_id,
                False,
                len(rows),
                None,
                rows[0]["bar_number"],
                "run header (symbols, indicators) does not match its genesis",
            )
        expected = summary["first_bar"]
    else:
        symbols = sorted({p["symbol"] for r in rows for p in r["positions"] or ()})
        indicators = [k for k, _ in rows[0]["indicators"] or ()]
        prev = enc.genesis(symbols, indicators)
        expected = rows[0]["bar_number"]
    link = continue_chain(rows, symbols, indicators, prev, expected)
    if link.problem is not None:
        return Verification(run_id, False, len(rows), link.head, link.next_bar, link.problem)
    prev, expected = link.head, link.next_bar
    if summary is not None:
        if summary["chain_head"] != prev:
            return Verification(
                run_id,
                False,
                len(rows),
                prev,
                expected,
                "rows end before the chain head of the run summary",
            )
        first = summary["first_bar"]
        if summary["decisions"] != expected - first:
            return Verification(
                run_id, False, len(rows), prev, expected, "row count differs from the run summary"
            )
    reason = None if summary is not None else "no run summary (run did not finish)"
    return Verification(run_id, True, len(rows), prev, None, reason)
