"""The local backtest runner: the runtime in a child process, with a wall-clock limit.

The child is ``python -m runtime backtest``; the result comes back in a file, the
child's stdout/stderr are the agent's log (kept up to a size limit), progress is read
from ``progress.json`` while it runs. The child gets its own process group, which is
killed as a whole on timeout, and an environment holding nothing but what Python needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from runtime.backtest import BacktestRequest, error_document
from runtime.defaults import DEFAULT_TIMEOUT_S
from runtime.errors import ErrorKind, make_error

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
REQUEST_FILE = "request.json"
LOG_FILE = "agent.log"
DEFAULT_LOG_LIMIT = 1 << 20

Progress = Callable[[int, int | None], None]


def child_env() -> dict[str, str]:
    """Only what the interpreter needs: no tokens, no secrets, no TRADEOPS_* settings."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


class SubprocessRunner:
    def __init__(
        self,
        *,
        python: str = sys.executable,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log_limit: int = DEFAULT_LOG_LIMIT,
        poll_s: float = 0.1,
    ) -> None:
        self.python = python
        self.timeout_s = timeout_s
        self.log_limit = log_limit
        self.poll_s = poll_s

    def command(self, work_dir: Path) -> list[str]:
        return [
            self.python,
            "-m",
            "runtime",
            "backtest",
            "--request",
            str(work_dir / REQUEST_FILE),
            "--out",
            str(work_dir),
        ]

    def run(
        self, req: BacktestRequest, work_dir: Path, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        """Run the backtest; always returns a result document (``error`` set on failure)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / REQUEST_FILE).write_text(req.to_json())
        for stale in (RESULT_FILE, PROGRESS_FILE):
            (work_dir / stale).unlink(missing_ok=True)
        proc = subprocess.Popen(
            self.command(work_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=work_dir,
            start_new_session=True,
        )
        assert proc.stdout is not None
        log = _LogPump(proc.stdout, work_dir / LOG_FILE, self.log_limit)
        timed_out = self._wait(proc, work_dir, on_progress)
        log.join()
        return self._outcome(req, work_dir, proc.returncode, timed_out)

    def _wait(
        self, proc: subprocess.Popen[bytes], work_dir: Path, on_progress: Progress | None
    ) -> bool:
        deadline = time.monotonic() + self.timeout_s
        seen: tuple[int, int | None] | None = None
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                _kill_group(proc)
                return True
            if on_progress is not None:
                got = _read_progress(work_dir)
                if got is not None and got != seen:
                    seen = got
                    on_progress(*got)
            time.sleep(self.poll_s)
        _kill_group(proc)  # anything the agent left behind in its group
        return False

    def _outcome(
        self, req: BacktestRequest, work_dir: Path, code: int, timed_out: bool
    ) -> dict[str, Any]:
        if timed_out:
            msg = f"TimeoutError: backtest exceeded {_duration(self.timeout_s)}"
            return error_document(req, make_error(ErrorKind.TIMEOUT, msg))
        try:
            doc: dict[str, Any] = json.loads((work_dir / RESULT_FILE).read_text())
            return doc
        except (OSError, ValueError):
            pass
        if code in (-signal.SIGKILL, -signal.SIGSEGV, 137):
            msg = f"the backtest process was killed (exit {code}); it may have run out of memory"
            return error_document(req, make_error(ErrorKind.MEMORY, msg))
        msg = f"the runtime exited with code {code} without a result (see the run's log)"
        return error_document(req, make_error(ErrorKind.PLATFORM, msg))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_progress(work_dir: Path) -> tuple[int, int | None] | None:
    try:
        doc = json.loads((work_dir / PROGRESS_FILE).read_text())
        return int(doc["done"]), doc.get("total")
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _LogPump:
    """Copies the child's output to the log file, up to a limit; drains the rest."""

    def __init__(self, stream: IO[bytes], path: Path, limit: int) -> None:
        self._thread = threading.Thread(
            target=self._pump, args=(stream, path, limit), daemon=True, name="agent-log"
        )
        self._thread.start()

    @staticmethod
    def _pump(stream: IO[bytes], path: Path, limit: int) -> None:
        written = 0
        dropped = 0
        with path.open("wb") as out:
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                room = limit - written
                if room > 0:
                    out.write(chunk[:room])
                    written += min(room, len(chunk))
                dropped += max(0, len(chunk) - max(room, 0))
            if dropped:
                out.write(f"\n[log truncated: {dropped} more bytes not kept]\n".encode())

    def join(self) -> None:
        self._thread.join(timeout=5)
