"""A running paper session's decision record, shipped as it grows to a store that cannot
link to the session's folder (BigQuery).

The session writes its record in its own folder (``out/fmel``, the layout of
:mod:`runtime.fmel.store`): a part file per flush and its summary rewritten after each. Its
agent can write anything there, so what is shipped is checked as a backtest's record is
(:func:`workers.collect.read_record`), a part at a time: regular files only, the FMEL
columns, every row this run's and in PAPER mode, and the hash chain recomputed from the
last shipped head, so a part that rewrites history, skips a bar or claims another run is
refused and nothing after it is sent. A summary goes only once its chain head and count
are those of the rows shipped.

Where shipping stands (the last part sent, the chain head, the run header) is kept in a
cursor the session cannot write (a file beside its folder, or a Redis key), so a restarted
shipper goes on from there and a part is sent once. The record is read from a
:class:`RecordSource`: the session's folder here (:class:`FolderSource`), or its pod's
``/fmel`` over HTTP on Kubernetes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.files import write_json
from runtime.fmel import encoding as enc
from runtime.fmel import store
from workers.collect import Refused, Trusted, list_regular, parquet_table, read_regular
from workers.ports import FmelStream

log = logging.getLogger(__name__)

PART_BYTES = 64 << 20  # a flush of a few seconds of bars is far smaller
SUMMARY_BYTES = 1 << 20
_PART = re.compile(r"part-(\d{5})\.parquet")


@dataclass
class Shipped:
    """How far the record has been shipped."""

    part: int = -1  # the last part sent
    head: str | None = None  # the chain head after it (None: nothing sent; the genesis next)
    next_bar: int | None = None
    symbols: list[str] = field(default_factory=list)
    indicators: list[str] = field(default_factory=list)
    summary_at: str | None = None  # recorded_at of the last summary sent
    refused: str | None = None  # why shipping stopped for good


class RecordSource(Protocol):
    """Where a session's record is read from (all of it hostile)."""

    def parts(self) -> list[str]:
        """The names of its part files (``Refused`` for anything that is not a file)."""
        ...

    def read(self, name: str, limit: int) -> bytes | None:
        """A part's bytes, or the summary's (``name == SUMMARY``); None when missing."""
        ...


class Cursor(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, doc: dict[str, Any]) -> None: ...


SUMMARY = "summary"


class FolderSource:
    """The record in a session's folder ``out/prefix`` (no link followed, no FIFO read)."""

    def __init__(self, out: Path, run_id: str, prefix: str = "fmel") -> None:
        self.out, self.run_id, self.prefix = out, run_id, prefix

    def parts(self) -> list[str]:
        return list_regular(self.out, f"{self.prefix}/{store.DECISIONS}/{self.run_id}")

    def read(self, name: str, limit: int) -> bytes | None:
        if name == SUMMARY:
            rel = f"{self.prefix}/{store.SUMMARIES}/{self.run_id}.parquet"
        else:
            rel = f"{self.prefix}/{store.DECISIONS}/{self.run_id}/{name}"
        return read_regular(self.out, rel, limit)


class FileCursor:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return loaded

    def save(self, doc: dict[str, Any]) -> None:
        write_json(self.path, doc)


class FmelShipper:
    """Ships the record ``source`` gives of the run ``trusted`` names to ``stream``;
    ``cursor`` (out of the session's reach) keeps where it stands. ``source`` and ``cursor``
    may be a session's folder and a file (``out`` and ``cursor`` paths)."""

    def __init__(
        self,
        source: RecordSource | Path,
        trusted: Trusted,
        stream: FmelStream,
        cursor: Cursor | Path,
        *,
        prefix: str = "fmel",
    ) -> None:
        self.source = (
            FolderSource(source, trusted.run_id, prefix) if isinstance(source, Path) else source
        )
        self.trusted = trusted
        self.stream = stream
        self.cursor = FileCursor(cursor) if isinstance(cursor, Path) else cursor
        found = self.cursor.load()
        self.state = Shipped(**found) if found else Shipped()

    @property
    def refused(self) -> str | None:
        return self.state.refused

    def ship(self) -> int:
        """Send what is new; the number of rows sent. A refusal stops shipping for good
        (it is kept in the cursor and logged); a store error propagates, and the next call
        tries the same part again (the store drops rows it got twice by their insert id)."""
        if self.state.refused:
            return 0
        try:
            return self._ship()
        except Refused as exc:
            self.state.refused = str(exc)
            self._save()
            log.warning("FMEL shipping of run %s stopped: %s", self.trusted.run_id, exc)
            return 0

    def _ship(self) -> int:
        run_id = self.trusted.run_id
        summary = self._summary()
        if summary is None:
            return 0  # the first flush writes it: nothing to chain from before
        if self.state.head is None:
            self._start(summary)
        sent = 0
        for name in self.source.parts():
            found = _PART.fullmatch(name)
            if found is None:
                raise Refused(f"{name} is not an FMEL part")
            number = int(found.group(1))
            if number <= self.state.part:
                continue
            raw = self.source.read(name, PART_BYTES)
            if raw is None:
                continue
            table = parquet_table(raw, store.DECISION_SCHEMA, name)
            rows, link = self._checked(table, name)
            self.stream.ingest_rows(run_id, rows)  # an error: the same part next time
            sent += len(rows)
            self.state.part, self.state.head, self.state.next_bar = number, link.head, link.next_bar
            self._save()
        latest = self._summary()  # rewritten after each part: the one matching what was sent
        if latest is not None and self._current(latest):
            self.stream.ingest_rows(run_id, [], summary=latest)
            self.state.summary_at = str(latest["recorded_at"])
            self._save()
        return sent

    def _start(self, summary: Mapping[str, Any]) -> None:
        symbols, indicators = list(summary["symbols"]), list(summary["indicators"])
        if enc.genesis(symbols, indicators) != summary["genesis"]:
            raise Refused("the run summary's header (symbols, indicators) is not its genesis")
        self.state.symbols, self.state.indicators = symbols, indicators
        self.state.head, self.state.next_bar = summary["genesis"], int(summary["first_bar"])

    def _checked(self, table: Any, name: str) -> tuple[list[dict[str, Any]], store.ChainLink]:
        rows: list[dict[str, Any]] = table.sort_by("bar_number").to_pylist()
        for row in rows:
            self._identity(row, f"a row of {name}")
        assert self.state.head is not None and self.state.next_bar is not None
        link = store.continue_chain(
            rows, self.state.symbols, self.state.indicators, self.state.head, self.state.next_bar
        )
        if link.problem is not None:
            raise Refused(f"{name} does not continue the chain at bar {link.next_bar}: "
                          f"{link.problem}")  # fmt: skip
        return rows, link

    def _summary(self) -> dict[str, Any] | None:
        raw = self.source.read(SUMMARY, SUMMARY_BYTES)
        if raw is None:
            return None
        table = parquet_table(raw, store.SUMMARY_SCHEMA, "the FMEL run summary")
        if table.num_rows != 1:
            raise Refused("the FMEL run summary is not one row")
        row: dict[str, Any] = table.to_pylist()[0]
        self._identity(row, "the run summary")
        row["actions"] = dict(row["actions"] or [])
        return row

    def _current(self, summary: Mapping[str, Any]) -> bool:
        """Whether ``summary`` is new and describes exactly the rows sent so far."""
        if str(summary["recorded_at"]) == self.state.summary_at:
            return False
        if [list(summary["symbols"]), list(summary["indicators"])] != [
            self.state.symbols, self.state.indicators,
        ]:  # fmt: skip
            raise Refused("the run summary's symbols or indicators changed")
        assert self.state.next_bar is not None
        return bool(
            summary["chain_head"] == self.state.head
            and summary["decisions"] == self.state.next_bar - int(summary["first_bar"])
        )

    def _identity(self, row: Mapping[str, Any], what: str) -> None:
        t = self.trusted
        expected = {"run_id": t.run_id, "agent_id": t.agent_id, "agent_version": t.agent_version,
                    "user_id": t.user_id, "mode": "PAPER"}  # fmt: skip
        for column, value in expected.items():
            if row.get(column) != value:
                raise Refused(f"{what} is not this run's ({column})")

    def _save(self) -> None:
        self.cursor.save(asdict(self.state))
