"""The trust boundary: what a sandbox, a build or a pod hands back is hostile input.

The agent ran where these files were made, so anything in its box may be a forgery, a
link to a file it should not see, a FIFO that blocks the reader for ever, or far too big.
Every runner (the local sandbox now; Cloud Build and pods, which download the box first)
ends a run with :func:`collect`, the one trusted step:

* files are read by :func:`read_regular` only: reached without following any link (every
  folder on the way is opened with ``O_NOFOLLOW``), regular files only (a FIFO, device or
  folder is refused without blocking), each bounded in size;
* the result document is parsed against its schema (known keys, types, bounds); identity
  (run, agent, version, user), the agent's sha256, the parameters and the data checks come
  from the request and the trusted side's own reading of the data, never from the box;
* FMEL parts are verified on ingest: the Arrow schema, every row of this run and this
  agent, bar numbers contiguous, every state hash and the chain recomputed to the summary's
  head, the result's ``fmel`` figures and final value equal to the record's. Only then are
  the rows written to the store, re-encoded by us (never moved or copied as files);
* a chart must be a PNG.

Anything else fails the run with a clear ``agent`` error (only the agent's code can make
its box say something our runtime does not), and nothing of it reaches the store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any, cast

from runtime.errors import ErrorKind, RunError, make_error
from runtime.metrics import MAX_TRADES, RESULT_KEYS, TRADE_KEYS
from workers.payloads import ResultDoc, ResultParameters

RESULT_BYTES = 1 << 20
PROGRESS_BYTES = 4096
CHART_BYTES = 16 << 20
MAX_PARTS = 10_000
MAX_TEXT = 2_000  # a message, a warning, a parameter's text
MAX_TRACEBACK = 20_000
MAX_ITEMS = 200  # entries of a mapping or list in the document
MAX_MONTHS = 1_200  # monthly_returns: a century of months
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_TRADE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2})?")


class Refused(Exception):
    """What the box handed back cannot be accepted; the message says why, in one line."""


# ---------------------------------------------------------------- reading files
def read_regular(root: Path, rel: str, limit: int) -> bytes | None:
    """The bytes of ``root/rel``, or None when nothing is there.

    Refuses (raises :class:`Refused`) a link anywhere on the way, anything but a regular
    file, and a file over ``limit`` bytes. Never blocks: a FIFO is opened non-blocking and
    refused by its type before any read.
    """
    parts = [p for p in rel.split("/") if p]
    try:
        with _walk(root, parts[:-1]) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Refused(f"{rel}: {_why(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{rel} is not a regular file")
        if info.st_size > limit:
            raise Refused(f"{rel} is {info.st_size} bytes, over the limit of {limit}")
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Refused(f"{rel} grew over the limit of {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_regular(root: Path, rel: str) -> list[str]:
    """Names of the regular files in the folder ``root/rel`` (reached without links),
    sorted; anything else in it is refused. Missing folder: ``[]``."""
    parts = [p for p in rel.split("/") if p]
    try:
        with _walk(root, parts) as dir_fd, os.scandir(dir_fd) as entries:
            names = []
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    raise Refused(f"{rel}/{entry.name} is not a regular file")
                names.append(entry.name)
                if len(names) > MAX_PARTS:
                    raise Refused(f"{rel} holds more than {MAX_PARTS} files")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise Refused(f"{rel}: {_why(exc)}") from None
    return sorted(names)


@contextlib.contextmanager
def _walk(root: Path, folders: Sequence[str]) -> Iterator[int]:
    """A descriptor of ``root/folders…``, each step opened without following a link."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for name in folders:
            if name in (".", ".."):
                raise Refused(f"a path through {name!r}")
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            fds.append(os.open(name, flags, dir_fd=fds[-1]))
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a link or not a folder (links are never followed)"
    return exc.strerror or type(exc).__name__


# ------------------------------------------------------------ the result document
@dataclass(frozen=True)
class Trusted:
    """What the trusted side knows of a run, whatever the box says."""

    run_id: str
    agent_id: str
    agent_version: str
    user_id: str
    agent_sha256: str | None
    parameters: Mapping[str, Any]  # symbols, dates, cash, timeframe, commission
    data_checks: Sequence[Mapping[str, Any]]
    symbols: Sequence[str]
    mode: str = "BACKTEST"  # what its FMEL rows must say they are (a parity run's: PAPER)


def parse_result(raw: bytes, trusted: Trusted) -> ResultDoc:
    """The result document the box wrote, checked field by field; identity from ``trusted``."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=lambda _c: None)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"result.json is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise Refused("result.json is not an object")
    out = skeleton(trusted)
    out["strategy"] = _optional(doc, "strategy", _strategy)
    out["results"] = _optional(doc, "results", lambda v: _results(v, trusted))
    out["fmel"] = _optional(doc, "fmel", _fmel)
    out["warnings"] = _texts(doc.get("warnings") or [], "warnings")
    out["monitoring"] = _optional(doc, "monitoring", _monitoring)
    out["error"] = _optional(doc, "error", _error)
    out["chart"] = bool(doc.get("chart"))
    return out


def skeleton(trusted: Trusted) -> ResultDoc:
    return {
        "run_id": trusted.run_id,
        "agent_id": trusted.agent_id,
        "agent_sha256": trusted.agent_sha256,
        # the trusted side's own statement of the request (runtime.backtest.parameters)
        "parameters": cast(ResultParameters, dict(trusted.parameters)),
        "strategy": None,
        "results": None,
        "data_checks": [dict(c) for c in trusted.data_checks],
        "warnings": [],
        "fmel": None,
        "chart": None,
        "monitoring": None,
        "error": None,
    }


def _optional(doc: Mapping[str, Any], key: str, check: Any) -> Any:
    value = doc.get(key)
    return None if value is None else check(value)


def _mapping(value: Any, what: str, limit: int = MAX_ITEMS) -> Mapping[str, Any]:
    if not isinstance(value, dict) or len(value) > limit:
        raise Refused(f"{what} is not an object of at most {limit} entries")
    if not all(isinstance(k, str) and len(k) <= 100 for k in value):
        raise Refused(f"{what} has a key that is not a short string")
    return value


def _number(value: Any, what: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"{what} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if abs(value) > 1e18:
        raise Refused(f"{what} is out of range")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**12:
        raise Refused(f"{what} is not a count")
    return value


def _text(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise Refused(f"{what} is not a string of at most {limit} characters")
    return value


def _texts(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise Refused(f"{what} is not a list of at most 50 strings")
    return [_text(v, what) for v in value]


def _strategy(value: Any) -> dict[str, Any]:
    doc = _mapping(value, "strategy")
    params = _mapping(doc.get("params") or {}, "strategy.params")
    clean: dict[str, Any] = {}
    for name, v in params.items():
        if isinstance(v, str):
            clean[name] = _text(v, f"strategy.params.{name}", 200)
        elif v is None or isinstance(v, bool):
            clean[name] = v
        else:
            clean[name] = _number(v, f"strategy.params.{name}")
    return {"name": _text(doc.get("name"), "strategy.name", 200), "params": clean}


_PER_SYMBOL = ("net_pnl", "trades_closed", "win_trades", "loss_trades", "final_position",
               "buy_and_hold_return_pct")  # fmt: skip


def _results(value: Any, trusted: Trusted) -> dict[str, Any]:
    doc = _mapping(value, "results")
    if set(doc) != set(RESULT_KEYS):
        raise Refused("results do not have exactly the known figures")
    symbols = trusted.symbols
    out: dict[str, Any] = {}
    for key in RESULT_KEYS:
        if key == "annual_returns":
            years = _mapping(doc[key], key)
            if not all(re.fullmatch(r"\d{4}", y) for y in years):
                raise Refused("annual_returns has a key that is not a year")
            out[key] = {y: _number(v, f"{key}.{y}") for y, v in years.items()}
        elif key == "monthly_returns":
            months = _mapping(doc[key], key, MAX_MONTHS)
            if not all(_MONTH.fullmatch(m) for m in months):
                raise Refused("monthly_returns has a key that is not a month (YYYY-MM)")
            out[key] = {m: _number(v, f"{key}.{m}") for m, v in months.items()}
        elif key == "per_symbol":
            per = _mapping(doc[key], key)
            if not set(per) <= set(symbols):
                raise Refused("per_symbol names a symbol the run was not given")
            out[key] = {s: _per_symbol(v, s) for s, v in per.items()}
        elif key == "trades":
            out[key] = _trades(doc[key], symbols, _window(trusted.parameters))
        else:
            out[key] = _number(doc[key], f"results.{key}")
    closed = out["trades_closed"]
    if not isinstance(closed, int) or len(out["trades"]) != min(closed, MAX_TRADES):
        raise Refused("trades does not list the last closed trades (trades_closed)")
    return out


def _per_symbol(value: Any, symbol: str) -> dict[str, Any]:
    doc = _mapping(value, f"per_symbol.{symbol}")
    if set(doc) != set(_PER_SYMBOL):
        raise Refused(f"per_symbol.{symbol} does not have exactly the known figures")
    return {k: _number(doc[k], f"per_symbol.{symbol}.{k}") for k in _PER_SYMBOL}


def _trades(
    value: Any, symbols: Sequence[str], window: tuple[date | None, date | None]
) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_TRADES:
        raise Refused(f"trades is not a list of at most {MAX_TRADES} trades")
    trades = [_trade(t, f"trades[{i}]", symbols, window) for i, t in enumerate(value)]
    if len({len(t[k]) for t in trades for k in ("entry_date", "exit_date")}) > 1:
        raise Refused("trades mixes dates and datetimes")
    return trades


def _trade(
    value: Any, what: str, symbols: Sequence[str], window: tuple[date | None, date | None]
) -> dict[str, Any]:
    doc = _mapping(value, what)
    if set(doc) != set(TRADE_KEYS):
        raise Refused(f"{what} does not have exactly the known fields")
    if doc["symbol"] not in symbols:
        raise Refused(f"{what}.symbol is not a symbol the run was given")
    if doc["direction"] not in ("long", "short"):
        raise Refused(f"{what}.direction is not long or short")
    entry = _trade_date(doc["entry_date"], f"{what}.entry_date", window)
    exit_ = _trade_date(doc["exit_date"], f"{what}.exit_date", window)
    if exit_ < entry:
        raise Refused(f"{what} exits before it enters")
    size = _number(doc["size"], f"{what}.size")
    if size is not None and size <= 0:
        raise Refused(f"{what}.size is not a positive size")
    out = {k: doc[k] for k in ("symbol", "direction", "entry_date", "exit_date")}
    out["size"] = size
    for key in ("entry_price", "exit_price", "pnl", "pnl_net"):
        out[key] = _number(doc[key], f"{what}.{key}")
    out["bars_held"] = _count(doc["bars_held"], f"{what}.bars_held")
    return out


def _trade_date(value: Any, what: str, window: tuple[date | None, date | None]) -> str:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS``, a real one, within the run's window."""
    if not isinstance(value, str) or not _TRADE_DATE.fullmatch(value):
        raise Refused(f"{what} is not a date like 2021-01-31 or 2021-01-31T15:30:00")
    try:
        day = date.fromisoformat(value[:10])
        if len(value) > 10:
            time.fromisoformat(value[11:])
    except ValueError:
        raise Refused(f"{what} is not a real date") from None
    first, last = window
    if (first is not None and day < first) or (last is not None and day > last):
        raise Refused(f"{what} lies outside the run's data ({first} to {last})")
    return value


def _window(parameters: Mapping[str, Any]) -> tuple[date | None, date | None]:
    """The first and last day of the run's data, as the trusted side read it."""
    bounds: list[date | None] = []
    for key in ("start_date", "end_date"):
        try:
            bounds.append(date.fromisoformat(str(parameters.get(key))[:10]))
        except ValueError:
            bounds.append(None)
    return bounds[0], bounds[1]


def _fmel(value: Any) -> dict[str, Any]:
    from runtime.fmel.encoding import ACTIONS

    doc = _mapping(value, "fmel")
    actions = _mapping(doc.get("actions"), "fmel.actions")
    if set(actions) != set(ACTIONS):
        raise Refused("fmel.actions does not name exactly the known actions")
    head = doc.get("chain_head")
    if not isinstance(head, str) or not _HEX64.fullmatch(head):
        raise Refused("fmel.chain_head is not a sha256")
    return {
        "decisions": _count(doc.get("decisions"), "fmel.decisions"),
        "actions": {a: _count(actions[a], f"fmel.actions.{a}") for a in ACTIONS},
        "chain_head": head,
    }


_MONITORING = ("execution_time_s", "peak_memory_mb", "cpu_avg_pct", "decision_count",
               "orders_rejected", "errors")  # fmt: skip


def _monitoring(value: Any) -> dict[str, Any]:
    doc = _mapping(value, "monitoring")
    if not set(doc) <= set(_MONITORING):
        raise Refused("monitoring has an unknown key")
    return {k: _number(doc.get(k), f"monitoring.{k}") for k in _MONITORING}


def _error(value: Any) -> dict[str, Any]:
    doc = _mapping(value, "error")
    try:
        kind = ErrorKind(str(doc.get("kind")))
    except ValueError:
        raise Refused("error.kind is not a known kind") from None
    line = doc.get("line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, int) or line < 0):
        raise Refused("error.line is not a line number")
    tb = doc.get("traceback")
    return RunError(
        kind=kind,
        message=_text(doc.get("message"), "error.message"),
        hint=_text(doc.get("hint"), "error.hint"),
        line=line,
        traceback=None if tb is None else _text(tb, "error.traceback", MAX_TRACEBACK),
    ).to_dict()


def refused_error(why: str) -> RunError:
    """How a refused hand-back is reported: the agent's (only its code ran in the box)."""
    return make_error(ErrorKind.AGENT, f"the run handed back output tradeops refused: {why}")


# ----------------------------------------------------------------- FMEL on ingest
@dataclass(frozen=True)
class Record:
    """A run's verified FMEL record, ready for the store."""

    decisions: Any  # pyarrow Table, rows in bar order
    summary: Any  # pyarrow Table of one row
    summary_row: Mapping[str, Any]
    last_value: float | None


_PART = re.compile(r"part-\d{5}\.parquet")


def read_record(
    root: Path,
    trusted: Trusted,
    *,
    prefix: str = "fmel",
    mode: str | None = None,
    limit: int = 256 << 20,
) -> Record | None:
    """The FMEL record in ``root/prefix``, verified; None when there is none.

    ``limit`` bounds the bytes read in all (the run's output quota bounds them anyway).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from runtime.fmel import store

    run_id = trusted.run_id
    folder = f"{prefix}/{store.DECISIONS}/{run_id}"
    names = list_regular(root, folder)
    if not names:
        return None
    tables, budget = [], limit
    for name in names:
        if not _PART.fullmatch(name):
            raise Refused(f"{folder}/{name} is not an FMEL part")
        raw = read_regular(root, f"{folder}/{name}", budget)
        assert raw is not None
        budget -= len(raw)
        tables.append(parquet_table(raw, store.DECISION_SCHEMA, f"{folder}/{name}"))
    summary_file = f"{prefix}/{store.SUMMARIES}/{run_id}.parquet"
    raw_summary = read_regular(root, summary_file, min(budget, 1 << 20))
    if raw_summary is None:
        raise Refused("the FMEL record has no run summary")
    summary = parquet_table(raw_summary, store.SUMMARY_SCHEMA, "the FMEL run summary")
    if summary.num_rows != 1:
        raise Refused("the FMEL run summary is not one row")
    decisions = pa.concat_tables(tables).sort_by("bar_number")
    identity = {"run_id": run_id, "agent_id": trusted.agent_id,
                "agent_version": trusted.agent_version, "user_id": trusted.user_id,
                "mode": mode or trusted.mode}  # fmt: skip
    for column, expected in identity.items():
        for table, what in ((decisions, "row"), (summary, "run summary")):
            if not pc.all(pc.equal(table[column], expected)).as_py():
                raise Refused(f"an FMEL {what} is not this run's ({column})")
    summary_row = summary.to_pylist()[0]
    summary_row["actions"] = dict(summary_row["actions"] or [])
    rows = decisions.to_pylist()
    verified = store.verify_rows(run_id, rows, summary_row)
    if not verified.ok or verified.reason:
        where = f" at bar {verified.first_bad_bar}" if verified.first_bad_bar else ""
        raise Refused(f"the FMEL record does not verify{where}: {verified.reason}")
    last = rows[-1]["portfolio_value"] if rows else None
    return Record(decisions, summary, summary_row, last)


def parquet_table(raw: bytes, schema: Any, what: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError):
        raise Refused(f"{what} is not a readable Parquet file") from None
    if not table.schema.equals(schema, check_metadata=False):
        raise Refused(f"{what} does not have the FMEL columns")
    return table


def check_against_record(doc: Mapping[str, Any], record: Record | None) -> None:
    """The result's FMEL figures and final value must be the verified record's."""
    fmel = doc.get("fmel")
    if record is None:
        if fmel is not None and fmel["decisions"]:
            raise Refused("the result reports decisions the run did not record")
        return
    s = record.summary_row
    if fmel is None or (
        fmel["decisions"] != s["decisions"]
        or fmel["chain_head"] != s["chain_head"]
        or fmel["actions"] != {**dict.fromkeys(fmel["actions"], 0), **s["actions"]}
    ):
        raise Refused("the result's FMEL figures are not those of the recorded decisions")
    final = (doc.get("results") or {}).get("final_value")
    last = record.last_value
    if final is not None and last is not None and not math.isclose(final, last, rel_tol=1e-9):
        raise Refused("the result's final value is not the recorded portfolio value")


def store_record(store_root: Path, run_id: str, record: Record) -> None:
    """Write the verified record into the FMEL store (our own files, replacing a retry's)."""
    import shutil

    from runtime.fmel import store

    run_dir = store_root / store.DECISIONS / run_id
    shutil.rmtree(run_dir, ignore_errors=True)
    store.write_table(record.decisions, run_dir / "part-00000.parquet")
    store.write_table(record.summary, store_root / store.SUMMARIES / f"{run_id}.parquet")


def read_chart(root: Path, name: str = "chart.png") -> bytes | None:
    raw = read_regular(root, name, CHART_BYTES)
    if raw is not None and not raw.startswith(PNG_MAGIC):
        raise Refused("the chart is not a PNG image")
    return raw


def read_progress(root: Path, name: str) -> tuple[int, int | None] | None:
    """Bars done and total from the box's progress file; None while unreadable."""
    try:
        raw = read_regular(root, name, PROGRESS_BYTES)
        if raw is None:
            return None
        doc = json.loads(raw)
        total = doc.get("total")
        return _count(doc["done"], "done"), None if total is None else _count(total, "total")
    except (Refused, ValueError, TypeError, KeyError, AttributeError):
        return None
