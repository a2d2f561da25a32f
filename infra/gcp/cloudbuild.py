"""The backtest runner on Google Cloud Build: one build per backtest, in the prebuilt runtime
image, hardened as ``infra/deploy/cloudbuild.yaml`` says (that file is the build: it is
loaded and submitted with its substitutions filled, so what an operator submits by hand and
what tradeops submits are the same).

A run, from the worker's side:

1. The agent's code is already in the bucket (the artifact store, by its sha256). The bars
   are loaded and checked here, on the trusted side, as for a local run, and staged with the
   request (its paths as the container sees them) under ``PREFIX/runs/RUN_ID/in/``.
2. The build fetches them, runs ``python -m runtime backtest`` in the image (no network, a
   read-only root, no capabilities, uid 10001, no new privileges, a small noexec /tmp, the
   sandbox's memory, process, file-size and CPU limits), packs ``/out`` with tar and uploads
   the archive to ``PREFIX/runs/RUN_ID/outputs.tgz``. Its log goes to ``PREFIX/logs/``.
3. While it runs, its status is polled and its log read as it grows: the runtime's progress
   lines (``--progress-log``) become the job's progress. Past the runner's timeout the build
   is cancelled.
4. The archive is unpacked here (regular files and folders only, within the output quota;
   links, devices and FIFOs are dropped and said) and read through the same trusted collect
   step as a local run (:mod:`workers.collect`): the result checked, the decisions verified
   and put in the FMEL store, the chart put in the artifact store. The result document
   names the runner, the build and its log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from infra.local.runner import (
    LOG_FILE,
    REQUEST_FILE,
    crash_error,
    duration_text,
    early_failure,
    failed_doc,
    request_for,
    store_chart,
    take_outputs,
    trusted_of,
)
from infra.local.sandbox import Limits
from runtime.backtest import BacktestRequest
from runtime.data import DataError
from runtime.errors import ErrorKind, make_error
from runtime.files import write_json
from runtime.paths import PROGRESS_LINE, RESULT_FILE
from runtime.prepared import PREPARED_FILE
from runtime.prepared import save as save_prepared
from workers.collect import RESULT_BYTES, Refused, parse_result, read_regular, refused_error
from workers.payloads import ResultDoc
from workers.ports import BacktestSpec, FmelStore, MarketData, NeedsOperator, Temporary

log = logging.getLogger(__name__)

BUILD_FILE = Path(__file__).resolve().parents[1] / "deploy" / "cloudbuild.yaml"
OUTPUTS = "outputs.tgz"
RUN_STEP = "run"
POLL_S = 2.0
LOG_KEPT = 8 << 20  # of a build's log, the newest this much is kept while reading
MAX_LINE = 64 << 10
# a build may wait this long for Cloud Build to start it, past the run's own timeout, and
# still be followed; the worker's job (the run's timeout + 120 s) ends after that
QUEUE_ALLOWANCE_S = 90.0
FINAL = frozenset({"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})
Progress = Callable[[int, int | None], None]


class CloudBuildRunner:
    """``BacktestRunner`` on Cloud Build.

    ``client`` is a ``CloudBuildClient`` (REST transport), or a function making one at the
    first run (so a process that only builds job services, a bot sweeping the queue, needs no
    Cloud Build credentials), ``artifacts`` the Cloud Storage
    artifact store whose bucket also holds the runs' files and the builds' logs, ``image``
    the runtime image (pinned by tag or digest). ``limits`` are the sandbox settings the
    container gets; ``limits.timeout_s`` is the build's timeout (the seed's 20 minutes).
    """

    def __init__(
        self,
        *,
        client: Any,
        project: str,
        artifacts: Any,
        image: str,
        runs_dir: Path,
        market: MarketData,
        fmel: FmelStore | None,
        limits: Limits,
        region: str | None = None,
        poll_s: float = POLL_S,
        build_file: Path = BUILD_FILE,
    ) -> None:
        self._client = client
        self.project = project
        self.artifacts = artifacts
        self.bucket = artifacts.bucket
        self.prefix = artifacts.prefix
        self.image = image
        self.runs_dir = runs_dir
        self.market = market
        self.fmel = fmel
        self.limits = limits
        self.region = region
        self.poll_s = poll_s
        self.template: dict[str, Any] = yaml.safe_load(build_file.read_text())

    @property
    def client(self) -> Any:
        if callable(self._client) and not hasattr(self._client, "create_build"):
            self._client = self._client()
        return self._client

    # ------------------------------------------------------------------ the port
    def run(self, spec: BacktestSpec, on_progress: Progress | None = None) -> ResultDoc:
        req = request_for(spec, self.artifacts, self.runs_dir)
        work = req.agent_file.parent
        shutil.rmtree(work / "box", ignore_errors=True)  # an earlier attempt's
        (work / REQUEST_FILE).write_text(req.to_json())
        try:
            bars = self.market.bars(req.symbols, req.start, req.end)
        except DataError as exc:  # the request cannot be played: nothing is started
            return self._done(work, early_failure(req, make_error(ErrorKind.DATA, str(exc))))
        trusted = trusted_of(req, bars)
        self._stage(work, req, bars)
        build_id, log_url, build, cancelled = self._build(spec, on_progress)
        runner = {"name": "cloudbuild", "build_id": build_id, "log_url": log_url}
        status = _status(build)
        if status == "TIMEOUT" or cancelled:
            msg = f"TimeoutError: backtest exceeded {duration_text(self.limits.timeout_s)}"
            return self._failed(work, trusted, make_error(ErrorKind.TIMEOUT, msg), runner)
        if status in ("CANCELLED", "EXPIRED"):  # by someone else, or never started
            msg = f"Cloud Build build {build_id} was {status.lower()}"
            return self._failed(work, trusted, make_error(ErrorKind.PLATFORM, msg), runner)
        step = _step(build, RUN_STEP)
        ran = step is not None and _status(step) not in ("", "QUEUED", "PENDING")
        if status != "SUCCESS" and not (ran and self._has_outputs(spec.run_id)):
            detail = str(getattr(build, "status_detail", "") or status.lower())[:300]
            msg = f"Cloud Build build {build_id} failed before the run's outputs were saved: "
            return self._failed(work, trusted, make_error(ErrorKind.PLATFORM, msg + detail), runner)
        box = work / "box"
        try:
            skipped = self._unpack(spec.run_id, box)
        except Refused as exc:
            return self._done(work, failed_doc(trusted, refused_error(str(exc))), runner)
        exit_code = int(getattr(step, "exit_code", 0) or 0) if step is not None else 0
        try:
            raw = read_regular(box, RESULT_FILE, RESULT_BYTES)
            if raw is None:  # docker says 128 + the signal of a killed container
                doc = failed_doc(trusted, crash_error(exit_code, self.limits))
            else:
                doc = parse_result(raw, trusted)
        except Refused as exc:
            doc = failed_doc(trusted, refused_error(str(exc)))
        doc = take_outputs(box, req, trusted, doc, self.fmel)
        if skipped:
            doc["warnings"].append(f"not kept from the run's files: {', '.join(skipped[:5])}")
        return self._done(work, doc, runner)

    # ------------------------------------------------------------------ steps
    def _failed(
        self, work: Path, trusted: Any, error: Any, runner: dict[str, Any]
    ) -> ResultDoc:
        return self._done(work, failed_doc(trusted, error), runner)

    def _done(self, work: Path, doc: ResultDoc, runner: dict[str, Any] | None = None) -> ResultDoc:
        if runner is not None:
            doc["runner"] = runner
        doc["sandbox"] = None
        store_chart(doc, self.artifacts)
        write_json(work / RESULT_FILE, doc)
        shutil.rmtree(work / "box", ignore_errors=True)
        return doc

    def _object(self, run_id: str, name: str) -> Any:
        key = f"runs/{run_id}/{name}"
        return self.bucket.blob(f"{self.prefix}/{key}" if self.prefix else key)

    def _url(self, run_id: str) -> str:
        key = f"runs/{run_id}"
        return f"gs://{self.bucket.name}/{self.prefix}/{key}" if self.prefix else (
            f"gs://{self.bucket.name}/{key}")  # fmt: skip

    def _stage(self, work: Path, req: BacktestRequest, bars: Any) -> None:
        """The request (paths as the container sees them) and the bars, into the bucket."""
        inner = replace(
            req, agent_file=Path("/in/agent.py"), data_dir=Path("/in"),
            prepared_data=Path("/in") / PREPARED_FILE, fmel_dir=Path("/out/fmel"),
            chart_path=Path("/out/chart.png") if req.chart_path else None,
        )  # fmt: skip
        staged = work / "in"
        staged.mkdir(exist_ok=True)
        save_prepared(bars, staged / PREPARED_FILE)
        with _storage_errors("stage the run's files of", req.run_id):
            self._object(req.run_id, f"in/{REQUEST_FILE}").upload_from_string(
                inner.to_json(), content_type="application/json", timeout=60
            )
            self._object(req.run_id, f"in/{PREPARED_FILE}").upload_from_filename(
                str(staged / PREPARED_FILE), content_type="application/octet-stream", timeout=120
            )
            if self._has_outputs(req.run_id):  # a retry's: never read an earlier attempt's
                self._object(req.run_id, OUTPUTS).delete(timeout=60)

    def build_request(self, spec: BacktestSpec) -> Any:
        """The Build for ``spec``: the build file with its substitutions filled."""
        from google.cloud.devtools import cloudbuild_v1

        doc = json.loads(json.dumps(self.template))
        limits = self.limits
        doc["substitutions"] = {
            **doc.get("substitutions", {}),
            "_RUN_ID": spec.run_id,
            "_AGENT": spec.agent,
            "_AGENT_URL": self.artifacts.path_hint(spec.agent_sha256),
            "_RUN_URL": self._url(spec.run_id),
            "_IMAGE": self.image,
            "_MEMORY_MB": str(limits.memory_mb),
            "_PROCESSES": str(limits.processes),
            "_FILE_BYTES": str(limits.file_mb << 20),
            "_CPU_SECONDS": str(limits.cpu_seconds or int(limits.timeout_s) + 1),
        }
        doc["timeout"] = f"{int(limits.timeout_s)}s"
        doc["logsBucket"] = f"gs://{self.bucket.name}/{self.prefix}/logs" if self.prefix else (
            f"gs://{self.bucket.name}/logs")  # fmt: skip
        return cloudbuild_v1.Build.from_json(json.dumps(doc))

    def _build(
        self, spec: BacktestSpec, on_progress: Progress | None
    ) -> tuple[str, str, Any, bool]:
        """Submit the build and follow it to its end, cancelling it past the timeout:
        (its id, its log's address, the build at its end, cancelled by us?)."""
        build = self.build_request(spec)
        parent = f"projects/{self.project}/locations/{self.region}" if self.region else None
        with _build_errors("start the Cloud Build build of", spec.run_id):
            if parent:
                op = self.client.create_build(request={"parent": parent,
                                                       "project_id": self.project,
                                                       "build": build})  # fmt: skip
            else:
                op = self.client.create_build(project_id=self.project, build=build)
        build_id = op.metadata.build.id
        name = f"{parent}/builds/{build_id}" if parent else None
        log.info("run %s: Cloud Build build %s", spec.run_id, build_id)
        logs = _LogReader(self.bucket, self.prefix, build_id)
        ids = {"name": name, "project_id": self.project, "id": build_id} if name else {
            "project_id": self.project, "id": build_id}  # fmt: skip
        deadline = time.monotonic() + self.limits.timeout_s + QUEUE_ALLOWANCE_S
        cancelled = ended = False
        seen: tuple[int, int | None] | None = None
        pause = min(0.25, self.poll_s)  # quick at first (a short build), then every poll_s

        def report() -> None:
            nonlocal seen
            got = logs.progress()
            if got is not None and got != seen and on_progress is not None:
                seen = got
                on_progress(*got)

        try:
            while True:
                with _build_errors("follow the Cloud Build build of", spec.run_id):
                    current = self.client.get_build(request=ids)
                report()
                if _status(current) in FINAL:
                    ended = True
                    report()  # the log's last lines may land with the end
                    break
                if not cancelled and time.monotonic() > deadline:
                    self._cancel(ids, spec.run_id)
                    cancelled = True
                time.sleep(pause)
                pause = min(pause * 1.5, self.poll_s)
        finally:
            if not ended and not cancelled:  # the job's own timeout, a signal, an error
                with contextlib.suppress(Exception):
                    self._cancel(ids, spec.run_id)
        self._keep_log(spec.run_id, logs)
        return build_id, str(getattr(current, "log_url", "") or ""), current, cancelled

    def _cancel(self, ids: dict[str, str], run_id: str) -> None:
        with _build_errors("cancel the Cloud Build build of", run_id):
            self.client.cancel_build(request=ids)
        log.info("run %s: Cloud Build build %s cancelled", run_id, ids["id"])

    def _keep_log(self, run_id: str, logs: _LogReader) -> None:
        """The run step's lines of the build log, as the run's agent log (capped)."""
        text = logs.step_lines(RUN_STEP, self.limits.log_bytes)
        (self.runs_dir / run_id / LOG_FILE).write_text(text)

    def _has_outputs(self, run_id: str) -> bool:
        with _storage_errors("look for the outputs of", run_id):
            found = bool(self._object(run_id, OUTPUTS).exists(timeout=60))
        return found

    def _unpack(self, run_id: str, box: Path) -> list[str]:
        """The outputs archive into ``box``: regular files and folders only, within the
        output quota; what else it held is named in the list returned."""
        limit = self.limits.output_mb << 20
        blob = self._object(run_id, OUTPUTS)
        with _storage_errors("fetch the outputs of", run_id):
            blob.reload(timeout=60)
            if (blob.size or 0) > limit:
                raise Refused(f"the run's outputs are {blob.size} bytes, over {limit}")
            raw = blob.download_as_bytes(timeout=300)
        return unpack_outputs(raw, box, max_bytes=limit, max_files=self.limits.output_files)


def unpack_outputs(raw: bytes, box: Path, *, max_bytes: int, max_files: int) -> list[str]:
    """Unpack a run's outputs archive (what the run wrote: hostile) into ``box``. Only
    regular files and folders, at relative paths without ``..``; nothing is followed or
    overwritten; :class:`Refused` past ``max_bytes`` unpacked or ``max_files`` entries, or
    for an archive that does not read. Returns the names of the entries left out."""
    box.mkdir(parents=True, exist_ok=False)
    skipped: list[str] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            for count, member in enumerate(archive, start=1):
                if count > max_files:
                    raise Refused(f"the run's outputs hold more than {max_files} entries")
                parts = [p for p in Path(member.name).parts if p not in (".", "")]
                if not parts:
                    continue
                if member.name.startswith("/") or ".." in parts:
                    raise Refused(f"the run's outputs hold a path outside them: {member.name!r}")
                target = box.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    skipped.append("/".join(parts)[:80])
                    continue
                total += member.size
                if total > max_bytes:
                    raise Refused(f"the run's outputs unpack to more than {max_bytes} bytes")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with source, os.fdopen(os.open(target, flags, stat.S_IRUSR | stat.S_IWUSR),
                                       "wb") as out:  # fmt: skip
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileExistsError):
            raise Refused("the run's outputs name one file twice") from None
        raise Refused(f"the run's outputs are not a readable archive ({exc})") from None
    return skipped


class _LogReader:
    """A build's log object, read as it grows (only the new bytes each time)."""

    def __init__(self, bucket: Any, prefix: str, build_id: str) -> None:
        key = f"logs/log-{build_id}.txt"
        self.bucket = bucket
        self.name = f"{prefix}/{key}" if prefix else key
        self.text = ""
        self.offset = 0  # bytes of the object read so far
        self.partial = b""  # a line not ended yet
        self._progress: tuple[int, int | None] | None = None

    def read(self) -> None:
        # a new Blob each time: one that has read the object pins its generation, and the
        # log is rewritten as it grows (each write a new generation)
        blob = self.bucket.blob(self.name)
        try:
            new = blob.download_as_bytes(start=self.offset, timeout=30)
        except Exception:  # not there yet, or nothing new (416): next time
            return
        self.offset += len(new)
        # whole lines only (a write may end mid-line); what the agent prints is bounded here
        done, _, rest = (self.partial + new).rpartition(b"\n")
        self.partial = rest[-MAX_LINE:]
        if done:
            lines = done.decode("utf-8", errors="replace") + "\n"
            for found in _PROGRESS.finditer(lines):  # only the new lines: the last one wins
                total = found.group(2)
                self._progress = (int(found.group(1)), int(total) if total.isdigit() else None)
            self.text += lines
            if len(self.text) > LOG_KEPT:
                self.text = self.text[-LOG_KEPT // 2:]

    def progress(self) -> tuple[int, int | None] | None:
        self.read()
        return self._progress

    def step_lines(self, step: str, limit: int) -> str:
        self.read()
        prefix = re.compile(rf'^Step #\d+ - "{re.escape(step)}": ?', re.M)
        lines = [prefix.sub("", line) for line in self.text.splitlines() if prefix.match(line)]
        kept = "\n".join(line for line in lines if not line.startswith(PROGRESS_LINE))
        return kept[:limit] + ("\n" if kept else "")


_PROGRESS = re.compile(rf'^Step #\d+ - "{RUN_STEP}": {re.escape(PROGRESS_LINE)}(\d+)/(\d+|\?)$',
                       re.M)  # fmt: skip


def _status(obj: Any) -> str:
    status = getattr(obj, "status", None)
    return str(getattr(status, "name", status) or "")


def _step(build: Any, step_id: str) -> Any:
    for step in getattr(build, "steps", ()):
        if step.id == step_id:
            return step
    return None


class _Errors:
    def __init__(self, what: str, run_id: str, service: str) -> None:
        self.what, self.run_id, self.service = what, run_id, service

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, Refused | NeedsOperator | Temporary):
            return
        from google.api_core import exceptions as api

        status = getattr(exc, "code", None)
        status = status if isinstance(status, int) else None
        where = f"{self.service} could not {self.what} run {self.run_id}"
        if isinstance(exc, api.RetryError | ConnectionError | TimeoutError) or (
            status is not None and (status in (408, 429) or status >= 500)
        ):
            raise Temporary(f"{where}: {exc}") from exc
        if isinstance(exc, api.GoogleAPIError | OSError):
            raise NeedsOperator(f"{where}: {exc}") from exc


def _build_errors(what: str, run_id: str) -> _Errors:
    return _Errors(what, run_id, "Cloud Build")


def _storage_errors(what: str, run_id: str) -> _Errors:
    return _Errors(what, run_id, "Cloud Storage")
