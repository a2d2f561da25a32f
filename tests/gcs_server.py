"""fake-gcs-server (``infra/emulators/gcs.py``) for tests.

Fixtures (import both into a test module: ``from tests.gcs_server import
gcs_bucket_fixture, gcs_server_fixture``): ``gcs_server``, one server for the whole session,
and ``gcs_bucket``, a new bucket on it for each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from infra.emulators.gcs import PROJECT, FakeGcsServer, free_port, server_binary
from tests.shared_server import SharedServer

if TYPE_CHECKING:
    from google.cloud import storage

__all__ = ["PROJECT", "FakeGcsServer", "GcsBucket", "free_port", "gcs_bucket_fixture",
           "gcs_server_fixture", "server_binary"]  # fmt: skip


@dataclass(frozen=True)
class GcsBucket:
    """A fresh bucket on the session's server, and a client bound to that server."""

    server: FakeGcsServer
    client: storage.Client
    name: str


_SHARED: SharedServer[FakeGcsServer] = SharedServer(
    lambda: FakeGcsServer().start(), lambda s: s.stop()
)


# Registered under the short names; imported by their function names (so a test's argument
# does not shadow an import): ``from tests.gcs_server import gcs_bucket_fixture``.
@pytest.fixture(scope="session", name="gcs_server")
def gcs_server_fixture() -> Iterator[FakeGcsServer]:
    """One fake-gcs-server for the whole test session, stopped at its end."""
    with _SHARED.use() as server:
        yield server


@pytest.fixture(name="gcs_bucket")
def gcs_bucket_fixture(gcs_server: FakeGcsServer) -> Iterator[GcsBucket]:
    """A new, empty bucket for one test (buckets go with the server at the session's end)."""
    client = gcs_server.client()
    name = f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(name)
    try:
        yield GcsBucket(server=gcs_server, client=client, name=name)
    finally:
        client.close()
