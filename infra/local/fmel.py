"""The FMEL store on this machine: Parquet files under ``$TRADEOPS_HOME/fmel``.

``trading_decisions/<run_id>/part-*.parquet`` and ``run_summaries/<run_id>.parquet``, the
layout :mod:`runtime.fmel.store` writes and DuckDB (``runtime.fmel.store.connect``) queries
with BigQuery's SQL. A paper session's run is a link into the session's own folder, where it
writes its rows as it goes; reads never follow a link the session made itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.fmel import store
from workers.collect import Record, store_record
from workers.ports import ACTING


class LocalFmelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ingest(self, run_id: str, record: Record) -> None:
        store_record(self.root, run_id, record)

    def summary(self, run_id: str) -> dict[str, Any] | None:
        return store.read_summary(self.root, run_id)

    def decisions(
        self, run_id: str, *, last: int | None = None, acting_only: bool = False
    ) -> list[dict[str, Any]]:
        actions = ACTING if acting_only else None
        return store.read_rows(self.root, run_id, last=last, actions=actions)

    def verify(self, run_id: str) -> store.Verification:
        return store.verify_run(self.root, run_id)

    def recorded(self) -> list[str]:
        return store.recent_run_ids(self.root)
