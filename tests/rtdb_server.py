"""The Realtime Database stand-in (``infra/emulators/rtdb.py``) and a firebase-admin app on
it for tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from infra.emulators.rtdb import PUSH_CHARS, RtdbServer, _PushIds, etag_of

if TYPE_CHECKING:
    import firebase_admin
    import pytest

__all__ = ["PUSH_CHARS", "RtdbServer", "_PushIds", "admin_app", "etag_of"]


# ---------------------------------------------------------------------- firebase-admin
@contextlib.contextmanager
def admin_app(
    server: RtdbServer, monkeypatch: pytest.MonkeyPatch, namespace: str | None = None
) -> Iterator[firebase_admin.App]:
    """A firebase-admin app of its own (unique name) on ``namespace`` (a new one unless
    given) of ``server``, deleted afterwards.

    firebase-admin 7.x picks the emulator when ``FIREBASE_DATABASE_EMULATOR_HOST`` is set
    as the app's database service starts (its first ``db.reference``) and then sends
    ``Authorization: Bearer owner`` (``EmulatorAdminCredentials``): no Google credentials
    are looked up, so the app needs none.
    """
    import firebase_admin

    monkeypatch.setenv("FIREBASE_DATABASE_EMULATOR_HOST", server.host)
    namespace = namespace or server.new_namespace()
    app = firebase_admin.initialize_app(
        options={"databaseURL": server.database_url(namespace)},
        name=f"rtdb-{uuid.uuid4().hex}",
    )
    try:
        yield app
    finally:
        firebase_admin.delete_app(app)
