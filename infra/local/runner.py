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
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import IO, Any, cast

from infra.local.sandbox import (
    Isolation,
    Limits,
    Mount,
    Sandbox,
    SandboxUnavailable,
    pids_limit_hit,
    remove_cgroup,
)
from runtime.agent import file_sha256
from runtime.backtest import (
    BacktestRequest,
    error_document,
    load_and_check,
    parameters,
    with_error,
)
from runtime.defaults import DEFAULT_TIMEOUT_S
from runtime.errors import ErrorKind, RunError, RunFailed, make_error
from runtime.files import write_json
from runtime.paths import PROGRESS_FILE as PROGRESS_FILE
from runtime.paths import RESULT_FILE as RESULT_FILE
from runtime.prepared import PREPARED_FILE, PreparedSymbol
from runtime.prepared import save as save_prepared
from workers.collect import (
    RESULT_BYTES,
    Refused,
    Trusted,
    check_against_record,
    parse_result,
    read_chart,
    read_progress,
    read_record,
    read_regular,
    refused_error,
    skeleton,
)
from workers.payloads import ResultDoc, error_doc
from workers.ports import ArtifactStore, BacktestSpec, FmelStore, MarketData

REQUEST_FILE = "request.json"
LOG_FILE = "agent.log"
BOX_DIR = "box"
SANDBOX_OUT = "/out"
SANDBOX_IN = "/in"
DEFAULT_LOG_LIMIT = 1 << 20

Progress = Callable[[int, int | None], None]


def child_env() -> dict[str, str]:
    """Only what the interpreter needs: no tokens, no secrets, no TRADEOPS_* settings."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["MPLBACKEND"] = "Agg"
    # The memory limit is on address space: pyarrow's jemalloc reserves about 1 GB of it up
    # front and every OpenBLAS thread and malloc arena more, so a run under a tight
    # TRADEOPS_SANDBOX_MEMORY_MB used to die (or hang starting a thread) before the agent
    # allocated anything. With these a run starts in about 450 MB of address space.
    env["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["MALLOC_ARENA_MAX"] = "2"
    return env


class SubprocessRunner:
    """Runs backtests in a sandbox (see ``sandbox.py``), one child process tree per run.

    Layout of a run's folder on the host::

        request.json   the request as asked (host paths)
        result.json    the result document (written here by the runner)
        agent.log      the agent's output, capped
        chart.png      the chart, moved out of the box
        box/           the only folder the sandbox may write (mounted at /out)

    FMEL rows the run wrote in ``box/fmel`` are verified and ingested into the FMEL store
    (``fmel``) afterwards, so a sandboxed run never sees, let alone writes, other runs'
    records.

    The port's :meth:`run` takes a :class:`~workers.ports.BacktestSpec` (ids and values):
    the agent's code comes from the artifact store by its digest, the run's folder is
    ``runs_dir/RUN_ID``, and the chart goes back into the store (``chart_artifact``).
    :meth:`run_request` runs a request of host paths, for this machine's own tools.
    """

    def __init__(
        self,
        *,
        sandbox: Sandbox | None = None,
        limits: Limits | None = None,
        python: str = sys.executable,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log_limit: int = DEFAULT_LOG_LIMIT,
        poll_s: float = 0.1,
        allow_unsafe: bool = False,
        warm_dir: Path | None = None,
        keep_warm: bool = True,
        fmel: FmelStore | None = None,
        market: MarketData | None = None,
        artifacts: ArtifactStore | None = None,
        runs_dir: Path | None = None,
    ) -> None:
        self.python = python
        self.artifacts = artifacts  # agent code in, charts out (needed by run())
        self.runs_dir = runs_dir  # where run() keeps each run's folder
        self.fmel = fmel  # where verified decisions go; None: checked, then not kept
        self.market = market  # where bars come from; None: the request's data folder
        # every sandbox setting (memory, CPU, processes, file size, log) when given
        self.limits = (
            limits
            or (sandbox.limits if sandbox is not None else None)
            or Limits(timeout_s=timeout_s, log_bytes=log_limit)
        )
        self.timeout_s = self.limits.timeout_s
        self.log_limit = self.limits.log_bytes
        self.poll_s = poll_s
        self._sandbox = sandbox
        self.allow_unsafe = allow_unsafe
        self.warm_dir = warm_dir  # where waiting sandboxes keep their box; None: no warm start
        self.keep_warm = keep_warm  # after a run, start the next one's sandbox
        self._warm: _Job | None = None

    def _bars(self, req: BacktestRequest) -> list[PreparedSymbol]:
        if self.market is None:
            return load_and_check(req)
        from runtime.data import DataError

        try:
            return self.market.bars(req.symbols, req.start, req.end)
        except DataError as exc:
            raise RunFailed(make_error(ErrorKind.DATA, str(exc))) from exc

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox.detect(self.limits, allow_unsafe=self.allow_unsafe)
        return self._sandbox

    def run(self, spec: BacktestSpec, on_progress: Progress | None = None) -> ResultDoc:
        """Run ``spec``; always returns a result document (``error`` set on failure), its
        chart in the artifact store and its decisions in the FMEL store."""
        if self.artifacts is None or self.runs_dir is None:
            raise RuntimeError("SubprocessRunner.run needs artifacts and runs_dir")
        req = request_for(spec, self.artifacts, self.runs_dir)
        doc = self.run_request(req, req.agent_file.parent, on_progress)
        return store_chart(doc, self.artifacts)

    def run_request(
        self, req: BacktestRequest, work_dir: Path, on_progress: Progress | None = None
    ) -> ResultDoc:
        """Run a request of host paths; always returns a result document (``error`` set on
        failure), its chart at ``req.chart_path``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / REQUEST_FILE).write_text(req.to_json())
        for stale in (RESULT_FILE, PROGRESS_FILE):
            (work_dir / stale).unlink(missing_ok=True)
        try:
            sandbox = self.sandbox
            bars = self._bars(req)  # here, on the trusted side: the box gets only arrays
        except SandboxUnavailable as exc:
            return early_failure(req, make_error(ErrorKind.PLATFORM, str(exc)))
        except RunFailed as exc:
            doc = early_failure(req, exc.error)
            doc["sandbox"] = None  # nothing ran
            (work_dir / RESULT_FILE).write_text(json.dumps(doc))
            return doc
        job = self._claim_warm(req, bars) or self._start_cold(
            sandbox, req, bars, work_dir / BOX_DIR
        )
        try:
            assert job.proc.stdout is not None
            log = _LogPump(job.proc.stdout, work_dir / LOG_FILE, self.log_limit)
            job.hand_over()
            stopped = self._wait(job.proc, job.box, on_progress)
            log.join()
            forks_capped = pids_limit_hit(job.cgroup)
        finally:
            remove_cgroup(job.cgroup)
        trusted = trusted_of(req, bars)
        doc = self._outcome(trusted, job.box, job.proc.returncode, stopped, forks_capped)
        doc = take_outputs(job.box, req, trusted, doc, self.fmel)
        doc["sandbox"] = sandbox.describe()
        if (progress := read_progress(job.box, PROGRESS_FILE)) is not None:
            write_json(work_dir / PROGRESS_FILE, {"done": progress[0], "total": progress[1]})
        write_json(work_dir / RESULT_FILE, doc)
        shutil.rmtree(job.box, ignore_errors=True)
        if self.warm_dir is not None and self.keep_warm:
            self.prewarm()
        return doc

    # ------------------------------------------------------------ starting runs
    def _launch(self, sandbox: Sandbox, view: _View, argv: list[str], stdin: int) -> _Job:
        sandbox.prepare_writable(view.box)
        cmd = sandbox.command(argv, view.mounts, view.env(), cwd=view.path(view.box))
        cgroup = sandbox.cgroup(f"{view.box.name}-{os.getpid()}")
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=stdin,
                env=view.env(),
                cwd=view.box,
                preexec_fn=sandbox.preexec(cgroup),  # limits must apply before exec
            )
        except BaseException:
            remove_cgroup(cgroup)
            raise
        return _Job(proc, view, cgroup)

    def _start_cold(
        self, sandbox: Sandbox, req: BacktestRequest, bars: list[PreparedSymbol], box: Path
    ) -> _Job:
        shutil.rmtree(box, ignore_errors=True)
        box.mkdir()
        save_prepared(bars, box / PREPARED_FILE)
        view = _View.of(sandbox, req, box)
        assert view.request is not None
        (box / REQUEST_FILE).write_text(view.request.to_json())
        argv = [self.python, "-m", "runtime", "backtest"]
        argv += ["--request", view.path(box / REQUEST_FILE), "--out", view.path(box)]
        return self._launch(sandbox, view, argv, subprocess.DEVNULL)

    def prewarm(self) -> None:
        """Start the next run's sandbox now, imports done, waiting for its request.

        Only with a private file system (bubblewrap): the agent file is copied into the
        waiting sandbox's box when the request comes. One run per sandbox, never reused.
        """
        self.close()
        if self.warm_dir is None or self.sandbox.isolation is not Isolation.BUBBLEWRAP:
            return
        box = self.warm_dir / f"warm-{uuid.uuid4().hex[:12]}"
        box.mkdir(parents=True)
        view = _View.warm(box)
        argv = [self.python, "-m", "runtime", "serve", "--out", SANDBOX_OUT]
        self._warm = self._launch(self.sandbox, view, argv, subprocess.PIPE)

    def _claim_warm(self, req: BacktestRequest, bars: list[PreparedSymbol]) -> _Job | None:
        warm, self._warm = self._warm, None
        if warm is None:
            return None
        if warm.proc.poll() is None:
            warm.adopt(req, bars)
            return warm
        warm.discard()
        return None

    def close(self) -> None:
        """Stop a waiting warm sandbox, if any."""
        warm, self._warm = self._warm, None
        if warm is not None:
            warm.discard()

    def _wait(
        self, proc: subprocess.Popen[bytes], box: Path, on_progress: Progress | None
    ) -> Stop | None:
        """Until the run ends, or why it was stopped: the wall clock, or its output quota."""
        deadline = time.monotonic() + self.timeout_s
        seen: tuple[int, int | None] | None = None
        limits = self.limits
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                _kill_group(proc)
                return Stop.TIMEOUT
            if over_quota(box, limits.output_mb << 20, limits.output_files):
                _kill_group(proc)
                return Stop.QUOTA
            if on_progress is not None:
                got = read_progress(box, PROGRESS_FILE)
                if got is not None and got != seen:
                    seen = got
                    on_progress(*got)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.poll_s)  # returns as soon as the run ends
        _kill_group(proc)  # anything the agent left behind in its group
        if over_quota(box, limits.output_mb << 20, limits.output_files):
            return Stop.QUOTA  # written in its last moments
        return None

    def _outcome(
        self, trusted: Trusted, box: Path, code: int, stopped: Stop | None, forks_capped: bool
    ) -> ResultDoc:
        """The result document, read through the trust boundary (``workers.collect``)."""
        if stopped is Stop.TIMEOUT:
            msg = f"TimeoutError: backtest exceeded {duration_text(self.timeout_s)}"
            return failed_doc(trusted, make_error(ErrorKind.TIMEOUT, msg))
        if stopped is Stop.QUOTA:
            quota = self.limits.output_mb
            msg = (f"the run's files passed its output quota of {quota} MB or "
                   f"{self.limits.output_files} files (TRADEOPS_SANDBOX_OUTPUT_MB)")  # fmt: skip
            return failed_doc(trusted, make_error(ErrorKind.AGENT, msg, hint=HINT_QUOTA))
        try:
            raw = read_regular(box, RESULT_FILE, RESULT_BYTES)
            if raw is None:
                return failed_doc(trusted, crash_error(code, self.sandbox.limits))
            doc = parse_result(raw, trusted)
        except Refused as exc:
            return failed_doc(trusted, refused_error(str(exc)))
        error = doc.get("error")
        if not error or error["kind"] not in (ErrorKind.AGENT, ErrorKind.PLATFORM):
            return doc
        # what failed (the agent's code, or our writer's thread) failed for want of what the
        # agent used up: name the limit, and the fault is the agent's
        limits = self.sandbox.limits
        if forks_capped:
            hit = f"the process limit of {limits.processes} was reached"
        elif largest_file(box) >= limits.file_mb << 20:
            hit = f"the file size limit ({limits.file_mb} MB) was reached"
        else:
            return doc
        doc["error"] = error_doc(
            make_error(
                ErrorKind.AGENT,
                f"{error['message']} ({hit})",
                error.get("line"),
                traceback=error.get("traceback"),
            )
        )
        return doc


class Stop(Enum):
    """Why the runner stopped a run before it ended by itself."""

    TIMEOUT = "timeout"
    QUOTA = "quota"


HINT_QUOTA = (
    "An agent needs no files of its own: keep values in memory, print less, and let "
    "tradeops record the decisions."
)


def _entries(box: Path) -> Iterator[os.stat_result]:
    """What is in ``box``, every level, links not followed (vanishing entries skipped)."""
    folders = [str(box)]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    yield entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
        except OSError:  # removed while looking: what is left is counted
            continue


def over_quota(box: Path, max_bytes: int, max_files: int) -> bool:
    """Whether the files in ``box`` take more room or are more numerous than allowed.
    Allocated blocks count, so a sparse file cannot hide."""
    used = 0
    for files, info in enumerate(_entries(box), start=1):
        used += info.st_blocks * 512
        if used > max_bytes or files > max_files:
            return True
    return False


def largest_file(box: Path) -> int:
    return max((i.st_size for i in _entries(box) if stat.S_ISREG(i.st_mode)), default=0)


def crash_error(code: int, limits: Limits) -> RunError:
    """Why the runtime ended without a result, from how it ended.

    A process killed by a signal shows as ``-signal`` when it is our child, and as
    ``128 + signal`` when bubblewrap (its parent inside the sandbox) reports it.
    """
    sig = -code if code < 0 else code - 128 if code > 128 else None
    if sig == signal.SIGXCPU:
        limit = limits.cpu_seconds or int(limits.timeout_s) + 1
        msg = f"TimeoutError: the CPU time limit ({limit} s) was reached"
        return make_error(ErrorKind.TIMEOUT, msg)
    if sig in (signal.SIGKILL, signal.SIGSEGV):
        msg = (
            f"the backtest process was killed (signal {sig}); it may have run out of memory "
            f"(limit {limits.memory_mb} MB)"
        )
        return make_error(ErrorKind.MEMORY, msg)
    if sig == signal.SIGXFSZ:
        msg = f"the run wrote a file larger than the limit ({limits.file_mb} MB)"
        return make_error(ErrorKind.AGENT, msg)
    msg = f"the runtime exited with code {code} without a result (see the run's log)"
    return make_error(ErrorKind.PLATFORM, msg)


@dataclass(frozen=True)
class _View:
    """How the run's files appear inside the sandbox."""

    request: BacktestRequest | None
    mounts: tuple[Mount, ...]
    private_fs: bool
    box: Path

    @classmethod
    def of(cls, sandbox: Sandbox, req: BacktestRequest, box: Path) -> _View:
        if sandbox.isolation is not Isolation.BUBBLEWRAP:  # no mount namespace: host paths
            chart = box / "chart.png" if req.chart_path is not None else None
            inner = replace(
                req, fmel_dir=box / "fmel", chart_path=chart, prepared_data=box / PREPARED_FILE
            )
            return cls(inner, (), False, box)
        agent = f"{SANDBOX_IN}/{req.agent_file.name}"
        mounts = (Mount(box, SANDBOX_OUT, writable=True), Mount(req.agent_file, agent))
        return cls(_inside(req, Path(agent)), mounts, True, box)

    @classmethod
    def warm(cls, box: Path) -> _View:
        """A sandbox started before its request: agent and bars will be put in the box."""
        return cls(None, (Mount(box, SANDBOX_OUT, writable=True),), True, box)

    def env(self) -> dict[str, str]:
        home = "/tmp" if self.private_fs else str(self.box)  # noqa: S108 - the sandbox's tmpfs
        return {**child_env(), "HOME": home, "MPLCONFIGDIR": home}

    def path(self, host: Path) -> str:
        """The sandbox's name for a path inside the box."""
        if not self.private_fs:
            return str(host)
        return str(Path(SANDBOX_OUT) / host.relative_to(self.box))


def _inside(req: BacktestRequest, agent: Path) -> BacktestRequest:
    return replace(
        req,
        agent_file=agent,
        data_dir=Path(SANDBOX_OUT),  # unused: the bars come prepared
        prepared_data=Path(SANDBOX_OUT) / PREPARED_FILE,
        fmel_dir=Path(SANDBOX_OUT) / "fmel",
        chart_path=None if req.chart_path is None else Path(SANDBOX_OUT) / "chart.png",
    )


class _Job:
    """A started sandbox: cold (its request is in the box) or warm (waiting on stdin)."""

    def __init__(self, proc: subprocess.Popen[bytes], view: _View, cgroup: Path | None) -> None:
        self.proc = proc
        self.view = view
        self.cgroup = cgroup
        self.request: BacktestRequest | None = None

    @property
    def box(self) -> Path:
        return self.view.box

    def adopt(self, req: BacktestRequest, bars: list[PreparedSymbol]) -> None:
        """Give a warm sandbox its run: the bars and a copy of the agent go into its box."""
        save_prepared(bars, self.box / PREPARED_FILE)
        inbox = self.box / "in"
        inbox.mkdir()
        shutil.copyfile(req.agent_file, inbox / req.agent_file.name)
        self.request = _inside(req, Path(SANDBOX_OUT) / "in" / req.agent_file.name)

    def hand_over(self) -> None:
        if self.request is None or self.proc.stdin is None:
            return  # a cold start read its request from the box
        self.proc.stdin.write(self.request.to_json().encode() + b"\n")
        self.proc.stdin.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        _kill_group(self.proc)
        remove_cgroup(self.cgroup)
        shutil.rmtree(self.box, ignore_errors=True)


def request_for(spec: BacktestSpec, artifacts: ArtifactStore, runs_dir: Path) -> BacktestRequest:
    """The request of host paths for ``spec``: its folder ``runs_dir/RUN_ID`` made, the
    agent's code fetched there by its digest (``NotFound`` before anything is made)."""
    code = artifacts.get(spec.agent_sha256)
    work = runs_dir / spec.run_id
    work.mkdir(parents=True, exist_ok=True)
    agent_file = work / f"{spec.agent}.py"
    agent_file.write_bytes(code)
    return BacktestRequest(
        agent_file=agent_file,
        run_id=spec.run_id,
        symbols=spec.symbols,
        start=spec.start,
        end=spec.end,
        cash=spec.cash,
        commission=spec.commission,
        strategy=spec.strategy,
        params=dict(spec.params),
        engine=spec.engine,
        agent_id=spec.agent,
        agent_version=str(spec.version),
        user_id=spec.owner,
        chart_path=work / "chart.png" if spec.chart else None,
    )


def store_chart(doc: ResultDoc, artifacts: ArtifactStore) -> ResultDoc:
    """The chart the run drew, moved into the artifact store (``chart_artifact``): front-ends
    on other hosts fetch it there."""
    chart = Path(doc["chart"]) if isinstance(doc["chart"], str) else None
    doc["chart"] = None
    doc["chart_artifact"] = None
    if chart is not None and chart.is_file():
        doc["chart_artifact"] = artifacts.put(chart.read_bytes(), kind="chart")
        chart.unlink()
    return doc


def trusted_of(req: BacktestRequest, bars: list[PreparedSymbol]) -> Trusted:
    """What this side knows of the run: nothing of it comes from the box."""
    return Trusted(
        run_id=req.run_id,
        agent_id=req.resolved_agent_id,
        agent_version=str(req.agent_version),
        user_id=req.user_id,
        agent_sha256=file_sha256(req.agent_file),
        parameters=parameters(req, bars),
        data_checks=[c for b in bars for c in b.checks],
        symbols=[b.symbol for b in bars],
        mode="PAPER" if req.engine == "paper" else "BACKTEST",
    )


def failed_doc(trusted: Trusted, error: RunError) -> ResultDoc:
    doc = skeleton(trusted)
    with_error(cast(dict[str, Any], doc), error)  # the same failed-run fields as the runtime's
    return doc


def early_failure(req: BacktestRequest, error: RunError) -> ResultDoc:
    """The document of a run that failed before any of it ran (no sandbox, no data)."""
    return cast(ResultDoc, error_document(req, error))


def take_outputs(
    box: Path,
    req: BacktestRequest,
    trusted: Trusted,
    doc: ResultDoc,
    fmel: FmelStore | None,
) -> ResultDoc:
    """Take the run's decisions and chart out of its box, verified; the document says
    what was stored. A record that does not verify fails the run, and is not stored."""
    record = None
    if not doc["error"] or doc["fmel"] is not None:  # a failed run may keep its first bars
        try:
            record = read_record(box, trusted)
            check_against_record(doc, record)
        except Refused as exc:
            if not doc["error"]:
                return failed_doc(trusted, refused_error(str(exc)))
            record, doc["fmel"] = None, None  # the run's own failure is the news
            doc["warnings"].append(f"its decisions were not kept: {exc}")
    if record is not None and fmel is not None:
        fmel.ingest(req.run_id, record)
    chart_path = req.chart_path if doc["chart"] else None
    doc["chart"] = None
    if chart_path is not None:
        try:
            png = read_chart(box)
        except Refused as exc:
            doc["warnings"].append(f"chart not shown: {exc}")
            png = None
        if png is not None:
            chart_path.parent.mkdir(parents=True, exist_ok=True)
            chart_path.write_bytes(png)
            doc["chart"] = str(chart_path)
    return doc


def duration_text(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
