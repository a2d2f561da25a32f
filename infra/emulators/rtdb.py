"""A local stand-in for the Firebase Realtime Database REST API (CLOUD.md, "Firebase").

No emulator installs here (Google's JAR is downloaded at run time from an unreachable
host), so the real ``firebase-admin`` client talks to this server instead::

    with RtdbServer() as server:
        monkeypatch.setenv("FIREBASE_DATABASE_EMULATOR_HOST", server.host)
        app = firebase_admin.initialize_app(
            options={"databaseURL": server.database_url("my-ns")}, name="test-1"
        )
        db.reference("/", app=app).child("a/b").set(1)

One JSON tree per namespace (the ``ns`` query parameter firebase-admin adds to every
request). What it does, as Firebase does it:

- ``GET`` (``null`` for a missing path; ``shallow=true``: children as ``true``), ``PUT``,
  ``PATCH`` (multi-path keys ``"a/b"``, atomic, no key the ancestor of another), ``POST``
  (20-character push ids, time-ordered and increasing even within one millisecond),
  ``DELETE``; ``print=silent`` answers 204 without a body.
- Values are normalised on the way in: ``null`` deletes, empty objects vanish and so do
  parents left empty, arrays become objects keyed ``"0"``, ``"1"``…, integral numbers are
  integers (Firebase stores doubles). On the way out an object whose keys are all small
  integers (more than half of ``0..max`` present) is sent as an array, as Firebase does.
- ETags (a hash of the value's canonical JSON): sent when asked (``X-Firebase-ETag: true``
  or ``if-none-match``); ``if-none-match`` matching → 304; ``PUT`` with ``if-match`` not
  matching → 412 with the current value and its ETag.
- Queries: ``orderBy`` (``"$key"``, ``"$value"`` or a child path, JSON-encoded) with
  ``equalTo``/``startAt``/``endAt`` and ``limitToFirst``/``limitToLast``; the reply is a
  JSON object (the client sorts). Values compare as Firebase orders them: null < false <
  true < numbers < strings < objects, ties by key (keys that are 32-bit integers first,
  numerically, then the rest as strings).
- Index rules: ``PUT /.settings/rules.json`` (or :meth:`RtdbServer.set_rules`) stores a
  namespace's rules; from then on, as on the real database, a query ordered by a child
  (or ``$value``) needs an ``.indexOn`` for it at that path, else 400 "Index not defined".
  A namespace without rules takes any query, as the emulator does.
- Errors are ``{"error": "text"}``: 400 for bad input (illegal keys, a bad query, bad
  JSON), 405 for unknown methods.

Used by ``tradeops demo --backend gcp`` and by the tests (``tests/rtdb_server.py`` adds a
firebase-admin app fixture); never in production. For tests: :attr:`RtdbServer.requests`
records every request (method, path, parameters),
:meth:`RtdbServer.fail_next` makes the next requests fail with a status, and
:meth:`RtdbServer.tree` shows a namespace's stored tree. Not implemented: ``listen()``
(server-sent events), ``.priority``, server values (``.sv``), security rules other than
``.indexOn``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from infra.emulators.http import LocalHttpServer, StandInHandler

log = logging.getLogger(__name__)

PUSH_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
ILLEGAL_KEY = re.compile(r"[.$#\[\]/\x00-\x1f\x7f]")
INT_KEY = re.compile(r"-?(0|[1-9][0-9]{0,9})")
MAX_KEY_BYTES = 768
MAX_SAFE_INT = 2**53
QUERY_PARAMS = ("orderBy", "equalTo", "startAt", "endAt", "limitToFirst", "limitToLast")

Json = Any  # a JSON value: None, bool, int, float, str, list, dict


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (for tests to check what a client sent)."""

    method: str
    namespace: str | None
    path: str  # "/a/b" ("/" for the root), without ".json"
    params: dict[str, str]  # decoded query parameters, "ns" included
    headers: dict[str, str]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Json = None
    etag: str | None = None
    has_body: bool = True


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- values
def etag_of(value: Json) -> str:
    """The ETag of a stored (normalised) value: a hash of its canonical JSON."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise _BadRequest(f"Invalid key {key!r}: keys must be non-empty strings")
    if ILLEGAL_KEY.search(key):
        raise _BadRequest(
            f"Invalid key {key!r}: keys cannot contain '.', '$', '#', '[', ']', '/'"
            " or ASCII control characters"
        )
    if len(key.encode()) > MAX_KEY_BYTES:
        raise _BadRequest(f"Invalid key {key[:40]!r}…: longer than {MAX_KEY_BYTES} bytes")
    return key


def _number(x: int | float) -> int | float:
    """A number as Firebase keeps it: a double, integral ones written as integers."""
    try:
        f = float(x)
    except OverflowError as exc:
        raise _BadRequest(f"number out of range: {x}") from exc
    if not math.isfinite(f):
        raise _BadRequest(f"not a finite number: {x}")
    return int(f) if f.is_integer() and abs(f) <= MAX_SAFE_INT else f


def normalise(value: Json) -> Json:
    """``value`` as stored: arrays as objects, no nulls, no empty objects; ``None`` if
    nothing is left. ``_BadRequest`` for illegal keys or values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list):
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise _BadRequest(f"not a JSON value: {type(value).__name__}")
    out: dict[str, Json] = {}
    for key, child in value.items():
        if key in (".priority", ".value", ".sv"):
            raise _BadRequest(f"{key} is not supported by this stand-in")
        stored = normalise(child)
        if _check_key(key) and stored is not None:
            out[key] = stored
    return out or None


def render(value: Json) -> Json:
    """A stored value as Firebase sends it: objects keyed by small integers become arrays."""
    if not isinstance(value, dict):
        return value
    out = {key: render(child) for key, child in value.items()}
    if all(key.isdigit() and (key == "0" or key[0] != "0") for key in out):
        top = max(int(key) for key in out)
        if top < 2 * len(out):
            return [out.get(str(i)) for i in range(top + 1)]
    return out


def _key_order(key: str) -> tuple[int, int, str]:
    """Firebase's key order: 32-bit integer keys first, numerically, then the rest."""
    if INT_KEY.fullmatch(key) and -(2**31) <= int(key) < 2**31:
        return (0, int(key), "")
    return (1, 0, key)


def _value_order(value: Json) -> tuple[int, Any]:
    """Firebase's value order: null < false < true < numbers < strings < objects."""
    if value is None:
        return (0, 0)
    if value is False:
        return (1, 0)
    if value is True:
        return (2, 0)
    if isinstance(value, int | float):
        return (3, value)
    if isinstance(value, str):
        return (4, value)
    return (5, 0)  # objects are equal to each other: their keys decide


def _child_at(value: Json, path: list[str]) -> Json:
    for segment in path:
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value


def _put(node: Json, path: list[str], value: Json) -> Json:
    """``node`` with ``value`` (normalised) at ``path``; empty parents vanish."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    children = dict(node) if isinstance(node, dict) else {}  # a leaf parent becomes an object
    child = _put(children.get(head), rest, value)
    if child is None:
        children.pop(head, None)
    else:
        children[head] = child
    return children or None


# ---------------------------------------------------------------------- push ids
class _PushIds:
    """Firebase's push ids: 8 characters of milliseconds, 12 random ones, all from an
    alphabet in ASCII order, so ids sort by creation; within one millisecond the random
    part of the previous id is incremented, so they still increase."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = [0] * 12

    def next(self) -> str:
        with self._lock:
            now = max(int(time.time() * 1000), self._last_ms)
            if now == self._last_ms:
                i = 11
                while i >= 0 and self._last_rand[i] == 63:
                    self._last_rand[i] = 0
                    i -= 1
                if i < 0:  # 64**12 ids in one millisecond: borrow the next one
                    now += 1
                else:
                    self._last_rand[i] += 1
            else:
                self._last_rand = [secrets.randbelow(64) for _ in range(12)]
            self._last_ms = now
            stamp = ""
            for _ in range(8):
                stamp = PUSH_CHARS[now % 64] + stamp
                now //= 64
            return stamp + "".join(PUSH_CHARS[i] for i in self._last_rand)


# ---------------------------------------------------------------------- queries
@dataclass(frozen=True)
class _Query:
    order_by: str  # "$key", "$value" or a child path
    equal_to: tuple[bool, Json] = (False, None)
    start_at: tuple[bool, Json] = (False, None)
    end_at: tuple[bool, Json] = (False, None)
    limit_first: int | None = None
    limit_last: int | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> _Query | None:
        given = [name for name in QUERY_PARAMS if name in params]
        if not given:
            return None
        if "orderBy" not in params:
            raise _BadRequest("orderBy must be defined when other query parameters are defined")
        order_by = _json_param(params, "orderBy")
        if not isinstance(order_by, str) or not order_by:
            raise _BadRequest("orderBy must be a valid JSON encoded path")
        if order_by == "$priority":
            raise _BadRequest("orderBy $priority is not supported by this stand-in")
        if not order_by.startswith("$"):
            for segment in order_by.strip("/").split("/"):
                _check_key(segment)
        elif order_by not in ("$key", "$value"):
            raise _BadRequest(f"orderBy {order_by!r} is not a known index")
        if "equalTo" in params and ("startAt" in params or "endAt" in params):
            raise _BadRequest("equalTo cannot be specified in addition to startAt or endAt")
        if "limitToFirst" in params and "limitToLast" in params:
            raise _BadRequest("limitToFirst and limitToLast cannot both be specified")
        bounds = {name: cls._bound(params, name, order_by) for name in QUERY_PARAMS[1:4]}
        return cls(
            order_by=order_by,
            equal_to=bounds["equalTo"],
            start_at=bounds["startAt"],
            end_at=bounds["endAt"],
            limit_first=_limit_param(params, "limitToFirst"),
            limit_last=_limit_param(params, "limitToLast"),
        )

    @staticmethod
    def _bound(params: dict[str, str], name: str, order_by: str) -> tuple[bool, Json]:
        if name not in params:
            return (False, None)
        value = _json_param(params, name)
        if isinstance(value, dict | list):
            raise _BadRequest(f"{name} must be a JSON primitive (null, boolean, number, string)")
        if order_by == "$key" and not isinstance(value, str):
            raise _BadRequest(f"{name} must be a string when ordering by $key")
        return (True, value)

    def index(self, key: str, value: Json) -> Any:
        if self.order_by == "$key":
            return _key_order(key)
        if self.order_by == "$value":
            return _value_order(value)
        return _value_order(_child_at(value, self.order_by.strip("/").split("/")))

    def bound(self, value: Json) -> Any:
        return _key_order(value) if self.order_by == "$key" else _value_order(value)

    def run(self, node: Json) -> Json:
        if not isinstance(node, dict):
            return node
        entries = sorted(
            ((self.index(k, v), _key_order(k), k, v) for k, v in node.items()),
            key=lambda e: (e[0], e[1]),
        )
        if self.equal_to[0]:
            entries = [e for e in entries if e[0] == self.bound(self.equal_to[1])]
        if self.start_at[0]:
            entries = [e for e in entries if e[0] >= self.bound(self.start_at[1])]
        if self.end_at[0]:
            entries = [e for e in entries if e[0] <= self.bound(self.end_at[1])]
        if self.limit_first is not None:
            entries = entries[: self.limit_first]
        if self.limit_last is not None:
            entries = entries[max(0, len(entries) - self.limit_last) :]
        return {k: render(v) for _, _, k, v in entries}


def _json_param(params: dict[str, str], name: str) -> Json:
    try:
        return json.loads(params[name])
    except ValueError as exc:
        raise _BadRequest(f"{name} must be JSON-encoded: {params[name]!r}") from exc


def _limit_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    text = params[name]
    if not text.isdigit() or int(text) < 1:
        raise _BadRequest(f"{name} must be a positive integer: {text!r}")
    return int(text)


# ---------------------------------------------------------------------- rules (.indexOn)
def _indexed(rules: Json, path: list[str], child: str) -> bool:
    """Whether ``rules`` (the ``"rules"`` object) index ``child`` at ``path``: the rule
    nodes on the way may be literal keys or ``$wildcards``."""
    nodes = [rules]
    for segment in path:
        nodes = [
            node[key]
            for node in nodes
            if isinstance(node, dict)
            for key in node
            if key == segment or (key.startswith("$") and not key.startswith("$."))
        ]
    for node in nodes:
        index_on = node.get(".indexOn") if isinstance(node, dict) else None
        names = [index_on] if isinstance(index_on, str) else index_on or []
        if child in names:
            return True
    return False


# ---------------------------------------------------------------------- the database
class RtdbServer:
    """The Realtime Database REST API on 127.0.0.1 (a free port); see the module doc.

    Use as a context manager, or ``start()`` / ``stop()``. Give :attr:`host` to
    ``FIREBASE_DATABASE_EMULATOR_HOST`` and :meth:`database_url` to the app's
    ``databaseURL``. Thread-safe: one lock guards all the trees.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._trees: dict[str, Json] = {}
        self._rules: dict[str, Json] = {}
        self._requests: list[Request] = []
        self._failures: deque[tuple[int, str]] = deque()
        self._push_ids = _PushIds()
        self._http = LocalHttpServer(_Handler, self, "rtdb-server")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RtdbServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> RtdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, what ``FIREBASE_DATABASE_EMULATOR_HOST`` takes."""
        return f"127.0.0.1:{self._http.port('RtdbServer')}"

    @staticmethod
    def database_url(namespace: str) -> str:
        """The ``databaseURL`` whose namespace is ``namespace`` (with the emulator host set,
        firebase-admin sends its requests here with ``ns=namespace``)."""
        return f"https://{namespace}.firebaseio.com"

    @staticmethod
    def new_namespace(prefix: str = "test") -> str:
        """A namespace no other test uses."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------ for tests
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def tree(self, namespace: str, path: str = "/") -> Json:
        """What is stored at ``path`` of ``namespace``, as a GET would send it."""
        with self._lock:
            return json.loads(json.dumps(render(self._at(namespace, _segments(path)))))

    def set_rules(self, namespace: str, rules: Json) -> None:
        """``namespace``'s rules document (``{"rules": {…}}``); its ``.indexOn`` entries
        are then required by queries."""
        if not isinstance(rules, dict) or not isinstance(rules.get("rules"), dict):
            raise ValueError('rules must be an object with a "rules" object')
        with self._lock:
            self._rules[namespace] = rules["rules"]

    def fail_next(self, status: int, *, error: str = "injected failure", times: int = 1) -> None:
        """The next ``times`` requests answer ``status`` with ``{"error": error}``."""
        with self._lock:
            self._failures.extend([(status, error)] * times)

    # ------------------------------------------------------------------ requests
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        url = urlsplit(target)
        params = _query_params(url.query)
        namespace = params.get("ns")
        path = unquote(url.path)
        with self._lock:
            self._requests.append(
                Request(method, namespace, path.removesuffix(".json") or "/", params, headers)
            )
            if self._failures:
                status, error = self._failures.popleft()
                return _Reply(status, {"error": error})
        try:
            if not path.endswith(".json"):
                raise _BadRequest("paths must end in .json (the REST API)")
            if not namespace:
                raise _BadRequest("the ns query parameter (the database namespace) is missing")
            segments = _segments(path.removesuffix(".json"))
            if segments == [".settings", "rules"]:
                return self._rules_endpoint(method, namespace, body)
            for segment in segments:
                _check_key(segment)
            return self._dispatch(method, namespace, segments, params, headers, body)
        except _BadRequest as exc:
            return _Reply(exc.status, {"error": str(exc)})

    def _dispatch(
        self,
        method: str,
        ns: str,
        path: list[str],
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> _Reply:
        silent = params.get("print") == "silent"
        if method == "GET":
            return self._get(ns, path, params, headers)
        if method == "PUT":
            return self._set(ns, path, _body(body), headers, silent)
        if method == "PATCH":
            return self._update(ns, path, _body(body), silent)
        if method == "POST":
            return self._push(ns, path, _body(body), silent)
        if method == "DELETE":
            with self._lock:
                self._write(ns, path, None)
            return _Reply(204, has_body=False) if silent else _Reply(200, None)
        raise _BadRequest(f"method {method} is not supported", status=405)

    def _get(
        self, ns: str, path: list[str], params: dict[str, str], headers: dict[str, str]
    ) -> _Reply:
        query = _Query.parse(params)
        shallow = params.get("shallow")
        if shallow not in (None, "true", "false"):
            raise _BadRequest("shallow must be true or false")
        if shallow == "true" and query is not None:
            raise _BadRequest("Mixing 'shallow' and querying parameters is not supported")
        with self._lock:
            value = self._at(ns, path)
            if query is not None:
                self._check_index(ns, path, query)
                out = query.run(value)
            elif shallow == "true":
                out = {k: True for k in value} if isinstance(value, dict) else value
            else:
                out = render(value)
            tag = etag_of(value)
        wants_etag = headers.get("x-firebase-etag") == "true" or "if-none-match" in headers
        if headers.get("if-none-match") == tag:
            return _Reply(304, etag=tag, has_body=False)
        return _Reply(200, out, etag=tag if wants_etag else None)

    def _set(
        self, ns: str, path: list[str], value: Json, headers: dict[str, str], silent: bool
    ) -> _Reply:
        stored = normalise(value)
        with self._lock:
            if "if-match" in headers:
                current = self._at(ns, path)
                if headers["if-match"] != etag_of(current):
                    return _Reply(412, render(current), etag=etag_of(current))
            self._write(ns, path, stored)
        tag = etag_of(stored) if "if-match" in headers else None
        return _Reply(204, etag=tag, has_body=False) if silent else _Reply(200, render(stored), tag)

    def _update(self, ns: str, path: list[str], value: Json, silent: bool) -> _Reply:
        if not isinstance(value, dict):
            raise _BadRequest("PATCH needs a JSON object")
        writes: list[tuple[list[str], Json]] = []
        for key, child in value.items():
            relative = [_check_key(s) for s in key.strip("/").split("/")] if key.strip("/") else []
            if not relative:
                raise _BadRequest(f"Invalid key {key!r} in PATCH")
            writes.append((relative, normalise(child)))
        seen = sorted(writes, key=lambda w: w[0])
        for (a, _), (b, _) in itertools.pairwise(seen):
            if b[: len(a)] == a:
                raise _BadRequest(f"Path {'/'.join(a)} is an ancestor of {'/'.join(b)}")
        with self._lock:
            for relative, stored in writes:
                self._write(ns, path + relative, stored)
        return _Reply(204, has_body=False) if silent else _Reply(200, value)

    def _push(self, ns: str, path: list[str], value: Json, silent: bool) -> _Reply:
        stored = normalise(value)
        with self._lock:
            name = self._push_ids.next()
            self._write(ns, [*path, name], stored)
        return _Reply(204, has_body=False) if silent else _Reply(200, {"name": name})

    def _rules_endpoint(self, method: str, ns: str, body: bytes) -> _Reply:
        if method == "GET":
            with self._lock:
                return _Reply(200, {"rules": self._rules.get(ns, {})})
        if method != "PUT":
            raise _BadRequest(f"method {method} is not supported on rules", status=405)
        try:
            self.set_rules(ns, _body(body))
        except ValueError as exc:
            raise _BadRequest(str(exc)) from exc
        return _Reply(200, {"status": "ok"})

    def _check_index(self, ns: str, path: list[str], query: _Query) -> None:
        if ns not in self._rules or query.order_by == "$key":
            return
        child = ".value" if query.order_by == "$value" else query.order_by.strip("/")
        if not _indexed(self._rules[ns], path, child):
            where = "/" + "/".join(path)
            raise _BadRequest(
                f'Index not defined, add ".indexOn": "{child}", for path "{where}", to the rules'
            )

    def _at(self, ns: str, path: list[str]) -> Json:
        return _child_at(self._trees.get(ns), path)

    def _write(self, ns: str, path: list[str], stored: Json) -> None:
        self._trees[ns] = _put(self._trees.get(ns), path, stored)


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _query_params(query: str) -> dict[str, str]:
    """The query string as firebase-admin writes it: ``k=v`` joined by ``&``, values not
    form-encoded (so ``+`` is a plus), then percent-encoded by requests."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
    return params


def _body(body: bytes) -> Json:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _BadRequest("Invalid data; couldn't parse JSON object, array, or value.") from exc


# ---------------------------------------------------------------------- HTTP
class _Handler(StandInHandler):
    def serve(self, method: str, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.owner.handle(method, self.path, headers, body)
        except Exception:
            log.exception("RtdbServer failed on %s %s", method, self.path)
            reply = _Reply(500, {"error": "internal error in the test server"})
        payload = json.dumps(reply.body).encode() if reply.has_body else b""
        sent = [("Content-Type", "application/json; charset=utf-8")] if reply.has_body else []
        if reply.etag is not None:
            sent.append(("ETag", reply.etag))
        self.answer(reply.status, payload, sent)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("RtdbServer: " + format, *args)
