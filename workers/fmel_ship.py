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
file outside the session's writable folder, so a restarted supervisor goes on from there
and a part is sent once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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

    @classmethod
    def load(cls, path: Path) -> Shipped:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()


class FmelShipper:
    """Ships the record under ``out/prefix`` of the run ``trusted`` names to ``stream``;
    ``cursor`` (a file the session cannot write) keeps where it stands."""

    def __init__(
        self,
        out: Path,
        trusted: Trusted,
        stream: FmelStream,
        cursor: Path,
        *,
        prefix: str = "fmel",
    ) -> None:
        self.out = out
        self.trusted = trusted
        self.stream = stream
        self.cursor = cursor
        self.prefix = prefix
        self.state = Shipped.load(cursor)

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
        folder = f"{self.prefix}/{store.DECISIONS}/{run_id}"
        sent = 0
        for name in list_regular(self.out, folder):
            found = _PART.fullmatch(name)
            if found is None:
                raise Refused(f"{folder}/{name} is not an FMEL part")
            number = int(found.group(1))
            if number <= self.state.part:
                continue
            raw = read_regular(self.out, f"{folder}/{name}", PART_BYTES)
            if raw is None:
                continue
            table = parquet_table(raw, store.DECISION_SCHEMA, f"{folder}/{name}")
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
        rel = f"{self.prefix}/{store.SUMMARIES}/{self.trusted.run_id}.parquet"
        raw = read_regular(self.out, rel, SUMMARY_BYTES)
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
        write_json(self.cursor, asdict(self.state))
