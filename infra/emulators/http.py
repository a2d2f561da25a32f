"""The HTTP server under our stand-ins (the Realtime Database, Cloud Build, the Kubernetes API):
HTTP/1.1 with keep-alive on 127.0.0.1, a thread per connection, served from a thread of its
own, and stopped without leaving a handler thread behind on a kept-alive connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[StandInHandler], owner: Any) -> None:
        self.owner = owner  # the stand-in whose requests these are
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)

    def close_connections(self) -> None:
        """Close kept-alive connections, so no handler thread outlives the server."""
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class StandInHandler(BaseHTTPRequestHandler):
    """One connection's requests: each of :attr:`methods` becomes :meth:`serve` with the
    request's body read; other methods get 501, as ``BaseHTTPRequestHandler`` answers."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the official clients' sessions expect
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")

    @property
    def owner(self) -> Any:
        return self.server.owner

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if method not in self.methods:
            self.send_error(501, f"Unsupported method ({method!r})")
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.serve(method, self.rfile.read(length) if length else b"")

    def serve(self, method: str, body: bytes) -> None:
        raise NotImplementedError

    def answer(self, status: int, payload: bytes, headers: Iterable[tuple[str, str]]) -> None:
        """Send a reply: its status, ``headers`` and ``payload`` with its length."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class LocalHttpServer:
    """A stand-in's server: ``handler`` answers on a free port of 127.0.0.1, its ``owner``
    reachable from each request as ``handler.owner``."""

    def __init__(self, handler: type[StandInHandler], owner: Any, name: str) -> None:
        self.handler, self.owner, self.name = handler, owner, name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def port(self, what: str) -> int:
        """The port it listens on; ``RuntimeError`` naming ``what`` when not started."""
        if self._server is None:
            raise RuntimeError(f"{what} is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is None:
            self._server = _Server(self.handler, self.owner)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self.name,
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
