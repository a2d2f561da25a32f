"""The registry in the Firebase Realtime Database (DESIGN.md section 2), with ``firebase-admin``.

``FirebaseRegistry(db.reference("/", app=app))`` (or any path: everything lives under the
reference it is given, so one database can hold several installations). The tree, under
that root::

    creators/{owner}/agents/{agent}      name, owner, created_at         the seed's tree
        versions/{n}                     sha256, owner, report, created_at
        runs/{run_id}                    the run (as in runs/, without the sort keys)
    agents/{agent}                       name, owner, owner_key, created_at, latest_version,
                                         latest: the latest version's record
    runs/{run_id}                        the run, with its sort keys and ``home`` (its path
                                         under creators/)
    digests/{channel}                    the channel's digest mark
    meta/run_seq                         runs created so far (creation order breaks ties)

``agents/{agent}`` and ``runs/{run_id}`` are the records of truth: every change to one is
a ``transaction()`` on it (an ETag read, then a write only if it did not change), so two
workers never hand out the same version number or run id, and a run's status moves only
as ``RunStatus.check_transition`` allows. The copies under ``creators/`` are written
after each change; a writer that finds the record moved on meanwhile writes the newer one
(a run's ``rev`` says which is newer), so copies written out of order still end right.
The record of truth also holds what a copy needs (an agent's latest version), so a worker
that died between the two writes leaves nothing the next write or read does not mend.

Keys: Firebase refuses ``. $ # [ ] /`` and control characters in keys, and the client puts
query values into the URL unescaped, so owners, agents, runs and channels become keys by
:func:`firebase_key`: ``A-Z a-z 0-9 _ - :`` stay (``U0123ABC``, ``cli:root``, ``sma_cross``
read as they are), anything else is ``!`` and two hex digits per UTF-8 byte.

Values: the free-form documents (a version's report, a run's parameters, result and error)
are stored as JSON text. Firebase drops empty objects, empty lists and nulls, turns lists
into objects, refuses some keys and keeps numbers as doubles; text comes back exactly as
it went in, which is what the contract asks for.

Queries: ``list_runs`` asks ``runs/`` for the newest entries of one index with
``limitToLast`` (``order``: creation time then creation order; ``by_agent`` and
``by_channel``: the same after ``{agent}|`` / ``{channel}|``), or, given ``since``, for the
entries changed since then (``updated_at``, or ``channel_change`` for one channel). The
real database answers such queries only with an ``.indexOn`` for each:
:func:`index_rules` is the rules document to deploy.

Errors: an unreachable or slow database (``UnavailableError``, ``DeadlineExceededError``,
a 429, a 5xx after the client's own retries, a transaction still contended after
:data:`TRANSACTION_ROUNDS` rounds) raises :class:`~workers.ports.Temporary`; refused or
unusable credentials, a wrong database URL (404), missing indexes (400 "Index not
defined") or records that do not read raise :class:`~workers.ports.NeedsOperator`.
"""

from __future__ import annotations

import functools
import json
import random
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, ParamSpec, TypeVar

from firebase_admin import db, exceptions
from google.auth import exceptions as auth_exceptions

from workers.ports import Agent, AgentVersion, NeedsOperator, NotFound, Run, RunStatus, Temporary

#: Query-time indexes the registry needs, per node under its root (see :func:`index_rules`).
INDEXES: dict[str, list[str]] = {
    "agents": ["owner_key"],
    "runs": ["order", "by_agent", "by_channel", "channel_change", "updated_at"],
}
MAX_KEY_BYTES = 768  # Firebase's limit
TRANSACTION_ROUNDS = 4  # each is firebase-admin's 25 tries; jittered pauses in between
COPY_TRIES = 10
PAGE = 50  # entries read per page when a filter cannot be pushed into the query

_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:")
_SORT_KEYS = ("order", "by_agent", "by_channel", "channel_change")

_TEMPORARY = (
    exceptions.UnavailableError,
    exceptions.DeadlineExceededError,
    exceptions.ResourceExhaustedError,
    exceptions.InternalError,
    exceptions.AbortedError,  # firebase-admin's transaction gave up under contention
    exceptions.UnknownError,  # no answer understood (a proxy's 502…)
)

Doc = dict[str, Any]
T = TypeVar("T")
P = ParamSpec("P")


def firebase_key(text: str) -> str:
    """``text`` as a Firebase key, injectively: ``A-Z a-z 0-9 _ - :`` stay, every other
    character is ``!XX`` per UTF-8 byte; the empty string is ``!``. The result is also safe
    in the query strings firebase-admin writes without escaping (no ``& # + %``)."""
    if not isinstance(text, str):
        raise TypeError(f"a key must be a string, not {type(text).__name__}")
    if not text:
        return "!"
    key = "".join(ch if ch in _KEEP else "".join(f"!{b:02X}" for b in ch.encode()) for ch in text)
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"too long for a Firebase key ({len(key)} bytes encoded): {text[:40]!r}…")
    return key


def index_rules(path: str = "/") -> dict[str, Any]:
    """The rules document (``{"rules": …}``) with the ``.indexOn`` entries a registry
    rooted at ``path`` needs; merge it into the database's rules before the first query."""
    node: dict[str, Any] = {name: {".indexOn": list(keys)} for name, keys in INDEXES.items()}
    for segment in reversed([s for s in path.split("/") if s]):
        node = {segment: node}
    return {"rules": node}


def merged_rules(current: Any, path: str = "/") -> dict[str, Any]:
    """``current`` (a database's rules document) with the registry's ``.indexOn`` entries
    added where missing; every other rule (``.read``, ``.write``, ``.validate``…) kept."""
    if not isinstance(current, dict) or not isinstance(current.get("rules", {}), dict):
        raise ValueError('the rules document is not an object with a "rules" object')
    merged = json.loads(json.dumps(current))  # a copy
    node = merged.setdefault("rules", {})
    for segment in [s for s in path.split("/") if s]:
        node = node.setdefault(segment, {})
        if not isinstance(node, dict):
            raise ValueError(f"the rules at {path!r} are not an object")
    for name, keys in INDEXES.items():
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ValueError(f"the rules of {name!r} are not an object")
        have = child.get(".indexOn", [])
        have = [have] if isinstance(have, str) else list(have)
        child[".indexOn"] = have + [k for k in keys if k not in have]
    return merged


def apply_index_rules(session: Any, rules_url: str, path: str = "/") -> tuple[dict[str, Any], bool]:
    """Merge the registry's indexes into the database's rules (read, merged, written back
    only if something changed): (the rules now, changed?). ``NeedsOperator`` in one line
    when they cannot be read, parsed (rules written with comments) or written."""
    import requests

    def refused(what: str, reply: Any) -> NeedsOperator:
        return NeedsOperator(
            f"Firebase Realtime Database: cannot {what} its rules ({reply.status_code}: "
            f"{reply.text[:200]}); the registry needs Firebase Realtime Database Admin"
        )

    try:
        reply = session.get(rules_url, timeout=30)
        if reply.status_code != 200:
            raise refused("read", reply)
        try:
            current = json.loads(reply.text)
            merged = merged_rules(current, path)
        except ValueError as exc:
            raise NeedsOperator(
                f"Firebase Realtime Database: its rules are not plain JSON rules ({exc}); add "
                f"the .indexOn entries of `tradeops gcp rules` to them by hand"
            ) from None
        if merged == current:
            return merged, False
        reply = session.put(rules_url, data=json.dumps(merged), timeout=30)
        if reply.status_code != 200:
            raise refused("write", reply)
    except requests.RequestException as exc:
        raise Temporary(
            f"Firebase Realtime Database: could not reach it for its rules: {exc}"
        ) from exc
    return merged, True


class FirebaseRegistry:
    """``Registry`` on a Realtime Database, under ``root`` (see the module doc).

    ``clock`` gives the times records carry (UTC seconds), read once per change however
    often a contended transaction retries. Usable from several threads.
    """

    def __init__(self, root: db.Reference, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._clock = clock

    # ------------------------------------------------------------------ agents and versions
    def add_version(
        self, *, owner: str, name: str, sha256: str, report: dict[str, Any]
    ) -> AgentVersion:
        report_text = _dumps(report)
        owner_key = firebase_key(owner)
        when = _Once(self._clock)
        before: Doc | None = None  # the latest version the committed write replaced

        def next_version(agent: Doc | None) -> Doc:
            nonlocal before
            if agent is not None and agent["latest"]["sha256"] == sha256:
                raise _Unchanged(agent)
            latest = {"sha256": sha256, "owner": owner, "report": report_text, "created_at": when()}
            before = None if agent is None else agent["latest"]
            if agent is None:
                return {
                    "name": name,
                    "owner": owner,
                    "owner_key": owner_key,
                    "created_at": latest["created_at"],
                    "latest_version": 1,
                    "latest": {"version": 1, **latest},
                }
            number = int(agent["latest_version"]) + 1
            return {**agent, "latest_version": number, "latest": {"version": number, **latest}}

        with _backend():
            try:
                agent = self._transaction(f"agents/{firebase_key(name)}", next_version)
            except _Unchanged as same:
                return _version(name, same.doc["latest"])
            self._copy_versions(agent, before)
            return _version(name, agent["latest"])

    def get_agent(self, name: str) -> Agent | None:
        with _backend():
            doc = self._get(f"agents/{firebase_key(name)}")
            return None if doc is None else _agent(doc)

    def list_agents(self, owner: str | None = None) -> list[Agent]:
        with _backend():
            if owner is None:
                found = self._get("agents")
            else:
                query = self.root.child("agents").order_by_child("owner_key")
                found = query.equal_to(firebase_key(owner)).get()
            agents = [_agent(doc) for doc in _children(found)]
        return sorted(agents, key=lambda a: a.name)

    def get_version(self, name: str, version: int | None = None) -> AgentVersion | None:
        with _backend():
            agent = self._get(f"agents/{firebase_key(name)}")
            if agent is None:
                return None
            latest = int(agent["latest_version"])
            if version is None or version == latest:
                return _version(name, agent["latest"])
            if not _is_int(version) or not 1 <= version < latest:
                return None
            doc = self._get(f"{_agent_home(agent)}/versions/{version}")
            return None if doc is None else _version(name, {"version": version, **doc})

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
        params_text = _dumps(parameters)
        run_key = firebase_key(run_id)
        when = _Once(self._clock)
        with _backend():
            found = self._get(f"agents/{firebase_key(agent)}")
            if found is None or not (
                _is_int(version) and 1 <= version <= int(found["latest_version"])
            ):
                raise NotFound(f"no agent version {agent}@v{version}")
            seq = self._transaction("meta/run_seq", lambda n: int(n or 0) + 1)

            def claim(current: Doc | None) -> Doc:
                if current is not None:
                    raise ValueError(f"run {run_id!r} already exists")
                now = when()
                doc: Doc = {
                    "run_id": run_id,
                    "agent": agent,
                    "version": version,
                    "owner": owner,
                    "kind": kind,
                    "parameters": params_text,
                    "status": str(RunStatus.QUEUED),
                    "created_at": now,
                    "updated_at": now,
                    "seq": seq,
                    "rev": 1,
                    "home": f"{_agent_home(found)}/runs/{run_key}",
                }
                if channel is not None:
                    doc["channel"] = channel
                return _with_sort_keys(doc)

            doc = self._transaction(f"runs/{run_key}", claim)
            self._copy_run(doc)
            return _run(doc)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> Run:
        new = RunStatus(status)
        changes: Doc = {"status": str(new)}
        if result is not None:
            changes["result"] = _dumps(result)
        if error is not None:
            changes["error"] = _dumps(error)
        when = _Once(self._clock)

        def move(current: Doc | None) -> Doc:
            if current is None:
                raise NotFound(f"no run {run_id!r}")
            _run(current).status.check_transition(new)
            doc = {**current, **changes, "updated_at": when(), "rev": int(current["rev"]) + 1}
            return _with_sort_keys(doc)

        with _backend():
            doc = self._transaction(f"runs/{firebase_key(run_id)}", move)
            self._copy_run(doc)
            return _run(doc)

    def get_run(self, run_id: str) -> Run | None:
        with _backend():
            doc = self._get(f"runs/{firebase_key(run_id)}")
            return None if doc is None else _run(doc)

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

        def wanted(doc: Doc) -> bool:
            return (agent is None or doc.get("agent") == agent) and (
                channel is None or doc.get("channel") == channel
            )

        with _backend():
            if since is not None:
                changed = [doc for doc in self._changed_since(float(since), channel) if wanted(doc)]
                docs = sorted(changed, key=lambda doc: doc["order"], reverse=True)[:limit]
            elif channel is not None:  # the agent, if given, is filtered here
                docs = self._newest("by_channel", firebase_key(channel), limit, wanted)
            elif agent is not None:
                docs = self._newest("by_agent", firebase_key(agent), limit, None)
            else:
                docs = self._newest("order", None, limit, None)
            return [_run(doc) for doc in docs]

    # ------------------------------------------------------------------ digests
    def last_digest(self, channel: str) -> float | None:
        with _backend():
            at = self._get(f"digests/{firebase_key(channel)}")
            return None if at is None else float(at)

    def mark_digest(self, channel: str, at: float) -> None:
        at = float(at)

        def later(current: float | None) -> float:
            if current is not None and float(current) >= at:
                raise _Unchanged(None)
            return at

        with _backend(), suppress(_Unchanged):
            self._transaction(f"digests/{firebase_key(channel)}", later)

    # ------------------------------------------------------------------ reading and writing
    def _get(self, path: str) -> Any:
        return self.root.child(path).get()

    def _transaction(self, path: str, update: Callable[[Any], Any]) -> Any:
        """``update`` applied atomically at ``path`` (firebase-admin's ETag transaction);
        when it gives up under contention, again after a short random pause."""
        ref = self.root.child(path)
        for round_ in range(TRANSACTION_ROUNDS):
            try:
                return ref.transaction(update)
            except db.TransactionAbortedError:
                if round_ == TRANSACTION_ROUNDS - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05))  # noqa: S311  (jitter, not secrets)
        raise AssertionError("unreachable")

    def _copy_versions(self, agent: Doc, before: Doc | None) -> None:
        """The agent's node under creators/, with its latest version and the one before
        (written again in case the worker that made it died before copying it)."""
        home = _agent_home(agent)
        latest = agent["latest"]
        writes: Doc = {
            f"{home}/name": agent["name"],
            f"{home}/owner": agent["owner"],
            f"{home}/created_at": agent["created_at"],
            f"{home}/versions/{latest['version']}": _version_copy(latest),
        }
        if before is not None:
            writes[f"{home}/versions/{before['version']}"] = _version_copy(before)
        self.root.update(writes)

    def _copy_run(self, doc: Doc) -> None:
        """The run's copy under creators/; if the record moved on meanwhile (another worker
        changed it, perhaps copying first), the newer one is copied instead."""
        for _ in range(COPY_TRIES):
            self.root.child(doc["home"]).set({k: v for k, v in doc.items() if k not in _SORT_KEYS})
            key = firebase_key(doc["run_id"])
            if self._get(f"runs/{key}/rev") in (None, doc["rev"]):
                return
            newer = self._get(f"runs/{key}")
            if newer is None:
                return
            doc = newer
        raise Temporary(f"run {doc['run_id']!r} kept changing while its copy was written")

    def _newest(
        self,
        index: str,
        within: str | None,
        limit: int,
        wanted: Callable[[Doc], bool] | None,
    ) -> list[Doc]:
        """The newest ``limit`` runs of ``index`` (those starting ``{within}|`` if given),
        read from its end with ``limitToLast``; with ``wanted``, a page at a time until
        ``limit`` of them pass it."""
        runs = self.root.child("runs")
        page_size = limit if wanted is None else max(limit, PAGE, 2)  # 2: each page moves on
        start, end = (f"{within}|", f"{within}|~") if within is not None else (None, None)
        found: list[Doc] = []
        seen: str | None = None
        while True:
            query = runs.order_by_child(index)
            if start is not None:
                query = query.start_at(start)
            if end is not None:
                query = query.end_at(end)
            page = sorted(_children(query.limit_to_last(page_size).get()), key=lambda d: d[index])
            for doc in reversed(page):
                if doc[index] != seen and (wanted is None or wanted(doc)):
                    found.append(doc)
                    if len(found) == limit:
                        return found
            if len(page) < page_size:
                return found
            seen = end = page[0][index]

    def _changed_since(self, since: float, channel: str | None) -> list[Doc]:
        runs = self.root.child("runs")
        if channel is None:
            query = runs.order_by_child("updated_at").start_at(since)
        else:
            prefix = f"{firebase_key(channel)}|"
            query = runs.order_by_child("channel_change").start_at(prefix + _sortable(since))
            query = query.end_at(prefix + "~")
        return _children(query.get())


# ---------------------------------------------------------------------- helpers
class _Unchanged(Exception):
    """Ends a transaction without writing: what is stored already says it."""

    def __init__(self, doc: Any) -> None:
        super().__init__("unchanged")
        self.doc = doc


class _Once:
    """The clock, read on the first call only: a transaction's update function may run
    several times, and the change it makes happens once."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._at: float | None = None

    def __call__(self) -> float:
        if self._at is None:
            self._at = float(self._clock())
        return self._at


@contextmanager
def _backend() -> Iterator[None]:
    """Firebase's errors as the ports' (what happens next), records that do not read as
    NeedsOperator; the contract's own errors (ValueError, NotFound) pass."""
    try:
        yield
    except exceptions.FirebaseError as exc:
        if "Index not defined" in str(exc):
            raise NeedsOperator(
                f"Firebase Realtime Database: {exc} (`tradeops gcp rules --apply` adds the "
                "registry's indexes to the database's rules)"
            ) from exc
        kind = Temporary if isinstance(exc, _TEMPORARY) else NeedsOperator
        raise kind(f"Firebase Realtime Database: {exc}") from exc
    except auth_exceptions.GoogleAuthError as exc:  # credentials, before any request
        passing = isinstance(exc, auth_exceptions.TransportError) or exc.retryable
        kind = Temporary if passing else NeedsOperator
        raise kind(f"Firebase Realtime Database credentials: {exc}") from exc
    except NotFound:
        raise
    except (KeyError, TypeError, AttributeError) as exc:  # a record that does not read
        raise NeedsOperator(f"Firebase Realtime Database: a damaged record ({exc!r})") from exc


def _dumps(doc: Mapping[str, Any]) -> str:
    """JSON text of ``doc``; ``ValueError`` (nothing written) for NaN or odd types."""
    try:
        return json.dumps(doc, allow_nan=False, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"not JSON-encodable: {exc}") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _is_int(version: Any) -> bool:
    return isinstance(version, int) and not isinstance(version, bool)


def _sortable(x: float) -> str:
    """``x`` as 16 hex digits that sort as the numbers do (IEEE 754 bits, sign flipped)."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(x) + 0.0))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _with_sort_keys(doc: Doc) -> Doc:
    """``doc`` with its index entries: creation order, by agent, by channel, by change."""
    order = _sortable(doc["created_at"]) + f"{int(doc['seq']):012x}"
    doc = {k: v for k, v in doc.items() if k not in _SORT_KEYS}
    doc["order"] = order
    doc["by_agent"] = f"{firebase_key(doc['agent'])}|{order}"
    if doc.get("channel") is not None:
        channel = firebase_key(doc["channel"])
        doc["by_channel"] = f"{channel}|{order}"
        doc["channel_change"] = f"{channel}|{_sortable(doc['updated_at'])}"
    return doc


def _children(found: Any) -> list[Doc]:
    """A collection's records: Firebase answers an object, or an array when every key is a
    small integer (run ids like ``"7"``)."""
    if found is None:
        return []
    if isinstance(found, list):
        return [doc for doc in found if doc is not None]
    return list(found.values())


def _agent_home(agent: Doc) -> str:
    return f"creators/{agent['owner_key']}/agents/{firebase_key(agent['name'])}"


def _version_copy(latest: Doc) -> Doc:
    return {k: latest[k] for k in ("sha256", "owner", "report", "created_at")}


def _reads(parse: Callable[P, T]) -> Callable[P, T]:
    """``parse`` of a stored record, with a record that does not read (a missing field, a
    wrong type, an unknown status) raising NeedsOperator, not the contract's ValueError."""

    @functools.wraps(parse)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return parse(*args, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NeedsOperator(f"Firebase Realtime Database: a damaged record ({exc!r})") from exc

    return checked


@_reads
def _agent(doc: Doc) -> Agent:
    return Agent(
        name=doc["name"],
        owner=doc["owner"],
        created_at=float(doc["created_at"]),
        latest_version=int(doc["latest_version"]),
    )


@_reads
def _version(name: str, doc: Doc) -> AgentVersion:
    return AgentVersion(
        name=name,
        version=int(doc["version"]),
        sha256=doc["sha256"],
        owner=doc["owner"],
        report=_loads(doc["report"]),
        created_at=float(doc["created_at"]),
    )


@_reads
def _run(doc: Doc) -> Run:
    return Run(
        run_id=doc["run_id"],
        agent=doc["agent"],
        version=int(doc["version"]),
        owner=doc["owner"],
        kind=doc["kind"],
        parameters=_loads(doc["parameters"]),
        status=RunStatus(doc["status"]),
        result=_loads(doc.get("result")),
        error=_loads(doc.get("error")),
        created_at=float(doc["created_at"]),
        updated_at=float(doc["updated_at"]),
        channel=doc.get("channel"),
    )
