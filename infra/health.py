"""``GET /health`` for the processes that serve nothing else (a worker, the scheduler), so a
pod's probes can ask them: 200 while ``check`` says ok, 503 otherwise."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve_health(port: int, check: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Serve ``/health`` (and ``/healthz``) on ``port`` from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/health", "/healthz"):
                self._send(404, {"error": "not found"})
                return
            try:
                doc = check()
            except Exception as exc:  # the check itself failed: unhealthy, said briefly
                doc = {"status": "error", "error": type(exc).__name__}
            self._send(200 if doc.get("status") == "ok" else 503, doc)

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the probes'
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
