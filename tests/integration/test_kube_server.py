"""The Kubernetes API stand-in (``infra/emulators/kubernetes.py``) through the official
client (``kubernetes.client.AppsV1Api``/``CoreV1Api``): its API as the client sees it, and
the pods it really runs here in our bubblewrap sandbox — a small Python HTTP server
standing for our runtime image — probed, restarted, scaled to zero and deleted, their
volume kept; and pods refused without the hardening our manifests set."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from infra.emulators.kubernetes import HOST_PORTS, KubeApiServer, parse_quantity
from tests.kube_server import NAMESPACE, KubeApis, eventually, hardened_statefulset, kube_apis

NS = NAMESPACE
PY_IMAGE = "test/runtime:1"  # a "runtime image" whose ENTRYPOINT is `python -c`: args[0] runs
# The container: serves /health and /ready on TRADEOPS_HTTP_PORT, counts its starts in the
# claim's folder, says what it is told to (SHOW_ENV), exits when told (EXIT_AT_ONCE, or
# GET /exit/N), turns sick after SICK_AFTER health checks, notes a SIGTERM and ends.
APP = r"""
import http.server, json, os, signal, sys, threading
port = int(os.environ["TRADEOPS_HTTP_PORT"])
starts = 0
if os.path.isdir("/session"):
    try:
        starts = int(open("/session/starts").read())
    except OSError:
        pass
    starts += 1
    with open("/session/starts", "w") as f:
        f.write(str(starts))
print(f"start {starts} uid={os.getuid()} port={port}", flush=True)
for name in filter(None, os.environ.get("SHOW_ENV", "").split(",")):
    print(f"env {name}={os.environ.get(name)}", flush=True)
for path in filter(None, os.environ.get("SHOW_FILES", "").split(",")):
    print(f"file {path}={open(path).read()}", flush=True)
if os.environ.get("EXIT_AT_ONCE"):
    print("exiting", flush=True)
    sys.exit(int(os.environ["EXIT_AT_ONCE"]))
sick_after = int(os.environ.get("SICK_AFTER", "-1"))
checks = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global checks
        if self.path == "/health":
            checks += 1
            sick = 0 <= sick_after < checks
            self.reply(500 if sick else 200, {"status": "sick" if sick else "ok", "starts": starts})
        elif self.path == "/ready":
            self.reply(200, {"ready": True})
        elif self.path.startswith("/exit/"):
            self.reply(200, {"exiting": True})
            threading.Timer(0.05, os._exit, (int(self.path[6:]),)).start()
        else:
            self.reply(404, {})
    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
def on_term(signum, frame):
    if os.path.isdir("/session"):
        with open("/session/events", "a") as f:
            f.write("term\n")
    print("terminating", flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""
PROBES = {  # the startup probe holds the others while the container starts, as it should
    "startupProbe": {
        "httpGet": {"path": "/health", "port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 50,
    },
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    "livenessProbe": {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 1,
        "failureThreshold": 2,
    },
}


# ---------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def server() -> Iterator[KubeApiServer]:
    """A stand-in whose runtime image is ``python -c``, probes ten times faster, a short
    back-off."""
    with KubeApiServer(
        runtime_images={PY_IMAGE: [sys.executable, "-c"]},
        probe_speedup=10,
        backoff_s=0.2,
        backoff_cap_s=1.0,
        grace_cap_s=5,
    ) as stand_in:
        yield stand_in


@pytest.fixture
def k8s(server: KubeApiServer) -> Iterator[KubeApis]:
    with kube_apis(server) as apis:
        yield apis


def app(mark: str) -> str:
    """The container's code, marked so its processes can be found in /proc."""
    return f"# {mark}\n{APP}"


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def status_of(error: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(error.value.body)
    return doc


def pod_of(core: client.CoreV1Api, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, NS)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def ready_pod(core: client.CoreV1Api, name: str, restarts: int | None = None) -> Callable[[], Any]:
    def check() -> client.V1Pod | None:
        pod = pod_of(core, name)
        if pod is None or pod.metadata.deletion_timestamp or not pod.status.container_statuses:
            return None
        status = pod.status.container_statuses[0]
        if not status.ready or (restarts is not None and status.restart_count != restarts):
            return None
        return pod

    return check


def gone(read: Callable[[], Any]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            read()
        except ApiException as exc:
            return exc.status == 404
        return False

    return check


def cleanup(k8s: KubeApis, *names: str) -> None:
    """Delete StatefulSets (Foreground) and wait for them, their pods, their processes."""
    for name in names:
        try:
            k8s.apps.delete_namespaced_stateful_set(name, NS, propagation_policy="Foreground")
        except ApiException as exc:
            assert exc.status == 404
    for name in names:
        eventually(gone(lambda n=name: k8s.apps.read_namespaced_stateful_set(n, NS)),
                   what=f"{name} deleted")  # fmt: skip


def raw(
    server: KubeApiServer, method: str, path: str, body: Any = None, content_type: str = ""
) -> tuple[int, list[str], Any]:
    """A request as any HTTP client sends it (what the official client refuses to send):
    (status, its Warning headers, its JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as reply:
            warnings = reply.headers.get_all("Warning") or []
            return reply.status, warnings, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_all("Warning") or [], json.loads(exc.read() or b"null")


def log_of(core: client.CoreV1Api, pod: str, **options: Any) -> str:
    text: str = core.read_namespaced_pod_log(pod, NS, container="app", **options)
    return text


# ---------------------------------------------------------------------- the whole life
def test_a_statefulset_runs_crashes_restarts_scales_down_and_keeps_its_volume(
    server: KubeApiServer, k8s: KubeApis
) -> None:
    apps, core = k8s.apps, k8s.core
    mark = f"life-{uuid.uuid4().hex}"
    body = hardened_statefulset("paper-life", PY_IMAGE, [app(mark)], probes=PROBES)
    try:
        created = apps.create_namespaced_stateful_set(NS, body)
        assert created.metadata.uid and created.metadata.generation == 1
        assert created.metadata.creation_timestamp and created.metadata.resource_version
        assert created.spec.replicas == 1 and created.spec.service_name == "paper"
        assert created.spec.update_strategy.type == "RollingUpdate"  # the server's defaults
        assert created.spec.template.spec.restart_policy == "Always"

        # Running and Ready: the readiness probe reached the container's HTTP server
        sts = eventually(
            lambda: (
                (s := apps.read_namespaced_stateful_set("paper-life", NS)).status.ready_replicas
                == 1
                and s
            ),
            what="readyReplicas 1",
        )
        assert sts.status.replicas == 1 and sts.status.available_replicas == 1
        assert sts.status.observed_generation == 1 and sts.status.updated_replicas == 1
        pod = eventually(ready_pod(core, "paper-life-0"), what="pod ready")
        first_uid = pod.metadata.uid
        assert pod.status.phase == "Running" and pod.status.pod_ip == "127.0.0.1"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        [state] = pod.status.container_statuses
        assert (state.name, state.image, state.restart_count, state.started) == (
            "app", PY_IMAGE, 0, True)  # fmt: skip
        assert state.state.running.started_at and state.image_id.startswith("test/runtime@sha256:")
        labels = pod.metadata.labels
        assert labels["statefulset.kubernetes.io/pod-name"] == "paper-life-0"
        assert labels["controller-revision-hash"] == sts.status.update_revision
        assert labels["agent"] == "paper-life"
        [owner] = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "StatefulSet", "paper-life", created.metadata.uid, True)  # fmt: skip
        assert pod.spec.containers[0].args == [app(mark)]
        [claim_volume] = [v for v in pod.spec.volumes if v.persistent_volume_claim]
        assert claim_volume.persistent_volume_claim.claim_name == "session-paper-life-0"
        [listed] = core.list_namespaced_pod(NS, label_selector="app=paper,agent=paper-life").items
        assert listed.metadata.uid == first_uid

        # its HTTP /health: on the host port its TRADEOPS_HTTP_PORT was given, and through
        # the API server's pod proxy
        port = server.host_port(NS, "paper-life-0", "http")
        assert json.loads(pod.metadata.annotations[HOST_PORTS]) == {"8080": port}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            assert json.loads(reply.read()) == {"status": "ok", "starts": 1}
        proxied = core.connect_get_namespaced_pod_proxy_with_path(
            "paper-life-0:http", NS, "health", _preload_content=False
        )
        assert json.loads(proxied.data) == {"status": "ok", "starts": 1}

        # its log, as the client reads it (a str)
        log = eventually(lambda: log_of(core, "paper-life-0"), what="a log")
        assert log == f"start 1 uid=10001 port={port}\n"
        assert log_of(core, "paper-life-0", tail_lines=1) == log
        assert log_of(core, "paper-life-0", tail_lines=0) == ""
        stamped = log_of(core, "paper-life-0", timestamps=True)
        assert stamped.endswith(" " + log) and stamped[:4].isdigit()

        # a crash (SIGKILL): the same pod, its container restarted and counted
        killed = server.kill(NS, "paper-life-0")
        pod = eventually(ready_pod(core, "paper-life-0", restarts=1), what="restarted")
        assert pod.metadata.uid == first_uid and killed not in processes_with(mark)
        [state] = pod.status.container_statuses
        assert state.last_state.terminated.exit_code == 137  # 128 + SIGKILL, as a runtime says
        assert state.last_state.terminated.reason == "Error"
        assert state.last_state.terminated.started_at <= state.last_state.terminated.finished_at
        folder = server.claim_folder(NS, "session-paper-life-0")
        assert (folder / "starts").read_text() == "2"  # the claim's folder outlived the crash
        assert log_of(core, "paper-life-0", previous=True) == f"start 1 uid=10001 port={port}\n"
        eventually(lambda: log_of(core, "paper-life-0").startswith("start 2 "), what="log 2")

        # told to exit 3 (through the proxy): Error 3, restarted again
        core.connect_get_namespaced_pod_proxy_with_path(
            "paper-life-0:8080", NS, "exit/3", _preload_content=False
        )
        pod = eventually(ready_pod(core, "paper-life-0", restarts=2), what="restarted again")
        assert pod.status.container_statuses[0].last_state.terminated.exit_code == 3

        # the pod deleted: stopped gracefully (SIGTERM reached it), made again, same name
        deleted = core.delete_namespaced_pod("paper-life-0", NS)
        assert deleted.metadata.uid == first_uid and deleted.metadata.deletion_timestamp
        assert deleted.metadata.deletion_grace_period_seconds == 5
        pod = eventually(
            lambda: (
                (p := ready_pod(core, "paper-life-0", restarts=0)()) is not None
                and p.metadata.uid != first_uid
                and p
            ),
            what="a new pod",
        )
        assert pod.metadata.name == "paper-life-0"
        assert (folder / "events").read_text() == "term\n"
        assert (folder / "starts").read_text() == "4"

        # scaled to zero: the pod stopped and gone, its processes too
        scale = apps.patch_namespaced_stateful_set_scale(
            "paper-life", NS, {"spec": {"replicas": 0}}
        )
        assert scale.kind == "Scale" and scale.spec.replicas is None  # 0 is left out (omitempty)
        assert scale.status.selector == "agent=paper-life,app=paper"

        def no_pods() -> bool:
            return not core.list_namespaced_pod(NS, label_selector="agent=paper-life").items

        eventually(no_pods, what="no pods")
        scale = apps.read_namespaced_stateful_set_scale("paper-life", NS)
        assert scale.status.replicas == 0
        sts = eventually(
            lambda: (
                (s := apps.read_namespaced_stateful_set("paper-life", NS)).status.replicas == 0
                and s
            ),
            what="status 0",
        )
        assert sts.spec.replicas == 0 and sts.status.ready_replicas is None
        assert sts.metadata.generation == 2 and sts.status.observed_generation == 2
        assert processes_with(mark) == []
        assert (folder / "events").read_text() == "term\nterm\n"

        # deleted (Background, the default): gone at once; its claim kept
        done = apps.delete_namespaced_stateful_set("paper-life", NS)
        assert done["kind"] == "Status" and done["status"] == "Success"
        assert done["details"] == {"name": "paper-life", "group": "apps", "kind": "statefulsets",
                                   "uid": created.metadata.uid}  # fmt: skip
        with pytest.raises(ApiException) as missing:
            apps.read_namespaced_stateful_set("paper-life", NS)
        assert missing.value.status == 404
        claims = core.list_namespaced_persistent_volume_claim(NS, label_selector="agent=paper-life")
        [claim] = claims.items
        assert claim.metadata.name == "session-paper-life-0" and claim.status.phase == "Bound"
        assert claim.spec.resources.requests == {"storage": "1Gi"}

        # back: the same claim, the counter goes on
        again = apps.create_namespaced_stateful_set(NS, body)
        assert again.metadata.uid != created.metadata.uid
        eventually(ready_pod(core, "paper-life-0"), what="ready again")
        assert (folder / "starts").read_text() == "5"
        eventually(lambda: log_of(core, "paper-life-0").startswith("start 5 uid=10001 "),
                   what="log 5")  # fmt: skip
        assert core.read_namespaced_persistent_volume_claim(
            "session-paper-life-0", NS
        ).metadata.uid == claim.metadata.uid  # fmt: skip
    finally:
        cleanup(k8s, "paper-life")
    assert processes_with(mark) == []


def test_a_failing_liveness_probe_restarts_the_container(
    server: KubeApiServer, k8s: KubeApis
) -> None:
    mark = f"sick-{uuid.uuid4().hex}"
    body = hardened_statefulset(
        "paper-sick",
        PY_IMAGE,
        [app(mark)],
        probes=PROBES,
        env=[{"name": "SICK_AFTER", "value": "3"}],
    )
    try:
        k8s.apps.create_namespaced_stateful_set(NS, body)
        pod = eventually(
            lambda: (
                (p := pod_of(k8s.core, "paper-sick-0")) is not None
                and p.status.container_statuses
                and p.status.container_statuses[0].restart_count >= 1
                and p
            ),
            what="a restart",
        )
        terminated = pod.status.container_statuses[0].last_state.terminated
        assert terminated.message == "Liveness probe failed: HTTP probe failed with statuscode: 500"
        folder = server.claim_folder(NS, "session-paper-sick-0")
        assert (folder / "events").read_text().startswith("term\n")  # asked to stop: SIGTERM
        assert log_of(k8s.core, "paper-sick-0", previous=True).endswith("terminating\n")
    finally:
        cleanup(k8s, "paper-sick")
    assert processes_with(mark) == []


def test_a_container_that_keeps_exiting_is_in_crash_loop_back_off(k8s: KubeApis) -> None:
    body = hardened_statefulset(
        "paper-loop", PY_IMAGE, [app("loop")], env=[{"name": "EXIT_AT_ONCE", "value": "3"}]
    )
    try:
        k8s.apps.create_namespaced_stateful_set(NS, body)

        def looping() -> client.V1Pod | None:
            pod = pod_of(k8s.core, "paper-loop-0")
            statuses = pod.status.container_statuses if pod else None
            if not statuses or statuses[0].restart_count < 2 or not statuses[0].state.waiting:
                return None
            return pod

        pod = eventually(looping, what="CrashLoopBackOff")
        [state] = pod.status.container_statuses
        assert pod.status.phase == "Running"  # as Kubernetes keeps it for restartPolicy Always
        assert state.state.waiting.reason == "CrashLoopBackOff" and not state.ready
        assert "restarting failed container=app pod=paper-loop-0_" in state.state.waiting.message
        assert (state.last_state.terminated.exit_code, state.last_state.terminated.reason) == (
            3, "Error")  # fmt: skip
        # while it waits, its log is the last run's, and so is the previous one
        assert log_of(k8s.core, "paper-loop-0", previous=True).endswith("exiting\n")
        sts = k8s.apps.read_namespaced_stateful_set("paper-loop", NS)
        assert sts.status.replicas == 1 and sts.status.ready_replicas is None
    finally:
        cleanup(k8s, "paper-loop")


def test_a_new_template_replaces_the_pod(k8s: KubeApis) -> None:
    mark = f"roll-{uuid.uuid4().hex}"
    body = hardened_statefulset("paper-roll", PY_IMAGE, [app(mark)], claim=None)
    try:
        k8s.apps.create_namespaced_stateful_set(NS, body)
        first = eventually(ready_pod(k8s.core, "paper-roll-0"), what="ready")
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "SHOW_ENV", "value": "WAVE"},
                                    {"name": "WAVE", "value": "two"}]}]}}}}  # fmt: skip
        patched = k8s.apps.patch_namespaced_stateful_set("paper-roll", NS, patch)
        assert patched.metadata.generation == 2
        [container] = patched.spec.template.spec.containers  # merged by name, image kept
        assert container.image == PY_IMAGE and container.args == [app(mark)]
        assert [e.name for e in container.env] == ["TRADEOPS_HTTP_PORT", "SHOW_ENV", "WAVE"]
        second = eventually(
            lambda: (
                (p := ready_pod(k8s.core, "paper-roll-0")()) is not None
                and p.metadata.uid != first.metadata.uid
                and p
            ),
            what="replaced",
        )
        revision = second.metadata.labels["controller-revision-hash"]
        assert revision != first.metadata.labels["controller-revision-hash"]
        eventually(lambda: "env WAVE=two\n" in log_of(k8s.core, "paper-roll-0"), what="its log")
        sts = k8s.apps.read_namespaced_stateful_set("paper-roll", NS)
        assert sts.status.update_revision == revision
    finally:
        cleanup(k8s, "paper-roll")


# ---------------------------------------------------------------------- secrets and env
def test_secrets_and_config_maps_reach_the_container_and_a_missing_one_holds_it(
    server: KubeApiServer, k8s: KubeApis
) -> None:
    core = k8s.core
    secret = f"creds-{uuid.uuid4().hex[:8]}"
    settings = f"settings-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_config_map(NS, {
        "metadata": {"name": settings},
        "data": {"mode": "paper", "feed.json": '{"feed": "replay"}'},
        "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
    })  # fmt: skip
    env = [
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}}},
        {
            "name": "MAYBE",
            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "GREETING", "value": "hello $(POD_NAME) $$(POD_NAME)"},
        {
            "name": "MEMORY",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
        {"name": "OTHER_PORT", "value": "8080"},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": settings, "key": "mode"}}},
        {
            "name": "SHOW_ENV",
            "value": "API_KEY,MAYBE,POD_NAME,POD_NS,GREETING,MEMORY,OTHER_PORT,S_user,HOME,"
            "MODE,C_mode",
        },
        {"name": "SHOW_FILES", "value": "/etc/creds/key,/etc/settings/feed.json"},
    ]
    body = hardened_statefulset("paper-env", PY_IMAGE, [app("env")], env=env, claim=None)
    template = body["spec"]["template"]["spec"]
    template["containers"][0]["envFrom"] = [
        {"prefix": "S_", "secretRef": {"name": secret}},
        {"prefix": "C_", "configMapRef": {"name": settings}},
    ]
    template["containers"][0]["volumeMounts"] += [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "settings", "mountPath": "/etc/settings"},
    ]
    template["volumes"] += [
        {"name": "creds", "secret": {"secretName": secret}},
        {"name": "settings", "configMap": {"name": settings, "items": [
            {"key": "feed.json", "path": "feed.json"}]}},
    ]  # fmt: skip
    try:
        k8s.apps.create_namespaced_stateful_set(NS, body)

        def waiting() -> Any:
            pod = pod_of(core, "paper-env-0")
            statuses = pod.status.container_statuses if pod else None
            return (
                statuses and statuses[0].state.waiting and statuses[0].state.waiting.message and pod
            )

        pod = eventually(waiting, what="waiting for its secret")
        state = pod.status.container_statuses[0].state.waiting
        assert state.reason == "CreateContainerConfigError"
        assert state.message == f'secret "{secret}" not found'
        assert pod.status.phase == "Pending"

        made = core.create_namespaced_secret(NS, {
            "metadata": {"name": secret}, "data": {"key": base64.b64encode(b"s3cret").decode()},
            "stringData": {"user": "ada"},
        })  # fmt: skip
        assert made.type == "Opaque" and made.string_data is None
        assert made.data == {"key": base64.b64encode(b"s3cret").decode(),
                             "user": base64.b64encode(b"ada").decode()}  # fmt: skip
        assert core.read_namespaced_secret(secret, NS).data["user"] == made.data["user"]
        eventually(ready_pod(core, "paper-env-0"), what="started once the secret is there")
        port = server.host_port(NS, "paper-env-0", 8080)
        log = eventually(lambda: (t := log_of(core, "paper-env-0")).count("\n") >= 14 and t,
                         what="its whole log")  # fmt: skip
        for line in ("env API_KEY=s3cret", "env MAYBE=None", "env POD_NAME=paper-env-0",
                     f"env POD_NS={NS}", "env GREETING=hello paper-env-0 $(POD_NAME)",
                     "env MEMORY=512", f"env OTHER_PORT={port}", "env S_user=ada",
                     "env HOME=/tmp", "env MODE=paper", "env C_mode=paper",
                     "file /etc/creds/key=s3cret",
                     'file /etc/settings/feed.json={"feed": "replay"}'):  # fmt: skip
            assert f"{line}\n" in log, log
    finally:
        cleanup(k8s, "paper-env")
        try:
            core.delete_namespaced_secret(secret, NS)
        except ApiException as exc:
            assert exc.status == 404
        assert core.delete_namespaced_config_map(settings, NS)["status"] == "Success"


def test_secrets_are_stored_read_replaced_and_deleted(k8s: KubeApis) -> None:
    core = k8s.core
    name = f"s-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_secret(NS, {"metadata": {"name": name, "labels": {"t": name}},
                                       "stringData": {"a": "1"}})  # fmt: skip
    with pytest.raises(ApiException) as twice:
        core.create_namespaced_secret(NS, {"metadata": {"name": name}})
    assert twice.value.status == 409 and status_of(twice)["reason"] == "AlreadyExists"
    current = core.read_namespaced_secret(name, NS)
    current.data = {"b": base64.b64encode(b"2").decode()}
    replaced = core.replace_namespaced_secret(name, NS, current)
    assert replaced.data == {"b": "Mg=="}
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)
    current.data = {"c": "Mw=="}  # an old resourceVersion: refused
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_secret(name, NS, current)
    assert stale.value.status == 409 and status_of(stale)["reason"] == "Conflict"
    [listed] = core.list_namespaced_secret(NS, label_selector=f"t={name}").items
    assert listed.metadata.name == name
    gone_doc = core.delete_namespaced_secret(name, NS)
    assert gone_doc["status"] == "Success"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret(name, NS)
    assert missing.value.status == 404
    assert status_of(missing)["message"] == f'secrets "{name}" not found'


# ---------------------------------------------------------------------- hardening
def _pod_security(body: dict[str, Any]) -> dict[str, Any]:
    security: dict[str, Any] = body["spec"]["template"]["spec"]["securityContext"]
    return security


def _container(body: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][0]
    return container


HARDENING_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("runAsNonRoot", lambda b: _pod_security(b).pop("runAsNonRoot"),
     "securityContext.runAsNonRoot: true"),
    ("runAsNonRoot-false", lambda b: _container(b)["securityContext"].update(runAsNonRoot=False),
     "securityContext.runAsNonRoot: true"),
    ("runAsUser", lambda b: _pod_security(b).pop("runAsUser"), "securityContext.runAsUser"),
    ("runAsUser-root", lambda b: _pod_security(b).update(runAsUser=0),
     "securityContext.runAsUser"),
    ("readOnlyRootFilesystem", lambda b: _container(b)["securityContext"].pop(
        "readOnlyRootFilesystem"), "securityContext.readOnlyRootFilesystem: true"),
    ("allowPrivilegeEscalation", lambda b: _container(b)["securityContext"].update(
        allowPrivilegeEscalation=True), "securityContext.allowPrivilegeEscalation: false"),
    ("capabilities-drop", lambda b: _container(b)["securityContext"]["capabilities"].update(
        drop=["NET_RAW"]), "securityContext.capabilities.drop: [ALL]"),
    ("capabilities-add", lambda b: _container(b)["securityContext"]["capabilities"].update(
        add=["NET_ADMIN"]), "refused securityContext.capabilities.add"),
    ("privileged", lambda b: _container(b)["securityContext"].update(
        privileged=True, allowPrivilegeEscalation=True), "refused securityContext.privileged"),
    ("seccompProfile", lambda b: _pod_security(b).pop("seccompProfile"),
     "securityContext.seccompProfile.type: RuntimeDefault"),
    ("seccompProfile-unconfined", lambda b: _container(b)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}), "seccompProfile.type: RuntimeDefault"),
    ("requests-cpu", lambda b: _container(b)["resources"]["requests"].pop("cpu"),
     "resources.requests.cpu"),
    ("requests-memory", lambda b: _container(b)["resources"]["requests"].pop("memory"),
     "resources.requests.memory"),
    ("limits-cpu", lambda b: _container(b)["resources"]["limits"].pop("cpu"),
     "resources.limits.cpu"),
    ("limits-memory", lambda b: _container(b)["resources"].update(limits={"cpu": "1"}),
     "resources.limits.memory"),
    ("hostNetwork", lambda b: b["spec"]["template"]["spec"].update(hostNetwork=True),
     "refused spec.hostNetwork: true"),
    ("hostPID", lambda b: b["spec"]["template"]["spec"].update(hostPID=True),
     "refused spec.hostPID: true"),
    ("hostIPC", lambda b: b["spec"]["template"]["spec"].update(hostIPC=True),
     "refused spec.hostIPC: true"),
    ("hostPath", lambda b: (
        b["spec"]["template"]["spec"]["volumes"].append(
            {"name": "host", "hostPath": {"path": "/etc"}}),
        _container(b)["volumeMounts"].append({"name": "host", "mountPath": "/host"})),
     "refused hostPath volume 'host'"),
    ("hostPort", lambda b: _container(b)["ports"][0].update(hostPort=8080),
     "refused ports hostPort: 8080"),
    ("exec-probe", lambda b: _container(b).update(livenessProbe={"exec": {"command": ["true"]}}),
     "unsupported livenessProbe.exec"),
    ("command", lambda b: _container(b).update(command=["python"]),
     "unsupported command for a runtime image"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [pytest.param(change, named, id=ident) for ident, change, named in HARDENING_CASES],
)
def test_a_pod_lacking_hardening_is_not_run(
    server: KubeApiServer, k8s: KubeApis, change: Callable[[dict[str, Any]], Any], named: str
) -> None:
    name = f"hard-{uuid.uuid4().hex[:8]}"
    body = hardened_statefulset(name, PY_IMAGE, [app(name)], claim=None)
    change(body)
    try:
        k8s.apps.create_namespaced_stateful_set(NS, body)
        pod = eventually(
            lambda: (
                (p := pod_of(k8s.core, f"{name}-0")) is not None
                and p.status.phase == "Failed"
                and p
            ),
            what="refused",
        )
        [state] = pod.status.container_statuses
        waiting = state.state.waiting
        assert waiting.reason == "CreateContainerConfigError"
        assert waiting.message.startswith('container "app": the stand-in refuses to run it: ')
        assert named in waiting.message and named in pod.status.message
        assert state.restart_count == 0 and not state.ready and state.container_id is None
        assert server.main_pid(NS, f"{name}-0") is None and processes_with(name) == []
        with pytest.raises(ApiException) as no_log:
            log_of(k8s.core, f"{name}-0")
        assert no_log.value.status == 400
        assert "is waiting to start: CreateContainerConfigError" in status_of(no_log)["message"]
    finally:
        cleanup(k8s, name)


def test_a_fully_hardened_pod_names_nothing_missing() -> None:
    from infra.emulators.kubernetes import hardening_problems

    body = hardened_statefulset("ok", PY_IMAGE)
    assert hardening_problems(body["spec"]["template"]["spec"]) == []
    bare = {"containers": [{"name": "c", "image": "i"}]}
    [missing] = hardening_problems(bare)
    assert missing == (
        "missing securityContext.runAsNonRoot: true, securityContext.runAsUser: a numeric "
        "non-zero uid, securityContext.readOnlyRootFilesystem: true, "
        "securityContext.allowPrivilegeEscalation: false, securityContext.capabilities.drop: "
        "[ALL], securityContext.seccompProfile.type: RuntimeDefault, resources.requests.cpu, "
        "resources.requests.memory, resources.limits.cpu, resources.limits.memory"
    )


# ---------------------------------------------------------------------- selectors, images
def test_label_and_field_selectors_and_an_unknown_image(k8s: KubeApis) -> None:
    apps, core = k8s.apps, k8s.core
    tag = uuid.uuid4().hex[:6]
    names = {tier: f"sel-{tier}-{tag}" for tier in ("a", "b", "c")}
    try:
        for tier, name in names.items():
            body = hardened_statefulset(name, "example.com/unknown:1", labels={"tier": tier,
                                                                           "batch": tag},
                                        claim=None)  # fmt: skip
            body["metadata"]["labels"]["tier"] = tier
            apps.create_namespaced_stateful_set(NS, body)

        def pods(selector: str, fields: str | None = None) -> list[str]:
            found = core.list_namespaced_pod(NS, label_selector=selector, field_selector=fields)
            return sorted(p.metadata.name for p in found.items)

        eventually(lambda: len(pods(f"batch={tag}")) == 3, what="three pods")
        pod = eventually(
            lambda: (p := pod_of(core, f"{names['a']}-0")).status.container_statuses and p,
            what="a status",
        )
        waiting = pod.status.container_statuses[0].state.waiting
        assert waiting.reason == "ErrImagePull" and "example.com/unknown:1" in waiting.message
        assert pod.status.phase == "Pending"

        zero = f"{names['a']}-0"
        assert pods(f"batch={tag},tier=a") == [zero]
        assert pods(f"batch={tag},tier==b") == [f"{names['b']}-0"]
        assert pods(f"batch={tag},tier in (a, b)") == sorted([zero, f"{names['b']}-0"])
        assert pods(f"batch={tag},tier notin (a,b)") == [f"{names['c']}-0"]
        assert pods(f"batch={tag},tier!=c") == sorted([zero, f"{names['b']}-0"])
        assert pods(f"batch={tag},tier,!nothing") == pods(f"batch={tag}")
        assert pods(f"batch={tag},!tier") == []
        assert pods(f"batch={tag}", f"metadata.name={zero}") == [zero]
        assert pods(f"batch={tag}", "status.phase=Pending") == pods(f"batch={tag}")
        assert pods(f"batch={tag}", "status.phase!=Pending") == []
        # StatefulSets by their own labels, here and across namespaces
        listed = apps.list_namespaced_stateful_set(NS, label_selector="tier in (c)")
        assert [s.metadata.name for s in listed.items] == [names["c"]]
        everywhere = apps.list_stateful_set_for_all_namespaces(label_selector=f"agent={names['b']}")
        assert [s.metadata.name for s in everywhere.items] == [names["b"]]
        # pages
        first = core.list_namespaced_pod(NS, label_selector=f"batch={tag}", limit=2)
        assert len(first.items) == 2 and first.metadata._continue
        rest = core.list_namespaced_pod(NS, label_selector=f"batch={tag}", limit=2,
                                        _continue=first.metadata._continue)  # fmt: skip
        assert len(rest.items) == 1 and not rest.metadata._continue
        with pytest.raises(ApiException) as bad:
            core.list_namespaced_pod(NS, label_selector="tier in (a")
        assert bad.value.status == 400
        with pytest.raises(ApiException) as log_error:
            log_of(core, zero)
        assert "is waiting to start: image can't be pulled" in status_of(log_error)["message"]
    finally:
        cleanup(k8s, *names.values())


# ---------------------------------------------------------------------- errors
def test_missing_objects_are_404(k8s: KubeApis) -> None:
    cases: list[Callable[[], Any]] = [
        lambda: k8s.apps.read_namespaced_stateful_set("nope", NS),
        lambda: k8s.apps.read_namespaced_stateful_set_scale("nope", NS),
        lambda: k8s.apps.patch_namespaced_stateful_set("nope", NS, {"spec": {}}),
        lambda: k8s.apps.delete_namespaced_stateful_set("nope", NS),
        lambda: k8s.core.read_namespaced_pod("nope-0", NS),
        lambda: k8s.core.read_namespaced_pod_log("nope-0", NS),
        lambda: k8s.core.delete_namespaced_pod("nope-0", NS),
        lambda: k8s.core.read_namespaced_persistent_volume_claim("nope", NS),
        lambda: k8s.core.read_namespace("nope"),
        lambda: k8s.apps.create_namespaced_stateful_set(
            "no-such-namespace", hardened_statefulset("x", PY_IMAGE)),
    ]  # fmt: skip
    for case in cases:
        with pytest.raises(ApiException) as error:
            case()
        assert error.value.status == 404
        doc = status_of(error)
        assert (doc["kind"], doc["status"], doc["reason"], doc["code"]) == (
            "Status", "Failure", "NotFound", 404)  # fmt: skip
    with pytest.raises(ApiException) as error:
        k8s.apps.read_namespaced_stateful_set("nope", NS)
    assert status_of(error)["message"] == 'statefulsets.apps "nope" not found'


def _invalid(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = hardened_statefulset(f"bad-{uuid.uuid4().hex[:6]}", PY_IMAGE)
    change(body)
    return body


INVALID_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("selector", lambda b: b["spec"]["selector"]["matchLabels"].update(agent="other"),
     "`selector` does not match template `labels`"),
    ("no-selector", lambda b: b["spec"].update(selector={}), "spec.selector"),
    ("replicas", lambda b: b["spec"].update(replicas=2),
     "spec.replicas: Invalid value: 2: the stand-in runs at most one replica"),
    ("negative", lambda b: b["spec"].update(replicas=-1), "spec.replicas"),
    ("serviceName", lambda b: b["spec"].pop("serviceName"), "spec.serviceName: Required value"),
    ("two-containers", lambda b: b["spec"]["template"]["spec"]["containers"].append(
        {"name": "side", "image": PY_IMAGE}), "the stand-in runs one container per pod, not 2"),
    ("init", lambda b: b["spec"]["template"]["spec"].update(
        initContainers=[{"name": "init", "image": PY_IMAGE}]), "spec.template.spec.initContainers"),
    ("restartPolicy", lambda b: b["spec"]["template"]["spec"].update(restartPolicy="Never"),
     'Unsupported value: "Never"'),
    ("mount", lambda b: _container(b)["volumeMounts"].append({"name": "x", "mountPath": "/x"}),
     'volumeMounts[2].name: Not found: "x"'),
    ("name", lambda b: b["metadata"].update(name="Bad_Name"), "metadata.name"),
    ("quantity", lambda b: _container(b)["resources"]["limits"].update(memory="lots"),
     "resources.limits[memory]"),
    ("requests-over-limits", lambda b: _container(b)["resources"]["requests"].update(
        memory="1Gi"), "must be less than or equal to memory limit"),
    ("probe-port", lambda b: _container(b).update(
        livenessProbe={"httpGet": {"path": "/", "port": "nope"}}), "livenessProbe.httpGet.port"),
    ("privileged", lambda b: _container(b)["securityContext"].update(privileged=True),
     "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    ("claim", lambda b: b["spec"]["volumeClaimTemplates"][0]["spec"].pop("accessModes"),
     "spec.volumeClaimTemplates[0].spec.accessModes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "said"), [pytest.param(c, s, id=i) for i, c, s in INVALID_CASES]
)
def test_an_invalid_statefulset_is_422(
    k8s: KubeApis, change: Callable[[dict[str, Any]], Any], said: str
) -> None:
    body = _invalid(change)
    with pytest.raises(ApiException) as error:
        k8s.apps.create_namespaced_stateful_set(NS, body)
    assert error.value.status == 422
    doc = status_of(error)
    assert doc["reason"] == "Invalid" and said in doc["message"], doc["message"]
    assert doc["message"].startswith(f'StatefulSet.apps "{body["metadata"]["name"]}" is invalid')
    assert doc["details"]["causes"]
    with pytest.raises(ApiException) as missing:
        k8s.apps.read_namespaced_stateful_set(body["metadata"]["name"], NS)
    assert missing.value.status == 404


def test_updates_are_checked_as_the_api_server_checks_them(
    server: KubeApiServer, k8s: KubeApis
) -> None:
    apps = k8s.apps
    name = f"upd-{uuid.uuid4().hex[:6]}"
    body = hardened_statefulset(name, PY_IMAGE, replicas=0)
    try:
        created = apps.create_namespaced_stateful_set(NS, body)
        with pytest.raises(ApiException) as twice:
            apps.create_namespaced_stateful_set(NS, body)
        assert twice.value.status == 409 and status_of(twice)["reason"] == "AlreadyExists"
        assert status_of(twice)["message"] == f'statefulsets.apps "{name}" already exists'
        # more than one replica, through the scale or the object
        with pytest.raises(ApiException) as two:
            apps.patch_namespaced_stateful_set_scale(name, NS, {"spec": {"replicas": 2}})
        assert two.value.status == 422 and "at most one replica" in status_of(two)["message"]
        scale = apps.read_namespaced_stateful_set_scale(name, NS)
        scale.spec.replicas = 2
        with pytest.raises(ApiException) as two_again:
            apps.replace_namespaced_stateful_set_scale(name, NS, scale)
        assert two_again.value.status == 422
        # a field that may not change
        with pytest.raises(ApiException) as forbidden:
            apps.patch_namespaced_stateful_set(name, NS, {"spec": {"serviceName": "other"}})
        assert forbidden.value.status == 422
        assert (
            "updates to statefulset spec for fields other than" in status_of(forbidden)["message"]
        )
        # a replace from an old read: Conflict
        old = apps.read_namespaced_stateful_set(name, NS)
        apps.patch_namespaced_stateful_set(name, NS, {"metadata": {"labels": {"x": "1"}}})
        old.metadata.labels["y"] = "2"
        with pytest.raises(ApiException) as conflict:
            apps.replace_namespaced_stateful_set(name, NS, old)
        assert conflict.value.status == 409 and status_of(conflict)["reason"] == "Conflict"
        # from the current read it goes through; a label is not the spec: same generation
        current = apps.read_namespaced_stateful_set(name, NS)
        current.metadata.labels["y"] = "2"
        replaced = apps.replace_namespaced_stateful_set(name, NS, current)
        assert replaced.metadata.labels["y"] == "2" and replaced.metadata.labels["x"] == "1"
        assert replaced.metadata.generation == created.metadata.generation == 1
        assert replaced.metadata.uid == created.metadata.uid
        # patches: merge patch (containers replaced), JSON patch, scale PUT
        merged = apps.patch_namespaced_stateful_set(
            name, NS, {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        assert merged.spec.template.metadata.annotations == {"a": "b"}
        assert merged.metadata.generation == 2
        jsoned = apps.patch_namespaced_stateful_set(
            name, NS, [{"op": "replace", "path": "/spec/template/spec/containers/0/args",
                        "value": ["x"]},
                       {"op": "test", "path": "/spec/serviceName", "value": "paper"}],
        )  # fmt: skip
        assert jsoned.spec.template.spec.containers[0].args == ["x"]
        with pytest.raises(ApiException) as failed_test:
            apps.patch_namespaced_stateful_set(
                name, NS, [{"op": "test", "path": "/spec/serviceName", "value": "other"}]
            )
        assert failed_test.value.status == 422
        scale = apps.read_namespaced_stateful_set_scale(name, NS)
        assert scale.spec.replicas is None and scale.status.replicas == 0
        # what the client sent: a strategic merge patch for a dict, a JSON patch for a list
        kinds = [(r.method, r.content_type.split(";")[0]) for r in server.requests
                 if r.path == f"/apis/apps/v1/namespaces/{NS}/statefulsets/{name}"
                 and r.method == "PATCH"]  # fmt: skip
        assert kinds == [
            ("PATCH", "application/strategic-merge-patch+json"),
            ("PATCH", "application/strategic-merge-patch+json"),
            ("PATCH", "application/merge-patch+json"),
            ("PATCH", "application/json-patch+json"),
            ("PATCH", "application/json-patch+json"),
        ]
    finally:
        cleanup(k8s, name)


def test_what_the_client_cannot_send_is_checked_too(server: KubeApiServer) -> None:
    path = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
    body = hardened_statefulset(f"raw-{uuid.uuid4().hex[:6]}", PY_IMAGE, replicas=0)
    body["spec"]["bogus"] = 1
    _container(body)["securityContext"]["readOnlyRootFileSystem"] = True  # a typo
    code, _, doc = raw(server, "POST", path + "?fieldValidation=Strict", body)
    assert code == 400 and doc["reason"] == "BadRequest"
    assert 'unknown field "spec.bogus"' in doc["message"]
    assert ('unknown field "spec.template.spec.containers[0].securityContext.'
            'readOnlyRootFileSystem"') in doc["message"]  # fmt: skip
    code, warnings, doc = raw(server, "POST", path, body)  # default: dropped, with a warning
    assert code == 201 and "bogus" not in doc["spec"]
    assert '299 - "unknown field \\"spec.bogus\\""' in warnings and len(warnings) == 2
    name = doc["metadata"]["name"]
    bad = hardened_statefulset("typed", PY_IMAGE)
    bad["spec"]["replicas"] = "1"
    code, _, doc = raw(server, "POST", path, bad)
    assert code == 400 and "cannot unmarshal string into Go struct field spec.replicas" in (
        doc["message"])  # fmt: skip
    code, _, doc = raw(server, "POST", path, [1])
    assert code == 400
    code, _, doc = raw(server, "PATCH", f"{path}/{name}", {"spec": {}},
                       "application/apply-patch+yaml")  # fmt: skip
    assert code == 415
    code, _, doc = raw(server, "GET", f"/api/v1/namespaces/{NS}/pods?watch=true")
    assert code == 400 and "watches" in doc["message"]
    code, _, doc = raw(server, "POST", f"/api/v1/namespaces/{NS}/pods", {"metadata": {}})
    assert code == 405
    code, _, doc = raw(server, "GET", "/apis/apps/v1/namespaces/x/deployments")
    assert code == 404
    code, _, doc = raw(server, "DELETE", f"{path}/{name}")
    assert code == 200 and doc["status"] == "Success"


def test_fail_next_and_the_recorded_requests(server: KubeApiServer, k8s: KubeApis) -> None:
    server.reset_requests()
    server.fail_next(503, message="down for a moment", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            k8s.core.list_namespaced_pod(NS)
        assert error.value.status == 503
        assert status_of(error)["reason"] == "ServiceUnavailable"
        assert status_of(error)["message"] == "down for a moment"
    server.fail_next(409, reason="AlreadyExists")
    with pytest.raises(ApiException) as conflict:
        k8s.apps.list_namespaced_stateful_set(NS)
    assert status_of(conflict)["reason"] == "AlreadyExists"
    k8s.core.list_namespaced_pod(NS, label_selector="app=paper")
    last = server.requests[-1]
    assert (last.method, last.path, last.params) == (
        "GET", f"/api/v1/namespaces/{NS}/pods", {"labelSelector": "app=paper"})  # fmt: skip
    assert len(server.requests) == 4


# ---------------------------------------------------------------------- deletion
def test_foreground_background_and_orphan_deletion(server: KubeApiServer, k8s: KubeApis) -> None:
    apps, core = k8s.apps, k8s.core
    name = f"del-{uuid.uuid4().hex[:6]}"
    body = hardened_statefulset(name, "example.com/unknown:2")  # pods that run nothing
    try:
        apps.create_namespaced_stateful_set(NS, body)
        first = eventually(lambda: pod_of(core, f"{name}-0"), what="a pod")
        # Orphan: the StatefulSet goes, its pod stays, unowned; a new one adopts it
        done = apps.delete_namespaced_stateful_set(name, NS, propagation_policy="Orphan")
        assert done["status"] == "Success"
        pod = core.read_namespaced_pod(f"{name}-0", NS)
        assert pod.metadata.uid == first.metadata.uid and not pod.metadata.owner_references
        again = apps.create_namespaced_stateful_set(NS, body)
        adopted = eventually(
            lambda: (
                (p := core.read_namespaced_pod(f"{name}-0", NS)).metadata.owner_references and p
            ),
            what="adopted",
        )
        assert adopted.metadata.uid == first.metadata.uid
        assert adopted.metadata.owner_references[0].uid == again.metadata.uid
        # Foreground: answered with a deletionTimestamp, readable until its pod is gone
        answer = apps.delete_namespaced_stateful_set(name, NS, propagation_policy="Foreground")
        assert answer["kind"] == "StatefulSet" and answer["metadata"]["deletionTimestamp"]
        assert "foregroundDeletion" in answer["metadata"]["finalizers"]
        eventually(gone(lambda: apps.read_namespaced_stateful_set(name, NS)), what="gone")
        assert pod_of(core, f"{name}-0") is None  # the pod went first
        # the claim stays (Retain); with whenDeleted: Delete it goes
        claim = f"session-{name}-0"
        assert core.read_namespaced_persistent_volume_claim(claim, NS).status.phase == "Bound"
        assert server.claim_folder(NS, claim).is_dir()
        body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete"}
        apps.create_namespaced_stateful_set(NS, body)
        eventually(lambda: pod_of(core, f"{name}-0"), what="a pod again")
        apps.delete_namespaced_stateful_set(name, NS, body=client.V1DeleteOptions(
            propagation_policy="Background"))  # fmt: skip
        eventually(gone(lambda: core.read_namespaced_persistent_volume_claim(claim, NS)),
                   what="claim deleted")  # fmt: skip
        assert not server.claim_folder(NS, claim).exists()
    finally:
        cleanup(k8s, name)


def test_namespaces_services_network_policies_and_claims(
    server: KubeApiServer, k8s: KubeApis
) -> None:
    core = k8s.core
    net = client.NetworkingV1Api(k8s.api)
    ns = f"scratch-{uuid.uuid4().hex[:6]}"
    made = core.create_namespace({"metadata": {"name": ns}})
    assert made.status.phase == "Active"
    assert made.metadata.labels == {"kubernetes.io/metadata.name": ns}
    assert core.read_namespace(ns).metadata.uid == made.metadata.uid
    assert {"default", NS, ns} <= {n.metadata.name for n in core.list_namespace().items}
    policy = {
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}]},
    }  # fmt: skip
    created = net.create_namespaced_network_policy(ns, policy)
    assert created.spec.policy_types == ["Ingress", "Egress"] and created.metadata.generation == 1
    assert net.read_namespaced_network_policy("deny-all", ns).spec.egress[0].ports[0].port == 443
    assert [p.metadata.name for p in net.list_namespaced_network_policy(ns).items] == ["deny-all"]
    claim = core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    assert claim.status.phase == "Bound" and claim.status.capacity == {"storage": "1Gi"}
    assert server.claim_folder(ns, "data").is_dir()
    headless = core.create_namespaced_service(ns, {
        "metadata": {"name": "paper"},
        "spec": {"clusterIP": "None", "selector": {"app": "paper"},
                 "ports": [{"name": "http", "port": 8080}]},
    })  # fmt: skip
    assert headless.spec.cluster_ip == "None" and headless.spec.ports[0].target_port == 8080
    plain = core.create_namespaced_service(ns, {"metadata": {"name": "web"},
                                                "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    assert plain.spec.cluster_ip.startswith("10.96.") and plain.spec.type == "ClusterIP"
    with pytest.raises(ApiException) as immutable:
        core.patch_namespaced_service("web", ns, {"spec": {"clusterIP": "10.96.9.9"}})
    assert immutable.value.status == 422
    assert core.delete_namespaced_service("web", ns).metadata.name == "web"  # the object
    assert [s.metadata.name for s in core.list_namespaced_service(ns).items] == ["paper"]
    body = hardened_statefulset("inside", "example.com/unknown:3")
    k8s.apps.create_namespaced_stateful_set(ns, body)
    eventually(lambda: k8s.core.list_namespaced_pod(ns).items, what="a pod")
    deleting = core.delete_namespace(ns)
    assert deleting["status"]["phase"] == "Terminating"
    eventually(gone(lambda: core.read_namespace(ns)), what="namespace gone")
    for read in (lambda: net.read_namespaced_network_policy("deny-all", ns),
                 lambda: core.read_namespaced_service("paper", ns),
                 lambda: k8s.apps.read_namespaced_stateful_set("inside", ns),
                 lambda: core.read_namespaced_persistent_volume_claim("data", ns)):  # fmt: skip
        with pytest.raises(ApiException) as error:
            read()
        assert error.value.status == 404
    assert not server.claim_folder(ns, "data").exists()
    assert core.list_namespaced_pod(ns).items == []


# ---------------------------------------------------------------------- small parts
@pytest.mark.parametrize(
    ("text", "value"),
    [("4Gi", 4 << 30), ("512Mi", 512 << 20), ("1G", 10**9), ("500m", 0.5), ("1", 1),
     ("1.5", 1.5), ("1e3", 1000), ("100k", 100_000), ("2Ki", 2048), (3, 3)],
)  # fmt: skip
def test_quantities_parse_as_kubernetes_writes_them(text: str | int, value: float) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1Gb", "1.2.3", "Mi"])
def test_a_malformed_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(text)


def test_the_version_and_a_kubeconfig(server: KubeApiServer, tmp_path: Path) -> None:
    path = server.kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == server.url
    with client.ApiClient(configuration) as api:
        assert client.VersionApi(api).get_code().git_version.startswith("v1.33")
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert NS in names and "kube-system" in names
    assert os.environ.get("KUBECONFIG") != str(path)  # nothing global changed
