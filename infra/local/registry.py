"""The registry in SQLite at ``$TRADEOPS_HOME/state.db`` (DESIGN.md section 2).

The bot, the workers and the CLI open the same file at once: WAL lets readers run beside a
writer, ``busy_timeout`` makes a writer wait for another instead of failing, and each write
is one ``BEGIN IMMEDIATE`` transaction, so a read-then-write (the next version number, a
status check) cannot interleave with another process's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workers.ports import Agent, AgentVersion, NotFound, Run, RunStatus

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    latest_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    agent TEXT NOT NULL REFERENCES agents(name),
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    owner TEXT NOT NULL,
    report TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    version INTEGER NOT NULL,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    FOREIGN KEY (agent, version) REFERENCES versions(agent, version)
);
CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent, created_at);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
-- digests came after version 1: a table of its own, which older code never reads
CREATE TABLE IF NOT EXISTS digests (
    channel TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""


class SqliteRegistry:
    """``Registry`` on one SQLite file; usable from threads and forked processes alike."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        with self._write():
            pass  # creates or checks the schema now, so a bad file fails at start

    # ------------------------------------------------------------------ agents and versions
    def add_version(
        self, *, owner: str, name: str, sha256: str, report: dict[str, Any]
    ) -> AgentVersion:
        report_json = _dumps(report)
        with self._write() as db:
            agent = db.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
            if agent is not None:
                latest = self._version_row(db, name, agent["latest_version"])
                if latest is not None and latest["sha256"] == sha256:
                    return _version(latest)
            now = self._clock()
            number = 1 if agent is None else agent["latest_version"] + 1
            if agent is None:
                db.execute("INSERT INTO agents VALUES (?, ?, ?, ?)", (name, owner, now, number))
            else:
                db.execute("UPDATE agents SET latest_version = ? WHERE name = ?", (number, name))
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                (name, number, sha256, owner, report_json, now),
            )
            return AgentVersion(
                name=name, version=number, sha256=sha256, owner=owner,
                report=json.loads(report_json), created_at=now,
            )  # fmt: skip

    def get_agent(self, name: str) -> Agent | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
        return None if row is None else _agent(row)

    def list_agents(self, owner: str | None = None) -> list[Agent]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM agents WHERE ? IS NULL OR owner = ? ORDER BY name", (owner, owner)
            ).fetchall()
        return [_agent(row) for row in rows]

    def get_version(self, name: str, version: int | None = None) -> AgentVersion | None:
        with self._read() as db:
            if version is None:
                found = db.execute(
                    "SELECT latest_version FROM agents WHERE name = ?", (name,)
                ).fetchone()
                if found is None:
                    return None
                version = int(found[0])
            row = self._version_row(db, name, version)
        return None if row is None else _version(row)

    # ------------------------------------------------------------------ runs
    def create_run(
        self,
        *,
        run_id: str,
        agent: str,
        version: int,
        owner: str,
        kind: str,
        parameters: Mapping[str, Any],
        channel: str | None = None,
    ) -> Run:
        params_json = _dumps(parameters)
        with self._write() as db:
            if self._version_row(db, agent, version) is None:
                raise NotFound(f"no agent version {agent}@v{version}")
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise ValueError(f"run {run_id!r} already exists")
            now = self._clock()
            values = (run_id, agent, version, owner, kind, params_json, RunStatus.QUEUED, now, now)
            db.execute(
                "INSERT INTO runs (run_id, agent, version, owner, kind, parameters, status,"
                " created_at, updated_at, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, channel),
            )
            return _run(self._run_row(db, run_id))

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> Run:
        new = RunStatus(status)
        result_json = None if result is None else _dumps(result)
        error_json = None if error is None else _dumps(error)
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}")
            RunStatus(row["status"]).check_transition(new)
            db.execute(
                "UPDATE runs SET status = ?, result = coalesce(?, result),"
                " error = coalesce(?, error), updated_at = ? WHERE run_id = ?",
                (new, result_json, error_json, self._clock(), run_id),
            )
            return _run(self._run_row(db, run_id))

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def list_runs(
        self,
        agent: str | None = None,
        limit: int = 20,
        *,
        since: float | None = None,
        channel: str | None = None,
    ) -> list[Run]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE (? IS NULL OR agent = ?)"
                " AND (? IS NULL OR updated_at >= ?) AND (? IS NULL OR channel = ?)"
                " ORDER BY created_at DESC, seq DESC LIMIT ?",
                (agent, agent, since, since, channel, channel, limit),
            ).fetchall()
        return [_run(row) for row in rows]

    # ------------------------------------------------------------------ digests
    def last_digest(self, channel: str) -> float | None:
        with self._read() as db:
            row = db.execute("SELECT at FROM digests WHERE channel = ?", (channel,)).fetchone()
        return None if row is None else float(row["at"])

    def mark_digest(self, channel: str, at: float) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO digests (channel, at) VALUES (?, ?)"
                " ON CONFLICT (channel) DO UPDATE SET at = max(at, excluded.at)",
                (channel, float(at)),
            )

    # ------------------------------------------------------------------ connection
    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock is taken before the first read."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork (RQ forks a work horse per job): reopen in a child.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _use_wal(db, self.path)
        db.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster
        db.execute("PRAGMA foreign_keys = ON")
        _ensure_schema(db, self.path)
        return db

    @staticmethod
    def _version_row(db: sqlite3.Connection, name: str, version: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM versions WHERE agent = ? AND version = ?", (name, version)
        ).fetchone()
        return row

    @staticmethod
    def _run_row(db: sqlite3.Connection, run_id: str) -> sqlite3.Row:
        row: sqlite3.Row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row


def _use_wal(db: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL (a no-op once done).

    The switch needs the file to itself and SQLite does not wait for that on its own, so
    when several processes open a new file at once the losers retry.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode != "wal":
        raise RuntimeError(f"{path}: SQLite cannot use WAL mode here (got {mode!r})")


def _ensure_schema(db: sqlite3.Connection, path: Path) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        columns = {c["name"] for c in db.execute("PRAGMA table_info(runs)").fetchall()}
        if "channel" not in columns:  # came after version 1: a column older code never reads
            db.execute("ALTER TABLE runs ADD COLUMN channel TEXT")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        if row[0] is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} has schema version {row[0]}, newer than this tradeops knows "
                f"({SCHEMA_VERSION}): upgrade tradeops"
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _dumps(doc: Mapping[str, Any]) -> str:
    """JSON text of ``doc``; ``ValueError`` (not a half-written row) for NaN or odd types."""
    try:
        return json.dumps(doc, allow_nan=False, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"not JSON-encodable: {exc}") from exc


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def _agent(row: sqlite3.Row) -> Agent:
    return Agent(
        name=row["name"], owner=row["owner"], created_at=row["created_at"],
        latest_version=row["latest_version"],
    )  # fmt: skip


def _version(row: sqlite3.Row) -> AgentVersion:
    return AgentVersion(
        name=row["agent"], version=row["version"], sha256=row["sha256"], owner=row["owner"],
        report=json.loads(row["report"]), created_at=row["created_at"],
    )  # fmt: skip


def _run(row: sqlite3.Row) -> Run:
    return Run(
        run_id=row["run_id"], agent=row["agent"], version=row["version"], owner=row["owner"],
        kind=row["kind"], parameters=json.loads(row["parameters"]),
        status=RunStatus(row["status"]), result=_loads(row["result"]), error=_loads(row["error"]),
        created_at=row["created_at"], updated_at=row["updated_at"], channel=row["channel"],
    )  # fmt: skip
