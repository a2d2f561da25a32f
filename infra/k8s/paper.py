"""The paper cluster on Kubernetes: one StatefulSet ``paper-{agent}`` per agent, in namespace
``trading-agents``, from the runtime image (``infra/deploy/runtime.Dockerfile``).

The seed's StatefulSet, hardened: one replica (``MODE=PAPER_TRADE``), requests 500m CPU and
1 GiB, limits 2 CPU and 4 GiB; a non-root uid, a read-only root, no privilege escalation,
every capability dropped, the RuntimeDefault seccomp profile, no service-account token; a
volume claim ``session`` (kept when the StatefulSet goes, so a later start of the same run
resumes its chain and positions); a small memory ``/tmp``; the Alpaca keys, when the feed is
Alpaca, as files from the Secret ``alpaca-keys`` (never environment variables). The spec and
the agent's code travel in the StatefulSet itself (``TRADEOPS_PAPER_SPEC``,
``TRADEOPS_AGENT_CODE``): the pod needs no access to the artifact store, and the worker's
Role needs nothing but StatefulSets, their scale, pods, their logs and their proxy.

The runtime serves ``/health`` and ``/ready`` on port 8080 (the kubelet's probes); this side
reads them through the API server's pod proxy, so a worker outside the cluster network works
too. Stop scales to zero, waits for the pod to go, then deletes the StatefulSet; what the
session was when it stopped is kept in ``records`` (the queue's Redis), so status can still
say how it ended. A pod restart is the same crash news the local supervisor sends
(:meth:`KubernetesPaperCluster.watch`, run by the scheduler).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from kubernetes.client.exceptions import ApiException

from runtime.paths import CRASH_PREFIX, PAPER_CANNOT_START
from workers.ports import (
    FmelStream,
    NeedsOperator,
    NotFound,
    Notifier,
    PaperConflict,
    PaperSession,
    PaperSpec,
    SessionStatus,
    Temporary,
)

log = logging.getLogger(__name__)

NAMESPACE = "trading-agents"
HTTP_PORT = 8080
CONTAINER = "session"
SESSION_DIR = "/session"
RUNTIME_UID = 10001
ALPACA_SECRET = "alpaca-keys"  # noqa: S105 - the Secret's name, not a secret
GOVERNING_SERVICE = "paper"  # the headless Service of infra/deploy/k8s (StatefulSets name one)
LABELS = {"app.kubernetes.io/name": "tradeops-paper", "app.kubernetes.io/part-of": "tradeops"}
AGENT_LABEL = "tradeops.dev/agent"
STOP_WAIT_S = 90.0


class Records(Protocol):
    """Where the cluster keeps a stopped session and what the watcher has seen (Redis)."""

    def get(self, name: Any) -> Any: ...

    def set(self, name: Any, value: Any) -> Any: ...


def statefulset_name(agent: str) -> str:
    return f"paper-{agent}"


def statefulset(
    spec: PaperSpec,
    *,
    image: str,
    code: bytes,
    volume_size: str = "1Gi",
    storage_class: str | None = None,
    started_at: float | None = None,
    pulled: bool = False,
) -> dict[str, Any]:
    """The StatefulSet that runs ``spec`` (what ``tradeops paper manifest`` prints)."""
    import hashlib

    name = statefulset_name(spec.agent)
    labels = {**LABELS, AGENT_LABEL: spec.agent}
    session = {
        "agent_id": spec.agent, "run_id": spec.run_id, "agent_file": "agent.py",
        "agent_sha256": hashlib.sha256(code).hexdigest(), "symbols": list(spec.symbols),
        "cash": spec.cash, "feed": spec.feed, "start": spec.start,
        "bar_seconds": spec.bar_seconds, "agent_version": str(spec.version),
        "user_id": spec.owner, "reply_to": dict(spec.reply_to), "strategy": spec.strategy,
        "params": dict(spec.params),
    }  # fmt: skip
    env: list[dict[str, Any]] = [
        {"name": "MODE", "value": "PAPER_TRADE"},
        {"name": "TRADEOPS_HTTP_PORT", "value": str(HTTP_PORT)},
        # its decisions are taken from /fmel: it waits for the last ones to be when it stops
        *([{"name": "TRADEOPS_FMEL_PULLED", "value": "1"}] if pulled else []),
        {"name": "TRADEOPS_PAPER_SPEC", "value": json.dumps(session, sort_keys=True)},
        {"name": "TRADEOPS_AGENT_CODE", "value": base64.b64encode(code).decode()},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "session", "mountPath": SESSION_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own memory tmpfs
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]
    if spec.feed == "alpaca":  # the keys as files, readable by the session's uid only
        keys = "/var/run/secrets/alpaca"
        env += [{"name": "ALPACA_API_KEY_FILE", "value": f"{keys}/api-key"},
                {"name": "ALPACA_SECRET_KEY_FILE", "value": f"{keys}/secret-key"}]
        mounts.append({"name": "alpaca", "mountPath": keys, "readOnly": True})
        volumes.append({"name": "alpaca", "secret": {"secretName": ALPACA_SECRET,
                                                     "defaultMode": 0o400}})
    def probe(path: str = "/health", **timing: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 3, **timing}

    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "Always",
        "args": ["paper", "--session", SESSION_DIR],
        "env": env,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "startupProbe": probe(periodSeconds=2, failureThreshold=60),
        "livenessProbe": probe(periodSeconds=10, failureThreshold=3),
        "readinessProbe": probe("/ready", periodSeconds=5),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                      "limits": {"cpu": "2", "memory": "4Gi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    claim: dict[str, Any] = {
        "metadata": {"name": "session", "labels": dict(labels)},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": volume_size}}},
    }
    if storage_class:
        claim["spec"]["storageClassName"] = storage_class
    annotations = {
        "tradeops.dev/run-id": spec.run_id,
        "tradeops.dev/owner": spec.owner,
        "tradeops.dev/version": str(spec.version),
        "tradeops.dev/started-at": f"{started_at if started_at is not None else time.time():.3f}",
        "tradeops.dev/parameters": json.dumps(_parameters(spec), sort_keys=True),
        "tradeops.dev/reply-to": json.dumps(dict(spec.reply_to), sort_keys=True),
        # the image is the release's, pinned by the operator's TRADEOPS_RUNTIME_IMAGE
        "checkov.io/skip1": "CKV_K8S_43=the runtime image is the configured release tag; "
        "pin it by digest in TRADEOPS_RUNTIME_IMAGE to satisfy this",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels),
                     "annotations": annotations},
        "spec": {
            "replicas": 1,
            "serviceName": GOVERNING_SERVICE,
            "selector": {"matchLabels": dict(labels)},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                     "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {
                    "tradeops.dev/run-id": spec.run_id}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": RUNTIME_UID,
                        "runAsGroup": RUNTIME_UID, "fsGroup": RUNTIME_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }


def _parameters(spec: PaperSpec) -> dict[str, Any]:
    return {"symbols": list(spec.symbols), "cash": spec.cash, "feed": spec.feed,
            "start": spec.start, "bar_seconds": spec.bar_seconds,
            **({"params": dict(spec.params)} if spec.params else {})}


class KubernetesPaperCluster:
    """``PaperCluster`` on Kubernetes (see the module's doc).

    ``api_client`` is a ``kubernetes.client.ApiClient`` (in the cluster, its service
    account; outside, a kubeconfig); ``artifacts`` gives the agent's code by its digest;
    ``records`` keeps stopped sessions and what the watcher saw.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        image: str,
        artifacts: Any,
        records: Records,
        namespace: str = NAMESPACE,
        volume_size: str = "1Gi",
        storage_class: str | None = None,
        clock: Callable[[], float] = time.time,
        stop_wait_s: float = STOP_WAIT_S,
        fmel: FmelStream | None = None,
    ) -> None:
        # where the sessions' decisions go (taken from the pods by ship(), and at a stop);
        # None: they stay in the pods' volumes
        self.fmel = fmel
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.image = image
        self.artifacts = artifacts
        self.records = records
        self.namespace = namespace
        self.volume_size = volume_size
        self.storage_class = storage_class
        self.clock = clock
        self.stop_wait_s = stop_wait_s

    # ------------------------------------------------------------------ the port
    def manifest(self, spec: PaperSpec) -> dict[str, Any]:
        return statefulset(
            spec, image=self.image, code=self.artifacts.get(spec.sha256),
            volume_size=self.volume_size, storage_class=self.storage_class,
            started_at=self.clock(), pulled=self.fmel is not None,
        )  # fmt: skip

    def start(self, spec: PaperSpec) -> PaperSession:
        current = self._session(spec.agent)
        if current is not None and current.status is not SessionStatus.STOPPED:
            raise PaperConflict(f"paper-{spec.agent} is already running (run {current.run_id})")
        body = self.manifest(spec)
        with _api("start", spec.agent):
            self.apps.create_namespaced_stateful_set(self.namespace, cast(Any, body))
        session = self._session(spec.agent)
        assert session is not None
        return session

    def stop(self, agent: str) -> PaperSession:
        name = statefulset_name(agent)
        sts = self._statefulset(agent)
        if sts is None:
            kept = self._kept(agent)
            if kept is None:
                raise NotFound(agent)
            return kept
        last = self._session(agent, sts)
        assert last is not None
        final = last.health  # what it was as it stopped (asked only when it was running)
        with _api("stop", agent):
            self.apps.patch_namespaced_stateful_set_scale(name, self.namespace,
                                                          {"spec": {"replicas": 0}})
        deadline = time.monotonic() + self.stop_wait_s
        while self._pods(agent) and time.monotonic() < deadline:
            if self.fmel is not None:  # its last rows and summary, while it lingers for them
                self._ship_stopping(agent, last.run_id)
            time.sleep(0.5)
        with _api("stop", agent):
            try:
                self.apps.delete_namespaced_stateful_set(name, self.namespace,
                                                         propagation_policy="Foreground")
            except _api_exception() as exc:
                if exc.status != 404:
                    raise
        stopped = PaperSession(
            agent=agent, owner=last.owner, status=SessionStatus.STOPPED, run_id=last.run_id,
            pid=None, restarts=last.restarts, health_url=None, health=None,
            started_at=last.started_at, stopped_at=self.clock(), parameters=last.parameters,
            final=_final(final) if final else None,
        )  # fmt: skip
        self.records.set(_record_key(self.namespace, agent), json.dumps(_doc(stopped)).encode())
        return stopped

    def status(self, agent: str | None = None) -> list[PaperSession]:
        if agent is not None:
            found = self._session(agent)
            return [found] if found is not None else []
        return [session for session, _ in self._live()]

    def _live(
        self, agent: str | None = None, *, health: bool = True
    ) -> list[tuple[PaperSession, Any]]:
        """Each session with a StatefulSet (``agent``'s only, when given) and that
        StatefulSet, read once, by agent name."""
        if agent is not None:
            sts = self._statefulset(agent)
            found = self._session(agent, sts, health=health) if sts is not None else None
            return [(found, sts)] if found is not None else []
        with _api("list", "sessions"):
            items = self.apps.list_namespaced_stateful_set(
                self.namespace, label_selector=_selector(LABELS)
            ).items
        named = {str(((i.metadata.labels if i.metadata else None) or {}).get(AGENT_LABEL, "")): i
                 for i in items}  # fmt: skip
        named.pop("", None)
        listed = [(self._session(a, named[a], health=health), named[a]) for a in sorted(named)]
        return [(session, sts) for session, sts in listed if session is not None]

    def logs(self, agent: str, tail: int = 100) -> str:
        pods = self._pods(agent)
        if not pods:
            if self._session(agent) is None:
                raise NotFound(agent)
            return ""
        if tail <= 0:
            return ""
        with _api("read the log of", agent):
            text = self.core.read_namespaced_pod_log(pods[0].metadata.name, self.namespace,
                                                     container=CONTAINER, tail_lines=tail)
        return str(text or "").rstrip("\n")

    # ------------------------------------------------------------------ decisions
    def ship(self, stream: FmelStream, agent: str | None = None, stopping: str = "") -> int:
        """Take each running session's new decisions from its pod (``/fmel`` through the
        API server's proxy), check them as a local session's are, and append them to
        ``stream`` (the FMEL store). The pod holds no credentials for the store; the
        worker or scheduler calling this does. Returns the rows sent."""
        from workers.collect import Trusted
        from workers.fmel_ship import FmelShipper

        sent = 0
        for session, sts in self._live(agent, health=False):
            if session.status is SessionStatus.STOPPED and session.run_id != stopping:
                continue
            notes = sts.metadata.annotations or {}
            trusted = Trusted(
                run_id=session.run_id, agent_id=session.agent,
                agent_version=str(notes.get("tradeops.dev/version", "")),
                user_id=session.owner, agent_sha256=None, parameters={}, data_checks=(),
                symbols=session.parameters.get("symbols") or [],
            )  # fmt: skip
            cursor = _RecordsCursor(self.records, _record_key(self.namespace, session.agent)
                                    + f":shipped:{session.run_id}")  # fmt: skip
            source = _PodRecord(self.core, self.namespace, f"{statefulset_name(session.agent)}-0")
            shipper = FmelShipper(source, trusted, stream, cursor)
            try:
                sent += shipper.ship()
            except Exception as exc:  # the pod between states, the store away: next time
                log.info("decisions of paper-%s not taken yet: %s", session.agent, str(exc)[:600])
            if shipper.refused:
                log.warning("decisions of paper-%s refused: %s", session.agent, shipper.refused)
        return sent

    def _ship_stopping(self, agent: str, run_id: str) -> None:
        assert self.fmel is not None
        try:
            self.ship(self.fmel, agent, stopping=run_id)
        except Exception as exc:
            log.info("last decisions of paper-%s not taken: %s", agent, exc)

    # ------------------------------------------------------------------ crash news
    def watch(self, news: Notifier) -> int:
        """One look at every session's pod: each restart since the last look is news for
        its owner, as the local supervisor sends it. Returns how many were sent."""
        from workers import events as ev

        sent = 0
        for session, sts in self._live(health=False):
            if session.status is SessionStatus.STOPPED:
                continue
            key = _record_key(self.namespace, session.agent) + ":seen"
            seen = json.loads(self.records.get(key) or b"{}")
            if seen.get("run_id") != session.run_id:
                seen = {"run_id": session.run_id, "restarts": 0}
            if session.restarts > int(seen.get("restarts", 0)):
                reason, code = self._last_crash(session.agent)
                cannot_start = code == PAPER_CANNOT_START
                reply_to = _json_annotation(sts, "tradeops.dev/reply-to")
                news.send(ev.PaperHealth(
                    job_id=f"paper-{session.agent}-{session.run_id}",
                    user_id=session.owner, reply_to=reply_to, agent_id=session.agent,
                    health={"status": "failed" if cannot_start else "crashed", "exit": code,
                            "restarts": session.restarts, "restart_in_s": 0.0,
                            "run_id": session.run_id, "reason": reason,
                            "streak": int(seen.get("restarts", 0)) + 1,
                            "in_a_row": session.restarts - int(seen.get("restarts", 0))},
                ))  # fmt: skip
                sent += 1
                seen["restarts"] = session.restarts
                self.records.set(key, json.dumps(seen).encode())
        return sent

    # ------------------------------------------------------------------ helpers
    def _statefulset(self, agent: str) -> Any:
        with _api("read", agent):
            try:
                return self.apps.read_namespaced_stateful_set(statefulset_name(agent),
                                                              self.namespace)
            except _api_exception() as exc:
                if exc.status == 404:
                    return None
                raise

    def _pods(self, agent: str) -> list[Any]:
        with _api("list the pods of", agent):
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=_selector({**LABELS, AGENT_LABEL: agent})
            ).items
        return list(pods)

    def _kept(self, agent: str) -> PaperSession | None:
        raw = self.records.get(_record_key(self.namespace, agent))
        return _session_of(json.loads(raw)) if raw else None

    def _session(self, agent: str, sts: Any = None, *, health: bool = True) -> PaperSession | None:
        """The agent's session from its StatefulSet (read unless given) and pod, its health
        asked of the pod when it runs and ``health``; the kept one after a stop."""
        sts = sts if sts is not None else self._statefulset(agent)
        if sts is None:
            return self._kept(agent)
        notes = sts.metadata.annotations or {}
        pods = self._pods(agent)
        pod = pods[0] if pods else None
        state = _container(pod)
        restarts = int(getattr(state, "restart_count", 0) or 0)
        status = _status(pod, state, (sts.spec.replicas or 0))
        asked = self._health(agent) if health and status is SessionStatus.RUNNING else None
        return PaperSession(
            agent=agent,
            owner=str(notes.get("tradeops.dev/owner", "")),
            status=status,
            run_id=str(notes.get("tradeops.dev/run-id", "")),
            pid=None,
            restarts=restarts,
            health_url=f"k8s://{self.namespace}/{statefulset_name(agent)}-0:{HTTP_PORT}/health",
            health=asked,
            started_at=float(notes.get("tradeops.dev/started-at", 0) or 0),
            stopped_at=None,
            parameters=_json_annotation(sts, "tradeops.dev/parameters"),
        )

    def _health(self, agent: str) -> dict[str, Any] | None:
        """The pod's /health through the API server's proxy; None when it does not answer."""
        try:  # the raw answer: the client would turn a JSON body into a Python repr
            reply = self.core.connect_get_namespaced_pod_proxy_with_path(
                f"{statefulset_name(agent)}-0:{HTTP_PORT}", self.namespace, "health",
                _request_timeout=5, _preload_content=False,
            )  # fmt: skip
            doc = json.loads(cast(Any, reply).data)
        except Exception:  # not up yet, or gone: no health is the answer
            return None
        return doc if isinstance(doc, dict) else None

    def _last_crash(self, agent: str) -> tuple[str, int | None]:
        """Why the pod's container last ended: its exit code and the runtime's one-line
        reason from the previous container's log."""
        pods = self._pods(agent)
        state = _container(pods[0]) if pods else None
        terminated = getattr(getattr(state, "last_state", None), "terminated", None)
        code = getattr(terminated, "exit_code", None)
        reason = str(getattr(terminated, "reason", "") or "exited")
        if pods:
            try:
                text = self.core.read_namespaced_pod_log(
                    pods[0].metadata.name, self.namespace, container=CONTAINER, previous=True,
                    tail_lines=50,
                )  # fmt: skip
                said = [ln for ln in str(text).splitlines() if ln.startswith(CRASH_PREFIX)]
                if said:
                    reason = said[-1].removeprefix(CRASH_PREFIX)[:300]
            except Exception as exc:  # the reason is a nicety: the news goes anyway
                log.debug("no previous log for %s: %s", agent, exc)
        return reason, code


class _RecordsCursor:
    def __init__(self, records: Records, key: str) -> None:
        self.records, self.key = records, key

    def load(self) -> dict[str, Any] | None:
        raw = self.records.get(self.key)
        return json.loads(raw) if raw else None

    def save(self, doc: dict[str, Any]) -> None:
        self.records.set(self.key, json.dumps(doc))


class _PodRecord:
    """A pod's decision record through the API server's proxy to its ``/fmel``."""

    def __init__(self, core: Any, namespace: str, pod: str) -> None:
        self.core, self.namespace, self.pod = core, namespace, f"{pod}:{HTTP_PORT}"

    def _get(self, path: str, limit: int) -> bytes | None:
        from workers.collect import Refused

        try:
            reply = self.core.connect_get_namespaced_pod_proxy_with_path(
                self.pod, self.namespace, path, _request_timeout=30, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = reply.read(limit + 1) if hasattr(reply, "read") else reply.data
        if len(data) > limit:
            raise Refused(f"{path} is over the limit of {limit} bytes")
        return bytes(data)

    def parts(self) -> list[str]:
        from workers.collect import Refused

        raw = self._get("fmel", 1 << 20)
        doc = json.loads(raw) if raw else {}
        names = doc.get("parts") if isinstance(doc, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Refused("the pod's /fmel is not a list of parts")
        return sorted(names)

    def read(self, name: str, limit: int) -> bytes | None:
        return self._get(f"fmel/{name}", limit)


def _container(pod: Any) -> Any:
    for state in getattr(getattr(pod, "status", None), "container_statuses", None) or ():
        if state.name == CONTAINER:
            return state
    return None


def _status(pod: Any, state: Any, replicas: int) -> SessionStatus:
    if replicas == 0:
        return SessionStatus.STOPPED
    if pod is None or state is None:
        return SessionStatus.STARTING
    terminated = getattr(getattr(state, "last_state", None), "terminated", None)
    if getattr(terminated, "exit_code", None) == PAPER_CANNOT_START:
        return SessionStatus.CRASHED  # it fails the same way at every start
    if getattr(getattr(state, "state", None), "running", None) is not None:
        return SessionStatus.RUNNING
    return SessionStatus.STARTING


def _final(health: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("equity", "cash", "decisions", "last_bar", "positions")
    return {k: health.get(k) for k in keys}


def _doc(session: PaperSession) -> dict[str, Any]:
    from dataclasses import asdict

    doc = asdict(session)
    doc["status"] = session.status.value
    return doc


def _session_of(doc: Mapping[str, Any]) -> PaperSession:
    return PaperSession(**{**doc, "status": SessionStatus(doc["status"])})


def _record_key(namespace: str, agent: str) -> str:
    return f"tradeops:paper:k8s:{namespace}:{agent}"


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _json_annotation(sts: Any, key: str) -> dict[str, Any]:
    try:
        doc = json.loads((sts.metadata.annotations or {}).get(key) or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _api_exception() -> type[ApiException]:
    return ApiException


class _api:  # used as a context manager, like contextlib's
    """The Kubernetes API's errors as the ports': 5xx, 429 and lost connections are
    Temporary; refusals (401, 403, 422…) need an operator."""

    def __init__(self, what: str, agent: str) -> None:
        self.what, self.agent = what, agent

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, NotFound | PaperConflict | Temporary | NeedsOperator):
            return
        from urllib3.exceptions import HTTPError

        where = f"Kubernetes: could not {self.what} paper-{self.agent}"
        if isinstance(exc, ApiException):
            if exc.status == 404:
                return  # the caller's to say what a missing object means
            body = str(exc.body or exc.reason or "")[:300]
            if exc.status in (429,) or (exc.status or 0) >= 500:
                raise Temporary(f"{where} ({exc.status}): {body}") from exc
            raise NeedsOperator(f"{where} ({exc.status}): {body}") from exc
        if isinstance(exc, HTTPError | ConnectionError | TimeoutError):
            raise Temporary(f"{where}: {exc}") from exc
