"""A local stand-in for the Kubernetes API server (CLOUD.md, "Kubernetes") that really runs
each StatefulSet's pod on this machine, as a sandboxed local process (there is no cluster
and no container engine here). For the tests and demos of ``KubernetesPaperCluster``; never
production.

The official ``kubernetes`` client (37.x) talks to it::

    with KubeApiServer(runtime_images={"test/runtime:1": [sys.executable, "-c"]}) as server:
        api = server.client()  # a kubernetes.client.ApiClient bound to this server
        apps, core = AppsV1Api(api), CoreV1Api(api)
        apps.create_namespaced_stateful_set("trading-agents", body)
        core.list_namespaced_pod("trading-agents", label_selector="app=paper")

The API (JSON; errors are ``Status`` objects, ``{"kind": "Status", "status": "Failure",
"reason": "NotFound", "code": 404, …}``, which the client raises as ``ApiException`` with
that ``.status``):

- ``apps/v1`` StatefulSets (``/apis/apps/v1/namespaces/{ns}/statefulsets[/{name}]``, and
  ``/apis/apps/v1/statefulsets`` across namespaces): create (201; 409 AlreadyExists), read,
  list, replace (PUT; a ``metadata.resourceVersion`` that is not the current one is 409
  Conflict), patch, delete; ``…/{name}/scale`` read, replace and patch (an
  ``autoscaling/v1`` Scale); ``…/{name}/status`` read.
- ``v1`` pods (``/api/v1/namespaces/{ns}/pods``, ``/api/v1/pods``): list, read, patch and
  replace of metadata only, delete (graceful), ``…/{name}/log`` (``container``,
  ``tailLines``, ``previous``, ``timestamps``, ``sinceSeconds``, ``limitBytes``; ``follow``
  answers what there is so far and ends), ``…/{name[:port]}/proxy[/path]`` (any method,
  forwarded to the container's port, as the API server's pod proxy). Pods are made only by
  StatefulSets: ``POST …/pods`` is 405.
- ``v1`` secrets and configmaps: create, read, list, replace, patch, delete (a Secret's
  ``stringData`` is folded into base64 ``data``, as the API server does; ``immutable`` is
  honoured).
- ``v1`` persistentvolumeclaims: create, read, list, delete. Those made from a StatefulSet's
  ``volumeClaimTemplates`` are named ``{template}-{statefulset}-0`` and kept when the
  StatefulSet is deleted or scaled to zero (``persistentVolumeClaimRetentionPolicy`` Retain,
  the default; ``Delete`` is honoured); a StatefulSet of the same name uses them again. A
  claim still mounted by a pod waits for the pod to go before it is removed (its
  ``kubernetes.io/pvc-protection`` finalizer).
- ``networking.k8s.io/v1`` networkpolicies and ``v1`` services: create, read, list, replace,
  patch, delete — stored only (a Service gets a ``clusterIP`` unless headless, but nothing
  answers there; a NetworkPolicy is not enforced).
- ``v1`` namespaces: create, read, list, delete (all that is in it goes). Namespaces are
  real objects, as on a cluster: ``default``, ``kube-system``, ``kube-public``,
  ``kube-node-lease`` and the constructor's ``namespaces`` (``trading-agents``) exist from
  the start, and an object in any other namespace is 404 until it is created.
- ``/version``, ``/healthz``, ``/readyz``, ``/livez``.

As the API server: the body is decoded against the schema of the client's own models (a
wrong type is 400 BadRequest; an unknown field is dropped with a ``Warning`` header, or 400
with ``fieldValidation=Strict``); defaults are filled in (a StatefulSet's ``replicas: 1``,
``updateStrategy``, ``podManagementPolicy``, the pod template's ``restartPolicy``,
``terminationGracePeriodSeconds: 30``, probe periods…); ``metadata.uid``,
``resourceVersion``, ``generation`` (bumped when the spec changes), ``creationTimestamp``
and a ``status`` are the server's. Counts that are zero are left out of a StatefulSet's
status as the API server leaves them out (``omitempty``: the client reads ``None``), and so
is a Scale's ``spec.replicas`` of 0. Patches: ``application/merge-patch+json`` (RFC 7386),
``application/strategic-merge-patch+json`` (lists of containers, volumes, env, ports,
volume mounts merged by their keys; ``$patch: delete``/``replace``,
``$deleteFromPrimitiveList``, ``$retainKeys``) and ``application/json-patch+json`` (RFC
6902); server-side apply is 415. ``labelSelector`` (``k=v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k``, ``!k``), ``fieldSelector`` (``metadata.name=…``,
``status.phase!=…``), ``limit``/``continue`` and ``dryRun=All`` work on the calls that take
them; ``watch`` is 400 (poll instead). A StatefulSet is checked as the API server checks it
where it matters (422 Invalid: ``spec.selector`` must match the template's labels,
``serviceName`` is required, names, ports, probes, quantities, a volume mount must name a
volume or claim template, ``restartPolicy`` must be ``Always``, only some spec fields may
change) and where the stand-in cannot follow (422: more than one replica, more than one
container, init containers). Deleting a StatefulSet with ``propagationPolicy=Foreground``
answers it with a ``deletionTimestamp`` and it stays readable until its pod is gone;
``Background`` (the default) answers a ``Status`` and the pod goes after it; ``Orphan``
leaves the pod running, unowned, for a StatefulSet of the same name to adopt.

Running pods: a controller thread per StatefulSet keeps ``spec.replicas`` (0 or 1) pods,
named ``{statefulset}-0``, labelled with the template's labels,
``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
``controller-revision-hash`` (a hash of the template: when the template changes, the pod
is replaced, as ``RollingUpdate`` does; not with ``OnDelete``), owned by the StatefulSet.
A "kubelet" thread per pod runs its one container:

1. Hardening, before anything runs: a pod lacking any of pod or container
   ``securityContext.runAsNonRoot: true`` with a numeric non-zero ``runAsUser``, container
   ``readOnlyRootFilesystem: true``, ``allowPrivilegeEscalation: false``,
   ``capabilities.drop: [ALL]`` (and no ``capabilities.add``), ``seccompProfile.type:
   RuntimeDefault`` (pod or container), resource ``requests`` and ``limits`` for ``cpu`` and
   ``memory``; or having ``privileged``, ``hostNetwork``, ``hostPID``, ``hostIPC``, a
   ``hostPort`` or a ``hostPath`` volume — is not run: the pod is ``Failed``, its container
   ``waiting`` with reason ``CreateContainerConfigError`` and a message naming each missing
   or refused field. So is a pod asking what the stand-in cannot do (``exec``/``grpc``
   probes, lifecycle hooks, volumes other than ``persistentVolumeClaim``, ``emptyDir``,
   ``secret`` and ``configMap``, a ``command`` for a runtime image). (A cluster would keep
   such a pod Pending, or refuse it at admission; nor does the stand-in recreate it in a
   loop, as a cluster's controller does with failed pods: it stays, to be read, until it is
   deleted or a new template replaces it.)
2. The image is a local argv, as in the Cloud Build stand-in: ``runtime_images`` maps an
   image reference (or a prefix ending in ``:``) to the argv standing for its ENTRYPOINT;
   by default any image named ``…/runtime`` (or holding ``/runtime:``) is ``python -m
   runtime``. ``args`` are appended; a ``command`` replaces the argv, except for runtime
   images (``…/runtime``: refused, our image runs by ENTRYPOINT and ``args``). ``$(VAR)``
   in ``command``, ``args`` and ``env`` values is expanded as the kubelet does. An unknown
   image leaves the container ``waiting`` with reason ``ErrImagePull`` (pod Pending).
3. It runs in our bubblewrap sandbox (``infra.local.sandbox``) as the ``runAsUser`` uid, its
   root read-only, with the host's network, ``limits.memory`` as the address-space limit
   (quantities as Kubernetes writes them: ``4Gi``, ``512Mi``, ``1G``, ``500m``…), 256
   processes, no wall-clock or CPU-time cap (``limits.cpu`` is checked, not enforced). The
   sandbox's own tmpfs is ``/tmp`` (an ``emptyDir`` mounted at ``/tmp`` sets its size with
   ``sizeLimit``, whatever its ``medium``). Volumes: a ``persistentVolumeClaim`` is the
   host folder ``{work_root}/pvc/{namespace}/{claim}`` (kept with the claim, writable,
   owned by the uid); an ``emptyDir`` elsewhere is a fresh folder per pod (kept across its
   container's restarts); a ``secret`` or ``configMap`` volume is its keys as files,
   read-only (``items``, ``defaultMode`` honoured).
   ``subPath`` and ``readOnly`` are honoured. The working folder is ``workingDir`` or
   ``/``. The environment is the interpreter's only (``runner.child_env()``), ``HOME=/tmp``,
   ``HOSTNAME`` the pod's name, ``PYTHONPATH`` the folder holding our ``runtime`` package
   (as the runtime image sets it), then the container's ``envFrom`` (``secretRef``) and
   ``env``: ``value``; ``valueFrom.secretKeyRef`` and ``configMapKeyRef`` (a missing
   secret, configmap or key leaves the container ``waiting`` with reason
   ``CreateContainerConfigError``, tried again with back-off, as the kubelet does, so it
   starts once it is there), ``envFrom`` (``secretRef``, ``configMapRef``, ``prefix``),
   ``fieldRef`` (``metadata.name``, ``metadata.namespace``, ``metadata.uid``,
   ``metadata.labels['k']``, ``metadata.annotations['k']``, ``spec.nodeName``,
   ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``) and
   ``resourceFieldRef``.
4. Ports: pods share the host's network, so each ``containerPort`` is given a free host port
   for the pod's life (the pod's annotation ``stand-in.tradeops.local/host-ports``,
   ``{"8080": 40123}``, and :meth:`KubeApiServer.host_port` say which). The container
   learns it through its environment: **every env var whose name ends in ``_PORT`` and
   whose value is a declared ``containerPort`` number gets the host port instead** (our
   runtime reads its HTTP port from ``TRADEOPS_HTTP_PORT``). Probes and the pod proxy go to
   ``127.0.0.1:{host port}``; ``podIP`` is ``127.0.0.1``.
5. Probes: ``httpGet`` (path, port by number or name, headers, HTTP or HTTPS) and
   ``tcpSocket``, with ``initialDelaySeconds``, ``periodSeconds``, ``timeoutSeconds``,
   ``successThreshold`` and ``failureThreshold`` (periods and delays divided by
   ``probe_speedup``). A ``startupProbe`` holds the others until it succeeds; readiness sets
   the container's ``ready``, the pod's ``Ready``/``ContainersReady`` conditions and the
   StatefulSet's ``readyReplicas`` (without a readiness probe a started container is
   ready); liveness (or startup) failing ``failureThreshold`` times in a row kills the
   container, which is then restarted.
6. Restarts (``restartPolicy: Always``): when the container exits, whatever its code, its
   ``lastState.terminated`` records the exit code (a signal N is 128+N, as a runtime
   reports it), reason ``Completed`` (0) or ``Error``, the times; ``restartCount`` goes up
   and it starts again after a back-off (``backoff_s`` doubling up to ``backoff_cap_s``,
   back to ``backoff_s`` after ``backoff_reset_s`` of running; 10 s to 5 min on a cluster),
   ``waiting`` with reason ``CrashLoopBackOff`` meanwhile. Deleting the pod stops its
   container and the controller makes a fresh pod of the same name (new uid,
   ``restartCount`` 0).
7. Stopping (pod deleted, scaled to zero, StatefulSet deleted): SIGTERM to the container's
   own process (bubblewrap does not pass signals on, so it goes to the innermost process,
   as ``infra.local.paper`` does), then SIGKILL to the whole sandbox after
   ``terminationGracePeriodSeconds`` (or the delete's ``gracePeriodSeconds``), at most
   ``grace_cap_s``; then the pod object goes.
8. Logs: each run's stdout and stderr, the first ``LOG_BYTES`` of it, are the container's
   log; ``previous=true`` is the last terminated run's, as the kubelet answers it.

For tests: :attr:`KubeApiServer.requests` records every API request (method, path,
parameters, content type, body), :meth:`KubeApiServer.fail_next` makes the next ones fail
with a status, :meth:`KubeApiServer.kill` SIGKILLs a pod's container process (a crash, as
opposed to deleting the pod), :meth:`KubeApiServer.main_pid` and
:meth:`KubeApiServer.host_port` tell where a container runs, :meth:`KubeApiServer.get`
shows a stored object, :meth:`KubeApiServer.claim_folder` a claim's host folder,
:meth:`KubeApiServer.kubeconfig` writes a kubeconfig for ``config.load_kube_config``, and
:meth:`KubeApiServer.stop` stops every pod. Not implemented: watches, server-side apply,
discovery (``/api``, ``/apis``: the typed client does not need it), bare pods, more than
one replica or container, Deployments and the rest of the API, Service routing, RBAC and
authentication (any bearer token is accepted), OOMKilled (the memory limit is an
address-space limit: the process sees allocation failures, not a kill).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import http.client
import json
import logging
import math
import os
import re
import secrets as _secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.emulators import free_port
from infra.emulators.cloudbuild import _default_runtime, _runtime_root
from infra.local.runner import child_env
from infra.local.sandbox import (
    Isolation,
    Limits,
    Mount,
    Sandbox,
    SandboxUnavailable,
    remove_cgroup,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

from infra.emulators.http import LocalHttpServer, StandInHandler

log = logging.getLogger(__name__)

Json = Any  # a JSON value
Obj = dict[str, Any]  # a stored API object

NODE = "tradeops-stand-in"
POD_IP = "127.0.0.1"
HOST_PORTS = "stand-in.tradeops.local/host-ports"  # the pod annotation: container → host port
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
LOG_BYTES = 1 << 20  # a container run's output kept as its log
CONTROL_S = 0.05  # how often controllers and kubelets look again
FOREVER_S = 10 * 365 * 24 * 3600  # a container runs until stopped: no CPU-time or wall cap
PROCESSES = 256
OPEN_FILES = 1024
FILE_MB = 1024  # largest file a container may write (its ephemeral-storage limit if smaller)
DEFAULT_TMPFS_MB = 256
MIB = 1 << 20
VERSION = {
    "major": "1", "minor": "33", "gitVersion": "v1.33.0-tradeops-stand-in",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
    "platform": "linux/amd64",
}  # fmt: skip
REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType",
    422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
    504: "Timeout",
}  # fmt: skip
# the spec fields of a StatefulSet an update may change (the API server's rule)
# metadata that is the server's: never taken from a create request
SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
)
STS_MUTABLE = frozenset({"replicas", "template", "updateStrategy", "minReadySeconds",
                         "persistentVolumeClaimRetentionPolicy", "ordinals"})  # fmt: skip
FORBIDDEN_MOUNTS = ("/usr", "/proc", "/dev", "/tmp")  # noqa: S108 - /tmp is the sandbox's tmpfs
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


# ---------------------------------------------------------------------- small types
@dataclass(frozen=True)
class Request:
    """One API request as the server saw it (for tests to check what a client sent)."""

    method: str
    path: str  # decoded, without the query
    params: dict[str, str]
    content_type: str
    body: Json


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Json = None
    text: str | None = None  # a text/plain reply (a log) instead of JSON
    raw: bytes | None = None  # a proxied reply, with its own content type
    content_type: str = "application/json"
    warnings: tuple[str, ...] = ()


class _ApiError(Exception):
    """An API error: answered as a ``Status`` object."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: Obj | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        doc: Obj = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": str(self), "reason": self.reason, "code": self.code,
        }  # fmt: skip
        if self.details:
            doc["details"] = self.details
        return doc


class _ConfigError(Exception):
    """A container cannot be set up now (a secret or claim missing): tried again later."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_nano() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _true(text: str | None) -> bool:
    return (text or "").lower() in ("true", "1")


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise _ApiError(400, f"invalid value for {name}: {text!r} is not an integer") from exc


# ---------------------------------------------------------------------- quantities
QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)
SUFFIXES = {
    None: Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
    "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}  # fmt: skip


def parse_quantity(text: str | int | float) -> Fraction:
    """The value of a Kubernetes quantity (``4Gi``, ``512Mi``, ``1G``, ``500m``, ``1e3``, a
    number); ``ValueError`` if it is not one."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a quantity")
    if isinstance(text, int | float):
        return Fraction(text)
    match = QUANTITY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    value = Fraction(match.group(1))
    if match.group(2):
        value *= Fraction(10) ** int(match.group(2)[1:])
    return value * SUFFIXES[match.group(3)]


def _mib(text: str) -> int:
    return max(1, math.ceil(parse_quantity(text) / MIB))


# ---------------------------------------------------------------------- label selectors
Requirement = tuple[str, str, tuple[str, ...]]  # (key, operator, values)
_EQUALITY = re.compile(r"\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*")
_SET = re.compile(r"\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s+(in|notin)\s*\(([^)]*)\)\s*")
_EXISTS = re.compile(r"\s*(!?)\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s*")


def parse_selector(text: str) -> list[Requirement]:
    """The requirements of a ``labelSelector`` string; ``_ApiError`` 400 if malformed."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    found: list[Requirement] = []
    for part in parts:
        if not part.strip():
            if len(parts) > 1:
                raise _ApiError(400, f"unable to parse requirement: empty requirement in {text!r}")
            continue
        if m := _SET.fullmatch(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            found.append((m.group(1), m.group(2), values))
        elif m := _EQUALITY.fullmatch(part):
            found.append((m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
        elif m := _EXISTS.fullmatch(part):
            found.append((m.group(2), "!" if m.group(1) else "exists", ()))
        else:
            raise _ApiError(400, f"unable to parse requirement: {part.strip()!r}: found "
                                 "an unexpected token")  # fmt: skip
    return found


def selector_requirements(selector: Json) -> list[Requirement]:
    """The requirements of a ``LabelSelector`` object (``matchLabels``, ``matchExpressions``)."""
    if not isinstance(selector, dict):
        return []
    found: list[Requirement] = [
        (k, "=", (v,)) for k, v in sorted((selector.get("matchLabels") or {}).items())
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        found.append((expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return found


def matches(labels: Mapping[str, str] | None, requirements: Iterable[Requirement]) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        have = labels.get(key)
        if op == "=" and have != values[0]:
            return False
        if op == "!=" and have == values[0]:
            return False
        if op == "in" and have not in values:
            return False
        if op == "notin" and have in values:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def format_selector(requirements: Iterable[Requirement]) -> str:
    """A selector as the API server writes it (a Scale's ``status.selector``)."""
    out = []
    for key, op, values in requirements:
        if op in ("=", "!="):
            out.append(f"{key}{op}{values[0]}")
        elif op in ("in", "notin"):
            out.append(f"{key} {op} ({','.join(sorted(values))})")
        else:
            out.append(key if op == "exists" else f"!{key}")
    return ",".join(out)


def _field_value(obj: Obj, path: str) -> str:
    value: Json = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def field_matches(obj: Obj, text: str) -> bool:
    """Whether ``obj`` passes a ``fieldSelector`` (``a.b=c``, ``a.b!=c``, joined by commas)."""
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", part)
        if m is None:
            raise _ApiError(400, f"invalid field selector: {part!r}")
        equal = _field_value(obj, m.group(1)) == m.group(3)
        if equal == (m.group(2) == "!="):
            return False
    return True


# ---------------------------------------------------------------------- patches
# list fields strategic merge patches merge by a key (None: a list of scalars, merged as a set)
MERGE_KEYS: dict[str, str | None] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "ports": "containerPort", "volumeMounts": "mountPath",
    "imagePullSecrets": "name", "ownerReferences": "uid", "conditions": "type",
    "hostAliases": "ip", "finalizers": None, "topologySpreadConstraints": "topologyKey",
}  # fmt: skip


def merge_patch(target: Json, patch: Json) -> Json:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Json, patch: Json) -> Json:
    """Kubernetes' strategic merge patch, for the list fields of ``MERGE_KEYS``; other lists
    are replaced, as in a merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.partition("/")[2]
            result[name] = [x for x in result.get(name) or [] if x not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, dict):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: list[Json], patch: list[Json], key: str | None) -> list[Json]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if key is None:  # a set of scalars
        out = list(current)
        out += [p for p in patch if p not in out]
        return out
    if not all(isinstance(p, dict) and key in p for p in patch):
        return copy.deepcopy(patch)  # not keyed as expected: replaced
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        at = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]),
                  None)  # fmt: skip
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[at] = strategic_merge_patch(out[at], item)
    return out


def json_patch(doc: Json, operations: Json) -> Json:
    """RFC 6902 JSON patch; ``_ApiError`` 422 if an operation does not apply."""
    if not isinstance(operations, list):
        raise _ApiError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _ApiError(400, f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], _pointer(op["path"])
        try:
            if kind == "test":
                if _get_pointer(doc, path) != op.get("value"):
                    raise _ApiError(422, f"testing value {op['path']} failed")
            elif kind == "remove":
                _remove_pointer(doc, path)
            elif kind in ("add", "replace"):
                if kind == "replace":
                    _get_pointer(doc, path)
                doc = _add_pointer(doc, path, copy.deepcopy(op.get("value")), kind == "replace")
            elif kind in ("move", "copy"):
                source = _pointer(op.get("from", ""))
                value = copy.deepcopy(_get_pointer(doc, source))
                if kind == "move":
                    _remove_pointer(doc, source)
                doc = _add_pointer(doc, path, value, False)
            else:
                raise _ApiError(400, f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise _ApiError(422, f"the JSON patch operation {kind} {op['path']} does not "
                                 "apply to the object") from exc  # fmt: skip
    return doc


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise _ApiError(400, f"invalid JSON pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _get_pointer(doc: Json, path: list[str]) -> Json:
    for part in path:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _remove_pointer(doc: Json, path: list[str]) -> None:
    parent = _get_pointer(doc, path[:-1])
    if isinstance(parent, list):
        del parent[int(path[-1])]
    else:
        del parent[path[-1]]


def _add_pointer(doc: Json, path: list[str], value: Json, replace: bool) -> Json:
    if not path:
        return value
    parent = _get_pointer(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif replace:
            parent[int(last)] = value
        else:
            index = int(last)
            if not 0 <= index <= len(parent):
                raise IndexError(index)
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise TypeError("not a container")
    return doc


def apply_patch(doc: Obj, patch: Json, content_type: str) -> Obj:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json-patch+json":
        out = json_patch(doc, patch)
    elif kind == "application/merge-patch+json":
        out = merge_patch(doc, patch)
    elif kind in ("application/strategic-merge-patch+json", ""):
        out = strategic_merge_patch(doc, patch)
    elif kind.startswith("application/apply-patch"):
        raise _ApiError(415, "the stand-in does not do server-side apply; use a merge patch")
    else:
        raise _ApiError(415, f"the body of the request was in an unknown format - accepted "
                             f"media types include: application/json-patch+json, "
                             f"application/merge-patch+json, application/strategic-merge-"
                             f"patch+json (not {kind!r})")  # fmt: skip
    if not isinstance(out, dict):
        raise _ApiError(422, "the patch does not leave an object")
    return out


# ---------------------------------------------------------------------- schema
QUANTITY_FIELDS = frozenset({"limits", "requests", "capacity", "sizeLimit", "hard",
                             "allocatedResources", "divisor"})  # fmt: skip
_NATIVE: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str,
    "date": str, "bytes": str,
}  # fmt: skip
_JSON_TYPES = {str: "string", bool: "bool", int: "number", float: "number", list: "array",
               dict: "object"}  # fmt: skip


@cache
def _model_fields(model: str) -> dict[str, str] | None:
    """JSON field name → openapi type of one of the client's models (None: not a model)."""
    try:
        from kubernetes.client import models
    except ImportError:  # no client here: nothing is checked against its schema
        return None
    cls = getattr(models, model, None)
    if cls is None or not hasattr(cls, "attribute_map"):
        return None
    return {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}


def conform(value: Json, kind: str, path: str, unknown: list[str], field: str = "") -> Json:
    """``value`` decoded as the API server decodes a body into ``kind`` (an openapi type of
    the client's models): wrong types raise ``_ApiError`` 400; unknown fields are dropped
    and their paths added to ``unknown``; ``null`` fields dropped; numbers in quantity
    fields become strings."""
    if kind == "object":
        return value
    if kind.startswith("List["):
        if not isinstance(value, list):
            raise _BadType(path, kind, value)
        return [conform(v, kind[5:-1], f"{path}[{i}]", unknown, field)
                for i, v in enumerate(value) if v is not None]  # fmt: skip
    if kind.startswith("Dict[str, "):
        if not isinstance(value, dict):
            raise _BadType(path, kind, value)
        return {str(k): conform(v, kind[10:-1], f"{path}[{k}]", unknown, field)
                for k, v in value.items() if v is not None}  # fmt: skip
    if kind in _NATIVE:
        if field in QUANTITY_FIELDS and kind == "str" and isinstance(value, int | float) \
                and not isinstance(value, bool):  # fmt: skip
            return str(value)
        wanted = _NATIVE[kind]
        if not isinstance(value, wanted) or (isinstance(value, bool) and kind != "bool"):
            raise _BadType(path, kind, value)
        return value
    fields = _model_fields(kind)
    if fields is None:
        return value
    if not isinstance(value, dict):
        raise _BadType(path, kind, value)
    out = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            unknown.append(where)
            continue
        if item is not None:
            out[key] = conform(item, fields[key], where, unknown, key)
    return out


class _BadType(_ApiError):
    def __init__(self, path: str, kind: str, value: Json) -> None:
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        want = {"str": "string", "int": "int64", "bool": "bool", "float": "float64"}.get(
            kind, "[]" + kind[5:-1] if kind.startswith("List[") else kind
        )
        super().__init__(400, f"json: cannot unmarshal {got} into Go struct field {path} of "
                              f"type {want}")  # fmt: skip


# ---------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class _Kind:
    plural: str
    kind: str
    group: str  # "" for the core API
    model: str  # the client's model, for the schema
    namespaced: bool = True
    verbs: frozenset[str] = frozenset({"create", "get", "list", "update", "patch", "delete"})

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def resource(self) -> str:
        """How the API server names it in messages (``statefulsets.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


STATEFULSETS = _Kind("statefulsets", "StatefulSet", "apps", "V1StatefulSet")
PODS = _Kind("pods", "Pod", "", "V1Pod", verbs=frozenset({"get", "list", "update", "patch",
                                                           "delete"}))  # fmt: skip
SECRETS = _Kind("secrets", "Secret", "", "V1Secret")
CLAIMS = _Kind("persistentvolumeclaims", "PersistentVolumeClaim", "", "V1PersistentVolumeClaim",
               verbs=frozenset({"create", "get", "list", "delete"}))  # fmt: skip
POLICIES = _Kind("networkpolicies", "NetworkPolicy", "networking.k8s.io", "V1NetworkPolicy")
NAMESPACES = _Kind("namespaces", "Namespace", "", "V1Namespace", namespaced=False,
                   verbs=frozenset({"create", "get", "list", "delete"}))  # fmt: skip
CONFIGMAPS = _Kind("configmaps", "ConfigMap", "", "V1ConfigMap")
SERVICES = _Kind("services", "Service", "", "V1Service")
KINDS = {
    k.plural: k
    for k in (STATEFULSETS, PODS, SECRETS, CONFIGMAPS, CLAIMS, SERVICES, POLICIES, NAMESPACES)
}
ROUTE = re.compile(
    r"(?:/api/v1|/apis/(?P<group>[a-z0-9.-]+)/v1)(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?"
)
PROXY = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/proxy(?P<rest>/.*)?")


# ---------------------------------------------------------------------- validation
class _Causes:
    """The field errors of one object, raised together as 422 Invalid."""

    def __init__(self, kind: _Kind, name: str) -> None:
        self.kind, self.name = kind, name
        self.causes: list[tuple[str, str, str]] = []  # (field, reason, message)

    def add(self, field: str, message: str, reason: str = "FieldValueInvalid") -> None:
        self.causes.append((field, reason, message))

    def required(self, field: str) -> None:
        self.add(field, "Required value", "FieldValueRequired")

    def raise_any(self) -> None:
        if not self.causes:
            return
        text = "; ".join(f"{f}: {m}" for f, _, m in self.causes)
        group = f".{self.kind.group}" if self.kind.group else ""
        details = {
            "name": self.name, "group": self.kind.group, "kind": self.kind.kind,
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in self.causes],
        }  # fmt: skip
        raise _ApiError(422, f'{self.kind.kind}{group} "{self.name}" is invalid: [{text}]'
                        if len(self.causes) > 1 else
                        f'{self.kind.kind}{group} "{self.name}" is invalid: {text}',
                        "Invalid", details)  # fmt: skip


def _check_name(causes: _Causes, name: Json, field: str = "metadata.name") -> None:
    if not isinstance(name, str) or not name:
        causes.add(field, "name or generateName is required", "FieldValueRequired")
    elif len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        causes.add(field, f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                          "consist of lower case alphanumeric characters, '-' or '.', and must "
                          "start and end with an alphanumeric character")  # fmt: skip


def _check_labels(causes: _Causes, labels: Json, field: str) -> None:
    for key, value in (labels or {}).items():
        name = key.rpartition("/")[2]
        prefix = key.rpartition("/")[0]
        if (
            len(name) > 63
            or not LABEL_NAME.fullmatch(name)
            or (prefix and not DNS_SUBDOMAIN.fullmatch(prefix))
        ):
            causes.add(f"{field}", f'Invalid value: "{key}": name part must consist of '
                                   "alphanumeric characters, '-', '_' or '.'")  # fmt: skip
        if value and (len(value) > 63 or not LABEL_NAME.fullmatch(value)):
            causes.add(f"{field}", f'Invalid value: "{value}": a valid label must be an '
                                   "empty string or consist of alphanumeric characters, "
                                   "'-', '_' or '.'")  # fmt: skip


def _check_quantities(causes: _Causes, resources: Obj, field: str) -> None:
    parsed: dict[str, dict[str, Fraction]] = {}
    for which in ("requests", "limits"):
        for name, text in (resources.get(which) or {}).items():
            try:
                value = parse_quantity(text)
            except ValueError as exc:
                causes.add(f"{field}.{which}[{name}]", f'Invalid value: "{text}": {exc}')
                continue
            if value < 0:
                causes.add(f"{field}.{which}[{name}]", f'Invalid value: "{text}": must be '
                                                       "greater than or equal to 0")  # fmt: skip
            parsed.setdefault(which, {})[name] = value
    for name, wanted in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and wanted > limit:
            causes.add(f"{field}.requests", f'Invalid value: "{resources["requests"][name]}": '
                                            f"must be less than or equal to {name} limit of "
                                            f"{resources['limits'][name]}")  # fmt: skip


def _check_probe(causes: _Causes, probe: Obj, field: str, port_names: set[str]) -> None:
    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in probe]
    if len(handlers) != 1:
        causes.add(field, "must specify exactly one handler type", "FieldValueRequired")
    for key in ("periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
        if key in probe and probe[key] < 1:
            causes.add(f"{field}.{key}", f"Invalid value: {probe[key]}: must be greater than "
                                         "or equal to 1")  # fmt: skip
    if probe.get("initialDelaySeconds", 0) < 0:
        causes.add(f"{field}.initialDelaySeconds", "must be greater than or equal to 0")
    for handler in ("httpGet", "tcpSocket"):
        if handler in probe:
            port = probe[handler].get("port")
            if isinstance(port, str) and not port.isdigit() and port not in port_names:
                causes.add(f"{field}.{handler}.port", f'Invalid value: "{port}": must contain '
                                                      "at least one container port of that "
                                                      "name")  # fmt: skip
            elif (isinstance(port, int) or (isinstance(port, str) and port.isdigit())) and not (
                0 < int(port) < 65536
            ):
                causes.add(f"{field}.{handler}.port", f"Invalid value: {port}: must be "
                                                      "between 1 and 65535, inclusive")  # fmt: skip
            elif not isinstance(port, int | str):
                causes.add(f"{field}.{handler}.port", "Required value", "FieldValueRequired")


def check_pod_template(causes: _Causes, template: Obj, claim_names: set[str]) -> None:
    """A StatefulSet's pod template, as the API server checks it, and what the stand-in
    cannot run (more than one container, init containers)."""
    field = "spec.template.spec"
    spec = template.get("spec")
    if not isinstance(spec, dict):
        causes.required(field)
        return
    _check_labels(causes, (template.get("metadata") or {}).get("labels"),
                  "spec.template.metadata.labels")  # fmt: skip
    policy = spec.get("restartPolicy", "Always")
    if policy != "Always":
        causes.add(f"{field}.restartPolicy",
                   f'Unsupported value: "{policy}": supported values: "Always"',
                   "FieldValueNotSupported")  # fmt: skip
    if spec.get("terminationGracePeriodSeconds", 0) < 0:
        causes.add(f"{field}.terminationGracePeriodSeconds", "must be greater than or equal to 0")
    for extra in ("initContainers", "ephemeralContainers"):
        if spec.get(extra):
            causes.add(f"{field}.{extra}",
                       "Forbidden: the stand-in runs no init or ephemeral containers",
                       "FieldValueForbidden")  # fmt: skip
    containers = spec.get("containers") or []
    if not containers:
        causes.required(f"{field}.containers")
    elif len(containers) > 1:
        causes.add(f"{field}.containers",
                   f"Forbidden: the stand-in runs one container per pod, not {len(containers)}",
                   "FieldValueForbidden")  # fmt: skip
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        where = f"{field}.volumes[{i}]"
        name = volume.get("name")
        if not isinstance(name, str) or not DNS_LABEL.fullmatch(name):
            causes.add(f"{where}.name", f"Invalid value: {name!r}: must be a DNS label")
        elif name in volumes:
            causes.add(f"{where}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
        volumes.add(str(name))
        sources = [k for k in volume if k != "name"]
        if len(sources) != 1:
            causes.add(where, "must specify exactly one volume type", "FieldValueRequired")
    for i, container in enumerate(containers):
        where = f"{field}.containers[{i}]"
        name = container.get("name")
        if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or len(name) > 63:
            causes.add(f"{where}.name", f"Invalid value: {name!r}: a lowercase RFC 1123 label")
        if not container.get("image"):
            causes.required(f"{where}.image")
        security = container.get("securityContext") or {}
        if security.get("privileged") and security.get("allowPrivilegeEscalation") is False:
            causes.add(f"{where}.securityContext", "Invalid value: cannot set "
                       "`allowPrivilegeEscalation` to false and `privileged` to true")  # fmt: skip
        names: set[str] = set()
        for j, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort")
            if not isinstance(number, int) or not 0 < number < 65536:
                causes.add(f"{where}.ports[{j}].containerPort", f"Invalid value: {number}: must "
                                                                "be between 1 and 65535, "
                                                                "inclusive")  # fmt: skip
            pname = port.get("name")
            if pname is not None:
                if len(pname) > 15 or not PORT_NAME.fullmatch(pname):
                    causes.add(f"{where}.ports[{j}].name", f'Invalid value: "{pname}": an IANA '
                                                           "service name")  # fmt: skip
                elif pname in names:
                    causes.add(f"{where}.ports[{j}].name", f'Duplicate value: "{pname}"',
                               "FieldValueDuplicate")  # fmt: skip
                names.add(pname)
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if isinstance(container.get(kind), dict):
                _check_probe(causes, container[kind], f"{where}.{kind}", names)
        _check_quantities(causes, container.get("resources") or {}, f"{where}.resources")
        paths: set[str] = set()
        for j, mount in enumerate(container.get("volumeMounts") or []):
            vname, path = mount.get("name"), mount.get("mountPath")
            if vname not in volumes and vname not in claim_names:
                causes.add(f"{where}.volumeMounts[{j}].name", f'Not found: "{vname}"',
                           "FieldValueNotFound")  # fmt: skip
            if not isinstance(path, str) or not path:
                causes.required(f"{where}.volumeMounts[{j}].mountPath")
            elif path in paths:
                causes.add(f"{where}.volumeMounts[{j}].mountPath", f'Invalid value: "{path}": '
                                                                   "must be unique")  # fmt: skip
            paths.add(str(path))
            sub = mount.get("subPath") or ""
            if sub.startswith("/") or ".." in PurePosixPath(sub).parts:
                causes.add(f"{where}.volumeMounts[{j}].subPath", f'Invalid value: "{sub}": must '
                                                                 "be a relative path without "
                                                                 "'..'")  # fmt: skip
        for j, var in enumerate(container.get("env") or []):
            vname = var.get("name")
            if not isinstance(vname, str) or not ENV_NAME.fullmatch(vname):
                causes.add(f"{where}.env[{j}].name", f"Invalid value: {vname!r}: a valid "
                                                     "environment variable name")  # fmt: skip
            if "value" in var and "valueFrom" in var:
                causes.add(f"{where}.env[{j}].valueFrom", "Invalid value: may not be specified "
                                                          "when `value` is not empty")  # fmt: skip
            source = var.get("valueFrom")
            if source is not None and len(source) != 1:
                causes.add(f"{where}.env[{j}].valueFrom", "Invalid value: may not have more "
                                                          "than one field specified at a "
                                                          "time")  # fmt: skip


def check_statefulset(sts: Obj, old: Obj | None = None) -> None:
    """``_ApiError`` 422 for a StatefulSet the API server (or the stand-in) would refuse."""
    meta, spec = sts.get("metadata") or {}, sts.get("spec")
    causes = _Causes(STATEFULSETS, str(meta.get("name") or ""))
    _check_name(causes, meta.get("name"))
    _check_labels(causes, meta.get("labels"), "metadata.labels")
    if not isinstance(spec, dict):
        causes.required("spec")
        causes.raise_any()
        return
    replicas = spec.get("replicas", 1)
    if replicas < 0:
        causes.add("spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                                    "equal to 0")  # fmt: skip
    elif replicas > 1:
        causes.add("spec.replicas", f"Invalid value: {replicas}: the stand-in runs at most one "
                                    "replica")  # fmt: skip
    if not spec.get("serviceName"):
        causes.required("spec.serviceName")
    selector = spec.get("selector")
    requirements = selector_requirements(selector)
    if not requirements:
        causes.add("spec.selector", "Invalid value: empty selector is invalid for statefulset",
                   "FieldValueRequired")  # fmt: skip
    for i, expr in enumerate((selector or {}).get("matchExpressions") or []):
        if expr.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.add(
                f"spec.selector.matchExpressions[{i}].operator",
                f'Unsupported value: "{expr.get("operator")}"',
                "FieldValueNotSupported",
            )
    template = spec.get("template")
    if not isinstance(template, dict):
        causes.required("spec.template")
    else:
        labels = (template.get("metadata") or {}).get("labels") or {}
        if requirements and not matches(labels, requirements):
            shown = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
            causes.add("spec.template.metadata.labels", f"Invalid value: map[string]string{{"
                                                        f"{shown}}}: `selector` does not match "
                                                        "template `labels`")  # fmt: skip
        claims = set()
        for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
            where = f"spec.volumeClaimTemplates[{i}]"
            cname = (claim.get("metadata") or {}).get("name")
            if not cname or not DNS_LABEL.fullmatch(str(cname)):
                causes.add(f"{where}.metadata.name", f"Invalid value: {cname!r}: a DNS label")
            claims.add(str(cname))
            cspec = claim.get("spec") or {}
            if not cspec.get("accessModes"):
                causes.required(f"{where}.spec.accessModes")
            storage = ((cspec.get("resources") or {}).get("requests") or {}).get("storage")
            if storage is None:
                causes.add(f"{where}.spec.resources[storage]", "Required value",
                           "FieldValueRequired")  # fmt: skip
            else:
                _check_quantities(causes, cspec.get("resources") or {}, f"{where}.spec.resources")
        check_pod_template(causes, template, claims)
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy not in ("RollingUpdate", "OnDelete"):
        causes.add("spec.updateStrategy.type", f'Unsupported value: "{strategy}"',
                   "FieldValueNotSupported")  # fmt: skip
    policy = spec.get("podManagementPolicy", "OrderedReady")
    if policy not in ("OrderedReady", "Parallel"):
        causes.add("spec.podManagementPolicy", f'Unsupported value: "{policy}"',
                   "FieldValueNotSupported")  # fmt: skip
    if old is not None:
        changed = {k for k in set(spec) | set(old["spec"]) if k not in STS_MUTABLE
                   and spec.get(k) != old["spec"].get(k)}  # fmt: skip
        if changed:
            causes.add("spec", "Forbidden: updates to statefulset spec for fields other than "
                               "'replicas', 'ordinals', 'template', 'updateStrategy', "
                               "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                               "are forbidden", "FieldValueForbidden")  # fmt: skip
    causes.raise_any()


def default_statefulset(sts: Obj) -> None:
    """The defaults the API server fills in a StatefulSet."""
    spec = sts["spec"]
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {"phase": "Pending"})
    template = spec["template"]
    template.setdefault("metadata", {})
    pod = template["spec"]
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("securityContext", {})
    for container in pod.get("containers") or []:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        latest = ":" not in image.rpartition("/")[2] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(kind)
            if isinstance(probe, dict):
                for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10),
                                   ("successThreshold", 1), ("failureThreshold", 3)):  # fmt: skip
                    probe.setdefault(key, value)
                if isinstance(probe.get("httpGet"), dict):
                    probe["httpGet"].setdefault("path", "/")
                    probe["httpGet"].setdefault("scheme", "HTTP")


def _security(container: Obj, pod_spec: Obj, key: str) -> Json:
    """A container's effective security setting (its own, else the pod's)."""
    own = container.get("securityContext") or {}
    if key in own:
        return own[key]
    return (pod_spec.get("securityContext") or {}).get(key)


def hardening_problems(pod_spec: Obj) -> list[str]:
    """What a pod lacks of the hardening our manifests set, or has that is refused (empty:
    it may run)."""
    missing: list[str] = []
    refused: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            refused.append(f"spec.{flag}: true")
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            refused.append(f"hostPath volume {volume.get('name')!r}")
    for container in pod_spec.get("containers") or []:
        own = container.get("securityContext") or {}
        if _security(container, pod_spec, "runAsNonRoot") is not True:
            missing.append("securityContext.runAsNonRoot: true")
        uid = _security(container, pod_spec, "runAsUser")
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            missing.append("securityContext.runAsUser: a numeric non-zero uid")
        if own.get("readOnlyRootFilesystem") is not True:
            missing.append("securityContext.readOnlyRootFilesystem: true")
        if own.get("allowPrivilegeEscalation") is not False:
            missing.append("securityContext.allowPrivilegeEscalation: false")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing.append("securityContext.capabilities.drop: [ALL]")
        if capabilities.get("add"):
            refused.append(f"securityContext.capabilities.add: {capabilities['add']}")
        if own.get("privileged"):
            refused.append("securityContext.privileged: true")
        seccomp = _security(container, pod_spec, "seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            missing.append("securityContext.seccompProfile.type: RuntimeDefault")
        resources = container.get("resources") or {}
        for which in ("requests", "limits"):
            for name in ("cpu", "memory"):
                if name not in (resources.get(which) or {}):
                    missing.append(f"resources.{which}.{name}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                refused.append(f"ports hostPort: {port['hostPort']}")
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if refused:
        problems.append("refused " + ", ".join(refused))
    return problems


def unsupported(pod_spec: Obj, runtime_image: bool) -> list[str]:
    """What a pod asks that the stand-in cannot do (empty: nothing)."""
    found = []
    container = (pod_spec.get("containers") or [{}])[0]
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind) or {}
        for handler in ("exec", "grpc"):
            if handler in probe:
                found.append(f"{kind}.{handler} (the stand-in probes httpGet and tcpSocket)")
    if container.get("lifecycle"):
        found.append("lifecycle hooks")
    if container.get("command") and runtime_image:
        found.append("command for a runtime image (it runs by its ENTRYPOINT and args)")
    for volume in pod_spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        if kinds and kinds[0] not in ("persistentVolumeClaim", "emptyDir", "secret", "configMap",
                                      "hostPath"):  # fmt: skip
            found.append(f"{kinds[0]} volume {volume.get('name')!r}")
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        target = str(mount.get("mountPath", ""))
        tmpfs = target == "/tmp" and "emptyDir" in volumes.get(mount.get("name"), {})  # noqa: S108
        if not target.startswith("/") or target == "/":
            found.append(f"a mount at {target!r}")
        elif not tmpfs and any(PurePosixPath(target).is_relative_to(p) for p in FORBIDDEN_MOUNTS):
            found.append(f"a mount at {target} (the stand-in's {target.split('/')[1]} is its own)")
    workdir = container.get("workingDir") or "/"
    if not workdir.startswith("/"):
        found.append(f"workingDir {workdir!r} (an absolute path is needed)")
    return found


def check_secret(secret: Obj, old: Obj | None = None) -> None:
    """A Secret's ``stringData`` folded into ``data``, its keys and values checked."""
    meta = secret.get("metadata") or {}
    causes = _Causes(SECRETS, str(meta.get("name") or ""))
    _check_name(causes, meta.get("name"))
    data = dict(secret.get("data") or {})
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise _ApiError(400, f'Secret in version "v1" cannot be handled as a Secret: '
                                 f"illegal base64 data in data[{key}]") from exc  # fmt: skip
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(value.encode()).decode()
    size = 0
    for key, value in data.items():
        if not SECRET_KEY.fullmatch(key):
            causes.add(
                f"data[{key}]",
                f'Invalid value: "{key}": a valid config key must '
                "consist of alphanumeric characters, '-', '_' or '.'",
            )
        size += len(base64.b64decode(value))
    if size > 1 << 20:
        causes.add("data", "Too long: must have at most 1048576 bytes", "FieldValueTooLong")
    secret["data"] = data
    secret.setdefault("type", "Opaque")
    if old is not None:
        if old.get("immutable") and (data != old.get("data") or secret.get("immutable") is False):
            causes.add("data", "Forbidden: field is immutable when `immutable` is set",
                       "FieldValueForbidden")  # fmt: skip
        if secret["type"] != old.get("type"):
            causes.add("type", "Invalid value: field is immutable")
    causes.raise_any()


def check_configmap(config: Obj, old: Obj | None = None) -> None:
    """A ConfigMap's keys and ``binaryData`` checked, as the API server checks them."""
    meta = config.get("metadata") or {}
    causes = _Causes(CONFIGMAPS, str(meta.get("name") or ""))
    _check_name(causes, meta.get("name"))
    data, binary = config.get("data") or {}, config.get("binaryData") or {}
    size = 0
    for key, value in binary.items():
        try:
            size += len(base64.b64decode(value, validate=True))
        except ValueError as exc:
            raise _ApiError(400, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                 f"illegal base64 data in binaryData[{key}]") from exc  # fmt: skip
    for key in [*data, *binary]:
        if not SECRET_KEY.fullmatch(key):
            causes.add(
                f"data[{key}]",
                f'Invalid value: "{key}": a valid config key must '
                "consist of alphanumeric characters, '-', '_' or '.'",
            )
        if key in data and key in binary:
            causes.add(f"data[{key}]", f'Invalid value: "{key}": duplicate of key present in '
                                       "binaryData")  # fmt: skip
    size += sum(len(v.encode()) for v in data.values())
    if size > 1 << 20:
        causes.add("data", "Too long: must have at most 1048576 bytes", "FieldValueTooLong")
    if old is not None and old.get("immutable") and (
        data != (old.get("data") or {}) or binary != (old.get("binaryData") or {})
        or config.get("immutable") is False
    ):  # fmt: skip
        causes.add("data", "Forbidden: field is immutable when `immutable` is set",
                   "FieldValueForbidden")  # fmt: skip
    causes.raise_any()


def check_service(service: Obj, old: Obj | None = None) -> None:
    """A Service checked and defaulted as the API server does (its cluster IP is set by the
    server when it is made)."""
    meta = service.get("metadata") or {}
    causes = _Causes(SERVICES, str(meta.get("name") or ""))
    name = meta.get("name")
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or len(name) > 63:
        causes.add("metadata.name", f"Invalid value: {name!r}: a DNS-1035 label")
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    ports = spec.get("ports") or []
    for i, port in enumerate(ports):
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.add(f"spec.ports[{i}].port", f"Invalid value: {number}: must be between 1 "
                                                "and 65535, inclusive")  # fmt: skip
        if len(ports) > 1 and not port.get("name"):
            causes.required(f"spec.ports[{i}].name")
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", number)
    if old is not None:
        before = old["spec"].get("clusterIP")
        spec.setdefault("clusterIP", before)
        spec.setdefault("clusterIPs", old["spec"].get("clusterIPs"))
        if spec.get("clusterIP") != before:
            causes.add("spec.clusterIP", "Invalid value: field is immutable")
    causes.raise_any()


# ---------------------------------------------------------------------- container runs
class _RunLog:
    """One container run's output: lines with their times, the first ``limit`` bytes."""

    def __init__(self, limit: int = LOG_BYTES) -> None:
        self._lock = threading.Lock()
        self._lines: list[tuple[float, str, str]] = []  # (epoch, RFC 3339 time, line)
        self._limit = limit
        self._kept = 0
        self._dropped = 0

    def append(self, raw: bytes) -> None:
        with self._lock:
            if self._kept + len(raw) > self._limit:
                self._dropped += len(raw)
                return
            self._kept += len(raw)
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._lines.append((time.time(), _now_nano(), text))

    def close(self) -> None:
        with self._lock:
            if self._dropped:
                note = f"[log truncated by the stand-in: {self._dropped} more bytes not kept]"
                self._lines.append((time.time(), _now_nano(), note))
                self._dropped = 0

    def text(
        self,
        *,
        tail: int | None = None,
        since_s: int | None = None,
        timestamps: bool = False,
        limit_bytes: int | None = None,
    ) -> str:
        with self._lock:
            lines = list(self._lines)
        if since_s is not None:
            cutoff = time.time() - since_s
            lines = [line for line in lines if line[0] >= cutoff]
        if tail is not None and tail >= 0:
            lines = lines[len(lines) - tail :] if tail else []
        out = "".join(f"{stamp} {text}\n" if timestamps else f"{text}\n"
                      for _, stamp, text in lines)  # fmt: skip
        if limit_bytes is not None and limit_bytes > 0:
            out = out.encode()[:limit_bytes].decode("utf-8", "ignore")
        return out


class _ContainerRun:
    """One run of a pod's container: its sandbox process, output and probe results."""

    def __init__(self, proc: subprocess.Popen[bytes], cgroup: Path | None) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self.container_id = "containerd://" + _secrets.token_hex(32)
        self.started_at = _now()
        self.began = time.monotonic()
        self.log = _RunLog()
        self.done = threading.Event()  # the process is over: probes stop
        self.started = threading.Event()  # its startup probe passed (or it has none)
        self.ready = False
        self.unhealthy: str | None = None  # why a probe wants it killed
        assert proc.stdout is not None
        self._pump = threading.Thread(
            target=self._read, args=(proc.stdout,), name="kube-container-log", daemon=True
        )
        self._pump.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.log.append(raw)
        stream.close()

    def fail(self, why: str) -> None:
        if self.unhealthy is None:
            self.unhealthy = why

    def exit_code(self) -> int:
        code = self.proc.returncode
        assert code is not None
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as runtimes say

    def finish(self) -> None:
        """The process is gone: kill what is left of its sandbox, stop reading."""
        _kill_group(self.proc)
        remove_cgroup(self.cgroup)
        self._pump.join(timeout=5)
        self.log.close()
        self.done.set()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(k) for k in (task / "children").read_text().split()]
    return found


def _main_process(pid: int) -> int:
    """The container's own process below its bubblewrap parents (``pid`` while none)."""
    current = pid
    for _ in range(8):
        try:
            comm = Path(f"/proc/{current}/comm").read_text().strip()
        except OSError:
            return current
        kids = _children(current)
        if comm != "bwrap" or not kids:
            return current
        current = kids[0]
    return current


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _own(path: Path, uid: int, gid: int) -> None:
    """A folder the container's uid may write (when this process can give it away)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def _qos(container: Obj) -> str:
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not requests and not limits:
        return "BestEffort"
    if all(limits.get(r) is not None and (requests.get(r) or limits.get(r)) == limits.get(r)
           for r in ("cpu", "memory")):  # fmt: skip
        return "Guaranteed"
    return "Burstable"


def _image_id(image: str) -> str:
    name = image.partition("@")[0]
    head, _, tail = name.rpartition("/")
    base = f"{head}/{tail.partition(':')[0]}" if head else tail.partition(":")[0]
    return f"{base}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


class _PodWorker:
    """The kubelet of one pod: runs its container in the sandbox, probes it, restarts it
    with back-off, stops it when the pod is deleted, then removes the pod."""

    def __init__(self, server: KubeApiServer, pod: Obj, host_ports: dict[int, int]) -> None:
        meta = pod["metadata"]
        self.server = server
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.pod = copy.deepcopy(pod)  # as made: a pod's spec does not change
        self.spec: Obj = self.pod["spec"]
        self.container: Obj = self.spec["containers"][0]
        self.host_ports = host_ports
        self.folder = server.root / "pods" / self.uid
        self.deleting = threading.Event()
        self.kill_at = math.inf  # monotonic: when a stopping container is SIGKILLed
        self.lock = threading.RLock()  # the status below, published as a whole
        self.phase = "Pending"
        self.pod_message: str | None = None
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.ready = False
        self.started = False
        self.restarts = 0
        self.container_id: str | None = None
        self.start_time = _now()
        self.transitions: dict[str, tuple[str, str]] = {}  # condition → (status, since)
        self.running: _ContainerRun | None = None
        self.last_run: _ContainerRun | None = None
        self.thread = threading.Thread(target=self._main, name=f"kubelet-{self.name}",
                                       daemon=True)  # fmt: skip

    # ------------------------------------------------------------------ from the server
    def terminate(self, grace_s: float) -> None:
        """Stop the pod, its container given ``grace_s`` after SIGTERM (a later, shorter
        grace wins). Called under the server's lock: takes no lock of its own."""
        self.kill_at = min(self.kill_at, time.monotonic() + max(grace_s, 0.0))
        self.deleting.set()

    def kill(self) -> int:
        """SIGKILL the running container's own process (a crash); its pid."""
        run = self.running
        if run is None or run.proc.poll() is not None:
            raise LookupError(f"pod {self.namespace}/{self.name} has no running container")
        pid = _main_process(run.proc.pid)
        os.kill(pid, signal.SIGKILL)
        return pid

    def main_pid(self) -> int | None:
        run = self.running
        if run is None or run.proc.poll() is not None:
            return None
        return _main_process(run.proc.pid)

    def log_text(self, previous: bool, **options: Any) -> str:
        """The container's log as the kubelet answers it (``_ApiError`` 400 if none)."""
        with self.lock:
            running, last, state = self.running, self.last_run, self.state
        cname = self.container["name"]
        if previous:
            if last is None:
                raise _ApiError(400, f'previous terminated container "{cname}" in pod '
                                     f'"{self.name}" not found')  # fmt: skip
            return last.log.text(**options)
        run = running or last
        if run is None:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            if reason == "ErrImagePull":
                reason = "image can't be pulled"
            raise _ApiError(400, f'container "{cname}" in pod "{self.name}" is waiting to '
                                 f"start: {reason}")  # fmt: skip
        return run.log.text(**options)

    def port(self, wanted: int | str | None) -> int:
        """The host port standing for a container port (a number or a port's name)."""
        ports = self.container.get("ports") or []
        if wanted is None or wanted == "":
            if not ports:
                raise LookupError("the container declares no port")
            wanted = ports[0]["containerPort"]
        if isinstance(wanted, str) and not wanted.isdigit():
            named = [p["containerPort"] for p in ports if p.get("name") == wanted]
            if not named:
                raise LookupError(f"the container has no port named {wanted!r}")
            wanted = named[0]
        number = int(wanted)
        return self.host_ports.get(number, number)

    # ------------------------------------------------------------------ the pod's life
    def _main(self) -> None:
        try:
            self._live()
        except Exception as exc:  # a bug of ours: the pod says so
            log.exception("kube stand-in: pod %s/%s failed", self.namespace, self.name)
            with contextlib.suppress(Exception):
                self._refuse("RunContainerError", f"the stand-in failed: {exc}")
            self.deleting.wait()
        finally:
            run = self.running
            if run is not None:
                self._stop(run)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.server._pod_finished(self)

    def _refuse(self, reason: str, message: str) -> None:
        """The container will not run: the pod Failed, saying why."""
        self._publish(phase="Failed", pod_message=message, ready=False,
                      state={"waiting": {"reason": reason, "message": message}})  # fmt: skip

    def _live(self) -> None:
        cname, image = self.container["name"], str(self.container.get("image", ""))
        self._publish()
        problems = hardening_problems(self.spec)
        problems += [f"unsupported {what}" for what in
                     unsupported(self.spec, _default_runtime(image))]  # fmt: skip
        if problems:
            self._refuse("CreateContainerConfigError",
                         f'container "{cname}": the stand-in refuses to run it: '
                         + "; ".join(problems))  # fmt: skip
            self.deleting.wait()
            return
        entry = self.server._image_argv(image)
        if entry is None:
            message = (f'Failed to pull image "{image}": the stand-in knows only its runtime '
                       "images (runtime_images)")  # fmt: skip
            self._publish(state={"waiting": {"reason": "ErrImagePull", "message": message}})
            self.deleting.wait()
            return
        server = self.server
        backoff = server.backoff_s
        while not self.deleting.is_set():
            try:
                cmd, sandbox = self._prepare(entry)
            except _ConfigError as exc:
                self._publish(ready=False, state={"waiting": {
                    "reason": "CreateContainerConfigError", "message": str(exc)}})  # fmt: skip
                if self.deleting.wait(backoff):
                    return
                backoff = min(backoff * 2, server.backoff_cap_s)
                continue
            except SandboxUnavailable as exc:
                self._refuse("RunContainerError", str(exc))
                self.deleting.wait()
                return
            try:
                run = self._start(cmd, sandbox)
            except (OSError, ValueError) as exc:  # tried again, as a runtime's error would be
                self._publish(ready=False, state={"waiting": {
                    "reason": "RunContainerError", "message": str(exc)}})  # fmt: skip
                if self.deleting.wait(backoff):
                    return
                backoff = min(backoff * 2, server.backoff_cap_s)
                continue
            if self._watch(run):
                return  # deleted
            code = run.exit_code()
            terminated: Obj = {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": run.started_at, "finishedAt": _now(),
                "containerID": run.container_id,
            }  # fmt: skip
            if run.unhealthy:
                terminated["message"] = run.unhealthy
            if time.monotonic() - run.began >= server.backoff_reset_s:
                backoff = server.backoff_s
            with self.lock:
                self.running, self.last_run = None, run
                self.restarts += 1
                message = (f"back-off {backoff:g}s restarting failed container={cname} "
                           f"pod={self.name}_{self.namespace}({self.uid})")  # fmt: skip
                self._publish(last_state={"terminated": terminated}, ready=False, started=False,
                              state={"waiting": {"reason": "CrashLoopBackOff",
                                                 "message": message}})  # fmt: skip
            if self.deleting.wait(backoff):
                return
            backoff = min(backoff * 2, server.backoff_cap_s)

    def _prepare(self, entry: Sequence[str]) -> tuple[list[str], Sandbox]:
        """The sandbox command of the container's next run (``_ConfigError`` when a secret
        or claim it needs is missing)."""
        c = self.container
        uid = int(_security(c, self.spec, "runAsUser"))
        pod_security = self.spec.get("securityContext") or {}
        gid = int(pod_security.get("fsGroup") or _security(c, self.spec, "runAsGroup") or uid)
        env, own = self._environment()
        command = [self._expand(str(x), own) for x in c.get("command") or []]
        args = [self._expand(str(x), own) for x in c.get("args") or []]
        argv = (command or list(entry)) + args
        mounts, tmpfs_mb = self._mounts(uid, gid)
        resources = c.get("resources") or {}
        limits = resources.get("limits") or {}
        file_mb = FILE_MB
        if "ephemeral-storage" in limits:
            file_mb = min(FILE_MB, _mib(limits["ephemeral-storage"]))
        chosen = Limits(
            memory_mb=_mib(limits["memory"]), cpu_seconds=FOREVER_S, processes=PROCESSES,
            file_mb=file_mb, open_files=OPEN_FILES, log_bytes=LOG_BYTES,
            timeout_s=FOREVER_S, tmpfs_mb=tmpfs_mb,
        )  # fmt: skip
        sandbox = Sandbox.detect(chosen)
        if sandbox.isolation is not Isolation.BUBBLEWRAP:
            raise SandboxUnavailable("the stand-in runs containers only with bubblewrap (a "
                                     "private file system for the volumes)")  # fmt: skip
        sandbox = dataclasses.replace(sandbox, uid=uid)
        workdir = c.get("workingDir") or "/"
        return sandbox.command(argv, mounts, env, workdir, network=True), sandbox

    def _start(self, cmd: list[str], sandbox: Sandbox) -> _ContainerRun:
        self.folder.mkdir(parents=True, exist_ok=True)
        cgroup = sandbox.cgroup(f"kube-{self.uid[:8]}-{self.restarts}-{os.getpid()}")
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=self.folder,
            preexec_fn=sandbox.preexec(cgroup),  # limits must apply before exec
        )
        run = _ContainerRun(proc, cgroup)
        c = self.container
        has_startup = isinstance(c.get("startupProbe"), dict)
        has_readiness = isinstance(c.get("readinessProbe"), dict)
        if not has_startup:
            run.started.set()
            run.ready = not has_readiness
        with self.lock:
            self.running = run
            self._publish(phase="Running", container_id=run.container_id,
                          started=not has_startup, ready=run.ready,
                          state={"running": {"startedAt": run.started_at}})  # fmt: skip
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if isinstance(c.get(kind), dict):
                threading.Thread(target=self._prober, args=(run, kind, c[kind]),
                                 name=f"kube-probe-{self.name}", daemon=True).start()  # fmt: skip
        return run

    def _watch(self, run: _ContainerRun) -> bool:
        """Wait for the run to end: its process exits, a probe has it killed, or the pod is
        deleted (True: the pod is going)."""
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        while True:
            try:
                run.proc.wait(timeout=CONTROL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.deleting.is_set():
                self._publish(ready=False)
                self._stop(run)
                return True
            if run.unhealthy is not None:
                self._stop(run, time.monotonic() + min(grace, self.server.grace_cap_s))
                break
        if run.proc.returncode is not None and not run.done.is_set():
            run.finish()
        return False

    def _stop(self, run: _ContainerRun, deadline: float = math.inf) -> None:
        """SIGTERM the container's own process, SIGKILL its sandbox at the deadline (or the
        deletion's, the earlier)."""
        if run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(_main_process(run.proc.pid), signal.SIGTERM)
            while run.proc.poll() is None and time.monotonic() < min(deadline, self.kill_at):
                time.sleep(CONTROL_S / 2)
        if not run.done.is_set():
            run.finish()

    # ------------------------------------------------------------------ probes
    def _prober(self, run: _ContainerRun, kind: str, probe: Obj) -> None:
        speed = self.server.probe_speedup
        period = max(float(probe.get("periodSeconds", 10)), 1.0) / speed
        if run.done.wait(float(probe.get("initialDelaySeconds", 0)) / speed):
            return
        if kind != "startupProbe":
            while not run.started.wait(CONTROL_S):
                if run.done.is_set():
                    return
        failure_threshold = int(probe.get("failureThreshold", 3))
        success_threshold = int(probe.get("successThreshold", 1))
        successes = failures = 0
        while not run.done.is_set():
            ok, why = self._probe(probe)
            if run.done.is_set():
                return
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "startupProbe":
                if ok:
                    with self.lock:
                        run.started.set()
                        run.ready = not isinstance(self.container.get("readinessProbe"), dict)
                        if self.running is run:
                            self._publish(started=True, ready=run.ready)
                    return
                if failures >= failure_threshold:
                    run.fail(f"Startup probe failed: {why}")
                    return
            elif kind == "readinessProbe":
                want = None
                if ok and successes >= success_threshold:
                    want = True
                elif not ok and failures >= failure_threshold:
                    want = False
                if want is not None and want != run.ready:
                    with self.lock:
                        run.ready = want
                        if self.running is run:
                            self._publish(ready=want)
            elif failures >= failure_threshold:
                run.fail(f"Liveness probe failed: {why}")
                return
            if run.done.wait(period):
                return

    def _probe(self, probe: Obj) -> tuple[bool, str]:
        timeout = max(float(probe.get("timeoutSeconds", 1)), 0.1)
        try:
            if isinstance(probe.get("httpGet"), dict):
                get = probe["httpGet"]
                port = self.port(get.get("port"))
                path = get.get("path") or "/"
                headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
                headers |= {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                conn: http.client.HTTPConnection
                if str(get.get("scheme", "HTTP")).upper() == "HTTPS":
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE  # as the kubelet: no verification
                    conn = http.client.HTTPSConnection(POD_IP, port, timeout=timeout,
                                                       context=context)  # fmt: skip
                else:
                    conn = http.client.HTTPConnection(POD_IP, port, timeout=timeout)
                try:
                    conn.request("GET", path, headers=headers)
                    reply = conn.getresponse()
                    reply.read(10240)
                    code = reply.status
                except (OSError, http.client.HTTPException) as exc:
                    return False, f'Get "http://{POD_IP}:{port}{path}": {exc}'
                finally:
                    conn.close()
                if 200 <= code < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {code}"
            port = self.port((probe.get("tcpSocket") or {}).get("port"))
            try:
                socket.create_connection((POD_IP, port), timeout=timeout).close()
            except OSError as exc:
                return False, f"dial tcp {POD_IP}:{port}: {exc}"
            return True, ""
        except LookupError as exc:
            return False, str(exc)

    # ------------------------------------------------------------------ the container's setup
    def _environment(self) -> tuple[dict[str, str], dict[str, str]]:
        """(the whole environment, the container's own variables)."""
        c = self.container
        own: dict[str, str] = {}
        for source in c.get("envFrom") or []:
            prefix = source.get("prefix") or ""
            secret = isinstance(source.get("secretRef"), dict)
            ref = source["secretRef"] if secret else source.get("configMapRef") or {}
            plural, what = ("secrets", "secret") if secret else ("configmaps", "configmap")
            data = self.server._data_of(plural, self.namespace, str(ref.get("name", "")), False)
            if data is None:
                if ref.get("optional"):
                    continue
                raise _ConfigError(f'{what} "{ref.get("name")}" not found')
            for key, raw in data.items():
                if ENV_NAME.fullmatch(prefix + key):
                    own[prefix + key] = raw.decode("utf-8", "surrogateescape")
        for var in c.get("env") or []:
            name = var["name"]
            if isinstance(var.get("valueFrom"), dict):
                found = self._value_from(var["valueFrom"])
                if found is None:
                    continue
                own[name] = found
            else:
                own[name] = self._expand(self._port_value(name, str(var.get("value", ""))), own)
        for name, value in own.items():
            if "\0" in value:
                raise _ConfigError(f"invalid value of env {name}: it holds a NUL byte")
        env = {**child_env(), "HOME": "/tmp", "MPLCONFIGDIR": "/tmp",  # noqa: S108
               "PYTHONPATH": str(_runtime_root()), "HOSTNAME": self.name}  # fmt: skip
        env.update(own)
        return env, own

    def _port_value(self, name: str, value: str) -> str:
        """A ``…_PORT`` variable holding a declared container port: the host port instead."""
        text = value.strip()
        if name.endswith("_PORT") and text.isdigit() and int(text) in self.host_ports:
            return str(self.host_ports[int(text)])
        return value

    @staticmethod
    def _expand(text: str, env: Mapping[str, str]) -> str:
        """``$(VAR)`` references to earlier variables, ``$$`` for ``$``, as the kubelet."""

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            return env[name] if name in env else match.group(0)

        return VAR_REF.sub(one, text)

    def _value_from(self, source: Obj) -> str | None:
        for field, plural, what in (("secretKeyRef", "secrets", "Secret"),
                                    ("configMapKeyRef", "configmaps", "ConfigMap")):  # fmt: skip
            if isinstance(source.get(field), dict):
                ref = source[field]
                name, key = str(ref.get("name", "")), str(ref.get("key", ""))
                data = self.server._data_of(plural, self.namespace, name, False)
                if data is None or key not in data:
                    if ref.get("optional"):
                        return None
                    if data is None:
                        raise _ConfigError(f'{what.lower()} "{name}" not found')
                    raise _ConfigError(f"couldn't find key {key} in {what} "
                                       f"{self.namespace}/{name}")  # fmt: skip
                return data[key].decode("utf-8", "surrogateescape")
        if isinstance(source.get("fieldRef"), dict):
            path = str(source["fieldRef"].get("fieldPath", ""))
            meta = self.pod["metadata"]
            fields = {
                "metadata.name": self.name, "metadata.namespace": self.namespace,
                "metadata.uid": self.uid, "spec.nodeName": NODE,
                "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                "status.podIP": POD_IP, "status.hostIP": POD_IP, "status.podIPs": POD_IP,
                "status.hostIPs": POD_IP,
            }  # fmt: skip
            if path in fields:
                return str(fields[path])
            if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            raise _ConfigError(f"unsupported fieldPath: {path}")
        if isinstance(source.get("resourceFieldRef"), dict):
            ref = source["resourceFieldRef"]
            which, _, resource = str(ref.get("resource", "")).partition(".")
            text = ((self.container.get("resources") or {}).get(which) or {}).get(resource)
            if text is None:
                raise _ConfigError(f"unsupported resource {ref.get('resource')}")
            divisor = parse_quantity(ref.get("divisor") or "1")
            return str(math.ceil(parse_quantity(text) / divisor))
        raise _ConfigError(f"unsupported valueFrom: {sorted(source)}")

    def _mounts(self, uid: int, gid: int) -> tuple[list[Mount], int]:
        """The container's volume mounts and its /tmp size (MiB)."""
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        mounts: list[Mount] = []
        tmpfs_mb = DEFAULT_TMPFS_MB
        for mount in self.container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            target = str(mount["mountPath"])
            read_only = bool(mount.get("readOnly"))
            if isinstance(volume.get("emptyDir"), dict):
                if target == "/tmp":  # noqa: S108 - the sandbox's own tmpfs, at this size
                    size = volume["emptyDir"].get("sizeLimit")
                    tmpfs_mb = _mib(size) if size else tmpfs_mb
                    continue
                host = self.folder / "volumes" / mount["name"]
                _own(host, uid, gid)
            elif isinstance(volume.get("persistentVolumeClaim"), dict):
                source = volume["persistentVolumeClaim"]
                read_only = read_only or bool(source.get("readOnly"))
                host = self.server._claim_folder(self.namespace, str(source.get("claimName")))
                _own(host, uid, gid)
            elif isinstance(volume.get("secret"), dict) or isinstance(
                volume.get("configMap"), dict
            ):
                host = self._files(mount["name"], volume, uid, gid)
                read_only = True
            else:
                continue  # refused before the first run
            sub = mount.get("subPath")
            if sub:
                host = host / sub
                _own(host, uid, gid)
            mounts.append(Mount(Path(os.path.realpath(host)), target, writable=not read_only))
        return mounts, tmpfs_mb

    def _files(self, volume: str, spec: Obj, uid: int, gid: int) -> Path:
        """A secret or configMap volume: its keys as files in a folder of the pod's."""
        secret = isinstance(spec.get("secret"), dict)
        source = spec["secret"] if secret else spec["configMap"]
        name = str(source.get("secretName" if secret else "name", ""))
        what = "Secret" if secret else "ConfigMap"
        data = self.server._data_of("secrets" if secret else "configmaps", self.namespace, name)
        if data is None and not source.get("optional"):
            raise _ConfigError(f'MountVolume.SetUp failed for volume "{volume}": '
                               f'{what.lower()} "{name}" not found')  # fmt: skip
        folder = self.folder / "files" / volume
        shutil.rmtree(folder, ignore_errors=True)
        _own(folder, uid, gid)
        items = source.get("items") or [{"key": k, "path": k} for k in (data or {})]
        for item in items:
            key, path = item.get("key"), str(item.get("path") or item.get("key"))
            if data is None or key not in data:
                raise _ConfigError(f"couldn't find key {key} in {what} {self.namespace}/{name}")
            if path.startswith("/") or ".." in PurePosixPath(path).parts:
                raise _ConfigError(f"invalid path {path!r} in volume {volume!r}")
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            os.chmod(target, int(item.get("mode") or source.get("defaultMode") or 0o644))
            if os.geteuid() == 0:
                os.chown(target, uid, gid)
        return folder

    # ------------------------------------------------------------------ status
    def _publish(self, **changes: Any) -> None:
        """Set status fields and write the pod's status to the server."""
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)
            self.server._set_pod_status(self, self._status())

    def _status(self) -> Obj:
        c = self.container
        ready = self.ready and not self.deleting.is_set() and self.running is not None
        container: Obj = {
            "name": c["name"], "image": c.get("image", ""), "imageID": _image_id(str(c.get(
                "image", ""))), "ready": ready, "restartCount": self.restarts,
            "started": self.started, "state": copy.deepcopy(self.state),
            "lastState": copy.deepcopy(self.last_state),
        }  # fmt: skip
        if self.container_id:
            container["containerID"] = self.container_id
        now = _now()
        conditions = []
        for kind, ok in (("PodReadyToStartContainers", self.phase != "Failed"),
                         ("Initialized", True), ("Ready", ready), ("ContainersReady", ready),
                         ("PodScheduled", True)):  # fmt: skip
            state = "True" if ok else "False"
            seen = self.transitions.get(kind)
            if seen is None or seen[0] != state:
                self.transitions[kind] = seen = (state, now)
            condition = {"type": kind, "status": state, "lastTransitionTime": seen[1]}
            if not ok and kind in ("Ready", "ContainersReady"):
                condition["reason"] = "ContainersNotReady"
                condition["message"] = f"containers with unready status: [{c['name']}]"
            conditions.append(condition)
        status: Obj = {
            "phase": self.phase, "conditions": conditions, "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}], "podIP": POD_IP, "podIPs": [{"ip": POD_IP}],
            "startTime": self.start_time, "qosClass": _qos(c), "containerStatuses": [container],
        }  # fmt: skip
        if self.pod_message:
            status["message"] = self.pod_message
        return status


# ---------------------------------------------------------------------- object helpers
def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.setdefault("metadata", {})
    return meta


def _terminating(obj: Obj) -> bool:
    return "deletionTimestamp" in _meta(obj)


def _controller_uid(obj: Obj) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _revision(sts: Obj) -> str:
    """The ``controller-revision-hash`` of a StatefulSet's template."""
    text = json.dumps(sts["spec"]["template"], sort_keys=True, separators=(",", ":"))
    return f"{_meta(sts)['name']}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _claim_names(sts: Obj) -> list[str]:
    name = _meta(sts)["name"]
    return [f"{_meta(t)['name']}-{name}-0" for t in sts["spec"].get("volumeClaimTemplates") or []]


def _claims_used(pod: Obj) -> set[str]:
    return {
        str(v["persistentVolumeClaim"].get("claimName"))
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v.get("persistentVolumeClaim"), dict)
    }


def _success(kind: _Kind, obj: Obj) -> Obj:
    meta = _meta(obj)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": meta.get("name"), "group": kind.group, "kind": kind.plural,
                        "uid": meta.get("uid")}}  # fmt: skip


@dataclass
class _Controller:
    """A StatefulSet's controller thread."""

    namespace: str
    name: str
    uid: str
    wake: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None


# ---------------------------------------------------------------------- the server
class KubeApiServer:
    """The Kubernetes API on 127.0.0.1 (a free port), running StatefulSets' pods here; see
    the module doc.

    ``runtime_images``: image reference (or prefix ending in ``:``) → local argv standing
    for its ENTRYPOINT (default: any ``…/runtime`` image is ``python -m runtime``).
    ``namespaces``: made at the start, besides Kubernetes' own. ``work_root``: where claims'
    and pods' folders go (``{work_root}/pvc/{namespace}/{claim}``); default a temporary
    folder removed by :meth:`stop`. ``probe_speedup`` divides probe periods and delays;
    ``backoff_s``, ``backoff_cap_s`` and ``backoff_reset_s`` set the restart back-off;
    ``grace_cap_s`` caps a stopping container's grace period.
    """

    def __init__(
        self,
        runtime_images: Mapping[str, Sequence[str]] | None = None,
        *,
        namespaces: Iterable[str] = ("trading-agents",),
        work_root: Path | None = None,
        probe_speedup: float = 1.0,
        backoff_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        backoff_reset_s: float = 10.0,
        grace_cap_s: float = 30.0,
    ) -> None:
        self.runtime_images = (
            None if runtime_images is None else {k: list(v) for k, v in runtime_images.items()}
        )
        self.work_root = work_root
        self.probe_speedup = probe_speedup
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.backoff_reset_s = backoff_reset_s
        self.grace_cap_s = grace_cap_s
        self._root: Path | None = None
        self._own_root = False
        self._lock = threading.RLock()
        self._store: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in KINDS}
        self._rv = 0
        self._workers: dict[str, _PodWorker] = {}  # by pod uid
        self._controllers: dict[str, _Controller] = {}  # by StatefulSet uid
        self._ports: set[int] = set()  # host ports given to pods
        self._requests: list[Request] = []
        self._failures: deque[tuple[int, str, str | None]] = deque()
        self._stopping = threading.Event()
        self._http = LocalHttpServer(_Handler, self, "kube-api-server")
        for name in (*SYSTEM_NAMESPACES, *namespaces):
            if ("", name) not in self._store["namespaces"]:
                self._store["namespaces"][("", name)] = self._new_namespace(name)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KubeApiServer:
        if not self._http.running:
            self._stopping.clear()
            if self._root is None:
                if self.work_root is None:
                    self._root = Path(tempfile.mkdtemp(prefix="kube-stand-in-"))
                    self._own_root = True
                else:
                    self._root = Path(self.work_root)
                    self._root.mkdir(parents=True, exist_ok=True)
            self._http.start()
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every pod (SIGTERM, SIGKILL after at most ``grace_s``), then serving."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
            controllers = list(self._controllers.values())
            for worker in workers:
                worker.terminate(min(grace_s, self.grace_cap_s))
            for ctl in controllers:
                ctl.wake.set()
        for worker in workers:
            worker.thread.join(timeout=grace_s + 10)
        for ctl in controllers:
            if ctl.thread is not None:
                ctl.thread.join(timeout=5)
        self._http.stop()
        if self._own_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root, self._own_root = None, False

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the client's ``Configuration.host``."""
        return f"http://127.0.0.1:{self._http.port('KubeApiServer')}"

    @property
    def root(self) -> Path:
        """The folder holding claims' and pods' folders."""
        if self._root is None:
            raise RuntimeError("KubeApiServer is not started")
        return self._root

    def client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` bound to this server (a fresh
        ``Configuration``, not the client's global default); close it when done."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def kubeconfig(self, path: Path, namespace: str = "trading-agents") -> Path:
        """A kubeconfig file for this server (``config.load_kube_config(str(path))``)."""
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
            "contexts": [{"name": "stand-in", "context": {
                "cluster": "stand-in", "user": "stand-in", "namespace": namespace}}],
        }  # fmt: skip
        path.write_text(json.dumps(doc, indent=2))
        return path

    # ------------------------------------------------------------------ for tests
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(
        self,
        status: int,
        *,
        message: str = "injected failure",
        reason: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` API requests answer ``status`` with a ``Status`` body."""
        with self._lock:
            self._failures.extend([(status, message, reason)] * times)

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        """A stored object as the API answers it (a copy), or None."""
        with self._lock:
            obj = self._store[plural].get((namespace, name))
            return None if obj is None else copy.deepcopy(obj)

    def kill(self, namespace: str, pod: str) -> int:
        """SIGKILL a pod's running container process (a crash: the pod stays, the container
        restarts); the pid killed. ``LookupError`` if nothing runs there."""
        return self._worker(namespace, pod).kill()

    def main_pid(self, namespace: str, pod: str) -> int | None:
        """The pid of a pod's running container process (below its bubblewrap), or None."""
        try:
            return self._worker(namespace, pod).main_pid()
        except LookupError:
            return None

    def host_port(self, namespace: str, pod: str, port: int | str | None = None) -> int:
        """The host port standing for a pod's container port (number or name; default its
        first)."""
        return self._worker(namespace, pod).port(port)

    def claim_folder(self, namespace: str, claim: str) -> Path:
        """The host folder of a PersistentVolumeClaim."""
        return self.root / "pvc" / namespace / claim

    def _worker(self, namespace: str, pod: str) -> _PodWorker:
        with self._lock:
            obj = self._store["pods"].get((namespace, pod))
            worker = None if obj is None else self._workers.get(_meta(obj)["uid"])
        if worker is None:
            raise LookupError(f"no pod {namespace}/{pod}")
        return worker

    # ------------------------------------------------------------------ requests
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        url = urlsplit(target)
        path = unquote(url.path)
        if len(path) > 1:
            path = path.rstrip("/")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        content_type = headers.get("Content-Type") or ""
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            return _Reply(200, text="ok")
        if method == "GET" and path == "/version":
            return _Reply(200, dict(VERSION))
        proxy = PROXY.fullmatch(url.path)
        parsed: Json = None
        bad_json: str | None = None
        if proxy:
            parsed = body.decode("utf-8", "replace") if body else None
        elif body.strip():
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                bad_json = str(exc)
        with self._lock:
            self._requests.append(Request(method, path, params, content_type, parsed))
            if self._failures:
                status, message, reason = self._failures.popleft()
                return _Reply(status, _ApiError(status, message, reason).status())
        try:
            if proxy:
                where = (
                    unquote(proxy["ns"]),
                    unquote(proxy["name"]),
                    unquote(proxy["rest"] or "/"),
                )
                return self._proxy(method, *where, url.query, headers, body)
            if bad_json is not None:
                raise _ApiError(400, f"couldn't get version/kind; json parse error: {bad_json}")
            return self._dispatch(method, path, params, content_type, parsed)
        except _ApiError as exc:
            return _Reply(exc.code, exc.status())

    def _dispatch(
        self, method: str, path: str, params: dict[str, str], content_type: str, body: Json
    ) -> _Reply:
        match = ROUTE.fullmatch(path)
        kind = KINDS.get(match["plural"]) if match else None
        if match is None or kind is None or kind.group != (match["group"] or ""):
            raise _ApiError(404, "the server could not find the requested resource")
        ns, name, sub = match["ns"], match["name"], match["sub"]
        if (ns is not None and not kind.namespaced) or (
            ns is None and kind.namespaced and (name is not None or method != "GET")
        ):
            raise _ApiError(404, "the server could not find the requested resource")
        if name is None:
            if method == "GET":
                return self._list(kind, ns, params)
            if method == "POST" and "create" in kind.verbs:
                return self._create(kind, ns or "", body, params)
            raise self._not_allowed(kind, method)
        key = (ns or "", name)
        if sub is None:
            if method == "GET":
                with self._lock:
                    return _Reply(200, self._out(kind, self._get(kind, key)))
            if method == "PUT" and "update" in kind.verbs:
                return self._replace(kind, key, body, params)
            if method == "PATCH" and "patch" in kind.verbs:
                return self._patch(kind, key, body, content_type, params)
            if method == "DELETE":
                return self._delete(kind, key, body, params)
            raise self._not_allowed(kind, method)
        if sub == "status" and kind in (STATEFULSETS, PODS) and method == "GET":
            with self._lock:
                return _Reply(200, self._out(kind, self._get(kind, key)))
        if sub == "scale" and kind is STATEFULSETS:
            if method == "GET":
                with self._lock:
                    return _Reply(200, self._scale(self._get(kind, key)))
            if method in ("PUT", "PATCH"):
                return self._rescale(key, body, content_type if method == "PATCH" else None,
                                     params)  # fmt: skip
            raise self._not_allowed(kind, method)
        if sub == "log" and kind is PODS and method == "GET":
            return self._pod_log(key, params)
        raise _ApiError(404, "the server could not find the requested resource")

    @staticmethod
    def _not_allowed(kind: _Kind, method: str) -> _ApiError:
        if kind is PODS and method == "POST":
            return _ApiError(405, "the stand-in makes pods only from StatefulSets")
        return _ApiError(405, "the server does not allow this method on the requested resource")

    # ------------------------------------------------------------------ store
    def _bump(self, obj: Obj) -> None:
        self._rv += 1
        _meta(obj)["resourceVersion"] = str(self._rv)

    def _stamp(self, obj: Obj, uid: str | None = None) -> None:
        meta = _meta(obj)
        meta["uid"] = uid or str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        self._bump(obj)

    def _new_namespace(self, name: str) -> Obj:
        self._rv += 1
        return {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()),
                         "resourceVersion": str(self._rv), "creationTimestamp": _now(),
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
        }  # fmt: skip

    def _get(self, kind: _Kind, key: tuple[str, str]) -> Obj:
        obj = self._store[kind.plural].get(key)
        if obj is None:
            raise _ApiError(404, f'{kind.resource} "{key[1]}" not found', "NotFound",
                            {"name": key[1], "group": kind.group, "kind": kind.plural})  # fmt: skip
        return obj

    @staticmethod
    def _out(kind: _Kind, obj: Obj, item: bool = False) -> Obj:
        out = copy.deepcopy(obj)
        if item:  # list items carry no kind, as the API server sends them
            out.pop("apiVersion", None)
            out.pop("kind", None)
        else:
            out["apiVersion"], out["kind"] = kind.api_version, kind.kind
        return out

    def _require_namespace(self, ns: str) -> None:
        namespace = self._store["namespaces"].get(("", ns))
        if namespace is None:
            raise _ApiError(404, f'namespaces "{ns}" not found', "NotFound",
                            {"name": ns, "kind": "namespaces"})  # fmt: skip
        if _terminating(namespace):
            raise _ApiError(403, f"unable to create new content in namespace {ns} because it "
                                 "is being terminated", "Forbidden")  # fmt: skip

    def _decode(
        self, kind: _Kind, body: Json, params: Mapping[str, str]
    ) -> tuple[Obj, tuple[str, ...]]:
        """A request's object, decoded as the API server decodes it; (object, warnings)."""
        if not isinstance(body, dict):
            raise _ApiError(400, f"the object provided is unrecognized (must be of type "
                                 f"{kind.kind})")  # fmt: skip
        if body.get("kind") not in (None, "", kind.kind) or body.get("apiVersion") not in (
            None,
            "",
            kind.api_version,
        ):
            raise _ApiError(400, f"the API version in the data ({body.get('apiVersion')}) or "
                                 f"kind ({body.get('kind')}) does not match the expected "
                                 f"{kind.api_version} {kind.kind}")  # fmt: skip
        unknown: list[str] = []
        try:
            obj = conform(body, kind.model, "", unknown)
        except _ApiError as exc:
            raise _ApiError(400, f'{kind.kind} in version "v1" cannot be handled as a '
                                 f"{kind.kind}: {exc}") from exc  # fmt: skip
        validation = params.get("fieldValidation") or "Warn"
        if unknown and validation == "Strict":
            listed = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise _ApiError(400, f"strict decoding error: {listed}")
        warnings = () if validation == "Ignore" else tuple(f'unknown field "{u}"' for u in unknown)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        _meta(obj)
        return obj, warnings

    def _prepare(self, kind: _Kind, obj: Obj, old: Obj | None) -> None:
        """Check an object to be stored (422) and fill in its defaults."""
        meta = _meta(obj)
        if kind is STATEFULSETS:
            spec = obj.get("spec")
            template = spec.get("template") if isinstance(spec, dict) else None
            if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                default_statefulset(obj)
            check_statefulset(obj, old)
        elif kind is SECRETS:
            check_secret(obj, old)
        elif kind is CONFIGMAPS:
            check_configmap(obj, old)
        elif kind is SERVICES:
            check_service(obj, old)
        elif kind is PODS:
            causes = _Causes(PODS, meta.get("name", ""))
            if old is not None and obj.get("spec") != old.get("spec"):
                causes.add(
                    "spec",
                    "Forbidden: pod updates may not change fields other than "
                    "metadata through the stand-in",
                    "FieldValueForbidden",
                )
            causes.raise_any()
        else:
            causes = _Causes(kind, str(meta.get("name") or ""))
            _check_name(causes, meta.get("name"))
            if kind is NAMESPACES and meta.get("name") and not DNS_LABEL.fullmatch(meta["name"]):
                causes.add("metadata.name", f'Invalid value: "{meta["name"]}": a lowercase '
                                            "RFC 1123 label")  # fmt: skip
            if kind is CLAIMS:
                spec = obj.get("spec") or {}
                if not spec.get("accessModes"):
                    causes.required("spec.accessModes")
                requests = (spec.get("resources") or {}).get("requests") or {}
                if "storage" not in requests:
                    causes.add("spec.resources[storage]", "Required value", "FieldValueRequired")
            causes.raise_any()
        _check_labels(_Causes(kind, ""), meta.get("labels"), "metadata.labels")

    # ------------------------------------------------------------------ verbs
    def _list(self, kind: _Kind, ns: str | None, params: Mapping[str, str]) -> _Reply:
        if _true(params.get("watch")):
            raise _ApiError(400, "the stand-in does not serve watches: poll with list or read")
        requirements = parse_selector(params.get("labelSelector") or "")
        fields = params.get("fieldSelector") or ""
        with self._lock:
            found = [
                obj for (where, _), obj in sorted(self._store[kind.plural].items())
                if (ns is None or where == ns)
                and matches(_meta(obj).get("labels"), requirements) and field_matches(obj, fields)
            ]  # fmt: skip
            items = [self._out(kind, obj, item=True) for obj in found]
            version = str(self._rv)
        meta: Obj = {"resourceVersion": version}
        limit = _int_param(params, "limit")
        token = params.get("continue") or ""
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError as exc:
                raise _ApiError(400, "invalid continue token") from exc
        if limit and limit > 0:
            rest = len(items) - (start + limit)
            items = items[start : start + limit]
            if rest > 0:
                meta["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
                meta["remainingItemCount"] = rest
        else:
            items = items[start:]
        return _Reply(200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                            "metadata": meta, "items": items})  # fmt: skip

    def _create(self, kind: _Kind, ns: str, body: Json, params: Mapping[str, str]) -> _Reply:
        obj, warnings = self._decode(kind, body, params)
        meta = _meta(obj)
        if kind.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise _ApiError(400, "the namespace of the provided object does not match the "
                                     "namespace sent on the request")  # fmt: skip
            meta["namespace"] = ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _secrets.token_hex(3)[:5]
        for server_field in SERVER_FIELDS:
            meta.pop(server_field, None)
        if kind is STATEFULSETS:
            obj.pop("status", None)
        self._prepare(kind, obj, None)
        name = str(meta["name"])
        with self._lock:
            if kind.namespaced:
                self._require_namespace(ns)
            store = self._store[kind.plural]
            key = (ns if kind.namespaced else "", name)
            if key in store:
                details = {"name": name, "group": kind.group, "kind": kind.plural}
                raise _ApiError(
                    409, f'{kind.resource} "{name}" already exists', "AlreadyExists", details
                )
            if params.get("dryRun") == "All":
                return _Reply(201, self._out(kind, obj), warnings=warnings)
            if kind is CLAIMS:
                self._store_claim(ns, obj)
            elif kind is NAMESPACES:
                obj.update({k: v for k, v in self._new_namespace(name).items()
                            if k in ("spec", "status")})  # fmt: skip
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
                self._stamp(obj)
                store[key] = obj
            else:
                if kind in (STATEFULSETS, POLICIES):
                    meta["generation"] = 1
                if kind is SERVICES:
                    self._assign_cluster_ip(obj)
                self._stamp(obj)
                store[key] = obj
            if kind is STATEFULSETS:
                obj["status"] = {"replicas": 0, "availableReplicas": 0}
                self._start_controller(obj)
            return _Reply(201, self._out(kind, obj), warnings=warnings)

    def _replace(
        self, kind: _Kind, key: tuple[str, str], body: Json, params: Mapping[str, str]
    ) -> _Reply:
        obj, warnings = self._decode(kind, body, params)
        with self._lock:
            return self._update(kind, self._get(kind, key), obj, params, warnings)

    def _patch(
        self,
        kind: _Kind,
        key: tuple[str, str],
        body: Json,
        content_type: str,
        params: Mapping[str, str],
    ) -> _Reply:
        with self._lock:
            current = self._get(kind, key)
            patched = apply_patch(self._out(kind, current), body, content_type)
            obj, warnings = self._decode(kind, patched, params)
            return self._update(kind, current, obj, params, warnings)

    def _update(
        self, kind: _Kind, current: Obj, obj: Obj, params: Mapping[str, str],
        warnings: tuple[str, ...],
    ) -> _Reply:  # fmt: skip
        """Replace ``current`` (under the lock) by ``obj``, keeping what is the server's."""
        meta, have = _meta(obj), _meta(current)
        name = have["name"]
        if meta.get("name") not in (None, name):
            raise _ApiError(400, f"the name of the object ({meta.get('name')}) does not match "
                                 f"the name on the URL ({name})")  # fmt: skip
        if kind.namespaced and meta.get("namespace") not in (None, "", have.get("namespace")):
            raise _ApiError(400, "the namespace of the provided object does not match the "
                                 "namespace sent on the request")  # fmt: skip
        if meta.get("resourceVersion") not in (None, "", have["resourceVersion"]):
            raise _ApiError(409, f'Operation cannot be fulfilled on {kind.resource} "{name}": '
                                 "the object has been modified; please apply your changes to "
                                 "the latest version and try again", "Conflict",
                            {"name": name, "group": kind.group, "kind": kind.plural})  # fmt: skip
        if meta.get("uid") not in (None, "", have["uid"]):
            raise _ApiError(409, f"Precondition failed: UID in precondition: {meta.get('uid')}, "
                                 f"UID in object meta: {have['uid']}", "Conflict")  # fmt: skip
        for field in ("name", "namespace", *SERVER_FIELDS[:-2]):
            if field in have:
                meta[field] = have[field]
            else:
                meta.pop(field, None)
        if _terminating(current):
            meta["finalizers"] = list(have.get("finalizers") or [])
        self._prepare(kind, obj, current)
        if "status" in current:
            obj["status"] = copy.deepcopy(current["status"])
        if kind in (STATEFULSETS, POLICIES) and obj.get("spec") != current.get("spec"):
            meta["generation"] = int(have.get("generation", 1)) + 1
        if params.get("dryRun") == "All" or obj == current:
            return _Reply(200, self._out(kind, obj), warnings=warnings)
        self._store[kind.plural][(have.get("namespace", ""), name)] = obj
        self._bump(obj)
        if kind is STATEFULSETS:
            self._wake(have["uid"])
        return _Reply(200, self._out(kind, obj), warnings=warnings)

    def _delete(
        self, kind: _Kind, key: tuple[str, str], body: Json, params: Mapping[str, str]
    ) -> _Reply:
        options = body if isinstance(body, dict) else {}
        policy = params.get("propagationPolicy") or options.get("propagationPolicy")
        if policy is None and (options.get("orphanDependents") is True
                               or _true(params.get("orphanDependents"))):  # fmt: skip
            policy = "Orphan"
        if policy not in (None, "Foreground", "Background", "Orphan"):
            raise _ApiError(422, f'propagationPolicy: Unsupported value: "{policy}": supported '
                                 'values: "Foreground", "Background", "Orphan"')  # fmt: skip
        grace = _int_param(params, "gracePeriodSeconds")
        if grace is None and isinstance(options.get("gracePeriodSeconds"), int):
            grace = options["gracePeriodSeconds"]
        with self._lock:
            obj = self._get(kind, key)
            meta = _meta(obj)
            wanted = options.get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if wanted.get(field) and wanted[field] != meta.get(field):
                    raise _ApiError(409, f"Precondition failed: {field} in precondition: "
                                         f"{wanted[field]}, {field} in object meta: "
                                         f"{meta.get(field)}", "Conflict")  # fmt: skip
            if params.get("dryRun") == "All" or options.get("dryRun") == ["All"]:
                return _Reply(200, self._out(kind, obj)
                              if kind in (PODS, CLAIMS, NAMESPACES, SERVICES)
                              else _success(kind, obj))  # fmt: skip
            ns = key[0]
            if kind is STATEFULSETS:
                if policy == "Foreground":
                    if not _terminating(obj):
                        meta["deletionTimestamp"] = _now()
                        meta["deletionGracePeriodSeconds"] = 0
                        meta["finalizers"] = [*meta.get("finalizers", []), "foregroundDeletion"]
                        self._bump(obj)
                    self._wake(meta["uid"])
                    return _Reply(200, self._out(kind, obj))
                self._remove_statefulset(obj, orphan=policy == "Orphan")
                return _Reply(200, _success(kind, obj))
            if kind is PODS:
                self._terminate_pod(obj, grace)
                return _Reply(200, self._out(kind, obj))
            if kind is CLAIMS:
                if not _terminating(obj):
                    meta["deletionTimestamp"] = _now()
                    meta["deletionGracePeriodSeconds"] = 0
                    self._bump(obj)
                out = self._out(kind, obj)
                self._finalize(ns)
                return _Reply(200, out)
            if kind is NAMESPACES:
                self._delete_namespace(obj)
                return _Reply(200, self._out(kind, obj))
            del self._store[kind.plural][key]
            if kind is SERVICES:  # as the API server answers a Service's deletion
                return _Reply(200, self._out(kind, obj))
            return _Reply(200, _success(kind, obj))

    def _delete_namespace(self, namespace: Obj) -> None:
        """Under the lock: the namespace Terminating, all in it going; it goes when empty."""
        meta = _meta(namespace)
        ns = meta["name"]
        if not _terminating(namespace):
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            namespace["status"] = {"phase": "Terminating"}
            self._bump(namespace)
        for sts in [o for (w, _), o in self._store["statefulsets"].items() if w == ns]:
            self._remove_statefulset(sts, orphan=False)
        for plural in ("secrets", "configmaps", "services", "networkpolicies"):
            for key in [k for k in self._store[plural] if k[0] == ns]:
                del self._store[plural][key]
        for claim in [o for (w, _), o in self._store["persistentvolumeclaims"].items() if w == ns]:
            if not _terminating(claim):
                _meta(claim)["deletionTimestamp"] = _now()
                self._bump(claim)
        for pod in [o for (w, _), o in self._store["pods"].items() if w == ns]:
            self._terminate_pod(pod, None)
        self._finalize(ns)

    # ------------------------------------------------------------------ scale, logs, proxy
    def _scale(self, sts: Obj) -> Obj:
        meta = _meta(sts)
        replicas = int(sts["spec"].get("replicas", 1))
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": replicas} if replicas else {},  # omitempty, as the API server
            "status": {"replicas": int((sts.get("status") or {}).get("replicas", 0)),
                       "selector": format_selector(selector_requirements(
                           sts["spec"].get("selector")))},
        }  # fmt: skip

    def _rescale(
        self, key: tuple[str, str], body: Json, patch_type: str | None, params: Mapping[str, str]
    ) -> _Reply:
        with self._lock:
            sts = self._get(STATEFULSETS, key)
            doc = body if patch_type is None else apply_patch(self._scale(sts), body, patch_type)
            if not isinstance(doc, dict):
                raise _ApiError(400, "the object provided is unrecognized (must be of type Scale)")
            unknown: list[str] = []
            try:
                scale = conform(doc, "V1Scale", "", unknown)
            except _ApiError as exc:
                raise _ApiError(400, f'Scale in version "v1" cannot be handled as a Scale: '
                                     f"{exc}") from exc  # fmt: skip
            meta = _meta(sts)
            version = (scale.get("metadata") or {}).get("resourceVersion")
            if version not in (None, "", meta["resourceVersion"]):
                raise _ApiError(409, f'Operation cannot be fulfilled on statefulsets.apps '
                                     f'"{key[1]}": the object has been modified; please apply '
                                     "your changes to the latest version and try again",
                                "Conflict")  # fmt: skip
            replicas = int((scale.get("spec") or {}).get("replicas", 0))
            causes = _Causes(_Kind("scale", "Scale", "autoscaling", "V1Scale"), key[1])
            if replicas < 0:
                causes.add("spec.replicas", f"Invalid value: {replicas}: must be greater than "
                                            "or equal to 0")  # fmt: skip
            elif replicas > 1:
                causes.add("spec.replicas", f"Invalid value: {replicas}: the stand-in runs at "
                                            "most one replica")  # fmt: skip
            causes.raise_any()
            if params.get("dryRun") != "All" and replicas != sts["spec"].get("replicas"):
                sts["spec"]["replicas"] = replicas
                meta["generation"] = int(meta.get("generation", 1)) + 1
                self._bump(sts)
                self._wake(meta["uid"])
            out = self._scale(sts)
            out["spec"] = {"replicas": replicas} if replicas else {}
            return _Reply(200, out)

    def _pod_log(self, key: tuple[str, str], params: Mapping[str, str]) -> _Reply:
        with self._lock:
            pod = self._get(PODS, key)
            worker = self._workers.get(_meta(pod)["uid"])
            names = [c["name"] for c in pod["spec"]["containers"]]
        wanted = params.get("container") or names[0]
        if wanted not in names:
            raise _ApiError(400, f"container {wanted} is not valid for pod {key[1]}")
        if worker is None:
            raise _ApiError(400, f'container "{wanted}" in pod "{key[1]}" is terminated')
        text = worker.log_text(
            _true(params.get("previous")),
            tail=_int_param(params, "tailLines"),
            since_s=_int_param(params, "sinceSeconds"),
            timestamps=_true(params.get("timestamps")),
            limit_bytes=_int_param(params, "limitBytes"),
        )
        return _Reply(200, text=text)

    def _proxy(
        self,
        method: str,
        ns: str,
        target: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Reply:
        name, _, port_text = target.partition(":")
        with self._lock:
            pod = self._get(PODS, (ns, name))
            worker = self._workers.get(_meta(pod)["uid"])
            phase = (pod.get("status") or {}).get("phase")
        if worker is None or phase != "Running" or worker.running is None:
            raise _ApiError(503, f'error trying to reach service: pod "{name}" is not running',
                            "ServiceUnavailable")  # fmt: skip
        try:
            port = worker.port(port_text or None)
        except LookupError as exc:
            raise _ApiError(503, f"error trying to reach service: {exc}",
                            "ServiceUnavailable") from exc  # fmt: skip
        conn = http.client.HTTPConnection(POD_IP, port, timeout=30)
        sent = {k: v for k, v in headers.items()
                if k.lower() in ("content-type", "accept", "user-agent")}  # fmt: skip
        try:
            conn.request(method, path + (f"?{query}" if query else ""), body=body or None,
                         headers=sent)  # fmt: skip
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _ApiError(503, f"error trying to reach service: dial tcp {POD_IP}:{port}: "
                                 f"{exc}", "ServiceUnavailable") from exc  # fmt: skip
        finally:
            conn.close()
        kind = reply.getheader("Content-Type") or "application/octet-stream"
        return _Reply(reply.status, raw=data, content_type=kind)

    # ------------------------------------------------------------------ controllers
    def _start_controller(self, sts: Obj) -> None:
        meta = _meta(sts)
        ctl = _Controller(meta["namespace"], meta["name"], meta["uid"])
        ctl.thread = threading.Thread(target=self._control, args=(ctl,),
                                      name=f"statefulset-{ctl.name}", daemon=True)  # fmt: skip
        self._controllers[ctl.uid] = ctl
        ctl.thread.start()

    def _wake(self, uid: str | None) -> None:
        ctl = self._controllers.get(uid or "")
        if ctl is not None:
            ctl.wake.set()

    def _wake_namespace(self, ns: str) -> None:
        for ctl in self._controllers.values():
            if ctl.namespace == ns:
                ctl.wake.set()

    def _control(self, ctl: _Controller) -> None:
        while True:
            ctl.wake.wait(CONTROL_S)
            ctl.wake.clear()
            with self._lock:
                try:
                    going = self._stopping.is_set() or not self._reconcile(ctl)
                except Exception:  # a bug of ours: the controller stays, and says so
                    log.exception("kube stand-in: statefulset %s/%s", ctl.namespace, ctl.name)
                    going = False
                if going:
                    self._controllers.pop(ctl.uid, None)
                    return

    def _reconcile(self, ctl: _Controller) -> bool:
        """Under the lock: bring a StatefulSet's pod and status to its spec; False once the
        StatefulSet is gone."""
        sts = self._store["statefulsets"].get((ctl.namespace, ctl.name))
        if sts is None or _meta(sts)["uid"] != ctl.uid:
            return False
        spec = sts["spec"]
        deleting = _terminating(sts)
        want = 0 if deleting else int(spec.get("replicas", 1))
        pod = self._store["pods"].get((ctl.namespace, f"{ctl.name}-0"))
        owner = None if pod is None else _controller_uid(pod)
        requirements = selector_requirements(spec.get("selector"))
        if (pod is not None and owner is None and not _terminating(pod) and not deleting
                and matches(_meta(pod).get("labels"), requirements)):  # fmt: skip
            _meta(pod)["ownerReferences"] = [self._owner(sts)]  # adopted, as an orphan is
            self._bump(pod)
            owner = ctl.uid
        ours = pod if owner == ctl.uid else None
        revision = _revision(sts)
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if ours is not None and not _terminating(ours):
            stale = _meta(ours).get("labels", {}).get("controller-revision-hash") != revision
            if want == 0 or (stale and strategy == "RollingUpdate"):
                self._terminate_pod(ours, None)
        if pod is None and want >= 1 and not self._stopping.is_set():
            namespace = self._store["namespaces"].get(("", ctl.namespace))
            if namespace is not None and not _terminating(namespace):
                ours = self._create_pod(sts, revision)
        self._set_sts_status(sts, ours, revision)
        if want == 0 and ours is None:
            retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
            if deleting:
                del self._store["statefulsets"][(ctl.namespace, ctl.name)]
                if retention.get("whenDeleted") == "Delete":
                    self._delete_claims(sts)
                return False
            if retention.get("whenScaled") == "Delete":
                self._delete_claims(sts)
        return True

    def _set_sts_status(self, sts: Obj, pod: Obj | None, revision: str) -> None:
        ready = current = 0
        if pod is not None:
            status = pod.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if status.get("phase") == "Running" and conditions.get("Ready") == "True":
                ready = 1
            labels = _meta(pod).get("labels") or {}
            if not _terminating(pod) and labels.get("controller-revision-hash") == revision:
                current = 1
        wanted: Obj = {
            "observedGeneration": _meta(sts).get("generation", 1),
            "replicas": 0 if pod is None else 1, "availableReplicas": ready,
            "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
        }  # fmt: skip
        for name, count in (("readyReplicas", ready), ("currentReplicas", current),
                            ("updatedReplicas", current)):  # fmt: skip
            if count:  # omitempty, as the API server: zero counts are left out
                wanted[name] = count
        if sts.get("status") != wanted:
            sts["status"] = wanted
            self._bump(sts)

    @staticmethod
    def _owner(sts: Obj) -> Obj:
        meta = _meta(sts)
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip

    def _create_pod(self, sts: Obj, revision: str) -> Obj | None:
        """Under the lock: the StatefulSet's pod, its claims made first (None while one of
        them is still going away)."""
        meta, spec = _meta(sts), sts["spec"]
        ns, name = meta["namespace"], meta["name"]
        pod_name = f"{name}-0"
        template = copy.deepcopy(spec["template"])
        pod_spec: Obj = template["spec"]
        claim_volumes = []
        for claim_template in spec.get("volumeClaimTemplates") or []:
            volume = _meta(claim_template)["name"]
            claim = f"{volume}-{name}-0"
            existing = self._store["persistentvolumeclaims"].get((ns, claim))
            if existing is not None and _terminating(existing):
                return None  # wait for it to go, as the controller does
            if existing is None:
                self._make_claim(ns, claim, claim_template, sts)
            claim_volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim}})
        if claim_volumes:
            taken = {v["name"] for v in claim_volumes}
            pod_spec["volumes"] = [v for v in pod_spec.get("volumes") or []
                                   if v["name"] not in taken] + claim_volumes  # fmt: skip
        pod_spec.update(hostname=pod_name, nodeName=NODE)
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        pod_spec.setdefault("serviceAccountName", "default")
        host_ports: dict[int, int] = {}
        for port in pod_spec["containers"][0].get("ports") or []:
            host_ports[int(port["containerPort"])] = self._free_port()
        tmeta = template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), "controller-revision-hash": revision,
                  "statefulset.kubernetes.io/pod-name": pod_name,
                  "apps.kubernetes.io/pod-index": "0"}  # fmt: skip
        annotations = dict(tmeta.get("annotations") or {})
        if host_ports:
            annotations[HOST_PORTS] = json.dumps({str(k): v for k, v in host_ports.items()})
        pod_meta: Obj = {"name": pod_name, "generateName": f"{name}-", "namespace": ns,
                         "labels": labels, "ownerReferences": [self._owner(sts)]}  # fmt: skip
        if annotations:
            pod_meta["annotations"] = annotations
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": pod_spec,
            "status": {"phase": "Pending", "qosClass": _qos(pod_spec["containers"][0])},
        }
        self._stamp(pod)
        pod_meta["generation"] = 1
        self._store["pods"][(ns, pod_name)] = pod
        worker = _PodWorker(self, pod, host_ports)
        self._workers[pod_meta["uid"]] = worker
        worker.thread.start()
        return pod

    def _assign_cluster_ip(self, service: Obj) -> None:
        """Under the lock: a Service's virtual IP (none for a headless one); stored only."""
        spec = service["spec"]
        if spec.get("clusterIP") != "None":
            taken = {s["spec"].get("clusterIP") for s in self._store["services"].values()}
            n = next(i for i in range(1, 65000) if f"10.96.{i // 250}.{i % 250 + 1}" not in taken)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        service["status"] = {"loadBalancer": {}}

    def _free_port(self) -> int:
        for _ in range(50):
            port = free_port()
            if port not in self._ports:
                self._ports.add(port)
                return port
        raise RuntimeError("no free port")

    def _terminate_pod(self, pod: Obj, grace: int | None) -> None:
        """Under the lock: the pod is going (graceful); its kubelet stops its container and
        removes it."""
        meta = _meta(pod)
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        if not _terminating(pod) or grace < meta.get("deletionGracePeriodSeconds", grace + 1):
            meta.setdefault("deletionTimestamp", _now())
            meta["deletionGracePeriodSeconds"] = grace
            self._bump(pod)
        worker = self._workers.get(meta["uid"])
        if worker is not None:
            worker.terminate(min(float(grace), self.grace_cap_s))
        else:
            self._store["pods"].pop((meta["namespace"], meta["name"]), None)

    def _set_pod_status(self, worker: _PodWorker, status: Obj) -> None:
        with self._lock:
            pod = self._store["pods"].get((worker.namespace, worker.name))
            if pod is None or _meta(pod)["uid"] != worker.uid or pod.get("status") == status:
                return
            pod["status"] = status
            self._bump(pod)
            self._wake(_controller_uid(pod))

    def _pod_finished(self, worker: _PodWorker) -> None:
        with self._lock:
            key = (worker.namespace, worker.name)
            pod = self._store["pods"].get(key)
            if pod is not None and _meta(pod)["uid"] == worker.uid:
                del self._store["pods"][key]
            self._workers.pop(worker.uid, None)
            self._ports.difference_update(worker.host_ports.values())
            self._wake_namespace(worker.namespace)
            self._finalize(worker.namespace)

    def _remove_statefulset(self, sts: Obj, *, orphan: bool) -> None:
        """Under the lock: the StatefulSet gone now; its pod going after it (Background) or
        left running, unowned (Orphan)."""
        meta = _meta(sts)
        ns, uid = meta["namespace"], meta["uid"]
        self._store["statefulsets"].pop((ns, meta["name"]), None)
        for pod in [p for (w, _), p in self._store["pods"].items() if w == ns]:
            if _controller_uid(pod) != uid:
                continue
            if orphan:
                _meta(pod)["ownerReferences"] = [r for r in _meta(pod)["ownerReferences"]
                                                 if r.get("uid") != uid]  # fmt: skip
                self._bump(pod)
            else:
                self._terminate_pod(pod, None)
        retention = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if retention.get("whenDeleted") == "Delete":
            self._delete_claims(sts)
        self._wake(uid)

    # ------------------------------------------------------------------ claims and secrets
    def _make_claim(self, ns: str, name: str, template: Obj, sts: Obj) -> Obj:
        """Under the lock: a claim from a StatefulSet's template."""
        tmeta = _meta(template)
        labels = {**(tmeta.get("labels") or {}),
                  **((sts["spec"].get("selector") or {}).get("matchLabels") or {})}  # fmt: skip
        claim: Obj = {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": copy.deepcopy(template.get("spec") or {}),
        }  # fmt: skip
        if tmeta.get("annotations"):
            claim["metadata"]["annotations"] = dict(tmeta["annotations"])
        return self._store_claim(ns, claim)

    def _store_claim(self, ns: str, claim: Obj) -> Obj:
        meta, spec = _meta(claim), claim.setdefault("spec", {})
        self._stamp(claim)
        meta["finalizers"] = ["kubernetes.io/pvc-protection"]
        spec.setdefault("storageClassName", "standard")
        spec.setdefault("volumeMode", "Filesystem")
        spec["volumeName"] = f"pvc-{meta['uid']}"
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")
        claim["status"] = {"phase": "Bound", "accessModes": list(spec.get("accessModes") or []),
                           "capacity": {"storage": storage}}  # fmt: skip
        folder = self.claim_folder(ns, meta["name"])
        shutil.rmtree(folder, ignore_errors=True)  # a new claim: a fresh volume
        folder.mkdir(parents=True)
        self._store["persistentvolumeclaims"][(ns, meta["name"])] = claim
        return claim

    def _delete_claims(self, sts: Obj) -> None:
        ns = _meta(sts)["namespace"]
        for name in _claim_names(sts):
            claim = self._store["persistentvolumeclaims"].get((ns, name))
            if claim is not None and not _terminating(claim):
                _meta(claim)["deletionTimestamp"] = _now()
                self._bump(claim)
        self._finalize(ns)

    def _finalize(self, ns: str) -> None:
        """Under the lock: claims being deleted that no pod mounts go (their folders too); a
        terminating namespace with nothing left in it goes."""
        used: set[str] = set()
        for (where, _), pod in self._store["pods"].items():
            if where == ns:
                used |= _claims_used(pod)
        claims = self._store["persistentvolumeclaims"]
        for key in [k for k, c in claims.items() if k[0] == ns and _terminating(c)]:
            if key[1] not in used:
                del claims[key]
                shutil.rmtree(self.claim_folder(ns, key[1]), ignore_errors=True)
        namespace = self._store["namespaces"].get(("", ns))
        if namespace is not None and _terminating(namespace) and not any(
            k[0] == ns for plural, store in self._store.items() if plural != "namespaces"
            for k in store
        ):  # fmt: skip
            del self._store["namespaces"][("", ns)]

    def _claim_folder(self, ns: str, claim: str) -> Path:
        with self._lock:
            found = self._store["persistentvolumeclaims"].get((ns, claim))
            if found is None:
                raise _ConfigError(f'persistentvolumeclaim "{claim}" not found')
        return self.claim_folder(ns, claim)

    def _data_of(
        self, plural: str, ns: str, name: str, binary: bool = True
    ) -> dict[str, bytes] | None:
        """A Secret's or ConfigMap's keys and values (bytes; a ConfigMap's ``binaryData``
        only with ``binary``, as for volumes, not for env); None if there is none."""
        with self._lock:
            found = self._store[plural].get((ns, name))
            if found is None:
                return None
            if plural == "secrets":
                return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
            data = {k: v.encode() for k, v in (found.get("data") or {}).items()}
            if binary:
                data |= {k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()}
            return data

    def _image_argv(self, image: str) -> list[str] | None:
        """The local argv standing for an image's ENTRYPOINT; None for an unknown image."""
        if self.runtime_images is None:
            import sys

            return [sys.executable, "-m", "runtime"] if _default_runtime(image) else None
        for ref, argv in self.runtime_images.items():
            if image == ref or (ref.endswith(":") and image.startswith(ref)):
                return list(argv)
        return None


# ---------------------------------------------------------------------- HTTP
class _Handler(StandInHandler):
    def serve(self, method: str, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items()}
        try:
            reply = self.owner.handle(method, self.path, headers, body)
        except Exception:
            log.exception("KubeApiServer failed on %s %s", method, self.path)
            error = _ApiError(500, "internal error in the Kubernetes stand-in")
            reply = _Reply(500, error.status())
        if reply.raw is not None:
            payload, kind = reply.raw, reply.content_type
        elif reply.text is not None:
            payload, kind = reply.text.encode(), "text/plain; charset=utf-8"
        else:
            payload, kind = json.dumps(reply.body).encode(), "application/json"
        sent = [("Content-Type", kind), ("Audit-Id", str(uuid.uuid4()))]
        sent += [("Warning", f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"')
                 for w in reply.warnings]  # fmt: skip
        self.answer(reply.status, payload, sent)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("KubeApiServer: " + format, *args)
