"""The Registry contract: the in-memory fake, SQLite and Firebase behave the same.

The Firebase registry runs against ``tests/rtdb_server.py`` (started once per session)
through the real firebase-admin client, in a namespace of its own per test, under a root
path with the index rules it needs deployed (so a query the rules do not index fails).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.local.registry import SqliteRegistry
from tests.conftest import REPO_ROOT
from tests.fakes import InMemoryRegistry
from tests.rtdb_server import RtdbServer, admin_app
from workers.ports import NotFound, Registry, RunStatus

if TYPE_CHECKING:
    from firebase_admin import db

MakeRegistry = Callable[..., Registry]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Ticks:
    """A clock that moves one second per reading, so times are distinct and predictable."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 1.0) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


FIREBASE_ROOT = "/tradeops"


@pytest.fixture(scope="session")
def rtdb() -> Iterator[RtdbServer]:
    with RtdbServer() as server:
        yield server


@pytest.fixture
def firebase_root(rtdb: RtdbServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[db.Reference]:
    """A reference to ``FIREBASE_ROOT`` in a new namespace, with the registry's indexes."""
    from firebase_admin import db

    from infra.gcp.firebase import index_rules

    namespace = rtdb.new_namespace("registry")
    rtdb.set_rules(namespace, index_rules(FIREBASE_ROOT))
    with admin_app(rtdb, monkeypatch, namespace) as app:
        yield db.reference(FIREBASE_ROOT, app=app)


@pytest.fixture(params=["memory", "local", "firebase"])
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> MakeRegistry:
    def make(clock: Callable[[], float] = time.time) -> Registry:
        if request.param == "memory":
            return InMemoryRegistry(clock=clock)
        if request.param == "firebase":
            from infra.gcp.firebase import FirebaseRegistry

            return FirebaseRegistry(request.getfixturevalue("firebase_root"), clock=clock)
        return SqliteRegistry(tmp_path / "state.db", clock=clock)

    return make


@pytest.fixture
def registry(make_registry: MakeRegistry) -> Registry:
    return make_registry(Ticks())


def add(registry: Registry, name: str = "sma", code: str = "v1", owner: str = "U1") -> int:
    return registry.add_version(owner=owner, name=name, sha256=sha(code), report={}).version


def new_run(registry: Registry, run_id: str, agent: str = "sma", version: int = 1) -> None:
    registry.create_run(
        run_id=run_id, agent=agent, version=version, owner="U1", kind="backtest", parameters={}
    )


# ---------------------------------------------------------------- agents and versions
def test_first_version_creates_the_agent(registry: Registry) -> None:
    report = {"strategy": "SmaCross", "warnings": ["w"], "lines": [1, 2]}
    v = registry.add_version(owner="U1", name="sma", sha256=sha("a"), report=report)
    assert (v.name, v.version, v.sha256, v.owner, v.report) == ("sma", 1, sha("a"), "U1", report)
    agent = registry.get_agent("sma")
    assert agent is not None
    assert (agent.name, agent.owner, agent.latest_version) == ("sma", "U1", 1)
    assert agent.created_at == v.created_at
    assert registry.get_version("sma", 1) == v


def test_versions_are_numbered_per_agent(registry: Registry) -> None:
    assert [add(registry, "a", "a1"), add(registry, "a", "a2"), add(registry, "a", "a3")] == [
        1, 2, 3,
    ]  # fmt: skip
    assert add(registry, "b", "b1") == 1
    assert registry.get_agent("a").latest_version == 3  # type: ignore[union-attr]
    assert registry.get_agent("b").latest_version == 1  # type: ignore[union-attr]


def test_same_sha_as_latest_returns_that_version_unchanged(registry: Registry) -> None:
    first = registry.add_version(owner="U1", name="sma", sha256=sha("a"), report={"n": 1})
    again = registry.add_version(owner="U2", name="sma", sha256=sha("a"), report={"n": 2})
    assert again == first
    assert registry.get_agent("sma").latest_version == 1  # type: ignore[union-attr]


def test_an_older_sha_uploaded_again_is_a_new_version(registry: Registry) -> None:
    assert [add(registry, code="a"), add(registry, code="b"), add(registry, code="a")] == [1, 2, 3]
    assert registry.get_version("sma", 3).sha256 == sha("a")  # type: ignore[union-attr]


def test_latest_version(registry: Registry) -> None:
    add(registry, code="a")
    add(registry, code="b", owner="U2")
    latest = registry.get_version("sma")
    assert latest is not None
    assert (latest.version, latest.sha256, latest.owner) == (2, sha("b"), "U2")
    assert registry.get_agent("sma").owner == "U1"  # type: ignore[union-attr]  # the creator


def test_missing_agents_and_versions(registry: Registry) -> None:
    assert registry.get_agent("nope") is None
    assert registry.get_version("nope") is None
    assert registry.get_version("nope", 1) is None
    add(registry)
    assert registry.get_version("sma", 2) is None
    assert registry.get_version("sma", 0) is None


def test_list_agents_by_name_and_owner(registry: Registry) -> None:
    assert registry.list_agents() == []
    add(registry, "zeta", owner="U1")
    add(registry, "alpha", owner="U2")
    add(registry, "mid", owner="U1")
    add(registry, "alpha", "other", owner="U1")  # a new version does not change the owner
    assert [a.name for a in registry.list_agents()] == ["alpha", "mid", "zeta"]
    assert [a.name for a in registry.list_agents(owner="U1")] == ["mid", "zeta"]
    assert [a.name for a in registry.list_agents("U2")] == ["alpha"]
    assert registry.list_agents("U3") == []


def test_report_must_be_json(registry: Registry) -> None:
    with pytest.raises(ValueError):
        registry.add_version(owner="U1", name="x", sha256=sha("a"), report={"x": float("nan")})
    with pytest.raises(ValueError):
        registry.add_version(owner="U1", name="x", sha256=sha("a"), report={"x": object()})
    assert registry.get_agent("x") is None


def test_json_fields_round_trip(registry: Registry) -> None:
    doc = {"s": "é ✓", "i": 3, "f": 0.1, "b": True, "n": None, "l": [1, [2]], "t": (1, 2),
           "d": {"nested": {"x": -1.5e300}}}  # fmt: skip
    as_json = {**doc, "t": [1, 2]}
    v = registry.add_version(owner="U1", name="sma", sha256=sha("a"), report=doc)
    assert v.report == as_json
    assert registry.get_version("sma").report == as_json  # type: ignore[union-attr]
    run = registry.create_run(
        run_id="r1", agent="sma", version=1, owner="U1", kind="backtest", parameters=doc
    )
    assert run.parameters == as_json
    registry.update_run("r1", status=RunStatus.RUNNING)
    done = registry.update_run("r1", status=RunStatus.FINISHED, result=doc, error={"e": doc})
    assert (done.result, done.error) == (as_json, {"e": as_json})
    stored = registry.get_run("r1")
    assert stored == done


# ---------------------------------------------------------------- runs
def test_create_run_is_queued(registry: Registry) -> None:
    add(registry)
    run = registry.create_run(
        run_id="r1", agent="sma", version=1, owner="U9", kind="paper", parameters={"cash": 5}
    )
    assert (run.run_id, run.agent, run.version, run.owner, run.kind, run.parameters) == (
        "r1", "sma", 1, "U9", "paper", {"cash": 5},
    )  # fmt: skip
    assert (run.status, run.result, run.error) == (RunStatus.QUEUED, None, None)
    assert run.created_at == run.updated_at
    assert registry.get_run("r1") == run


def test_create_run_refuses_unknown_versions_and_taken_ids(registry: Registry) -> None:
    add(registry)
    with pytest.raises(NotFound):
        new_run(registry, "r1", agent="nope")
    with pytest.raises(NotFound):
        new_run(registry, "r1", version=2)
    new_run(registry, "r1")
    with pytest.raises(ValueError, match="r1"):
        new_run(registry, "r1")


def test_missing_runs(registry: Registry) -> None:
    assert registry.get_run("nope") is None
    with pytest.raises(NotFound):
        registry.update_run("nope", status=RunStatus.RUNNING)


@pytest.mark.parametrize(
    "path",
    [
        ["running", "finished"],
        ["running", "failed"],
        ["failed"],
        ["running", "running", "finished"],  # a retried job starts again
    ],
)
def test_allowed_status_transitions(registry: Registry, path: list[str]) -> None:
    add(registry)
    new_run(registry, "r1")
    for status in path:
        run = registry.update_run("r1", status=RunStatus(status))
        assert run.status == status
        assert registry.get_run("r1") == run


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        (["running", "finished"], "running"),
        (["running", "finished"], "failed"),
        (["running", "finished"], "queued"),
        (["failed"], "running"),
        (["failed"], "finished"),
        ([], "finished"),
        ([], "queued"),
        (["running"], "queued"),
    ],
)
def test_refused_status_transitions(registry: Registry, path: list[str], refused: str) -> None:
    add(registry)
    new_run(registry, "r1")
    for status in path:
        registry.update_run("r1", status=RunStatus(status))
    before = registry.get_run("r1")
    with pytest.raises(ValueError, match=f"cannot go from .* to {refused}"):
        registry.update_run("r1", status=RunStatus(refused), result={"late": True})
    assert registry.get_run("r1") == before  # nothing changed


def test_status_may_be_given_as_text_but_must_be_known(registry: Registry) -> None:
    add(registry)
    new_run(registry, "r1")
    assert registry.update_run("r1", status="running").status is RunStatus.RUNNING  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        registry.update_run("r1", status="exploded")  # type: ignore[arg-type]


def test_update_run_keeps_result_and_error_unless_given(registry: Registry) -> None:
    add(registry)
    new_run(registry, "r1")
    first = registry.update_run("r1", status=RunStatus.RUNNING, result={"done": 1})
    later = registry.update_run("r1", status=RunStatus.RUNNING)
    assert later.result == {"done": 1}
    assert later.updated_at > first.updated_at
    failed = registry.update_run("r1", status=RunStatus.FAILED, error={"kind": "timeout"})
    assert (failed.result, failed.error) == ({"done": 1}, {"kind": "timeout"})
    assert failed.created_at == first.created_at


def test_list_runs_newest_first_with_agent_filter_and_limit(registry: Registry) -> None:
    add(registry, "a")
    add(registry, "b")
    for i, agent in enumerate(["a", "b", "a", "a", "b"]):
        new_run(registry, f"r{i}", agent=agent)
    assert [r.run_id for r in registry.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in registry.list_runs("a")] == ["r3", "r2", "r0"]
    assert [r.run_id for r in registry.list_runs(agent="b", limit=1)] == ["r4"]
    assert [r.run_id for r in registry.list_runs(limit=2)] == ["r4", "r3"]
    assert registry.list_runs("nope") == []
    registry.update_run("r0", status=RunStatus.RUNNING)  # updating does not reorder
    assert registry.list_runs()[-1].run_id == "r0"
    with pytest.raises(ValueError):
        registry.list_runs(limit=0)


def test_list_runs_orders_by_creation_time_then_creation_order(
    make_registry: MakeRegistry,
) -> None:
    times = iter([10.0, 10.0, 30.0, 20.0, 20.0])
    registry = make_registry(lambda: next(times))
    add(registry)  # 10
    for run_id in ["t10", "t30", "t20a", "t20b"]:
        new_run(registry, run_id)
    assert [r.run_id for r in registry.list_runs()] == ["t30", "t20b", "t20a", "t10"]


def test_list_runs_default_limit_is_20(registry: Registry) -> None:
    add(registry)
    for i in range(25):
        new_run(registry, f"r{i:02}")
    runs = registry.list_runs()
    assert len(runs) == 20
    assert runs[0].run_id == "r24"


# ---------------------------------------------------------------- SQLite only
def test_sqlite_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteRegistry(path)
    v = first.add_version(owner="U1", name="sma", sha256=sha("a"), report={"ok": True})
    first.create_run(
        run_id="r1", agent="sma", version=1, owner="U1", kind="backtest", parameters={"x": 1}
    )
    run = first.update_run("r1", status=RunStatus.RUNNING)
    first.close()
    again = SqliteRegistry(path)
    assert again.get_version("sma") == v
    assert again.get_run("r1") == run
    assert again.add_version(owner="U1", name="sma", sha256=sha("b"), report={}).version == 2


def test_sqlite_uses_wal_and_records_the_schema_version(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    SqliteRegistry(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        SqliteRegistry(path)


_WRITER = textwrap.dedent(
    """
    import sys, time, hashlib
    from pathlib import Path
    from infra.local.registry import SqliteRegistry

    path, tag, count, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    registry = SqliteRegistry(Path(path))
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(count):
        code = f"{tag}-{i}".encode()
        v = registry.add_version(owner=tag, name="shared", sha256=hashlib.sha256(code).hexdigest(),
                                 report={"i": i})
        print(v.version, flush=True)
        time.sleep(0.003)  # let the other process in between, as real callers would
    """
)


@pytest.mark.parametrize("fresh_db", [False, True], ids=["existing-db", "fresh-db"])
def test_sqlite_two_processes_add_versions_without_duplicates(
    tmp_path: Path, fresh_db: bool
) -> None:
    path = tmp_path / "state.db"
    if not fresh_db:
        SqliteRegistry(path).close()
    start_at = time.time() + 1.0  # both start writing together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), tag, "20", str(start_at)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    seen = [int(line) for out, _ in outputs for line in out.split()]
    assert sorted(seen) == list(range(1, 41))

    registry = SqliteRegistry(path)
    assert registry.get_agent("shared").latest_version == 40  # type: ignore[union-attr]
    shas = {registry.get_version("shared", n).sha256 for n in range(1, 41)}  # type: ignore[union-attr]
    assert shas == {sha(f"{tag}-{i}") for tag in ("p1", "p2") for i in range(20)}


# ---------------------------------------------------------------- runs since, digests
def test_list_runs_since_is_inclusive_and_combines_with_agent_and_limit(
    make_registry: MakeRegistry,
) -> None:
    times = iter([1.0, 1.0, 10.0, 20.0, 20.0, 30.0])
    registry = make_registry(lambda: next(times))
    add(registry, "a")  # 1
    add(registry, "b")  # 1
    for run_id, agent in [("r10", "a"), ("r20a", "b"), ("r20b", "a"), ("r30", "a")]:
        new_run(registry, run_id, agent=agent)
    assert [r.run_id for r in registry.list_runs(since=20.0)] == ["r30", "r20b", "r20a"]
    assert [r.run_id for r in registry.list_runs(since=19.9)] == ["r30", "r20b", "r20a"]
    assert [r.run_id for r in registry.list_runs(since=20.1)] == ["r30"]
    assert [r.run_id for r in registry.list_runs("a", since=15.0)] == ["r30", "r20b"]
    assert [r.run_id for r in registry.list_runs(since=10.0, limit=2)] == ["r30", "r20b"]
    assert registry.list_runs(since=31.0) == []
    assert len(registry.list_runs(since=None)) == 4


def test_list_runs_since_counts_a_run_that_ended_later(make_registry: MakeRegistry) -> None:
    times = iter([1.0, 5.0, 6.0, 40.0])
    registry = make_registry(lambda: next(times))
    add(registry, "a")  # 1
    new_run(registry, "r5", agent="a")  # created at 5
    registry.update_run("r5", status=RunStatus.RUNNING)  # 6
    assert registry.list_runs(since=30.0) == []
    registry.update_run("r5", status=RunStatus.FAILED, error={"kind": "agent"})  # 40
    assert [r.run_id for r in registry.list_runs(since=30.0)] == ["r5"]


def test_a_channel_without_digests_has_no_mark(registry: Registry) -> None:
    assert registry.last_digest("C1") is None


def test_digest_marks_are_per_channel(registry: Registry) -> None:
    registry.mark_digest("C1", 1_700_000_100.5)
    registry.mark_digest("C2", 1_700_000_200.0)
    assert registry.last_digest("C1") == 1_700_000_100.5
    assert registry.last_digest("C2") == 1_700_000_200.0
    registry.mark_digest("C1", 1_700_000_300.0)
    assert registry.last_digest("C1") == 1_700_000_300.0
    assert registry.last_digest("C3") is None


def test_a_digest_mark_never_moves_back(registry: Registry) -> None:
    registry.mark_digest("C1", 500.0)
    registry.mark_digest("C1", 400.0)  # an older digest finishing late
    assert registry.last_digest("C1") == 500.0


def test_sqlite_digest_marks_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteRegistry(path)
    first.mark_digest("C1", 123.25)
    first.close()
    assert SqliteRegistry(path).last_digest("C1") == 123.25


def test_sqlite_file_of_an_older_version_gains_the_digest_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    SqliteRegistry(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE digests")  # as a file written before digests existed
    db.commit()
    db.close()
    again = SqliteRegistry(path)
    assert again.last_digest("C1") is None
    again.mark_digest("C1", 5.0)
    assert again.last_digest("C1") == 5.0


def test_a_run_remembers_the_channel_it_was_asked_from(registry: Registry) -> None:
    add(registry)
    registry.create_run(run_id="r1", agent="sma", version=1, owner="U1", kind="backtest",
                        parameters={}, channel="C1")  # fmt: skip
    registry.create_run(run_id="r2", agent="sma", version=1, owner="U1", kind="backtest",
                        parameters={}, channel="C2")  # fmt: skip
    new_run(registry, "r3")  # the command line's: no channel
    assert registry.get_run("r1").channel == "C1"  # type: ignore[union-attr]
    assert registry.get_run("r3").channel is None  # type: ignore[union-attr]
    assert [r.run_id for r in registry.list_runs(channel="C2")] == ["r2"]
    assert [r.run_id for r in registry.list_runs(channel="C1", since=0.0)] == ["r1"]
    assert {r.run_id for r in registry.list_runs()} == {"r1", "r2", "r3"}


def test_sqlite_file_of_an_older_version_gains_the_runs_channel(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    old = SqliteRegistry(path)
    add(old)
    new_run(old, "before")
    old.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN channel")  # as a file written before channels
    db.commit()
    db.close()
    again = SqliteRegistry(path)
    assert again.get_run("before").channel is None  # type: ignore[union-attr]
    again.create_run(run_id="after", agent="sma", version=1, owner="U1", kind="backtest",
                     parameters={}, channel="C1")  # fmt: skip
    assert [r.run_id for r in again.list_runs(channel="C1")] == ["after"]
