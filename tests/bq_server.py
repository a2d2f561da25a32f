"""bqemulator (``infra/emulators/bigquery.py``) for tests.

Fixture (import it into a test module: ``from tests.bq_server import bq_server_fixture``):
``bq_server``, one emulator for the whole session; ``new_dataset()`` names a fresh dataset.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.emulators.bigquery import PROJECT, BqEmulator, free_port, new_dataset
from tests.shared_server import SharedServer

__all__ = ["PROJECT", "BqEmulator", "bq_server_fixture", "free_port", "new_dataset"]


_SHARED: SharedServer[BqEmulator] = SharedServer(lambda: BqEmulator().start(), lambda s: s.stop())


# Registered under the short name; imported by its function name (so a test's argument does
# not shadow an import): ``from tests.bq_server import bq_server_fixture``.
@pytest.fixture(scope="session", name="bq_server")
def bq_server_fixture() -> Iterator[BqEmulator]:
    """One bqemulator for the whole test session, stopped at its end."""
    with _SHARED.use() as server:
        yield server
