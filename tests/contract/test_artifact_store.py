"""The ArtifactStore contract: the in-memory fake, the local files and Cloud Storage (on a real
fake-gcs-server) behave the same."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from infra.local.artifacts import LocalArtifactStore
from tests.fakes import InMemoryArtifactStore
from tests.gcs_server import GcsBucket, gcs_bucket_fixture, gcs_server_fixture  # noqa: F401
from workers.ports import ArtifactCorrupted, ArtifactStore, NeedsOperator, NotFound

MISSING = "0" * 64
BAD_SHAS = ["", "abc", "../../etc/passwd", "A" * 64, "g" * 64, "0" * 63 + "/", "0" * 65]


@pytest.fixture(params=["memory", "local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "memory":
        return InMemoryArtifactStore()
    if request.param == "gcs":  # a new bucket per test on the session's fake-gcs-server
        from infra.gcp.storage import GcsArtifactStore  # google.* only when asked

        bucket: GcsBucket = request.getfixturevalue("gcs_bucket")
        return GcsArtifactStore(bucket.client, bucket.name, prefix="artifacts")
    return LocalArtifactStore(tmp_path / "artifacts")


def test_put_returns_the_sha256_and_get_gives_the_bytes_back(store: ArtifactStore) -> None:
    data = b"class Agent: pass\n\x00\xff"
    sha = store.put(data, kind="agent")
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.get(sha) == data
    assert store.exists(sha)


def test_empty_bytes_are_an_object_too(store: ArtifactStore) -> None:
    sha = store.put(b"", kind="run-output")
    assert store.get(sha) == b""


def test_same_bytes_twice_are_one_object_whatever_the_kind(store: ArtifactStore) -> None:
    first = store.put(b"same", kind="agent")
    second = store.put(b"same", kind="chart")
    assert first == second
    assert store.get(first) == b"same"


def test_different_bytes_are_different_objects(store: ArtifactStore) -> None:
    a, b = store.put(b"a", kind="agent"), store.put(b"b", kind="agent")
    assert a != b
    assert (store.get(a), store.get(b)) == (b"a", b"b")


def test_missing_object(store: ArtifactStore) -> None:
    assert not store.exists(MISSING)
    with pytest.raises(NotFound) as info:
        store.get(MISSING)
    assert isinstance(info.value, KeyError) and MISSING in str(info.value)
    assert MISSING in store.path_hint(MISSING)


@pytest.mark.parametrize("bad", BAD_SHAS)
def test_a_malformed_sha256_is_refused(store: ArtifactStore, bad: str) -> None:
    for call in (store.get, store.exists, store.path_hint):
        with pytest.raises(ValueError, match="sha256"):
            call(bad)


@pytest.mark.parametrize("bad", ["", "Agent", "../x", "a b", "a/b", "x" * 40])
def test_a_malformed_kind_is_refused(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        store.put(b"data", kind=bad)


def test_path_hint_names_the_object(store: ArtifactStore) -> None:
    sha = store.put(b"x", kind="agent")
    assert sha in store.path_hint(sha)


# ---------------------------------------------------------------- local files only
def test_local_layout_and_kind_side_file(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    sha = store.put(b"code", kind="agent")
    store.put(b"code", kind="chart")
    path = tmp_path / "objects" / sha[:2] / sha
    assert store.path_hint(sha) == str(path)
    assert path.read_bytes() == b"code"
    assert path.with_name(f"{sha}.kind").read_text() == "agent\n"  # the first kind stays
    assert sorted(p.name for p in path.parent.iterdir()) == [sha, f"{sha}.kind"]  # no temp left


def test_local_corrupted_file_is_detected_never_returned(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    sha = store.put(b"original", kind="agent")
    path = Path(store.path_hint(sha))
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupted, match=sha) as info:
        store.get(sha)
    assert str(path) in str(info.value)
    assert isinstance(info.value, NeedsOperator)  # not retried: an operator must look


def test_local_put_repairs_a_corrupted_copy(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    sha = store.put(b"original", kind="agent")
    Path(store.path_hint(sha)).write_bytes(b"")
    assert store.put(b"original", kind="agent") == sha
    assert store.get(sha) == b"original"


def test_local_store_keeps_objects_across_instances(tmp_path: Path) -> None:
    sha = LocalArtifactStore(tmp_path).put(b"kept", kind="agent")
    assert LocalArtifactStore(tmp_path).get(sha) == b"kept"
