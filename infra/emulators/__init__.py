"""Local stand-ins for the Google services, for ``tradeops demo --backend gcp`` and the
tests: the real fake-gcs-server and bqemulator, and our Realtime Database server (nothing
else runs here). Never used in production."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator


def answers(proc: subprocess.Popen[bytes] | None, probe: str, timeout_s: float,
            every_s: float) -> bool:  # fmt: skip
    """True once ``probe`` (our own server's http:// URL) answers 200; False if ``proc``
    exited or ``timeout_s`` passed (refused until it listens: OSError)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is None or proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(probe, timeout=1) as reply:  # noqa: S310
            if reply.status == 200:
                return True
        time.sleep(every_s)
    return False


def end(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Terminate ``proc`` and wait; kill it if it outlives ``timeout_s``."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a server started on it may still lose a race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def google_stand_ins(
    project: str = "tradeops-demo", bucket: str = "tradeops-demo"
) -> Iterator[dict[str, str]]:
    """Cloud Storage (with ``bucket``), a Realtime Database (the registry's index rules
    deployed), BigQuery and Cloud Build (running the runtime image's steps in the sandbox),
    started now and stopped on leaving; yields the settings and emulator variables that
    point tradeops at them."""
    from infra.emulators.bigquery import BqEmulator
    from infra.emulators.cloudbuild import CloudBuildServer
    from infra.emulators.gcs import FakeGcsServer
    from infra.emulators.rtdb import RtdbServer
    from infra.gcp.firebase import index_rules

    namespace = project
    with FakeGcsServer() as gcs, RtdbServer() as rtdb, BqEmulator() as bq, CloudBuildServer(
        storage_host=gcs.url
    ) as builds:
        client = gcs.client()
        client.create_bucket(bucket)
        client.close()
        rtdb.set_rules(namespace, index_rules(""))
        yield {
            "GOOGLE_CLOUD_PROJECT": project,
            "STORAGE_EMULATOR_HOST": gcs.url,
            "FIREBASE_DATABASE_EMULATOR_HOST": rtdb.host,
            "BIGQUERY_EMULATOR_HOST": bq.url,
            "CLOUDBUILD_EMULATOR_HOST": builds.url,
            "TRADEOPS_ARTIFACTS": f"gs://{bucket}/artifacts",
            "TRADEOPS_REGISTRY": rtdb.database_url(namespace),
            "TRADEOPS_FMEL": f"bigquery://{project}/fmel",
            "TRADEOPS_RUNNER": "cloudbuild",
            "TRADEOPS_RUNTIME_IMAGE": f"europe-docker.pkg.dev/{project}/tradeops/runtime:demo",
        }
