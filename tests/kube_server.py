"""The Kubernetes API stand-in (``infra/emulators/kubernetes.py``) for tests.

Fixture (import it into a test module: ``from tests.kube_server import kube_server_fixture``):
``kube_server``, one stand-in for the whole session, its runtime images as by default
(``…/runtime`` is ``python -m runtime``), its namespace ``trading-agents``
(:data:`NAMESPACE`) made. A test needing other runtime images, faster probes or a shorter
back-off starts its own ``KubeApiServer(runtime_images=…, probe_speedup=…, backoff_s=…)``:
it is in-process and starts in milliseconds.

Helpers: :func:`kube_apis` (an ``ApiClient`` on a server and its ``AppsV1Api`` and
``CoreV1Api``, closed afterwards), :func:`hardened_statefulset` (a StatefulSet manifest
with every hardening field the stand-in demands, to vary), :func:`eventually`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import pytest
from kubernetes import client

from infra.emulators.kubernetes import KubeApiServer
from tests.shared_server import SharedServer

__all__ = [
    "NAMESPACE",
    "KubeApiServer",
    "KubeApis",
    "eventually",
    "hardened_statefulset",
    "kube_apis",
    "kube_server_fixture",
]

NAMESPACE = "trading-agents"
RUN_AS = 10001
T = TypeVar("T")

_SHARED: SharedServer[KubeApiServer] = SharedServer(
    lambda: KubeApiServer(namespaces=(NAMESPACE,)).start(), lambda s: s.stop()
)


# Registered under the short name; imported by its function name (so a test's argument does
# not shadow an import): ``from tests.kube_server import kube_server_fixture``.
@pytest.fixture(scope="session", name="kube_server")
def kube_server_fixture() -> Iterator[KubeApiServer]:
    """One Kubernetes stand-in for the whole test session, stopped at its end (its pods
    stopped)."""
    with _SHARED.use() as server:
        yield server


class KubeApis(NamedTuple):
    api: client.ApiClient
    apps: client.AppsV1Api
    core: client.CoreV1Api


@contextlib.contextmanager
def kube_apis(server: KubeApiServer) -> Iterator[KubeApis]:
    """An ``ApiClient`` bound to ``server`` with its ``AppsV1Api`` and ``CoreV1Api``."""
    api = server.client()
    try:
        yield KubeApis(api, client.AppsV1Api(api), client.CoreV1Api(api))
    finally:
        api.close()


def eventually(check: Callable[[], T | None], timeout: float = 15, what: str = "") -> T:
    """``check()``'s first truthy value, asked every 50 ms; AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def hardened_statefulset(
    name: str,
    image: str,
    args: Sequence[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    replicas: int = 1,
    env: Sequence[Mapping[str, Any]] = (),
    port: int | None = 8080,
    probes: Mapping[str, Mapping[str, Any]] | None = None,
    claim: str | None = "session",
    mount: str = "/session",
    memory: str = "512Mi",
    grace_s: int = 5,
) -> dict[str, Any]:
    """A StatefulSet ``name`` of one container ``app`` running ``image`` with ``args``, as our
    manifests harden it: non-root numeric uid, read-only root, no privilege escalation, all
    capabilities dropped, the runtime's seccomp profile, requests and limits, a memory
    ``/tmp``; a claim template ``claim`` mounted at ``mount``; the pods labelled ``app:
    paper``, ``agent: {name}`` and ``labels``; ``port`` (named ``http``) given to the
    container as ``TRADEOPS_HTTP_PORT``."""
    pod_labels = {"app": "paper", "agent": name, **(labels or {})}
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "args": list(args),
        "env": [dict(e) for e in env],
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": memory},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port}]
        container["env"].append({"name": "TRADEOPS_HTTP_PORT", "value": str(port)})
    for kind, probe in (probes or {}).items():
        container[kind] = copy.deepcopy(dict(probe))
    spec: dict[str, Any] = {
        "serviceName": "paper",
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "paper", "agent": name}},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS,
                    "runAsGroup": RUN_AS,
                    "fsGroup": RUN_AS,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": grace_s,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
            },
        },
    }
    if claim is not None:
        container["volumeMounts"].append({"name": claim, "mountPath": mount})
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {"app": "paper", "agent": name}},
        "spec": spec,
    }
