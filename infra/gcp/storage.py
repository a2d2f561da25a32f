"""The artifact store in a Cloud Storage bucket (DESIGN.md section 2).

Layout: ``gs://<bucket>/<prefix>/sha256/<sha[:2]>/<sha>`` (no prefix: ``sha256/…``), sent as
``application/octet-stream`` with metadata ``kind`` (the first upload's, for operators) and
``sha256``. The kind is not part of the name, as in the local store: ``get`` is asked by
sha256 alone, and the same bytes stored as two kinds are one object.

Writes are idempotent: each upload carries ``ifGenerationMatch=0`` (create only), so a second
upload of the same bytes, a retried one or another writer's, gets a 412 and changes nothing.
The precondition is also what makes the client's retry of an upload safe: one that reached
the bucket before its answer was lost gets a 412 the second time, which is success here.

Client errors become the port's: a missing object :class:`NotFound`; a missing bucket, a
refused permission or a rejected request :class:`NeedsOperator` (retrying cannot help); a
429, a 5xx, a timeout or a lost connection :class:`Temporary` (the job is retried).
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud.storage import Blob, Client
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from workers.ports import (
    ArtifactCorrupted,
    NeedsOperator,
    NotFound,
    Temporary,
    check_kind,
    check_sha256,
)

CONTENT_TYPE = "application/octet-stream"
TIMEOUT_S = 60.0  # each HTTP request's; the retry policy bounds the whole call (120 s)

Action = Literal["create", "get"]

# What a storage call can raise besides a 404 (handled where it means something).
_CLIENT_ERRORS = (
    api_exceptions.GoogleAPIError,  # HTTP errors, RetryError
    auth_exceptions.GoogleAuthError,  # credentials that cannot be had or refreshed
    requests.RequestException,  # connection errors, timeouts
    http.client.HTTPException,
    OSError,
    InvalidResponse,  # resumable-media's, for a status it did not expect
    DataCorruption,  # the bytes received did not match the server's checksum
)
_TRANSIENT_TRANSPORT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    http.client.HTTPException,
    OSError,  # ConnectionError, TimeoutError
    auth_exceptions.TransportError,  # the token endpoint could not be reached
    DataCorruption,  # a transfer went wrong: the stored object's checksum is the server's
)


class GcsArtifactStore:
    """Content-addressed objects in one bucket, under an optional prefix.

    ``client`` is built by the caller (credentials, project, endpoint); ``timeout_s`` bounds
    each request and ``retry`` is the client's policy for retryable failures (408, 429, 5xx,
    connection errors), applied to every call here because each one is idempotent. A custom
    policy must be derived from storage's ``DEFAULT_RETRY`` (``.with_timeout(…)``): a plain
    ``api_core`` ``Retry`` does not recognise what uploads and downloads raise, and so never
    retries them.
    """

    def __init__(
        self,
        client: Client,
        bucket: str,
        prefix: str = "",
        *,
        timeout_s: float = TIMEOUT_S,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)  # no request: a missing bucket shows on first use
        self.prefix = prefix.strip("/")
        self.timeout_s = timeout_s
        self.retry = retry

    def put(self, data: bytes, *, kind: str) -> str:
        check_kind(kind)
        sha256 = hashlib.sha256(data).hexdigest()
        blob = self._blob(sha256)
        blob.metadata = {"kind": kind, "sha256": sha256}
        try:
            # a 412: already stored (earlier, by a retry of this upload, by another writer)
            with self._errors("create", sha256), suppress(api_exceptions.PreconditionFailed):
                blob.upload_from_string(
                    data,
                    content_type=CONTENT_TYPE,
                    if_generation_match=0,
                    timeout=self.timeout_s,
                    retry=self.retry,
                )
        except NotFound as exc:  # the bucket is there: a resumable session was lost
            raise Temporary(
                f"Cloud Storage lost the upload of {self.path_hint(sha256)} (404); "
                "uploading again should work"
            ) from exc
        return sha256

    def get(self, sha256: str) -> bytes:
        blob = self._blob(sha256)
        with self._errors("get", sha256):
            data: bytes = blob.download_as_bytes(timeout=self.timeout_s, retry=self.retry)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactCorrupted(
                f"artifact {sha256} is corrupted: {self.path_hint(sha256)} now hashes to "
                f"{actual}; restore it from the bucket's object versions or a backup, or "
                "delete it and store the original bytes again"
            )
        return data

    def exists(self, sha256: str) -> bool:
        blob = self._blob(sha256)
        with self._errors("get", sha256):
            found = bool(blob.exists(timeout=self.timeout_s, retry=self.retry))
        if not found:
            self._check_bucket()  # a missing bucket is the operator's, not a missing object
        return found

    def path_hint(self, sha256: str) -> str:
        return f"gs://{self.bucket.name}/{self._name(sha256)}"

    # ------------------------------------------------------------------ helpers
    def _name(self, sha256: str) -> str:
        check_sha256(sha256)
        key = f"sha256/{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob(self, sha256: str) -> Blob:
        return self.bucket.blob(self._name(sha256))

    @contextmanager
    def _errors(self, action: Action, sha256: str) -> Iterator[None]:
        """The client's errors inside as the port's.

        A 404 does not say whether the object or the bucket is missing (Cloud Storage words
        them differently, emulators do not), so it is followed by a look at the bucket.
        """
        try:
            yield
        except api_exceptions.NotFound as exc:
            self._check_bucket()
            raise NotFound(sha256) from exc
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, action, self.path_hint(sha256)) from exc

    def _check_bucket(self) -> None:
        """``NeedsOperator`` if the bucket does not exist."""
        try:
            there = bool(self.bucket.exists(timeout=self.timeout_s, retry=self.retry))
        except api_exceptions.Forbidden:
            # it exists (a missing bucket is a 404 for anyone), but these credentials may not
            # read its metadata: roles/storage.objectAdmin lacks storage.buckets.get
            return
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, "get", f"gs://{self.bucket.name}") from exc
        if not there:
            raise NeedsOperator(
                f"Cloud Storage bucket {self.bucket.name!r} does not exist (project "
                f"{self.client.project!r}): create it or fix the configured bucket name"
            )


def _translate(exc: BaseException, action: Action, where: str) -> Exception:
    """The port's exception for a client error met while trying to ``action`` ``where``."""
    if isinstance(exc, api_exceptions.RetryError):
        return Temporary(f"Cloud Storage kept failing to {action} {where}: {exc.cause or exc}")
    status = _status(exc)
    if status in (401, 403):
        return NeedsOperator(
            f"Cloud Storage refused to {action} {where} ({status}): the credentials likely "
            f"lack storage.objects.{action} on the bucket (or are invalid): {exc}"
        )
    if status is not None and (status in (408, 429) or status >= 500):
        return Temporary(f"Cloud Storage could not {action} {where} ({status}): {exc}")
    if status is None and isinstance(exc, _TRANSIENT_TRANSPORT):
        return Temporary(f"could not reach Cloud Storage to {action} {where}: {exc}")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return NeedsOperator(f"no usable Google credentials to {action} {where}: {exc}")
    return NeedsOperator(f"Cloud Storage rejected the request to {action} {where}: {exc}")


def _status(exc: BaseException) -> int | None:
    """The HTTP status an error carries, if any."""
    if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.code is not None:
        return int(exc.code)
    if isinstance(exc, InvalidResponse):
        return int(exc.response.status_code)
    return None
