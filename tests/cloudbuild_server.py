"""The Cloud Build stand-in (``infra/emulators/cloudbuild.py``) for tests.

Fixture (import it into a test module with fake-gcs-server's, whose server its builds copy
to and log to: ``from tests.gcs_server import gcs_bucket_fixture, gcs_server_fixture`` and
``from tests.cloudbuild_server import cloudbuild_server_fixture``): ``cloudbuild_server``,
one stand-in for the whole session (runtime images as by default: ``…/runtime`` is
``python -m runtime``). A test needing other runtime images starts its own
``CloudBuildServer(storage_host=gcs_server.url, runtime_images=…)``: it is in-process and
starts in milliseconds.

``FAST_POLLING``: ``operation.result(polling=FAST_POLLING)`` polls every 50 to 200 ms
(the client's default starts at 1 s and grows), for at most 60 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core.future import polling

from infra.emulators.cloudbuild import CloudBuildServer
from infra.emulators.gcs import FakeGcsServer
from tests.shared_server import SharedServer

__all__ = ["FAST_POLLING", "CloudBuildServer", "cloudbuild_server_fixture"]

FAST_POLLING = polling.DEFAULT_POLLING.with_delay(initial=0.05, maximum=0.2).with_timeout(60)

# one shared stand-in per storage server (the session has one fake-gcs-server)
_SHARED: dict[str, SharedServer[CloudBuildServer]] = {}


# Registered under the short name; imported by its function name (so a test's argument does
# not shadow an import): ``from tests.cloudbuild_server import cloudbuild_server_fixture``.
@pytest.fixture(scope="session", name="cloudbuild_server")
def cloudbuild_server_fixture(gcs_server: FakeGcsServer) -> Iterator[CloudBuildServer]:
    """One Cloud Build stand-in for the whole test session, on the session's
    fake-gcs-server, stopped at its end (builds still running are cancelled)."""
    storage_host = gcs_server.url
    shared = _SHARED.setdefault(
        storage_host,
        SharedServer(
            lambda: CloudBuildServer(storage_host=storage_host).start(), lambda s: s.stop()
        ),
    )
    with shared.use() as server:
        yield server
