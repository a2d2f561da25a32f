"""Shared fixtures: a private TRADEOPS_HOME, agent files from source, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "runtime" / "examples"
SMA_CROSS = EXAMPLES_DIR / "sma_cross.py"

# Variables of the caller's shell that would change what the CLI does or where it writes.
_SCRUBBED = (
    "TRADEOPS_HOME", "TRADEOPS_DATA_DIR", "TRADEOPS_BACKEND", "TRADEOPS_ALLOWED_IMPORTS",
    "TRADEOPS_MAX_AGENT_BYTES", "TRADEOPS_SANDBOX_MEMORY_MB", "TRADEOPS_SANDBOX_CPU_SECONDS",
    "TRADEOPS_SANDBOX_PROCESSES", "TRADEOPS_SANDBOX_FILE_MB", "TRADEOPS_SANDBOX_LOG_BYTES",
    "TRADEOPS_WORKER_HEARTBEAT_S", "TRADEOPS_DIGESTS", "TRADEOPS_ADMINS", "TRADEOPS_TRADERS",
    "TRADEOPS_DELIVERY_RETRY_S", "TRADEOPS_PAPER_HEALTH_S", "REDIS_URL", "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "TRADEOPS_ARTIFACTS",
    "TRADEOPS_REGISTRY", "TRADEOPS_FMEL", "TRADEOPS_RUNNER", "TRADEOPS_CLUSTER",
    "GOOGLE_CLOUD_PROJECT",
)  # fmt: skip


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


RunCli = Callable[..., CliResult]
WriteAgent = Callable[..., Path]


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["TRADEOPS_HOME"] = str(home)
    env.update(extra or {})
    return env


def run_cli_in(
    home: Path,
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> CliResult:
    """``python -m bot.cli ARGS`` in a child process, from the repository root."""
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", *map(str, args)],
        cwd=REPO_ROOT,
        env=cli_env(home, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- processes (Linux /proc)
def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (this one excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def survivors(find: Callable[[], list[int]], grace_s: float = 5.0) -> list[int]:
    """What ``find`` still returns after up to ``grace_s`` seconds.

    A killed process takes a moment to be gone (it must be scheduled to exit), longer
    on a loaded machine, so an immediate check could see it still there.
    """
    deadline = time.monotonic() + grace_s
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def tradeops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TRADEOPS_HOME under tmp_path, set in this process's environment too."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TRADEOPS_HOME", str(home))
    for name in _SCRUBBED[1:]:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def run_cli(tradeops_home: Path) -> RunCli:
    """``run_cli("backtest", FILE, ..., env={"X": "1"})`` -> CliResult(code, stdout, stderr)."""

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        home: Path | None = None,
        timeout: float = 120,
    ) -> CliResult:
        return run_cli_in(home or tradeops_home, args, env=env, timeout=timeout)

    return run


@pytest.fixture
def write_agent(tmp_path: Path) -> WriteAgent:
    """``write_agent(source, name="agent.py")`` -> path of the file (source is dedented)."""
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)

    def write(source: str, name: str = "agent.py") -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(source).lstrip("\n"))
        return path

    return write


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CSV data folder (SYN, ALT: 250 daily bars each), quick to backtest."""
    from runtime.data import write_synthetic_dir

    return write_synthetic_dir(tmp_path_factory.mktemp("data"), ["SYN", "ALT"], n_bars=250, seed=11)


@pytest.fixture
def redis_home() -> Iterator[Path]:
    """A short TRADEOPS_HOME (unix socket paths are limited to ~107 bytes) whose embedded
    Redis, if a test starts one, is shut down and removed afterwards."""
    import contextlib
    import signal
    import subprocess

    from infra.local.redis_server import EmbeddedRedis

    home = Path("/tmp") / f"tro-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    yield home
    srv = EmbeddedRedis(home)
    srv.stop()
    pid = srv.pid()
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(home)], check=False)
