"""GcsArtifactStore beyond the contract: what only Cloud Storage has (generations, metadata,
buckets, gs:// names) on a real fake-gcs-server, and its errors mapped to the port's.

The error statuses fake-gcs-server never sends (401, 403, 429, 503, a hang) come from a
stand-in HTTP server that answers every request with one status.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from infra.gcp.storage import GcsArtifactStore
from tests.gcs_server import (  # noqa: F401 (fixtures)
    FakeGcsServer,
    GcsBucket,
    free_port,
    gcs_bucket_fixture,
    gcs_server_fixture,
)
from workers.ports import ArtifactCorrupted, NeedsOperator, NotFound, Temporary

# The client's retry policy made quick for the error tests (over in 0.25 s, not 120 s). It must
# be derived from storage's DEFAULT_RETRY: a plain api_core Retry() has a predicate that does
# not recognise the errors media uploads and downloads raise, so it never retries them.
QUICK_RETRY = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05).with_timeout(0.25)


def objects(bucket: GcsBucket) -> list[storage.Blob]:
    return list(bucket.client.list_blobs(bucket.name, versions=True))


def client_for(url: str) -> storage.Client:
    return storage.Client(
        project="tradeops-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": url},
    )


# ---------------------------------------------------------------- on fake-gcs-server
def test_the_same_upload_twice_is_one_object_with_one_generation(gcs_bucket: GcsBucket) -> None:
    store = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name)
    sha = store.put(b"agent code", kind="agent")
    [first] = objects(gcs_bucket)
    assert store.put(b"agent code", kind="agent") == sha  # the 412 is success
    assert store.put(b"agent code", kind="chart") == sha
    [after] = objects(gcs_bucket)
    assert (after.name, after.generation) == (first.name, first.generation)  # not rewritten
    assert store.get(sha) == b"agent code"


def test_an_object_altered_behind_the_stores_back_is_corrupted(gcs_bucket: GcsBucket) -> None:
    store = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name, prefix="artifacts")
    sha = store.put(b"original", kind="agent")
    [stored] = objects(gcs_bucket)
    gcs_bucket.client.bucket(gcs_bucket.name).blob(stored.name).upload_from_string(b"tampered")
    with pytest.raises(ArtifactCorrupted, match=sha) as info:
        store.get(sha)
    assert store.path_hint(sha) in str(info.value)
    assert hashlib.sha256(b"tampered").hexdigest() in str(info.value)
    assert isinstance(info.value, NeedsOperator)  # not retried: an operator must look
    # unlike the local store, put does not overwrite (ifGenerationMatch=0): the operator
    # deletes the damaged object first, as the message says
    assert store.put(b"original", kind="agent") == sha
    with pytest.raises(ArtifactCorrupted):
        store.get(sha)


def test_a_missing_bucket_needs_an_operator_and_is_named(gcs_server: FakeGcsServer) -> None:
    store = GcsArtifactStore(gcs_server.client(), "no-such-bucket-here")
    sha = hashlib.sha256(b"x").hexdigest()
    calls: list[Callable[[], object]] = [
        lambda: store.put(b"x", kind="agent"),
        lambda: store.get(sha),
        lambda: store.exists(sha),
    ]
    for call in calls:
        with pytest.raises(NeedsOperator, match="no-such-bucket-here") as info:
            call()
        assert not isinstance(info.value, NotFound | Temporary)
        assert "does not exist" in str(info.value)


def test_the_objects_metadata_says_its_kind(gcs_bucket: GcsBucket) -> None:
    store = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name)
    sha = store.put(b"png bytes", kind="chart")
    store.put(b"png bytes", kind="run-output")  # the first kind stays, as in the local store
    [blob] = objects(gcs_bucket)
    assert blob.metadata == {"kind": "chart", "sha256": sha}
    assert blob.content_type == "application/octet-stream"
    assert blob.size == len(b"png bytes")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("artifacts", "artifacts/"), ("/team/a/", "team/a/")],
)
def test_object_names_start_with_the_prefix(
    gcs_bucket: GcsBucket, prefix: str, expected: str
) -> None:
    store = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name, prefix=prefix)
    sha = store.put(b"data", kind="agent")
    [blob] = objects(gcs_bucket)
    assert blob.name == f"{expected}sha256/{sha[:2]}/{sha}"
    assert store.path_hint(sha) == f"gs://{gcs_bucket.name}/{blob.name}"
    other = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name, prefix="elsewhere")
    assert not other.exists(sha)  # each prefix is its own store


def test_path_hint_is_the_gs_url(gcs_bucket: GcsBucket) -> None:
    store = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name, prefix="p")
    sha = "ab" + "0" * 62
    assert store.path_hint(sha) == f"gs://{gcs_bucket.name}/p/sha256/ab/{sha}"  # no request


def test_objects_are_kept_across_store_instances(gcs_bucket: GcsBucket) -> None:
    sha = GcsArtifactStore(gcs_bucket.client, gcs_bucket.name).put(b"kept", kind="agent")
    fresh = GcsArtifactStore(gcs_bucket.server.client(), gcs_bucket.name)
    assert fresh.get(sha) == b"kept"


# ---------------------------------------------------------------- errors the emulator never sends
class Answers(BaseHTTPRequestHandler):
    """Every request gets ``server.status`` (a Cloud Storage JSON error), or no answer for
    ``server.hang_s`` seconds first."""

    server: StandIn

    def _reply(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        time.sleep(self.server.hang_s)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = self.server.status_for(self.command, self.path)
        body = json.dumps({"error": {"code": status, "message": f"status {status}"}}).encode()
        with contextlib.suppress(ConnectionError):  # a client that timed out has gone
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = _reply

    def log_message(self, format: str, *args: object) -> None:
        pass


class StandIn(ThreadingHTTPServer):
    daemon_threads = True  # (the client also GETs each bucket once in the background, for
    # its tracing attributes: object_requests leaves those and the store's bucket check out)

    def __init__(self, status_for: Callable[[str, str], int], hang_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Answers)
        self.status_for = status_for
        self.hang_s = hang_s
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def object_requests(self) -> int:
        return sum("/o" in request for request in self.requests)


@pytest.fixture
def stand_in() -> Iterator[Callable[..., StandIn]]:
    servers: list[StandIn] = []

    def start(status_for: Callable[[str, str], int], hang_s: float = 0.0) -> StandIn:
        server = StandIn(status_for, hang_s)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def store_on(url: str, timeout_s: float = 5.0) -> GcsArtifactStore:
    return GcsArtifactStore(client_for(url), "bkt", timeout_s=timeout_s, retry=QUICK_RETRY)


SHA = hashlib.sha256(b"x").hexdigest()


def test_a_refused_permission_needs_an_operator_naming_it(
    stand_in: Callable[..., StandIn],
) -> None:
    server = stand_in(lambda method, path: 403)
    store = store_on(server.url)
    with pytest.raises(NeedsOperator, match=r"storage\.objects\.create") as info:
        store.put(b"x", kind="agent")
    assert "403" in str(info.value) and "gs://bkt/" in str(info.value)
    with pytest.raises(NeedsOperator, match=r"storage\.objects\.get"):
        store.get(SHA)
    with pytest.raises(NeedsOperator, match=r"storage\.objects\.get"):
        store.exists(SHA)
    assert server.object_requests() == 3  # not retried


def test_refused_credentials_need_an_operator(stand_in: Callable[..., StandIn]) -> None:
    # on a 401 the client refreshes its credentials and tries again; anonymous ones cannot
    # be refreshed (RefreshError), as expired or revoked real ones would not be
    server = stand_in(lambda method, path: 401)
    store = store_on(server.url)
    for call in (lambda: store.put(b"x", kind="agent"), lambda: store.get(SHA)):
        with pytest.raises(NeedsOperator, match="credentials") as info:
            call()
        assert not isinstance(info.value, Temporary)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_overload_and_server_errors_are_temporary_after_the_clients_retries(
    stand_in: Callable[..., StandIn], status: int
) -> None:
    server = stand_in(lambda method, path: status)
    store = store_on(server.url)
    for call in (lambda: store.put(b"x", kind="agent"), lambda: store.get(SHA)):
        before = server.object_requests()
        with pytest.raises(Temporary, match="Cloud Storage"):
            call()
        assert server.object_requests() - before > 1  # the client's own retries came first


def test_a_timeout_is_temporary(stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(lambda method, path: 200, hang_s=0.5)
    store = store_on(server.url, timeout_s=0.1)
    with pytest.raises(Temporary):
        store.get(SHA)


def test_no_server_is_temporary() -> None:
    store = store_on(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(Temporary, match="Cloud Storage"):
        store.put(b"x", kind="agent")
    with pytest.raises(Temporary):
        store.exists(SHA)


def test_a_404_with_an_unreadable_bucket_is_a_missing_object(
    stand_in: Callable[..., StandIn],
) -> None:
    # the object is absent; the bucket's metadata is forbidden (roles/storage.objectAdmin
    # has no storage.buckets.get), which still says the bucket exists
    server = stand_in(lambda method, path: 404 if "/o/" in path else 403)
    store = store_on(server.url)
    with pytest.raises(NotFound):
        store.get(SHA)
    assert not store.exists(SHA)
