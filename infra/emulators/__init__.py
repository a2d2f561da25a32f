"""Local stand-ins for the Google services, for ``tradeops demo --backend gcp`` and the
tests: the real fake-gcs-server and bqemulator, and our Realtime Database server (nothing
else runs here). Never used in production."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a server started on it may still lose a race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class StandIns:
    env: dict[str, str]  # the settings and emulator variables that point tradeops at them
    bucket: str


@contextlib.contextmanager
def google_stand_ins(
    project: str = "tradeops-demo", bucket: str = "tradeops-demo"
) -> Iterator[StandIns]:
    """Cloud Storage (with ``bucket``), a Realtime Database (the registry's index rules
    deployed) and BigQuery, started now and stopped on leaving."""
    from infra.emulators.bigquery import BqEmulator
    from infra.emulators.gcs import FakeGcsServer
    from infra.emulators.rtdb import RtdbServer
    from infra.gcp.firebase import index_rules

    namespace = project
    with FakeGcsServer() as gcs, RtdbServer() as rtdb, BqEmulator() as bq:
        client = gcs.client()
        client.create_bucket(bucket)
        client.close()
        rtdb.set_rules(namespace, index_rules(""))
        yield StandIns(
            env={
                "GOOGLE_CLOUD_PROJECT": project,
                "STORAGE_EMULATOR_HOST": gcs.url,
                "FIREBASE_DATABASE_EMULATOR_HOST": rtdb.host,
                "BIGQUERY_EMULATOR_HOST": bq.url,
                "TRADEOPS_ARTIFACTS": f"gs://{bucket}/artifacts",
                "TRADEOPS_REGISTRY": rtdb.database_url(namespace),
                "TRADEOPS_FMEL": f"bigquery://{project}/fmel",
            },
            bucket=bucket,
        )
