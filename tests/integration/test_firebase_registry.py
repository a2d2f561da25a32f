"""The Firebase registry beyond the contract: racing workers, the tree it leaves in the
database (the seed's ``creators/{user}/agents/{agent}``), its indexes and its errors.

firebase-admin talks to tests/rtdb_server.py; each test has a namespace of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from firebase_admin import db, exceptions

from infra.gcp import firebase
from infra.gcp.firebase import FirebaseRegistry, firebase_key, index_rules
from tests.fakes import InMemoryRegistry
from tests.rtdb_server import RtdbServer, admin_app
from workers.ports import NeedsOperator, NotFound, Registry, RunStatus, Temporary


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Ticks:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 1.0
            return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[RtdbServer]:
    with RtdbServer() as rtdb:
        yield rtdb


@pytest.fixture
def namespace(server: RtdbServer) -> str:
    ns = server.new_namespace("registry")
    server.set_rules(ns, index_rules("/"))
    return ns


Workers = Callable[[int], list[FirebaseRegistry]]


@pytest.fixture
def workers(
    server: RtdbServer, monkeypatch: pytest.MonkeyPatch, namespace: str
) -> Iterator[Workers]:
    """``workers(n)``: n registries on one database, each with its own firebase-admin app
    (its own HTTP session), as separate worker processes would have."""
    with contextlib.ExitStack() as stack:

        def make(n: int) -> list[FirebaseRegistry]:
            apps = [
                stack.enter_context(admin_app(server, monkeypatch, namespace)) for _ in range(n)
            ]
            return [FirebaseRegistry(db.reference("/", app=app), clock=Ticks()) for app in apps]

        yield make


@pytest.fixture
def registry(workers: Workers) -> FirebaseRegistry:
    return workers(1)[0]


def run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` in threads released at once; their results, or the exceptions raised."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # returned to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


# ---------------------------------------------------------------- racing workers
def test_racing_workers_never_hand_out_the_same_version(workers: Workers) -> None:
    regs = workers(4)
    per_worker = 8

    def upload(reg: FirebaseRegistry, tag: str) -> Callable[[], list[int]]:
        def go() -> list[int]:
            return [
                reg.add_version(
                    owner=tag, name="shared", sha256=sha(f"{tag}-{i}"), report={"i": i}
                ).version
                for i in range(per_worker)
            ]

        return go

    results = run_together([upload(reg, f"w{n}") for n, reg in enumerate(regs)])
    numbers = [v for r in results for v in r]
    assert sorted(numbers) == list(range(1, 4 * per_worker + 1)), results
    assert all(r == sorted(r) for r in results)  # each worker's numbers increase
    reader = regs[0]
    assert reader.get_agent("shared").latest_version == 4 * per_worker  # type: ignore[union-attr]
    shas = {reader.get_version("shared", n).sha256 for n in numbers}  # type: ignore[union-attr]
    assert shas == {sha(f"w{w}-{i}") for w in range(4) for i in range(per_worker)}


def test_the_same_upload_racing_makes_one_version(workers: Workers) -> None:
    regs = workers(3)
    results = run_together(
        [
            partial(reg.add_version, owner="U1", name="sma", sha256=sha("a"), report={})
            for reg in regs
        ]
    )
    assert {v.version for v in results} == {1}
    assert len({v.created_at for v in results}) == 1  # all got the one stored version


def test_racing_run_ids_one_wins(workers: Workers) -> None:
    regs = workers(3)
    regs[0].add_version(owner="U1", name="sma", sha256=sha("a"), report={})
    results = run_together(
        [
            partial(
                reg.create_run,
                run_id="r1",
                agent="sma",
                version=1,
                owner=f"U{n}",
                kind="backtest",
                parameters={"n": n},
            )
            for n, reg in enumerate(regs)
        ]
    )
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 2
    assert all(isinstance(e, ValueError) and "already exists" in str(e) for e in lost)
    assert regs[1].get_run("r1") == won[0]


def test_racing_outcomes_one_wins_and_the_copy_agrees(
    workers: Workers, server: RtdbServer, namespace: str
) -> None:
    regs = workers(2)
    regs[0].add_version(owner="U1", name="sma", sha256=sha("a"), report={})
    for i in range(5):
        run_id = f"r{i}"
        regs[0].create_run(
            run_id=run_id, agent="sma", version=1, owner="U1", kind="backtest", parameters={}
        )
        regs[0].update_run(run_id, status=RunStatus.RUNNING)
        results = run_together(
            [
                partial(regs[0].update_run, run_id, status=RunStatus.FINISHED, result={"ok": 1}),
                partial(regs[1].update_run, run_id, status=RunStatus.FAILED, error={"kind": "x"}),
            ]
        )
        won = [r for r in results if not isinstance(r, Exception)]
        assert len(won) == 1, results
        assert regs[1].get_run(run_id) == won[0]
        stored = server.tree(namespace, f"runs/{run_id}")
        copy = server.tree(namespace, f"creators/U1/agents/sma/runs/{run_id}")
        assert copy == {k: v for k, v in stored.items() if k not in firebase._SORT_KEYS}


# ---------------------------------------------------------------- the tree
def test_the_tree_follows_the_seed(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    registry.add_version(owner="cli:root", name="sma", sha256=sha("a"), report={"warnings": []})
    registry.add_version(owner="U2", name="sma", sha256=sha("b"), report={"lines": {}})
    registry.create_run(
        run_id="r1",
        agent="sma",
        version=2,
        owner="U2",
        kind="backtest",
        parameters={"symbols": [], "cash": 10_000.0},
        channel="C1",
    )
    registry.update_run("r1", status=RunStatus.RUNNING)
    registry.mark_digest("C1", 1_700_000_100.5)

    tree = server.tree(namespace)
    assert set(tree) == {"creators", "agents", "runs", "digests", "meta"}
    home = tree["creators"]["cli:root"]["agents"]["sma"]  # the creator's, whoever uploaded
    assert set(home) == {"name", "owner", "created_at", "versions", "runs"}
    assert (home["name"], home["owner"]) == ("sma", "cli:root")
    versions = home["versions"]  # keys 1 and 2: Firebase sends them as an array
    assert versions[0] is None
    assert versions[1] == {
        "sha256": sha("a"),
        "owner": "cli:root",
        "report": '{"warnings": []}',
        "created_at": 1_700_000_001,
    }
    assert versions[2]["owner"] == "U2" and versions[2]["report"] == '{"lines": {}}'
    run = home["runs"]["r1"]
    assert run["status"] == "running" and run["owner"] == "U2" and run["channel"] == "C1"
    assert run["parameters"] == '{"cash": 10000.0, "symbols": []}'
    assert run["home"] == "creators/cli:root/agents/sma/runs/r1"
    assert "U2" not in tree["creators"]  # an uploader who did not create the agent
    assert tree["agents"]["sma"]["latest_version"] == 2
    assert tree["agents"]["sma"]["owner_key"] == "cli:root"
    assert set(tree["runs"]["r1"]) >= {"order", "by_agent", "by_channel", "channel_change"}
    assert tree["digests"] == {"C1": 1_700_000_100.5}

    assert registry.get_run("r1").parameters == {"symbols": [], "cash": 10_000.0}  # type: ignore[union-attr]
    assert registry.get_version("sma", 1).report == {"warnings": []}  # type: ignore[union-attr]


def test_names_firebase_refuses_are_encoded(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    owner, channel = "first.last@example.com/x", "C#1 [dm] $&+%"
    registry.add_version(owner=owner, name="odd.name", sha256=sha("a"), report={"a.b": {"$": 1}})
    registry.create_run(
        run_id="r.1",
        agent="odd.name",
        version=1,
        owner=owner,
        kind="backtest",
        parameters={"k/ey": None},
        channel=channel,
    )
    registry.mark_digest(channel, 5.0)
    assert registry.get_agent("odd.name").owner == owner  # type: ignore[union-attr]
    assert [a.name for a in registry.list_agents(owner)] == ["odd.name"]
    assert registry.get_version("odd.name").report == {"a.b": {"$": 1}}  # type: ignore[union-attr]
    assert [r.run_id for r in registry.list_runs(channel=channel)] == ["r.1"]
    assert [r.run_id for r in registry.list_runs(channel=channel, since=0.0)] == ["r.1"]
    assert [r.run_id for r in registry.list_runs("odd.name", channel=channel)] == ["r.1"]
    assert registry.get_run("r.1").parameters == {"k/ey": None}  # type: ignore[union-attr]
    assert registry.last_digest(channel) == 5.0
    creators = server.tree(namespace, "creators")
    assert list(creators) == ["first!2Elast!40example!2Ecom!2Fx"]


def test_firebase_key_keeps_readable_names_and_is_one_to_one() -> None:
    assert firebase_key("U0123ABC") == "U0123ABC"
    assert firebase_key("cli:root") == "cli:root"
    assert firebase_key("sma_cross-2") == "sma_cross-2"
    assert firebase_key("a.b") == "a!2Eb"
    assert firebase_key("a!2Eb") == "a!212Eb"  # the escape character is escaped too
    assert firebase_key("é") == "!C3!A9"
    assert firebase_key("") == "!"
    names = ["a.b", "a!2Eb", "a/b", "a b", "", "!", "a", "A"]
    assert len({firebase_key(n) for n in names}) == len(names)
    with pytest.raises(ValueError, match="too long"):
        firebase_key("." * 300)


def test_run_ids_that_look_like_numbers(registry: FirebaseRegistry) -> None:
    registry.add_version(owner="U1", name="sma", sha256=sha("a"), report={})
    for run_id in ["0", "1", "2"]:  # Firebase sends such a collection as an array
        registry.create_run(
            run_id=run_id,
            agent="sma",
            version=1,
            owner="U1",
            kind="backtest",
            parameters={},
            channel="C1",
        )
    assert [r.run_id for r in registry.list_runs()] == ["2", "1", "0"]
    assert [r.run_id for r in registry.list_runs(since=0.0)] == ["2", "1", "0"]
    assert registry.get_run("1").run_id == "1"  # type: ignore[union-attr]


def test_root_can_be_any_path(
    server: RtdbServer, monkeypatch: pytest.MonkeyPatch, namespace: str
) -> None:
    server.set_rules(namespace, index_rules("/teams/blue"))
    with admin_app(server, monkeypatch, namespace) as app:
        blue = FirebaseRegistry(db.reference("/teams/blue", app=app))
        blue.add_version(owner="U1", name="sma", sha256=sha("a"), report={})
        blue.create_run(
            run_id="r1", agent="sma", version=1, owner="U1", kind="backtest", parameters={}
        )
        assert [r.run_id for r in blue.list_runs("sma")] == ["r1"]
    assert list(server.tree(namespace)) == ["teams"]
    assert set(server.tree(namespace, "teams/blue")) == {"creators", "agents", "runs", "meta"}


# ---------------------------------------------------------------- what list_runs reads
def test_list_runs_reads_only_what_it_shows(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    registry.add_version(owner="U1", name="a", sha256=sha("a"), report={})
    registry.add_version(owner="U1", name="b", sha256=sha("b"), report={})
    for i in range(12):
        registry.create_run(
            run_id=f"r{i:02}",
            agent="ab"[i % 2],
            version=1,
            owner="U1",
            kind="backtest",
            parameters={},
            channel=f"C{i % 3}",
        )

    def reads(call: Callable[[], Any]) -> list[dict[str, str]]:
        server.reset_requests()
        call()
        sent = [r for r in server.requests if r.namespace == namespace]
        assert {r.method for r in sent} == {"GET"}
        return [{k: v for k, v in r.params.items() if k != "ns"} for r in sent]

    assert reads(lambda: registry.list_runs(limit=3)) == [
        {"limitToLast": "3", "orderBy": '"order"'}
    ]
    [by_agent] = reads(lambda: registry.list_runs("a", limit=2))
    assert by_agent["orderBy"] == '"by_agent"' and by_agent["limitToLast"] == "2"
    assert (by_agent["startAt"], by_agent["endAt"]) == ('"a|"', '"a|~"')
    [digest] = reads(lambda: registry.list_runs(since=1_700_000_005.0, channel="C1"))
    assert digest["orderBy"] == '"channel_change"' and digest["startAt"].startswith('"C1|')
    [since] = reads(lambda: registry.list_runs(since=1_700_000_005.0))
    assert (since["orderBy"], since["startAt"]) == ('"updated_at"', "1700000005.0")


def test_agent_and_channel_together_read_page_by_page(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(firebase, "PAGE", 2)
    [registry] = workers(1)
    fake = InMemoryRegistry(clock=Ticks())
    both: list[Registry] = [registry, fake]
    plan = [
        ("a", "C1"),
        ("b", "C1"),
        ("b", "C1"),
        ("b", "C1"),
        ("a", "C2"),
        ("a", "C1"),
        ("b", "C1"),
        ("b", "C1"),
        ("b", "C1"),
        ("b", "C1"),
        ("a", "C1"),
    ]
    for reg in both:
        reg.add_version(owner="U1", name="a", sha256=sha("a"), report={})
        reg.add_version(owner="U1", name="b", sha256=sha("b"), report={})
        for i, (agent, channel) in enumerate(plan):
            reg.create_run(
                run_id=f"r{i:02}",
                agent=agent,
                version=1,
                owner="U1",
                kind="backtest",
                parameters={},
                channel=channel,
            )
    for limit in (1, 2, 3, 5):
        for agent, channel in [("a", "C1"), ("b", "C1"), ("a", "C2"), ("b", "C2")]:
            got = [r.run_id for r in registry.list_runs(agent, limit, channel=channel)]
            assert got == [r.run_id for r in fake.list_runs(agent, limit, channel=channel)]


# ---------------------------------------------------------------- mending and damage
def test_copies_written_out_of_order_end_right(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    registry.add_version(owner="U1", name="sma", sha256=sha("a"), report={})
    registry.create_run(
        run_id="r1", agent="sma", version=1, owner="U1", kind="backtest", parameters={}
    )
    stale = registry.root.child("runs/r1").get()
    registry.update_run("r1", status=RunStatus.RUNNING)
    registry._copy_run(stale)  # a slower worker copying the record it changed earlier
    assert server.tree(namespace, "creators/U1/agents/sma/runs/r1")["status"] == "running"


def test_a_version_whose_copy_was_lost_is_mended(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    first = registry.add_version(owner="U1", name="sma", sha256=sha("a"), report={"n": 1})
    registry.root.child("creators/U1/agents/sma/versions/1").delete()  # died before copying
    assert registry.get_version("sma") == first  # the latest is in agents/ too
    registry.add_version(owner="U1", name="sma", sha256=sha("b"), report={})
    assert registry.get_version("sma", 1) == first
    assert server.tree(namespace, "creators/U1/agents/sma/versions")[1]["sha256"] == sha("a")


def test_a_damaged_record_needs_an_operator(registry: FirebaseRegistry) -> None:
    registry.add_version(owner="U1", name="sma", sha256=sha("a"), report={})
    registry.create_run(
        run_id="r1", agent="sma", version=1, owner="U1", kind="backtest", parameters={}
    )
    registry.root.child("runs/r1/status").set("exploded")
    with pytest.raises(NeedsOperator, match="damaged"):
        registry.get_run("r1")
    with pytest.raises(NeedsOperator, match="damaged"):
        registry.update_run("r1", status=RunStatus.RUNNING)
    registry.root.child("agents/sma/latest_version").delete()
    with pytest.raises(NeedsOperator, match="damaged"):
        registry.get_agent("sma")


# ---------------------------------------------------------------- errors
def test_missing_indexes_need_an_operator(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    server.set_rules(namespace, {"rules": {}})
    with pytest.raises(NeedsOperator, match="Index not defined") as refused:
        registry.list_runs()
    assert "`tradeops gcp rules --apply`" in str(refused.value)


def gcp_rules(server: RtdbServer, namespace: str, *args: str) -> Any:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "FIREBASE_"))}
    env |= {"FIREBASE_DATABASE_EMULATOR_HOST": server.host, "TRADEOPS_HOME": "/nonexistent",
            "TRADEOPS_REGISTRY": server.database_url(namespace)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "bot.cli", "gcp", "rules", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_tradeops_gcp_rules_merges_the_indexes_into_the_databases_rules(
    registry: FirebaseRegistry, server: RtdbServer, namespace: str
) -> None:
    import json

    theirs = {"rules": {".read": "auth != null", "runs": {".indexOn": "order", ".write": True}}}
    server.set_rules(namespace, theirs)
    shown = gcp_rules(server, namespace)  # printed, nothing changed
    assert shown.returncode == 0 and json.loads(shown.stdout) == index_rules("/")
    with pytest.raises(NeedsOperator):
        registry.list_agents(owner="U1")
    applied = gcp_rules(server, namespace, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "merged into the rules of https://" in applied.stderr
    now = server.requests[-1]
    assert (now.method, now.path) == ("PUT", "/.settings/rules")
    rules = json.loads(applied.stdout)["rules"]
    assert rules[".read"] == "auth != null" and rules["runs"][".write"] is True  # kept
    assert rules["runs"][".indexOn"] == firebase.INDEXES["runs"]  # "order" once, then the rest
    assert rules["agents"][".indexOn"] == firebase.INDEXES["agents"]
    assert registry.list_agents(owner="U1") == [] and registry.list_runs("sma") == []  # answered
    again = gcp_rules(server, namespace, "--apply")
    assert again.returncode == 0 and "already in" in again.stderr
    assert server.requests[-1].method == "GET"  # nothing written the second time


def test_merged_rules_refuse_what_is_not_a_rules_object() -> None:
    with pytest.raises(ValueError, match="not an object"):
        firebase.merged_rules({"rules": {"runs": "yes"}})
    with pytest.raises(ValueError):
        firebase.merged_rules(["rules"])
    nested = firebase.merged_rules({"rules": {}}, "/teams/blue")
    assert nested == index_rules("/teams/blue")


@pytest.mark.parametrize(
    ("status", "raised"),
    [
        (401, NeedsOperator),
        (403, NeedsOperator),
        (404, NeedsOperator),
        (429, Temporary),
        (400, NeedsOperator),
    ],
)
def test_http_errors_map_to_what_happens_next(
    registry: FirebaseRegistry, server: RtdbServer, status: int, raised: type[Exception]
) -> None:
    # google-auth's session refreshes the credentials and tries twice more after a 401
    server.fail_next(status, error="no", times=3 if status == 401 else 1)
    with pytest.raises(raised, match="Firebase Realtime Database"):
        registry.get_agent("sma")
    assert registry.get_agent("sma") is None  # every injected failure was used


def test_a_503_is_retried_by_the_client(registry: FirebaseRegistry, server: RtdbServer) -> None:
    server.fail_next(503)
    assert registry.get_agent("sma") is None


def test_an_unreachable_database_is_temporary(
    monkeypatch: pytest.MonkeyPatch, namespace: str
) -> None:
    gone = RtdbServer().start()
    with admin_app(gone, monkeypatch, namespace) as app:
        registry = FirebaseRegistry(db.reference("/", app=app))
        gone.stop()
        with pytest.raises(Temporary, match="Firebase Realtime Database"):
            registry.get_run("r1")


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (exceptions.UnavailableError, Temporary),
        (exceptions.DeadlineExceededError, Temporary),
        (db.TransactionAbortedError, Temporary),
        (exceptions.PermissionDeniedError, NeedsOperator),
        (exceptions.UnauthenticatedError, NeedsOperator),
    ],
)
def test_firebase_errors_map_to_ports_errors(
    error: type[Exception], raised: type[Exception]
) -> None:
    with pytest.raises(raised), firebase._backend():
        raise error("boom")


def test_the_contract_errors_pass_unchanged(registry: FirebaseRegistry) -> None:
    with pytest.raises(NotFound):
        registry.update_run("nope", status=RunStatus.RUNNING)
    with pytest.raises(NotFound):
        registry.create_run(
            run_id="r1", agent="nope", version=1, owner="U1", kind="backtest", parameters={}
        )
    with pytest.raises(ValueError, match="JSON"):
        registry.add_version(owner="U1", name="x", sha256=sha("a"), report={"x": float("nan")})


def test_tradeops_gcp_rules_with_the_local_registry_is_one_line(server: RtdbServer) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "gcp", "rules"], cwd=REPO_ROOT,
                          env=env | {"TRADEOPS_HOME": "/nonexistent"}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("tradeops: error: TRADEOPS_REGISTRY: the local registry")
    assert done.stderr.count("\n") == 1
