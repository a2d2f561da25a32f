"""The Realtime Database stand-in (tests/rtdb_server.py) against the real firebase-admin client,
plus the wire details the client cannot show (status codes, bodies, ordering rules)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from firebase_admin import App, db, exceptions

from tests.rtdb_server import PUSH_CHARS, RtdbServer, _PushIds, admin_app, etag_of


@pytest.fixture(scope="module")
def server() -> Iterator[RtdbServer]:
    with RtdbServer() as rtdb:
        yield rtdb


@pytest.fixture
def namespace(server: RtdbServer) -> str:
    return server.new_namespace()


@pytest.fixture
def app(server: RtdbServer, monkeypatch: pytest.MonkeyPatch, namespace: str) -> Iterator[App]:
    with admin_app(server, monkeypatch, namespace) as firebase_app:
        yield firebase_app


@pytest.fixture
def root(app: App) -> db.Reference:
    return db.reference("/", app=app)


def raw(server: RtdbServer, method: str, path: str, ns: str, **kwargs: Any) -> requests.Response:
    """A request as the REST API takes it, for what firebase-admin cannot send."""
    params = kwargs.pop("params", "")
    query = f"{params}&ns={ns}" if params else f"ns={ns}"
    return requests.request(method, f"http://{server.host}{path}?{query}", timeout=5, **kwargs)


# ---------------------------------------------------------------- reading and writing
def test_set_get_update_push_delete(root: db.Reference) -> None:
    assert root.get() is None
    assert root.child("missing/deep").get() is None
    root.child("a").set({"x": 1, "y": "two", "z": [True, None, 3.5]})
    assert root.child("a").get() == {"x": 1, "y": "two", "z": [True, None, 3.5]}
    assert root.child("a/x").get() == 1

    root.update({"a/x": 2, "b/c/d": "new", "a/y": None})  # multi-path, null deletes
    assert root.get() == {"a": {"x": 2, "z": [True, None, 3.5]}, "b": {"c": {"d": "new"}}}
    root.child("a").update({"w": {"deep": 1}})  # an update keeps the siblings
    assert root.child("a").get() == {"x": 2, "z": [True, None, 3.5], "w": {"deep": 1}}

    first = root.child("items").push({"n": 1})
    second = root.child("items").push("text")
    assert first.key is not None and second.key is not None
    assert len(first.key) == len(second.key) == 20 and first.key < second.key
    assert root.child("items").get() == {first.key: {"n": 1}, second.key: "text"}

    root.child("b/c/d").delete()  # the emptied parents vanish with it
    assert root.child("b").get() is None
    assert set(root.get()) == {"a", "items"}
    root.child("items").delete()
    root.child("a").set({"gone": None, "empty": {}})  # nothing left: the node is gone
    assert root.get() is None


def test_values_are_stored_as_firebase_stores_them(
    server: RtdbServer, root: db.Reference, namespace: str
) -> None:
    root.child("v").set(
        {
            "float": 2.0,
            "big": 1.5e300,
            "list": ["a", "b"],
            "sparse": {"0": "x", "5": "y"},
            "unicode": "é ✓",
        }
    )
    got = root.child("v").get()
    assert got["float"] == 2 and isinstance(got["float"], int)  # doubles: 2.0 is 2
    assert got["big"] == 1.5e300
    assert got["list"] == ["a", "b"]  # kept as {"0": "a", "1": "b"}, sent back as an array
    assert got["sparse"] == {"0": "x", "5": "y"}  # too sparse for an array
    assert got["unicode"] == "é ✓"
    assert server.tree(namespace, "v/list") == ["a", "b"]
    root.child("leaf").set(5)
    root.child("leaf/child").set(6)  # a leaf becomes an object when a child is written
    assert root.child("leaf").get() == {"child": 6}


def test_shallow_reads_give_children_as_true(root: db.Reference) -> None:
    root.set({"a": {"deep": {"x": 1}}, "b": 2, "c": "s"})
    assert root.get(shallow=True) == {"a": True, "b": True, "c": True}
    assert root.child("b").get(shallow=True) == 2
    assert root.child("none").get(shallow=True) is None


def test_print_silent_and_plain_replies(server: RtdbServer, namespace: str) -> None:
    silent = raw(server, "PUT", "/a.json", namespace, params="print=silent", json={"x": 1})
    assert (silent.status_code, silent.content) == (204, b"")
    plain = raw(server, "PUT", "/b.json", namespace, json={"x": [1]})
    assert (plain.status_code, plain.json()) == (200, {"x": [1]})
    patched = raw(server, "PATCH", "/b.json", namespace, json={"y/z": 2})
    assert (patched.status_code, patched.json()) == (200, {"y/z": 2})
    pushed = raw(server, "POST", "/list.json", namespace, json=1)
    assert pushed.status_code == 200 and list(pushed.json()) == ["name"]
    deleted = raw(server, "DELETE", "/a.json", namespace)
    assert (deleted.status_code, deleted.json()) == (200, None)
    assert raw(server, "GET", "/a.json", namespace).json() is None
    assert raw(server, "GET", "/b.json", namespace).json() == {"x": [1], "y": {"z": 2}}


# ---------------------------------------------------------------- ETags and transactions
def test_etags(server: RtdbServer, root: db.Reference, namespace: str) -> None:
    ref = root.child("doc")
    value, missing_tag = ref.get(etag=True)
    assert value is None and missing_tag == etag_of(None)
    ref.set({"n": 1})
    value, tag = ref.get(etag=True)
    assert value == {"n": 1} and tag == etag_of({"n": 1}) and tag != missing_tag
    assert ref.get_if_changed(tag) == (False, None, None)
    ref.set({"n": 2})
    assert ref.get_if_changed(tag) == (True, {"n": 2}, etag_of({"n": 2}))
    unchanged = raw(
        server, "GET", "/doc.json", namespace, headers={"if-none-match": etag_of({"n": 2})}
    )
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    plain = raw(server, "GET", "/doc.json", namespace)
    assert "ETag" not in plain.headers  # only when asked for


def test_set_if_unchanged_both_ways(root: db.Reference) -> None:
    ref = root.child("doc")
    ref.set({"n": 1})
    _, tag = ref.get(etag=True)
    ok, value, new_tag = ref.set_if_unchanged(tag, {"n": 2})
    assert (ok, value, new_tag) == (True, {"n": 2}, etag_of({"n": 2}))
    ok, value, current = ref.set_if_unchanged(tag, {"n": 3})  # the old tag: refused
    assert (ok, value, current) == (False, {"n": 2}, etag_of({"n": 2}))
    assert ref.get() == {"n": 2}
    ok, _, _ = root.child("fresh").set_if_unchanged(etag_of(None), "created")
    assert ok and root.child("fresh").get() == "created"


def test_a_failed_precondition_answers_412_with_the_current_value(
    server: RtdbServer, namespace: str
) -> None:
    raw(server, "PUT", "/doc.json", namespace, json={"n": 1})
    refused = raw(server, "PUT", "/doc.json", namespace, json=5, headers={"if-match": "stale"})
    assert refused.status_code == 412
    assert refused.json() == {"n": 1} and refused.headers["ETag"] == etag_of({"n": 1})


def test_racing_transactions_lose_no_increment(root: db.Reference) -> None:
    counter = root.child("counter")
    per_thread, threads = 25, 2
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                counter.transaction(lambda n: (n or 0) + 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert errors == []
    assert counter.get() == per_thread * threads


# ---------------------------------------------------------------- queries
@pytest.fixture
def scores(root: db.Reference) -> db.Reference:
    ref = root.child("scores")
    ref.set(
        {
            "ann": {"score": 9, "team": "red"},
            "bob": {"score": 3, "team": "blue"},
            "cat": {"score": 9, "team": "blue"},
            "dan": {"score": 5, "team": "red"},
            "eve": {"team": "red"},
        }
    )
    return ref


def test_order_by_child_equal_to(scores: db.Reference) -> None:
    nine = scores.order_by_child("score").equal_to(9).get()
    assert list(nine) == ["ann", "cat"]
    red = scores.order_by_child("team").equal_to("red").get()
    assert list(red) == ["ann", "dan", "eve"]
    assert scores.order_by_child("score").equal_to(4).get() == {}


def test_order_by_key_limit_to_last_and_first(scores: db.Reference) -> None:
    assert list(scores.order_by_key().limit_to_last(2).get()) == ["dan", "eve"]
    assert list(scores.order_by_key().limit_to_first(2).get()) == ["ann", "bob"]
    assert list(scores.order_by_key().start_at("b").end_at("d").get()) == ["bob", "cat"]


def test_ranges_and_limits_follow_the_order_with_ties_by_key(scores: db.Reference) -> None:
    def by_score() -> db.Query:  # a firebase-admin Query changes in place: one per use
        return scores.order_by_child("score")

    assert list(by_score().get()) == ["eve", "bob", "dan", "ann", "cat"]  # missing (null) first
    assert list(by_score().start_at(5).get()) == ["dan", "ann", "cat"]
    assert list(by_score().end_at(5).get()) == ["eve", "bob", "dan"]
    assert list(by_score().start_at(4).end_at(9).limit_to_first(2).get()) == ["dan", "ann"]
    assert list(by_score().start_at(4).limit_to_last(2).get()) == ["ann", "cat"]
    assert list(scores.order_by_child("team").start_at("c").get()) == ["ann", "dan", "eve"]


def test_values_of_different_types_order_as_firebase_orders_them(root: db.Reference) -> None:
    ref = root.child("mixed")
    ref.set(
        {
            "obj": {"x": 1},
            "str": "a",
            "num": -1.5,
            "big": 10,
            "true": True,
            "false": False,
            "str2": "B",
        }
    )
    assert list(ref.order_by_value().get()) == [
        "false",
        "true",
        "num",
        "big",
        "str2",
        "str",
        "obj",
    ]
    # a filter compares by type first: 0 is above every boolean and below every string
    assert list(ref.order_by_value().start_at(0).end_at("Z").get()) == ["big", "str2"]
    assert list(ref.order_by_value().end_at(True).get()) == ["false", "true"]


def test_integer_keys_order_numerically_before_other_keys(
    server: RtdbServer, root: db.Reference, namespace: str
) -> None:
    ref = root.child("keys")
    ref.set({"10": "a", "9": "b", "x": "c", "-1": "d", "09": "e"})
    # the server picks by Firebase's key order; firebase-admin then sorts keys as strings
    assert set(ref.order_by_key().limit_to_first(3).get()) == {"-1", "9", "10"}
    assert set(ref.order_by_key().start_at("09").get()) == {"09", "x"}
    reply = raw(server, "GET", "/keys.json", namespace, params='orderBy="$key"')
    assert list(reply.json()) == ["-1", "9", "10", "09", "x"]  # the server's reply is in order


def test_queries_need_an_index_once_rules_are_set(
    server: RtdbServer, root: db.Reference, namespace: str
) -> None:
    root.child("scores").set({"a": {"score": 1}, "b": {"score": 2}})
    assert list(root.child("scores").order_by_child("score").get()) == ["a", "b"]  # no rules yet
    rules = {"rules": {"scores": {".indexOn": ["score"]}, "$other": {".indexOn": "team"}}}
    reply = raw(server, "PUT", "/.settings/rules.json", namespace, json=rules)
    assert reply.status_code == 200
    assert list(root.child("scores").order_by_child("score").limit_to_last(1).get()) == ["b"]
    assert root.child("teams").order_by_child("team").get() is None  # a $wildcard rule
    assert list(root.child("scores").order_by_key().get()) == ["a", "b"]  # keys need none
    with pytest.raises(exceptions.InvalidArgumentError, match=r'Index not defined.*"name"'):
        root.child("scores").order_by_child("name").get()
    with pytest.raises(exceptions.InvalidArgumentError, match=r"\.value"):
        root.child("scores").order_by_value().get()


# ---------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("method", "path", "params", "body", "message"),
    [
        ("PUT", "/a.json", "", {"b.c": 1}, "Invalid key"),
        ("PUT", "/a.json", "", {"x": {"b#": 1}}, "Invalid key"),
        ("PUT", "/a[1].json", "", 1, "Invalid key"),
        ("PATCH", "/a.json", "", {"x": 1, "x/y": 2}, "ancestor"),
        ("PATCH", "/a.json", "", [1], "object"),
        ("GET", "/a.json", "limitToFirst=1", None, "orderBy must be defined"),
        ("GET", "/a.json", 'orderBy="$key"&limitToFirst=1&limitToLast=1', None, "both"),
        ("GET", "/a.json", 'orderBy="$key"&limitToFirst=0', None, "positive"),
        ("GET", "/a.json", 'orderBy="$key"&startAt=1', None, "string"),
        ("GET", "/a.json", 'orderBy="x"&equalTo=1&startAt=0', None, "equalTo"),
        ("GET", "/a.json", "orderBy=x", None, "JSON"),
        ("GET", "/a.json", 'orderBy="x"&shallow=true', None, "shallow"),
        ("GET", "/a", "", None, ".json"),
    ],
)
def test_bad_requests_answer_400_with_an_error(
    server: RtdbServer,
    namespace: str,
    method: str,
    path: str,
    params: str,
    body: Any,
    message: str,
) -> None:
    raw(server, "PUT", "/a.json", namespace, json={"keep": 1})
    reply = raw(server, method, path, namespace, params=params, json=body)
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert raw(server, "GET", "/a.json", namespace).json() == {"keep": 1}  # nothing written


def test_bad_json_and_a_missing_namespace(server: RtdbServer, namespace: str) -> None:
    reply = raw(server, "PUT", "/a.json", namespace, data=b"{nope")
    assert reply.status_code == 400 and "parse" in reply.json()["error"]
    reply = requests.get(f"http://{server.host}/a.json", timeout=5)
    assert reply.status_code == 400 and "ns" in reply.json()["error"]


def test_namespaces_are_separate_trees(server: RtdbServer, namespace: str) -> None:
    other = server.new_namespace()
    raw(server, "PUT", "/a.json", namespace, json=1)
    assert raw(server, "GET", "/a.json", other).json() is None
    assert server.tree(namespace) == {"a": 1}


def test_injected_failures_reach_the_client(server: RtdbServer, root: db.Reference) -> None:
    server.fail_next(403, error="Permission denied")
    with pytest.raises(exceptions.PermissionDeniedError, match="Permission denied"):
        root.child("a").get()
    assert root.child("a").get() is None  # only the next one


def test_requests_are_recorded_as_firebase_admin_sends_them(
    server: RtdbServer, root: db.Reference, namespace: str
) -> None:
    root.child("a").set(1)
    root.child("a").order_by_child("c").equal_to("x y").limit_to_last(3).get()
    sent = [r for r in server.requests if r.namespace == namespace]
    assert [(r.method, r.path) for r in sent] == [("PUT", "/a"), ("GET", "/a")]
    assert sent[0].params == {"print": "silent", "ns": namespace}
    assert sent[1].params == {
        "equalTo": '"x y"',
        "limitToLast": "3",
        "orderBy": '"c"',
        "ns": namespace,
    }
    assert sent[1].headers["authorization"] == "Bearer owner"


def test_an_http_database_url_reaches_the_server_too(server: RtdbServer) -> None:
    import firebase_admin

    namespace = server.new_namespace()
    url = f"http://{server.host}/?ns={namespace}"
    app = firebase_admin.initialize_app(options={"databaseURL": url}, name=namespace)
    try:
        db.reference("/x", app=app).set("y")
    finally:
        firebase_admin.delete_app(app)
    assert server.tree(namespace) == {"x": "y"}


# ---------------------------------------------------------------- push ids
def test_push_ids_increase_within_one_millisecond() -> None:
    ids = _PushIds()
    made = [ids.next() for _ in range(2000)]  # many share a millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 20 and set(i) <= set(PUSH_CHARS) for i in made)
    assert list(PUSH_CHARS) == sorted(PUSH_CHARS)  # the alphabet is in ASCII order


def test_pushed_children_list_in_creation_order(root: db.Reference) -> None:
    ref = root.child("log")
    keys = [ref.push(i).key for i in range(30)]
    assert list(ref.order_by_key().get()) == keys
    assert list(ref.order_by_key().limit_to_last(3).get().values()) == [27, 28, 29]
