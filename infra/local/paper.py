"""The local paper cluster: one supervised, sandboxed process per agent, StatefulSet-like.

Each agent's session is ``paper-{agent}`` with its own folder under
``$TRADEOPS_HOME/paper/paper-{agent}/`` (the spec, the agent file, ``state.json``, its
decision rows, its log), like a StatefulSet's one replica with its volume. ``start``
launches a supervisor process (``python -m infra.local.paper supervise DIR``, detached, so
the session outlives the worker that started it) which runs the session in the sandbox
and restarts it with back-off when it dies, counting restarts; ``stop`` asks the supervisor
to stop (SIGTERM), which stops the session cleanly. ``status`` reads what the supervisor
wrote and asks the session's ``/health`` on its unix socket.

The session writes its decision rows inside its own folder (the sandbox can write nowhere
else). With the local FMEL store, the run's entries there are links to them, so ``tradeops
fmel RUN --verify`` and every FMEL reader see a paper run like any other while it runs; with
another store (BigQuery: ``ship_fmel``), the supervisor checks and ships them there every
few seconds (:mod:`workers.fmel_ship`), and once more when the session ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.local.sandbox import Limits, process_alive
from runtime.files import write_json
from runtime.paths import CANNOT_START_PREFIX, CRASH_PREFIX, HEALTH_SOCKET, PAPER_CANNOT_START
from runtime.paths import PAPER_OUT as OUT
from runtime.paths import PAPER_STATE as STATE_FILE
from workers.events import Event
from workers.ports import (
    FmelStream,
    NotFound,
    Notifier,
    PaperConflict,
    PaperSession,
    PaperSpec,
    SessionStatus,
)

SUPERVISOR_FILE = "supervisor.json"
LOG_FILE = "session.log"
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0  # a session up this long resets the back-off
# liveness: a session whose /health stops answering (this many misses in a row, one asked
# every TRADEOPS_PAPER_HEALTH_S) is restarted
HEALTH_MISSES = 3
# a session asked to stop (SIGTERM) and still running this long after is killed: one hung in
# C code never runs its signal handler (Kubernetes does the same after its grace period)
STOP_GRACE_S = 10.0
SHIP_EVERY_S = 5.0  # a session's new decisions reach a remote FMEL store this often
SHIPPED_FILE = "fmel-shipped.json"  # how far they have (the session cannot write it)


class LocalPaperCluster:
    def __init__(
        self,
        home: Path,
        *,
        data_dir: Path,
        fmel_dir: Path,
        artifacts: Any,
        allow_unsafe: bool = False,
        flush_seconds: float = 2.0,
        limits: Limits | None = None,
        health_every_s: float = 10.0,
        news_env: dict[str, str] | None = None,
        ship_fmel: bool = False,
    ) -> None:
        self.health_every_s = health_every_s
        # the FMEL store is not fmel_dir (BigQuery): supervisors ship the rows to it, made
        # from the settings in their environment
        self.ship_fmel = ship_fmel
        # the settings (TRADEOPS_HOME, REDIS_URL) of the event log a supervisor sends crash
        # news to; None: it sends none (a cluster used on its own, in tests)
        self.news_env = news_env
        self.root = home / "paper"
        self.limits = limits  # the sandbox settings; a session has no CPU-time or wall limit
        self.data_dir = data_dir
        self.fmel_dir = fmel_dir
        self.artifacts = artifacts
        self.allow_unsafe = allow_unsafe
        self.flush_seconds = flush_seconds

    def folder(self, agent: str) -> Path:
        return self.root / f"paper-{agent}"

    # ------------------------------------------------------------------ the port
    def start(self, spec: PaperSpec) -> PaperSession:
        current = self._session(spec.agent)
        if current is not None and current.status in (SessionStatus.STARTING,
                                                      SessionStatus.RUNNING):  # fmt: skip
            raise PaperConflict(f"paper-{spec.agent} is already running (run {current.run_id})")
        folder = self.folder(spec.agent)
        if folder.exists() and _read(folder / SUPERVISOR_FILE).get("run_id") != spec.run_id:
            shutil.rmtree(folder)  # a new session of this agent: a fresh volume
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "agent.py").write_bytes(self.artifacts.get(spec.sha256))
        (folder / "spec.json").write_text(json.dumps({
            "agent_id": spec.agent, "run_id": spec.run_id, "agent_file": "agent.py",
            "symbols": list(spec.symbols), "cash": spec.cash, "feed": spec.feed,
            "start": spec.start, "bar_seconds": spec.bar_seconds,
            "strategy": spec.strategy, "params": dict(spec.params),
            "data_dir": str(self.data_dir), "agent_version": str(spec.version),
            "user_id": spec.owner, "flush_seconds": self.flush_seconds,
            "reply_to": dict(spec.reply_to),
        }))  # fmt: skip
        if self.ship_fmel:
            self._make_fmel_out(folder, spec.run_id)
        else:
            self._link_fmel(folder, spec.run_id)
        write_json(folder / SUPERVISOR_FILE, {
            "agent": spec.agent, "owner": spec.owner, "run_id": spec.run_id,
            "status": SessionStatus.STARTING.value, "restarts": 0, "pid": None,
            "supervisor_pid": None, "started_at": time.time(), "stopped_at": None,
            "parameters": {"symbols": list(spec.symbols), "cash": spec.cash, "feed": spec.feed,
                           "start": spec.start, "bar_seconds": spec.bar_seconds,
                           **({"params": dict(spec.params)} if spec.params else {})},
        }, allow_nan=True)  # fmt: skip
        cmd = [sys.executable, "-m", "infra.local.paper", "supervise", str(folder),
               "--health-s", f"{self.health_every_s:g}"]  # fmt: skip
        if self.limits is not None:  # on the command line: the session's folder is its own
            cmd += ["--limits", json.dumps(_session_limits(self.limits))]
        if self.allow_unsafe:
            cmd.append("--unsafe")
        if self.news_env is not None:
            cmd.append("--news")
        if self.ship_fmel:
            cmd.append("--ship-fmel")
        env = {**os.environ, **(self.news_env or {})}
        with open(folder / "supervisor.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env, start_new_session=True)  # fmt: skip
        _update(folder / SUPERVISOR_FILE, supervisor_pid=proc.pid)
        session = self._session(spec.agent)
        assert session is not None
        return session

    def stop(self, agent: str) -> PaperSession:
        folder = self.folder(agent)
        doc = _read(folder / SUPERVISOR_FILE)
        if not doc:
            raise NotFound(agent)
        pid = doc.get("supervisor_pid")
        if pid and process_alive(int(pid)):
            os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 60
            while process_alive(int(pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
        doc = _read(folder / SUPERVISOR_FILE)
        if doc.get("status") != SessionStatus.STOPPED.value:
            _update(folder / SUPERVISOR_FILE, status=SessionStatus.STOPPED.value,
                    stopped_at=time.time(), pid=None)  # fmt: skip
        session = self._session(agent)
        assert session is not None
        return session

    def status(self, agent: str | None = None) -> list[PaperSession]:
        agents = [agent] if agent else sorted(
            p.name.removeprefix("paper-") for p in self.root.glob("paper-*") if p.is_dir()
        )  # fmt: skip
        return [s for a in agents if (s := self._session(a)) is not None]

    def logs(self, agent: str, tail: int = 100) -> str:
        if self._session(agent) is None:
            raise NotFound(agent)
        path = self.folder(agent) / LOG_FILE
        if not path.exists():  # started, and has said nothing yet
            return ""
        lines = path.read_text(errors="replace").splitlines()
        return "\n".join(lines[max(0, len(lines) - tail) :])

    # ------------------------------------------------------------------ helpers
    def _session(self, agent: str) -> PaperSession | None:
        folder = self.folder(agent)
        doc = _read(folder / SUPERVISOR_FILE)
        if not doc:
            return None
        status = SessionStatus(doc.get("status", "stopped"))
        sup = doc.get("supervisor_pid")
        if status in (SessionStatus.STARTING, SessionStatus.RUNNING) and not (
            sup and process_alive(int(sup))
        ):
            status = SessionStatus.CRASHED  # the supervisor itself is gone
        sock = folder / OUT / HEALTH_SOCKET
        return PaperSession(
            agent=agent,
            owner=str(doc.get("owner", "")),
            status=status,
            run_id=str(doc.get("run_id", "")),
            pid=doc.get("pid"),
            restarts=int(doc.get("restarts", 0)),
            health_url=f"http+unix://{sock}/health",
            health=_trusted_health(health(sock)) if status is SessionStatus.RUNNING else None,
            started_at=float(doc.get("started_at") or 0.0),
            stopped_at=doc.get("stopped_at"),
            parameters=dict(doc.get("parameters") or {}),
            final=None if status is SessionStatus.RUNNING else _final_state(folder / OUT),
        )

    def _make_fmel_out(self, folder: Path, run_id: str) -> tuple[Path, Path]:
        """The folders the session writes its record in: (its rows, its summary file)."""
        from runtime.fmel.store import DECISIONS, SUMMARIES

        out = folder / OUT
        rows = out / "fmel" / DECISIONS / run_id
        summary = out / "fmel" / SUMMARIES / f"{run_id}.parquet"
        rows.mkdir(parents=True, exist_ok=True)
        summary.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the sandbox runs as a real unprivileged uid: it writes these
            from infra.local.sandbox import SANDBOX_UID

            for path in (out, out / "fmel", rows.parent, rows, summary.parent):
                os.chown(path, SANDBOX_UID, SANDBOX_UID)
        return rows, summary

    def _link_fmel(self, folder: Path, run_id: str) -> None:
        """The run's place in the FMEL store points into the session's own folder."""
        from runtime.fmel.store import DECISIONS, SUMMARIES

        rows, summary = self._make_fmel_out(folder, run_id)
        links = ((self.fmel_dir / DECISIONS / run_id, rows),
                 (self.fmel_dir / SUMMARIES / f"{run_id}.parquet", summary))  # fmt: skip
        for link, target in links:
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                continue
            link.symlink_to(target)


def _final_state(out: Path) -> dict[str, Any] | None:
    """The last state the session saved, read as its own (hostile) output: a regular file,
    bounded, and only the figures a reader shows."""
    from workers.collect import Refused, read_regular

    try:
        raw = read_regular(out, STATE_FILE, 1 << 20)
        doc = json.loads(raw) if raw else None
    except (Refused, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    last = doc.get("last_bar_time")
    decisions = _finite(doc.get("last_bar_number"))
    return {
        "equity": _finite(doc.get("equity")),
        "cash": _finite(doc.get("cash")),
        "decisions": int(decisions) if decisions is not None else None,
        "last_bar": last[:40] if isinstance(last, str) else None,
        "positions": _positions(doc.get("positions")),
    }


def _trusted_health(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A session's /health answer (it comes from the agent's sandbox) as known, bounded
    figures only."""
    if not isinstance(doc, dict):
        return None
    texts = {k: v[:80] if isinstance(v := doc.get(k), str) else None
             for k in ("status", "mode", "run_id", "agent_id", "last_bar")}  # fmt: skip
    numbers = {k: _finite(doc.get(k)) for k in ("equity", "cash", "uptime")}
    counts = {k: int(n) if (n := _finite(doc.get(k))) is not None else None
              for k in ("decisions", "resumed_from_bar")}  # fmt: skip
    return {**texts, **numbers, **counts, "positions": _positions(doc.get("positions"))}


def _positions(raw: Any) -> dict[str, dict[str, float | None]]:
    """Open positions, at most 100: size, average price, last close and the unrealised P&L
    this process works out from them."""
    pairs = list(raw.items())[:100] if isinstance(raw, dict) else []
    held: dict[str, dict[str, float | None]] = {}
    for symbol, p in pairs:
        if not isinstance(p, dict) or (size := _finite(p.get("size"))) is None:
            continue
        price, last = _finite(p.get("price")), _finite(p.get("last"))
        unrealised = None if price is None or last is None else size * (last - price)
        held[str(symbol)[:20]] = {"size": size, "price": price, "last": last,
                                  "unrealised": unrealised}  # fmt: skip
    return held


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def health(sock: Path, path: str = "/health", timeout_s: float = 2.0) -> dict[str, Any] | None:
    """GET a session's health document over its unix socket; None when it does not answer.

    The socket is in the session's own folder: a link there (to another socket of this
    host) or anything but a socket is never connected to."""
    try:
        if not stat.S_ISSOCK(sock.lstat().st_mode):
            return None
    except OSError:
        return None
    conn = _UnixHTTPConnection(str(sock), timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        doc: dict[str, Any] = json.loads(resp.read())
        return doc
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


# ---------------------------------------------------------------------- supervisor
FOREVER_S = 10 * 365 * 24 * 3600  # a session runs until stopped: no CPU-time or wall cap


def _session_limits(limits: Limits) -> dict[str, Any]:
    """The sandbox settings a paper session keeps (all but time: it runs until stopped)."""
    chosen = asdict(limits)
    for timed in ("cpu_seconds", "timeout_s"):
        chosen.pop(timed)
    return chosen


def supervise(
    folder: Path,
    allow_unsafe: bool = False,
    limits: dict[str, Any] | None = None,
    *,
    health_every_s: float = 10.0,
    news: Notifier | None = None,
    fmel: FmelStream | None = None,
    ship_every_s: float = SHIP_EVERY_S,
) -> int:
    """Run the session, restarting it with back-off when it dies, until SIGTERM; each crash
    is news for its owner, sent to ``news`` (the event log the bot delivers from). With
    ``fmel``, the session's decisions are shipped there as they are written."""
    shipping = _Shipping(folder, fmel, ship_every_s) if fmel is not None else None
    try:
        return _supervise(folder, allow_unsafe, limits, health_every_s, news)
    finally:
        if shipping is not None:
            shipping.close()  # what the session wrote last


def _supervise(
    folder: Path,
    allow_unsafe: bool,
    limits: dict[str, Any] | None,
    health_every_s: float,
    news: Notifier | None,
) -> int:
    from infra.local.runner import child_env
    from infra.local.sandbox import Mount, Sandbox

    spec = json.loads((folder / "spec.json").read_text())
    chosen = Limits(**(limits or {}), cpu_seconds=FOREVER_S, timeout_s=FOREVER_S)
    sandbox = Sandbox.detect(chosen, allow_unsafe=allow_unsafe)
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            # bubblewrap does not pass signals on, and a signalled bwrap kills its tree:
            # tell the session itself (the innermost process), and only it
            inner = _descendants(child.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(inner[-1] if inner else child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # the folder (spec, agent, the supervisor's record and logs) is read-only to the session;
    # it writes only in its out/ folder, which nothing trusted reads without checking
    (folder / OUT).mkdir(exist_ok=True)
    mounts = [Mount(folder, str(folder)), Mount(folder / OUT, str(folder / OUT), writable=True)]
    if spec.get("data_dir"):
        mounts.append(Mount(Path(spec["data_dir"]), spec["data_dir"]))
    env = {**child_env(), "HOME": "/tmp"}  # noqa: S108 - the sandbox's own tmpfs
    network = spec.get("feed") == "alpaca"
    if network:  # the broker's credentials, and nothing else of this process's environment
        env |= {k: v for k, v in os.environ.items() if k.startswith("ALPACA_")}
    argv = [sys.executable, "-m", "runtime", "paper", "--session", str(folder)]
    restarts = 0
    streak = _Streak()
    while not stopping:
        sandbox.prepare_writable(folder / OUT)
        cmd = sandbox.command(argv, mounts, env, cwd=str(folder), network=network)
        with open(folder / LOG_FILE, "ab") as log:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=env, cwd=folder,
                                     preexec_fn=sandbox.preexec(None))  # fmt: skip
        began = time.monotonic()
        _update(folder / SUPERVISOR_FILE, status=SessionStatus.RUNNING.value, pid=child.pid,
                restarts=restarts)  # fmt: skip
        _say(spec, f"started (pid {child.pid}, restart {restarts})" if restarts
             else f"started (pid {child.pid})")  # fmt: skip
        code, hung = _wait_watching(
            child, folder / OUT / HEALTH_SOCKET, lambda: stopping, health_every_s
        )
        if stopping:
            if hung:
                _say(spec, f"did not stop within {STOP_GRACE_S:g} s of being asked: killed")
            break
        if hung:
            code = -signal.SIGKILL
            _update(folder / SUPERVISOR_FILE, last_problem="stopped answering /health")
        if code == PAPER_CANNOT_START:  # the same request would fail the same way again
            reason = _said_reason(folder / LOG_FILE, CANNOT_START_PREFIX)
            _update(folder / SUPERVISOR_FILE, status=SessionStatus.CRASHED.value, pid=None,
                    stopped_at=time.time(), last_exit=code, last_problem=reason)  # fmt: skip
            streak.crashed(restarts)
            _tell_crash(news, spec, restarts, code, 0.0, "failed", reason=reason, streak=streak)
            _say(spec, f"cannot start, not restarted: {reason}")
            return 1
        if code == 0:  # the feed ended (a replay played to its end)
            _update(folder / SUPERVISOR_FILE, status=SessionStatus.STOPPED.value, pid=None,
                    stopped_at=time.time())  # fmt: skip
            _say(spec, f"ended: its feed played to the end after {time.monotonic() - began:.1f} s")
            return 0
        up = time.monotonic() - began
        restarts += 1
        if up > STABLE_S:  # it ran a good while: this crash starts a new streak
            streak = _Streak()
        streak.crashed(restarts)
        wait = BACKOFF_S[min(streak.crashes, len(BACKOFF_S)) - 1]
        reason = "stopped answering /health" if hung else _said_reason(folder / LOG_FILE)
        _update(folder / SUPERVISOR_FILE, status=SessionStatus.CRASHED.value, pid=None,
                restarts=restarts, last_exit=code, last_problem=reason)  # fmt: skip
        _tell_crash(news, spec, restarts, code, wait, "unhealthy" if hung else "crashed",
                    reason=reason, streak=streak)  # fmt: skip
        _say(spec, f"exited {code} after {up:.1f} s ({reason}); restart {restarts} in {wait:g} s")
        with open(folder / LOG_FILE, "ab") as log:
            log.write(f"-- session exited with {code}; restart {restarts} in {wait:g} s\n".encode())
        deadline = time.monotonic() + wait
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    _update(folder / SUPERVISOR_FILE, status=SessionStatus.STOPPED.value, pid=None,
            stopped_at=time.time())  # fmt: skip
    _say(spec, "stopped")
    return 0


def _say(spec: dict[str, Any], what: str) -> None:
    """One line per session event in the supervisor's log, for the operator."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{when} supervisor paper-{spec['agent_id']} run {spec['run_id']}: {what}",
          file=sys.stderr, flush=True)  # fmt: skip


def _wait_watching(
    child: subprocess.Popen[bytes], sock: Path, stopping: Any, every_s: float
) -> tuple[int, bool]:
    """Wait for the session to end, asking its /health every ``every_s``; one that has
    answered before and then misses ``HEALTH_MISSES`` in a row is hung: it is killed (its
    bubblewrap parent takes the whole sandbox with it), as is one still running
    ``STOP_GRACE_S`` after it was asked to stop. (exit code, killed as hung?)"""
    answered, misses = False, 0
    asked_to_stop: float | None = None
    next_ask = time.monotonic() + every_s
    while True:
        try:  # short waits: a stop is noticed at once, whatever every_s is
            return child.wait(timeout=min(every_s, 0.25)), False
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if stopping():
            asked_to_stop = asked_to_stop or now
            if now - asked_to_stop > STOP_GRACE_S:
                child.kill()
                return child.wait(), True
            continue
        if now < next_ask:
            continue
        next_ask = now + every_s
        if health(sock, timeout_s=every_s) is not None:
            answered, misses = True, 0
        elif answered:
            misses += 1
            if misses >= HEALTH_MISSES:
                child.kill()
                child.wait()
                return -signal.SIGKILL, True


class _Shipping:
    """The session's record shipped to ``stream`` every ``every_s`` from a thread; a
    refusal (the session wrote what does not verify) is the session's last problem."""

    def __init__(self, folder: Path, stream: FmelStream, every_s: float) -> None:
        from workers.collect import Trusted
        from workers.fmel_ship import FmelShipper

        self.folder = folder
        self.spec = json.loads((folder / "spec.json").read_text())
        trusted = Trusted(
            run_id=self.spec["run_id"], agent_id=self.spec["agent_id"],
            agent_version=self.spec["agent_version"], user_id=self.spec["user_id"],
            agent_sha256=None, parameters={}, data_checks=(), symbols=self.spec["symbols"],
        )  # fmt: skip
        self.shipper = FmelShipper(folder / OUT, trusted, stream, folder / SHIPPED_FILE)
        self.every_s = every_s
        self.failing: str | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="fmel-ship", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.wait(self.every_s):
            self.once()

    def once(self) -> None:
        with self.lock:
            told = self.shipper.refused
            try:
                self.shipper.ship()
                failing = None
            except Exception as exc:  # the store is away: the same part is tried next time
                failing = f"{type(exc).__name__}: {exc}"[:300]
            if failing != self.failing:
                self.failing = failing
                _say(self.spec, f"FMEL rows not shipped, tried again in {self.every_s:g} s: "
                     f"{failing}" if failing else "FMEL rows shipping again")  # fmt: skip
            refused = self.shipper.refused
            if refused and not told:
                _update(self.folder / SUPERVISOR_FILE,
                        last_problem=f"decisions not recorded: {refused}"[:300])  # fmt: skip
                _say(self.spec, f"FMEL shipping stopped: {refused}")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.once()


def _said_reason(log: Path, prefix: str = CRASH_PREFIX) -> str:
    """The session's last one-line reason in its log (its own output: bounded text)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 8192))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        tail = []
    said = [line for line in tail if line.startswith(prefix)]
    return said[-1].removeprefix(prefix)[:300] if said else "see the session's log"


@dataclass
class _Streak:
    """Crashes in a row with no stable run between them: one message in the owner's thread,
    updated at each crash (``first`` is the restart count it began at: its identity)."""

    first: int = -1
    crashes: int = 0

    def crashed(self, restarts: int) -> None:
        if self.crashes == 0:
            self.first = restarts
        self.crashes += 1


def _tell_crash(
    news: Notifier | None,
    spec: dict[str, Any],
    restarts: int,
    code: int,
    wait_s: float,
    status: str = "crashed",
    *,
    reason: str | None = None,
    streak: _Streak | None = None,
) -> None:
    """An unhealthy session is news for its owner: a PaperHealth event into the thread
    that started it (the bot posts it), or the event stream digests read."""
    if news is None:
        return
    try:
        from workers import events as ev

        news.send(
            ev.PaperHealth(
                job_id=f"paper-{spec['agent_id']}-{spec['run_id']}",
                user_id=str(spec.get("user_id") or ""),
                reply_to=dict(spec.get("reply_to") or {}),
                agent_id=spec["agent_id"],
                health={
                    "status": status,
                    "exit": code,
                    "restarts": restarts,
                    "restart_in_s": wait_s,
                    "run_id": spec["run_id"],
                    **({"reason": reason} if reason else {}),
                    **({"streak": streak.first, "in_a_row": streak.crashes} if streak else {}),
                },
            )
        )
    except Exception as exc:  # telling is best effort: restarting comes first
        print(f"supervisor: could not report the crash: {exc}", file=sys.stderr)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), deepest last."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                todo += kids
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, ValueError):
        return {}


_UPDATING = threading.Lock()  # the main loop and the shipping thread both update the record


def _update(path: Path, **changes: Any) -> None:
    with _UPDATING:
        write_json(path, {**_read(path), **changes}, allow_nan=True)


def session_dict(session: PaperSession) -> dict[str, Any]:
    doc = asdict(session)
    doc["status"] = session.status.value
    return doc


class _News:
    """The supervisor's crash news: the event log of the settings it was started with
    (``news_env``), reached only when there is news, so a quiet session starts nothing."""

    def __init__(self) -> None:
        self._log: Notifier | None = None

    def send(self, event: Event) -> None:
        if self._log is None:
            from infra.bootstrap import bootstrap
            from infra.settings import Settings

            self._log = bootstrap(Settings.from_env()).events
        self._log.send(event)


class _Fmel:
    """The FMEL store of the settings this supervisor was started with, made at first use."""

    def __init__(self) -> None:
        self._store: Any = None

    def ingest_rows(self, run_id: str, rows: Any, summary: Any = None) -> None:
        if self._store is None:
            from infra.bootstrap import bootstrap
            from infra.settings import Settings

            self._store = bootstrap(Settings.from_env()).fmel
        self._store.ingest_rows(run_id, rows, summary)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "supervise":
        limits = json.loads(args[args.index("--limits") + 1]) if "--limits" in args else None
        every = float(args[args.index("--health-s") + 1]) if "--health-s" in args else 10.0
        sys.exit(supervise(Path(args[1]), allow_unsafe="--unsafe" in args, limits=limits,
                           health_every_s=every,
                           news=_News() if "--news" in args else None,
                           fmel=_Fmel() if "--ship-fmel" in args else None))  # fmt: skip
    print("usage: python -m infra.local.paper supervise DIR [--limits JSON] [--health-s S] "
          "[--unsafe] [--news] [--ship-fmel]", file=sys.stderr)  # fmt: skip
    sys.exit(2)
