"""The artifact store as files under ``$TRADEOPS_HOME/artifacts`` (DESIGN.md section 2).

Layout: ``<root>/objects/<sha[:2]>/<sha>`` holds the bytes; ``<sha>.kind`` beside it records
the kind given when the object was first stored (for an operator looking at the folder).
The kind is not part of the path because ``get`` is asked by sha256 alone, and the same
bytes stored as two kinds are still one object.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from workers.ports import ArtifactCorrupted, NotFound, check_kind, check_sha256


class LocalArtifactStore:
    """Content-addressed files; safe for several processes writing the same object at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, data: bytes, *, kind: str) -> str:
        check_kind(kind)
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if not self._intact(path, sha256):  # a damaged copy is replaced, an intact one kept
            _write_atomically(path, data)
        kind_file = path.with_name(f"{sha256}.kind")
        if not kind_file.exists():
            _write_atomically(kind_file, f"{kind}\n".encode())
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(sha256) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactCorrupted(
                f"artifact {sha256} is corrupted: {path} now hashes to {actual}; "
                "restore it from a backup or store the original bytes again"
            )
        return data

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def path_hint(self, sha256: str) -> str:
        return str(self._path(sha256))

    def _path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "objects" / sha256[:2] / sha256

    @staticmethod
    def _intact(path: Path, sha256: str) -> bool:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
        except FileNotFoundError:
            return False


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a partial write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
