"""A local stand-in for the Google Cloud Build REST API (CLOUD.md, "Cloud Build") that
really runs a build's steps on this machine (there is no Docker engine here).

Nothing like it installs, so the official client talks to this server::

    with CloudBuildServer(storage_host=gcs.url) as server:
        client = server.client()  # CloudBuildClient(transport="rest") bound to this server
        operation = client.create_build(project_id="p", build=build)
        done = operation.result()

The API, as the client sends it (``/v1/projects/{p}/builds…``, or the location form
``/v1/projects/{p}/locations/{l}/builds…``; the query's ``$alt=json;enum-encoding=int``
is ignored):

- ``create_build`` answers an Operation (``operations/build/{p}/{base64 id}``, location
  form ``projects/{p}/locations/{l}/operations/{base64 id}``) whose metadata holds the
  Build; polling it (``GET /v1/operations/…``) gives ``done`` with the Build as
  ``response`` on SUCCESS, else an ``error`` as Cloud Build sets it (FAILURE: code 2
  "Build failed; check build logs for details", so ``operation.result()`` raises
  ``google.api_core.exceptions.Unknown``; TIMEOUT: code 4, ``DeadlineExceeded``;
  CANCELLED: code 1, ``Cancelled``; INTERNAL_ERROR: code 13, ``InternalServerError``).
  ``POST …/operations/…:cancel`` cancels the build.
- ``get_build``, ``cancel_build`` (the Build, CANCELLED), ``retry_build`` (a new build of
  the same request), ``list_builds`` (newest first; ``pageSize``/``pageToken``; ``filter``
  of ``tags="x"``, ``status="SUCCESS"``, ``id="…"`` terms joined by ``AND``).
- Errors are ``{"error": {"code": 404, "message": …, "status": "NOT_FOUND"}}``; bad input is
  400 ``INVALID_ARGUMENT``. The REST client picks its exception by the HTTP status:
  ``NotFound``, ``BadRequest`` (not its gRPC subclass ``InvalidArgument``), ``Forbidden``.

At creation the build is checked as Cloud Build checks it: substitutions (``$_VAR``,
``${_VAR}``, the built-ins ``$PROJECT_ID``, ``$BUILD_ID``, ``$LOCATION``, ``$$`` for a
literal ``$``) are applied to each step's ``name``, ``args``, ``entrypoint``, ``env`` and
``dir``, to ``tags``, ``logsBucket`` and ``options.env``; a variable used but not given, or
given but never used, is refused unless ``options.substitutionOption`` is ``ALLOW_LOOSE``.
Step ids must be unique, ``waitFor`` must name earlier steps (steps always run one after
another, which satisfies any ``waitFor``), a step's ``timeout`` may not pass the build's
(600 s when absent), and the ``logsBucket`` must exist. What the stand-in cannot honour
(``source``, ``images``, ``artifacts``, secrets, step ``script``/``volumes``) is refused
with 400 rather than ignored.

Then the build runs in a thread of its own (QUEUED → WORKING → SUCCESS, FAILURE, TIMEOUT or
CANCELLED), in a fresh workspace folder standing for ``/workspace`` (removed at the end).
Step kinds run; anything else fails its step with a log line saying so:

1. Cloud SDK storage copies: image ``gcr.io/google.com/cloudsdktool/cloud-sdk[:tag]`` (or
   ``gcr.io/cloud-builders/gcloud``) with ``gcloud storage cp SRC… DST``, or ``gsutil cp``;
   ``gs://`` URLs and ``/workspace`` paths, done with google-cloud-storage against
   ``storage_host`` (fake-gcs-server in tests). Several sources need a folder destination
   (ending in ``/``); a missing source fails the step as gcloud does ("matched no
   objects"); a symbolic link is never uploaded, nor written through.
2. ``install`` and ``tar`` (images ``ubuntu``, ``bash``, ``busybox``): the local commands,
   on ``/workspace`` paths only, as this process's user.
3. ``docker run`` (image ``gcr.io/cloud-builders/docker``): docker's flags are parsed and a
   run lacking any of ``--network=none``, ``--read-only``, ``--cap-drop=ALL``,
   ``--security-opt=no-new-privileges``, a numeric non-root ``--user``, ``--memory``,
   ``--pids-limit`` and a ``--tmpfs`` on ``/tmp`` is refused (exit code 125, as docker's own
   errors, the log naming what is missing). The image must be a known runtime image
   (``runtime_images``: an image reference, or a prefix ending in ``:``, to the local argv
   standing for its ENTRYPOINT; by default any ``…/runtime`` image is ``python -m runtime``,
   what our runtime image runs). The container runs in our bubblewrap sandbox
   (``infra.local.sandbox``) with the flags' limits (``--memory`` as the address-space
   limit, ``--pids-limit``, ``--ulimit`` fsize/cpu/nofile, the ``/tmp`` tmpfs size; the
   step's remaining time as the wall clock), as the ``--user`` uid (its gid is the uid's),
   without network, its ``--volume`` folders (``/workspace`` ones only) mounted, ``:ro``
   read-only. ``--cpus``, ``--memory-swap``, ``--name``, ``--label`` are accepted and
   ignored; ``--privileged``, ``--cap-add``, host namespaces, ``--entrypoint`` and
   ``--mount`` are refused.

A step that exits non-zero fails the build (``statusDetail`` names it; later steps stay
QUEUED) unless it has ``allowFailure`` or its code is in ``allowExitCodes``. The build's
``timeout`` and each step's ``timeout`` kill the running step (its process group) and end
the build TIMEOUT (a step with ``allowFailure`` that times out lets the build go on);
``cancel_build`` kills it and the build is CANCELLED.

The log (``Step #N - "id": line``, with Cloud Build's ``starting build``, ``BUILD``,
``Starting Step``/``Finished Step``, ``DONE``/``ERROR`` lines) is kept in memory and served
at the build's ``logUrl`` (``{url}/log/{id}``); with a ``logsBucket`` (``gs://bucket[/path]``)
it is also written to ``{path/}log-{id}.txt`` there while the build runs (about every
half-second while lines arrive) and at its end.

Used by the tests and ``tradeops demo --backend gcp``; never in production. For tests:
:attr:`CloudBuildServer.requests` records every API request (method, path, body),
:meth:`CloudBuildServer.fail_next` makes the next ones fail with a status,
:attr:`CloudBuildServer.builds` shows the builds, :meth:`CloudBuildServer.log` a build's
log, and :meth:`CloudBuildServer.wait` waits until a build's thread is over (processes
gone, workspace removed, log written).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import mimetypes
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local.runner import child_env
from infra.local.sandbox import (
    Isolation,
    Limits,
    Mount,
    Sandbox,
    SandboxUnavailable,
    remove_cgroup,
)

if TYPE_CHECKING:
    from google.cloud import storage
    from google.cloud.devtools.cloudbuild_v1 import CloudBuildClient

from infra.emulators.http import LocalHttpServer, StandInHandler

log = logging.getLogger(__name__)

Json = Any  # a JSON value

BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
METADATA_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
WORKSPACE = "/workspace"
DEFAULT_TIMEOUT = "600s"
MAX_TIMEOUT_S = 24 * 3600
LOG_FLUSH_S = 0.5
STEP_LOG_BYTES = 1 << 20  # a step's output kept in the log
DOCKER_ERROR = 125  # docker's exit code when it cannot run the container
POLL_S = 0.05

FINAL = frozenset({"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})
# the operation's error when a build ends otherwise than SUCCESS: (gRPC code, message)
OPERATION_ERRORS = {
    "FAILURE": (2, "Build failed; check build logs for details"),
    "INTERNAL_ERROR": (13, "Build failed due to an internal error"),
    "TIMEOUT": (4, "Build timed out"),
    "CANCELLED": (1, "Build was cancelled"),
    "EXPIRED": (4, "Build expired before it started"),
}
CANONICAL = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}  # fmt: skip

SDK_IMAGES = frozenset({
    "gcr.io/google.com/cloudsdktool/cloud-sdk", "gcr.io/google.com/cloudsdktool/google-cloud-cli",
    "gcr.io/cloud-builders/gcloud", "gcr.io/cloud-builders/gcloud-slim",
    "gcr.io/cloud-builders/gsutil", "google/cloud-sdk",
})  # fmt: skip
UTILITY_IMAGES = frozenset({"ubuntu", "bash", "busybox"})
UTILITY_COMMANDS = frozenset({"install", "tar"})
DOCKER_IMAGE = "gcr.io/cloud-builders/docker"
# tar options that run programs (as this process's user): never passed on
TAR_PROGRAM_OPTIONS = ("--to-command", "--use-compress-program", "-I", "--checkpoint-action",
                       "--info-script", "--new-volume-script", "-F", "--rsh-command")  # fmt: skip

SUBSTITUTION = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_KEY = re.compile(r"_[A-Z0-9_]+")
DURATION = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")
UNSUPPORTED_FIELDS = ("source", "images", "artifacts", "secrets", "availableSecrets")
UNSUPPORTED_STEP_FIELDS = ("script", "volumes", "secretEnv")
# what the service sets on a Build, never taken from a request
SERVER_FIELDS = frozenset({"name", "id", "projectId", "status", "statusDetail", "results",
                           "createTime", "startTime", "finishTime", "logUrl", "timing",
                           "failureInfo", "warnings", "approval", "buildTriggerId"})  # fmt: skip


# ---------------------------------------------------------------------- small types
@dataclass(frozen=True)
class Request:
    """One API request as the server saw it (for tests to check what a client sent)."""

    method: str
    path: str  # decoded, without the query
    params: dict[str, str]
    body: Json


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Json = None
    text: str | None = None  # a text/plain reply (the log) instead of JSON


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _StepRefused(Exception):
    """The step cannot run as asked: its log says why, it ends with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": {"code": status, "message": message,
                                     "status": CANONICAL.get(status, "UNKNOWN")}})  # fmt: skip


def duration_s(text: Json, where: str) -> float:
    """Seconds of a JSON Duration (``"1200s"``, ``"1.5s"``); ``_ApiError`` if malformed."""
    match = DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _ApiError(400, f"invalid value for '{where}': {text!r} is not a duration")
    return int(match.group(1)) + float(f"0.{match.group(2) or 0}")


def _operation_id(build_id: str) -> str:
    return base64.b64encode(build_id.encode()).decode()


def _image_name(ref: str) -> str:
    """An image reference without its tag or digest."""
    ref = ref.partition("@")[0]
    head, _, tail = ref.rpartition("/")
    tail = tail.partition(":")[0]
    return f"{head}/{tail}" if head else tail


def _utility_image(ref: str) -> bool:
    name = _image_name(ref)
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        name = name.removeprefix(prefix)
    return name in UTILITY_IMAGES


def _default_runtime(image: str) -> bool:
    return _image_name(image).endswith("/runtime") or "/runtime:" in image


# ---------------------------------------------------------------------- substitutions
class _Substituter:
    """Applies a build's substitutions the way Cloud Build does, noting what is used."""

    def __init__(self, user: Mapping[str, str], builtins: Mapping[str, str], loose: bool) -> None:
        self.user = dict(user)
        self.builtins = dict(builtins)
        self.loose = loose
        self.used: set[str] = set()

    def __call__(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(1):
                return "$"
            name = match.group(2) if match.group(2) is not None else match.group(3)
            if not NAME.fullmatch(name):
                raise _ApiError(400, f"invalid value for 'build.substitutions': "
                                     f"${{{name}}} is not a valid substitution")  # fmt: skip
            if name in self.user:
                self.used.add(name)
                return self.user[name]
            if name in self.builtins:
                return self.builtins[name]
            if self.loose:
                return ""
            if name.startswith("_"):
                raise _ApiError(400, f'invalid value for \'build.substitutions\': key in the '
                                     f'template "{name}" is not matched in the substitution '
                                     "data")  # fmt: skip
            raise _ApiError(
                400,
                f"invalid value for 'build.substitutions': key in the template "
                f'"{name}" is not a valid built-in substitution',
            )

        return SUBSTITUTION.sub(one, text)

    def check_all_used(self) -> None:
        unused = sorted(set(self.user) - self.used)
        if unused and not self.loose:
            raise _ApiError(400, f"invalid value for 'build.substitutions': key "
                                 f'"{unused[0]}" in the substitution data is not matched in '
                                 "the template")  # fmt: skip


def _strings(value: Json, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _ApiError(400, f"invalid value for '{where}': a list of strings is expected")
    return list(value)


def _loose(options: Json) -> bool:
    return isinstance(options, dict) and options.get("substitutionOption") in (1, "ALLOW_LOOSE")


def prepare_build(body: Json, project: str, location: str, build_id: str) -> dict[str, Any]:
    """The Build resource of a create request: checked and substituted as Cloud Build does
    (``_ApiError`` 400 otherwise), ``status`` QUEUED."""
    if not isinstance(body, dict):
        raise _ApiError(400, "invalid build: the request body must be a Build object")
    for name in UNSUPPORTED_FIELDS:
        if body.get(name):
            raise _ApiError(400, f"invalid build: '{name}' is not supported by this stand-in")
    steps = body.get("steps")
    if not isinstance(steps, list) or not steps:
        raise _ApiError(400, "invalid build: the build must have at least one step")
    substitutions = body.get("substitutions") or {}
    if not isinstance(substitutions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in substitutions.items()
    ):
        raise _ApiError(400, "invalid value for 'build.substitutions': a map of strings")
    for key in substitutions:
        if not USER_KEY.fullmatch(key):
            raise _ApiError(400, f"invalid value for 'build.substitutions': key {key!r} must "
                                 "begin with an underscore and use only uppercase letters, "
                                 "numbers and underscores")  # fmt: skip
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise _ApiError(400, "invalid value for 'build.options': an object is expected")
    sub = _Substituter(
        substitutions,
        {"PROJECT_ID": project, "BUILD_ID": build_id, "LOCATION": location},
        _loose(options),
    )
    timeout = body.get("timeout") or DEFAULT_TIMEOUT
    build_s = duration_s(timeout, "build.timeout")
    if not 0 < build_s <= MAX_TIMEOUT_S:
        raise _ApiError(400, "invalid value for 'build.timeout': must be between 1s and 24h")
    out_steps = [_prepare_step(step, i, sub, build_s, steps) for i, step in enumerate(steps)]
    ids = [s["id"] for s in out_steps if s.get("id")]
    if len(ids) != len(set(ids)):
        raise _ApiError(400, "invalid build: step ids must be unique")
    build: dict[str, Any] = {k: copy.deepcopy(v) for k, v in body.items() if k not in SERVER_FIELDS}
    build.update(
        name=f"projects/{project}/locations/{location}/builds/{build_id}",
        id=build_id,
        projectId=project,
        status="QUEUED",
        steps=out_steps,
        createTime=_now(),
        timeout=timeout,
    )
    if "tags" in body:
        build["tags"] = [sub(t) for t in _strings(body["tags"], "build.tags")]
    if body.get("logsBucket"):
        build["logsBucket"] = sub(str(body["logsBucket"]))
        if _parse_gs(build["logsBucket"], folder=True) is None:
            raise _ApiError(400, f"invalid value for 'build.logsBucket': "
                                 f"{build['logsBucket']!r} is not gs://BUCKET[/PATH]")  # fmt: skip
    if "env" in options:
        env = [sub(e) for e in _strings(options["env"], "build.options.env")]
        build["options"] = {**options, "env": env}
    sub.check_all_used()
    return build


def _prepare_step(
    step: Json, i: int, sub: _Substituter, build_s: float, steps: list[Json]
) -> dict[str, Any]:
    where = f"build.steps[{i}]"
    if not isinstance(step, dict):
        raise _ApiError(400, f"invalid value for '{where}': an object is expected")
    for name in UNSUPPORTED_STEP_FIELDS:
        if step.get(name):
            raise _ApiError(400, f"invalid value for '{where}.{name}': not supported by this "
                                 "stand-in")  # fmt: skip
    if not isinstance(step.get("name"), str) or not step["name"]:
        raise _ApiError(400, f"invalid value for '{where}.name': a step needs an image name")
    out = copy.deepcopy(step)
    out.pop("status", None)
    out.pop("exitCode", None)
    out.pop("timing", None)
    out["name"] = sub(step["name"])
    if "args" in step:
        out["args"] = [sub(a) for a in _strings(step["args"], f"{where}.args")]
    for key in ("entrypoint", "dir"):
        if key in step:
            if not isinstance(step[key], str):
                raise _ApiError(400, f"invalid value for '{where}.{key}': a string is expected")
            out[key] = sub(step[key])
    if "env" in step:
        out["env"] = [sub(e) for e in _strings(step["env"], f"{where}.env")]
        if not all("=" in e for e in out["env"]):
            raise _ApiError(400, f"invalid value for '{where}.env': entries are KEY=VALUE")
    earlier = {s.get("id") for s in steps[:i] if isinstance(s, dict) and s.get("id")}
    for wanted in _strings(step.get("waitFor"), f"{where}.waitFor"):
        if wanted != "-" and wanted not in earlier:
            raise _ApiError(400, f"invalid value for '{where}.waitFor': {wanted!r} is not the "
                                 "id of an earlier step")  # fmt: skip
    if "timeout" in step:
        step_s = duration_s(step["timeout"], f"{where}.timeout")
        if step_s > build_s:
            raise _ApiError(
                400,
                f"invalid value for '{where}.timeout': value must be less than or equal "
                f'to build timeout value of "{build_s:g}s"',
            )
    codes = step.get("allowExitCodes") or []
    if not isinstance(codes, list) or not all(isinstance(c, int) for c in codes):
        raise _ApiError(400, f"invalid value for '{where}.allowExitCodes': integers expected")
    return out


def _parse_gs(url: str, *, folder: bool = False) -> tuple[str, str] | None:
    """(bucket, object) of ``gs://bucket/object``; None if not such a URL. ``folder``
    allows an empty object (``gs://bucket``)."""
    if not url.startswith("gs://"):
        return None
    bucket, _, name = url[5:].partition("/")
    if not bucket or (not name and not folder):
        return None
    return bucket, name


def _parse_filter(text: str) -> list[tuple[str, str]]:
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = re.fullmatch(r'\s*(\w+)\s*=\s*"?([^"]*)"?\s*', part)
        if match is None or match.group(1) not in ("tags", "status", "id", "build_id"):
            raise _ApiError(400, f"invalid filter {text!r}: this stand-in filters on "
                                 'tags="…", status="…" and id="…" joined by AND')  # fmt: skip
        terms.append((match.group(1), match.group(2)))
    return terms


def _matches(build: dict[str, Any], terms: list[tuple[str, str]]) -> bool:
    for key, value in terms:
        if key == "tags" and value not in build.get("tags", []):
            return False
        if key == "status" and build["status"] != value:
            return False
        if key in ("id", "build_id") and build["id"] != value:
            return False
    return True


# ---------------------------------------------------------------------- docker run
DOCKER_BOOL = frozenset({"--rm", "--read-only", "--init", "--interactive", "--tty",
                         "--detach", "--privileged"})  # fmt: skip
DOCKER_VALUE = frozenset({
    "--network", "--cap-drop", "--cap-add", "--security-opt", "--user", "--tmpfs", "--memory",
    "--memory-swap", "--cpus", "--pids-limit", "--ulimit", "--volume", "--env", "--workdir",
    "--name", "--label", "--hostname", "--stop-timeout", "--entrypoint", "--env-file",
    "--mount", "--device", "--pid", "--ipc", "--userns", "--uts", "--platform", "--pull",
})  # fmt: skip
DOCKER_ALIASES = {
    "--net": "--network", "-u": "--user", "-m": "--memory", "-v": "--volume", "-e": "--env",
    "-w": "--workdir", "-l": "--label", "-h": "--hostname", "-i": "--interactive",
    "-t": "--tty", "-d": "--detach",
}  # fmt: skip
# flags the stand-in will not honour: the container would be less contained than asked,
# or it cannot be done here
DOCKER_REFUSED = {
    "--privileged": "a privileged container", "--cap-add": "adding capabilities",
    "--device": "host devices", "--pid": "another PID namespace", "--ipc": "another IPC "
    "namespace", "--userns": "another user namespace", "--uts": "another UTS namespace",
    "--entrypoint": "replacing the image's entrypoint", "--env-file": "--env-file",
    "--mount": "--mount (use --volume)", "--detach": "a detached container",
}  # fmt: skip
ULIMITS = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
})  # fmt: skip
NO_NEW_PRIVILEGES = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIB = 1 << 20


def size_bytes(text: str) -> int | None:
    """Bytes of a docker size (``64m``, ``4g``, ``1024``); None if malformed."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


@dataclass
class DockerRun:
    """``docker run`` as parsed: its flags (repeatable ones as lists), image, command."""

    flags: dict[str, bool] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    image: str = ""
    command: list[str] = field(default_factory=list)

    def last(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else None

    @classmethod
    def parse(cls, args: Sequence[str]) -> DockerRun:
        """``args`` after ``run``; ``_StepRefused`` (code 125) for what docker would refuse."""
        run = cls()
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            name, eq, value = arg.partition("=")
            name = DOCKER_ALIASES.get(name, name)
            if name in DOCKER_BOOL:
                run.flags[name] = value.lower() not in ("false", "0") if eq else True
            elif name in DOCKER_VALUE:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise _StepRefused(f"docker: flag needs an argument: {arg}", DOCKER_ERROR)
                    value = args[i]
                run.options.setdefault(name, []).append(value)
            else:
                raise _StepRefused(f"docker: unknown flag: {name}", DOCKER_ERROR)
            i += 1
        if i >= len(args):
            raise _StepRefused('docker: "docker run" requires at least 1 argument.', DOCKER_ERROR)
        run.image, run.command = args[i], list(args[i + 1 :])
        for name, what in DOCKER_REFUSED.items():
            if run.flags.get(name) or run.options.get(name):
                raise _StepRefused(f"docker: the stand-in refuses {what} ({name})", DOCKER_ERROR)
        return run

    def user(self) -> int | None:
        """The numeric non-root uid of ``--user`` (``uid[:gid]``), else None."""
        text = (self.last("--user") or "").partition(":")[0]
        return int(text) if text.isdigit() and int(text) > 0 else None

    def missing_hardening(self) -> list[str]:
        """The hardening flags this run lacks (empty: it may run)."""
        missing = []
        if self.last("--network") != "none":
            missing.append("--network=none")
        if not self.flags.get("--read-only"):
            missing.append("--read-only")
        if "ALL" not in {v.upper() for v in self.options.get("--cap-drop", [])}:
            missing.append("--cap-drop=ALL")
        opts = self.options.get("--security-opt", [])
        if not any(v in NO_NEW_PRIVILEGES for v in opts):
            missing.append("--security-opt=no-new-privileges")
        if self.user() is None:
            missing.append("--user=<numeric non-root uid>")
        if not (size_bytes(self.last("--memory") or "") or 0) > 0:
            missing.append("--memory")
        pids = self.last("--pids-limit") or ""
        if not (pids.isdigit() and int(pids) > 0):
            missing.append("--pids-limit")
        if not any(t.partition(":")[0] == "/tmp" for t in self.options.get("--tmpfs", [])):  # noqa: S108
            missing.append("--tmpfs=/tmp")
        return missing

    def limits(self, timeout_s: float) -> Limits:
        """The sandbox limits the flags ask for (``_StepRefused`` for malformed ones)."""
        base = Limits()
        memory = size_bytes(self.last("--memory") or "") or 0
        values: dict[str, Any] = {
            "memory_mb": max(1, math.ceil(memory / MIB)),
            "processes": int(self.last("--pids-limit") or base.processes),
            "timeout_s": max(timeout_s, 0.1),
        }
        for spec in self.options.get("--tmpfs", []):
            target, _, opts = spec.partition(":")
            if target != "/tmp":  # noqa: S108
                raise _StepRefused(f"docker: the stand-in mounts a tmpfs only on /tmp, not "
                                   f"{target}", DOCKER_ERROR)  # fmt: skip
            for opt in opts.split(","):
                if opt.startswith("size="):
                    size = size_bytes(opt[5:])
                    if size is None:
                        raise _StepRefused(f"docker: invalid tmpfs size: {opt}", DOCKER_ERROR)
                    values["tmpfs_mb"] = max(1, math.ceil(size / MIB))
        for spec in self.options.get("--ulimit", []):
            kind, _, rest = spec.partition("=")
            soft = rest.partition(":")[0]
            if kind not in ULIMITS or not soft.lstrip("-").isdigit():
                raise _StepRefused(f"docker: invalid ulimit argument: {spec}", DOCKER_ERROR)
            if kind == "fsize":
                values["file_mb"] = max(1, math.ceil(int(soft) / MIB))
            elif kind == "cpu":
                values["cpu_seconds"] = max(1, int(soft))
            elif kind == "nofile":
                values["open_files"] = max(3, int(soft))
        return dataclasses.replace(base, **values)


# ---------------------------------------------------------------------- logs
class _BuildLog:
    """A build's log lines, in memory; written to its logs bucket as they come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self.version = 0

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            self.version += 1

    def text(self) -> tuple[str, int]:
        with self._lock:
            return "".join(f"{line}\n" for line in self._lines), self.version


class _LogWriter:
    """Rewrites ``gs://bucket/name`` with the whole log every ``LOG_FLUSH_S`` while lines
    arrive, and once more at the end (:meth:`close`)."""

    def __init__(self, client: storage.Client, bucket: str, name: str, buildlog: _BuildLog) -> None:
        self._blob = client.bucket(bucket).blob(name)
        self._client = client
        self._log = buildlog
        self._written = -1
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cloudbuild-log", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(LOG_FLUSH_S):
            self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            text, version = self._log.text()
            if version == self._written:
                return
            try:
                self._blob.upload_from_string(text, content_type="text/plain; charset=utf-8")
                self._written = version
            except Exception as exc:  # a log that cannot be written does not fail the build
                log.warning("cloudbuild stand-in: could not write the log object: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        self._client.close()


# ---------------------------------------------------------------------- one build
class _Run:
    """A build and what runs it: its resource (under the server's lock), its log, the
    process of its current step, and the events that stop it."""

    def __init__(self, build: dict[str, Any], location: str, request: Json) -> None:
        self.build = build
        self.location = location
        self.request = request  # as sent, for retry_build
        self.log = _BuildLog()
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return str(self.build["id"])

    @property
    def project(self) -> str:
        return str(self.build["projectId"])

    @property
    def operation_name(self) -> str:
        op = _operation_id(self.id)
        if self.location == "global":
            return f"operations/build/{self.project}/{op}"
        return f"projects/{self.project}/locations/{self.location}/operations/{op}"


@dataclass
class _Outcome:
    code: int
    stop: str | None = None  # "TIMEOUT" or "CANCELLED" when the step was killed


@dataclass
class _StepRun:
    """One step as it runs."""

    run: _Run
    index: int
    spec: dict[str, Any]
    workspace: Path
    deadline: float  # monotonic: the step's own timeout or the build's, the earlier
    env: dict[str, str]

    @property
    def label(self) -> str:
        ident = self.spec.get("id")
        return f'Step #{self.index} - "{ident}"' if ident else f"Step #{self.index}"

    def emit(self, line: str) -> None:
        self.run.log.append(f"{self.label}: {line}")

    def local(self, text: str) -> Path:
        """The host path of a ``/workspace`` path (or one relative to the step's folder)."""
        if text.startswith("/"):
            mapped = _map_workspace(self.workspace, text)
            if mapped is None:
                raise _StepRefused(f"the stand-in reads and writes only /workspace, not {text}")
            return mapped
        return self.cwd() / _relative(text)

    def cwd(self) -> Path:
        folder = self.spec.get("dir") or ""
        if folder.startswith("/"):
            mapped = _map_workspace(self.workspace, folder)
            if mapped is None:
                raise _StepRefused(f"the stand-in runs steps only in /workspace, not {folder}")
            return mapped
        return self.workspace / _relative(folder) if folder else self.workspace


def _relative(text: str) -> PurePosixPath:
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise _StepRefused(f"{text}: paths may not leave /workspace")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def _map_workspace(workspace: Path, text: str) -> Path | None:
    """The host path of ``/workspace[/…]``; None for other paths."""
    if text != WORKSPACE and not text.startswith(WORKSPACE + "/"):
        return None
    return workspace / _relative(text[len(WORKSPACE) :].lstrip("/"))


def _within(workspace: Path, path: Path) -> bool:
    """Whether ``path``'s deepest existing ancestor (itself if it exists), links resolved,
    is inside the workspace: nothing made below it can land elsewhere."""
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return Path(os.path.realpath(probe)).is_relative_to(os.path.realpath(workspace))


def _runtime_root() -> Path:
    """The folder holding the ``runtime`` package: ``python -m runtime`` imports from it."""
    import runtime

    return Path(runtime.__file__).resolve().parent.parent


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _Pump:
    """Copies a process's output into the step's log, line by line, up to a limit."""

    def __init__(self, stream: IO[bytes], step: _StepRun) -> None:
        self._thread = threading.Thread(
            target=self._pump, args=(stream, step), name="cloudbuild-step-log", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _pump(stream: IO[bytes], step: _StepRun) -> None:
        kept = dropped = 0
        for raw in iter(stream.readline, b""):
            if kept + len(raw) > STEP_LOG_BYTES:
                dropped += len(raw)
                continue
            kept += len(raw)
            step.emit(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if dropped:
            step.emit(f"[log truncated: {dropped} more bytes not kept]")
        stream.close()

    def join(self) -> None:
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------- the server
class CloudBuildServer:
    """The Cloud Build REST API on 127.0.0.1 (a free port), running builds here; see the
    module doc.

    ``storage_host``: the Cloud Storage endpoint the builds' copies and logs use
    (fake-gcs-server's URL; default ``STORAGE_EMULATOR_HOST``). ``runtime_images``: image
    reference (or prefix ending in ``:``) → local argv standing for its ENTRYPOINT; default:
    any ``…/runtime`` image is ``python -m runtime``. ``work_root``: where workspaces go.
    """

    def __init__(
        self,
        storage_host: str | None = None,
        runtime_images: Mapping[str, Sequence[str]] | None = None,
        *,
        work_root: Path | None = None,
    ) -> None:
        self.storage_host = storage_host or os.environ.get("STORAGE_EMULATOR_HOST")
        self.runtime_images = (
            None if runtime_images is None else {k: list(v) for k, v in runtime_images.items()}
        )
        self.work_root = work_root
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._requests: list[Request] = []
        self._failures: deque[tuple[int, str]] = deque()
        self._http = LocalHttpServer(_Handler, self, "cloudbuild-server")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CloudBuildServer:
        self._http.start()
        return self

    def stop(self) -> None:
        """Cancel the builds still running (their processes killed), then stop serving."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._cancel_run(run)
        for run in runs:
            run.finished.wait(timeout=10)
        self._http.stop()

    def __enter__(self) -> CloudBuildServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the client's ``api_endpoint``."""
        return f"http://127.0.0.1:{self._http.port('CloudBuildServer')}"

    def client(self) -> CloudBuildClient:
        """A ``CloudBuildClient(transport="rest")`` bound to this server, anonymous."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.devtools import cloudbuild_v1

        return cloudbuild_v1.CloudBuildClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
        )

    # ------------------------------------------------------------------ for tests
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, status: int, *, message: str = "injected failure", times: int = 1) -> None:
        """The next ``times`` API requests answer ``status`` with a Google error body."""
        with self._lock:
            self._failures.extend([(status, message)] * times)

    @property
    def builds(self) -> dict[str, dict[str, Any]]:
        """Every build by id, as ``get_build`` would answer it (copies)."""
        with self._lock:
            return {i: copy.deepcopy(r.build) for i, r in self._runs.items()}

    def log(self, build_id: str) -> str:
        """A build's log so far."""
        with self._lock:
            run = self._runs[build_id]
        return run.log.text()[0]

    def wait(self, build_id: str, timeout: float = 30) -> dict[str, Any]:
        """The build once its thread is over (processes gone, workspace removed, log
        written); ``TimeoutError`` if it is not within ``timeout`` seconds."""
        with self._lock:
            run = self._runs[build_id]
        if not run.finished.wait(timeout):
            raise TimeoutError(f"build {build_id} still running after {timeout} s")
        with self._lock:
            return copy.deepcopy(run.build)

    # ------------------------------------------------------------------ requests
    def handle(self, method: str, target: str, body: bytes) -> _Reply:
        url = urlsplit(target)
        path = unquote(url.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if method == "GET" and path in ("/", "/healthz"):
            return _Reply(200, {"service": "cloudbuild stand-in"})
        if method == "GET" and path.startswith("/log/"):
            with self._lock:
                run = self._runs.get(path[5:])
            if run is None:
                return _Reply(404, text="no such build\n")
            return _Reply(200, text=run.log.text()[0])
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        with self._lock:
            self._requests.append(Request(method, path, params, parsed))
            if self._failures:
                status, message = self._failures.popleft()
                return _error(status, message)
        try:
            if isinstance(parsed, str):
                raise _ApiError(400, "Invalid JSON payload received.")
            return self._dispatch(method, path, params, parsed)
        except _ApiError as exc:
            return _error(exc.status, str(exc))

    def _dispatch(self, method: str, path: str, params: dict[str, str], body: Json) -> _Reply:
        scope = r"/v1/projects/(?P<p>[^/]+)(?:/locations/(?P<l>[^/]+))?"
        if match := re.fullmatch(scope + "/builds", path):
            project, location = match["p"], match["l"] or "global"
            if method == "POST":
                return _Reply(200, self._create(project, location, body))
            if method == "GET":
                return _Reply(200, self._list(project, location, params))
        elif match := re.fullmatch(scope + r"/builds/(?P<id>[^/:]+)(?P<verb>:\w+)?", path):
            run = self._find(match["p"], match["l"] or "global", match["id"])
            verb = match["verb"]
            if method == "GET" and verb is None:
                return _Reply(200, self._snapshot(run))
            if method == "POST" and verb == ":cancel":
                self._cancel_run(run)
                return _Reply(200, self._snapshot(run))
            if method == "POST" and verb == ":retry":
                return _Reply(200, self._create(run.project, run.location, run.request))
        elif match := re.fullmatch(
            r"/v1/(?:operations/build/(?P<p>[^/]+)|projects/(?P<q>[^/]+)/locations/(?P<l>[^/]+)"
            r"/operations)/(?P<op>[^/:]+)(?P<verb>:\w+)?",
            path,
        ):
            try:
                build_id = base64.b64decode(match["op"], validate=True).decode()
            except ValueError as exc:
                raise _ApiError(404, f"operation {path[4:]} not found") from exc
            run = self._find(match["p"] or match["q"], match["l"] or "global", build_id)
            if method == "GET" and match["verb"] is None:
                return _Reply(200, self._operation(run))
            if method == "POST" and match["verb"] == ":cancel":
                self._cancel_run(run)
                return _Reply(200, {})
        else:
            raise _ApiError(404, f"no such method: {method} {path}")
        raise _ApiError(405, f"method {method} is not allowed on {path}")

    def _find(self, project: str, location: str, build_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(build_id)
        if run is None or run.project != project or run.location != location:
            where = "" if location == "global" else f' location "{location}"'
            raise _ApiError(404, f'Build "{build_id}" not found in project "{project}"{where}')
        return run

    def _snapshot(self, run: _Run) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(run.build)

    def _operation(self, run: _Run) -> dict[str, Any]:
        build = self._snapshot(run)
        doc: dict[str, Any] = {
            "name": run.operation_name,
            "metadata": {"@type": METADATA_TYPE, "build": build},
        }
        status = build["status"]
        if status in FINAL:
            doc["done"] = True
            if status == "SUCCESS":
                doc["response"] = {"@type": BUILD_TYPE, **build}
            else:
                code, message = OPERATION_ERRORS[status]
                doc["error"] = {"code": code, "message": message}
        return doc

    def _create(self, project: str, location: str, body: Json) -> dict[str, Any]:
        build_id = str(uuid.uuid4())
        build = prepare_build(body, project, location, build_id)
        if build.get("logsBucket"):
            self._check_logs_bucket(project, build["logsBucket"])
        run = _Run(build, location, copy.deepcopy(body))
        build["logUrl"] = f"{self.url}/log/{build_id}"
        with self._lock:
            self._runs[build_id] = run
            operation = self._operation(run)
        run.thread = threading.Thread(
            target=self._execute, args=(run,), name=f"cloudbuild-{build_id[:8]}", daemon=True
        )
        run.thread.start()
        return operation

    def _list(self, project: str, location: str, params: dict[str, str]) -> dict[str, Any]:
        terms = _parse_filter(params["filter"]) if params.get("filter") else []
        with self._lock:
            found = [
                copy.deepcopy(r.build)
                for r in reversed(self._runs.values())
                if r.project == project and r.location == location
            ]
        found = [b for b in found if _matches(b, terms)]
        token = params.get("pageToken") or "0"
        size = params.get("pageSize") or "0"
        if not token.isdigit() or not size.isdigit():
            raise _ApiError(400, "invalid pageToken or pageSize")
        start, count = int(token), int(size) or len(found)
        doc: dict[str, Any] = {"builds": found[start : start + count]}
        if start + count < len(found):
            doc["nextPageToken"] = str(start + count)
        return doc

    def _check_logs_bucket(self, project: str, url: str) -> None:
        parsed = _parse_gs(url, folder=True)
        assert parsed is not None  # checked by prepare_build
        if not self.storage_host:
            raise _ApiError(400, f'invalid bucket "{parsed[0]}"; the stand-in has no Cloud '
                                 "Storage (storage_host) to write logs to")  # fmt: skip
        client = self._storage(project)
        try:
            found = client.lookup_bucket(parsed[0])
        finally:
            client.close()
        if found is None:
            raise _ApiError(400, f'invalid bucket "{parsed[0]}"; the bucket does not exist or '
                                 "the build cannot write to it")  # fmt: skip

    def _storage(self, project: str) -> storage.Client:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        if not self.storage_host:
            raise _StepRefused("the stand-in has no Cloud Storage (give storage_host or set "
                               "STORAGE_EMULATOR_HOST)")  # fmt: skip
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.storage_host},
        )

    def _cancel_run(self, run: _Run) -> None:
        with self._lock:
            build = run.build
            if build["status"] in FINAL:
                return
            build["status"] = "CANCELLED"
            build["statusDetail"] = "Build cancelled by request"
            build["finishTime"] = _now()
            for step in build["steps"]:
                if step.get("status") == "WORKING":
                    step["status"] = "CANCELLED"
            run.cancel.set()

    # ------------------------------------------------------------------ running builds
    def _execute(self, run: _Run) -> None:
        writer: _LogWriter | None = None
        workspace: Path | None = None
        try:
            with self._lock:
                build = copy.deepcopy(run.build)
                if build["status"] == "QUEUED":
                    run.build.update(status="WORKING", startTime=_now())
                    for step in run.build["steps"]:
                        step["status"] = "QUEUED"
            started = time.monotonic()
            if build.get("logsBucket"):
                bucket, path = _parse_gs(build["logsBucket"], folder=True) or ("", "")
                name = f"{path.rstrip('/')}/log-{run.id}.txt".lstrip("/")
                writer = _LogWriter(self._storage(run.project), bucket, name, run.log)
            run.log.append(f'starting build "{run.id}"')
            run.log.append("")
            run.log.append("FETCHSOURCE")
            run.log.append("BUILD")
            workspace = Path(tempfile.mkdtemp(prefix=f"cloudbuild-{run.id[:8]}-",
                                              dir=self.work_root))  # fmt: skip
            deadline = started + duration_s(build["timeout"], "build.timeout")
            final, detail, failure = self._steps(run, build, workspace, deadline)
        except Exception as exc:  # a bug of ours: the build says so
            log.exception("cloudbuild stand-in: build %s failed", run.id)
            final, detail, failure = "INTERNAL_ERROR", f"stand-in error: {exc}", None
        if final == "SUCCESS":
            run.log.append("PUSH")
            run.log.append("DONE")
        elif final != "CANCELLED":
            run.log.append("ERROR")
            run.log.append(f"ERROR: {detail}")
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)
        if writer is not None:
            writer.close()
        now = _now()
        with self._lock:
            build = run.build
            build["results"] = {
                "buildStepImages": [
                    "sha256:" + hashlib.sha256(s["name"].encode()).hexdigest()
                    if s.get("status") not in (None, "QUEUED") else ""
                    for s in build["steps"]
                ],
                "buildStepOutputs": ["" for _ in build["steps"]],
            }  # fmt: skip
            if build.get("startTime"):
                build["timing"] = {"BUILD": {"startTime": build["startTime"], "endTime": now}}
            if build["status"] not in FINAL:
                build.update(status=final, finishTime=now)
                if detail:
                    build["statusDetail"] = detail
                if failure is not None:
                    build["failureInfo"] = {"type": "USER_BUILD_STEP", "detail": failure}
        run.finished.set()

    def _steps(
        self, run: _Run, build: dict[str, Any], workspace: Path, deadline: float
    ) -> tuple[str, str, str | None]:
        """Run the steps in order: (final status, status detail, failure detail)."""
        options_env = [e for e in (build.get("options") or {}).get("env", []) if "=" in e]
        for i, spec in enumerate(build["steps"]):
            if run.cancel.is_set():
                return "CANCELLED", "", None
            timeout = build["timeout"]
            if time.monotonic() >= deadline:
                return "TIMEOUT", f"Build timed out after {timeout}", None
            step_deadline = deadline
            if spec.get("timeout"):
                step_deadline = min(deadline, time.monotonic() + duration_s(spec["timeout"], ""))
            pairs = [e.partition("=") for e in [*options_env, *spec.get("env", [])]]
            env = {key: value for key, _, value in pairs}
            step = _StepRun(run, i, spec, workspace, step_deadline, env)
            if not self._set_step(run, i, status="WORKING", timing={"startTime": _now()}):
                return "CANCELLED", "", None
            run.log.append(f"Starting {step.label}")
            outcome = self._run_step(step)
            status = outcome.stop or ("SUCCESS" if outcome.code == 0 else "FAILURE")
            with self._lock:
                record = run.build["steps"][i]
                record["timing"] = {**record.get("timing", {}), "endTime": _now()}
                record["exitCode"] = outcome.code
                if record.get("status") == "WORKING":
                    record["status"] = status
            run.log.append(f"Finished {step.label}")
            allowed = spec.get("allowFailure") or outcome.code in spec.get("allowExitCodes", [])
            if outcome.stop == "CANCELLED" or run.cancel.is_set():
                return "CANCELLED", "", None
            if outcome.stop == "TIMEOUT":
                if time.monotonic() >= deadline:
                    return "TIMEOUT", f"Build timed out after {timeout}", None
                if not spec.get("allowFailure"):
                    what = f'build step {i} "{spec["name"]}" timed out after {spec["timeout"]}'
                    return "TIMEOUT", what, None
            elif outcome.code != 0 and not allowed:
                what = (f'build step {i} "{spec["name"]}" failed: step exited with non-zero '
                        f"status: {outcome.code}")  # fmt: skip
                return "FAILURE", f"Build step failure: {what}", f"Build step failure: {what}"
        return "SUCCESS", "", None

    def _set_step(self, run: _Run, i: int, **fields: Any) -> bool:
        with self._lock:
            if run.build["status"] in FINAL:
                return False
            run.build["steps"][i].update(fields)
            return True

    def _run_step(self, step: _StepRun) -> _Outcome:
        image = step.spec["name"]
        entrypoint = step.spec.get("entrypoint") or ""
        args = list(step.spec.get("args", []))
        try:
            base = _image_name(image)
            if base in SDK_IMAGES:
                tool = entrypoint or base.rpartition("/")[2].replace("gcloud-slim", "gcloud")
                return self._storage_step(step, tool, args)
            if _utility_image(image):
                command = entrypoint or (args.pop(0) if args else "")
                if command in UTILITY_COMMANDS:
                    return self._utility_step(step, command, args)
            if base == DOCKER_IMAGE and entrypoint in ("", "docker"):
                if args[:1] == ["run"]:
                    return self._docker_step(step, args[1:])
                raise _StepRefused(f"the stand-in runs only `docker run`, not "
                                   f"`docker {' '.join(args[:1])}`")  # fmt: skip
            shown = f"entrypoint {entrypoint!r}" if entrypoint else "its default entrypoint"
            raise _StepRefused(
                f"the Cloud Build stand-in does not run image {image!r} with {shown} "
                "(it runs storage copies, install/tar, docker run)"
            )
        except _StepRefused as exc:
            for line in str(exc).splitlines():
                step.emit(line)
            return _Outcome(exc.code)

    # ------------------------------------------------------------------ storage copies
    def _storage_step(self, step: _StepRun, tool: str, args: list[str]) -> _Outcome:
        args = [a for a in args if a not in ("-q", "--quiet")]
        if tool == "gcloud" and args[:2] == ["storage", "cp"]:
            paths, gcloud = args[2:], True
        elif tool == "gsutil":
            while args[:1] in (["-m"], ["-q"]):
                args = args[1:]
            if args[:1] != ["cp"]:
                raise _StepRefused(f"the stand-in runs only `gsutil cp`, not `gsutil {args[:1]}`")
            paths, gcloud = args[1:], False
        else:
            raise _StepRefused(f"the stand-in runs only `gcloud storage cp`, not "
                               f"`{tool} {' '.join(args[:2])}`")  # fmt: skip
        flags = [p for p in paths if p.startswith("-")]
        if flags:
            raise _StepRefused(f"the stand-in's cp takes no options: {' '.join(flags)}")
        if len(paths) < 2:
            raise _StepRefused("cp needs at least one source and a destination")
        sources, dest = paths[:-1], paths[-1]
        client = self._storage(step.run.project)
        try:
            return self._copy(step, client, sources, dest, gcloud)
        except _StepRefused:
            raise
        except Exception as exc:  # the storage service refused: the step fails, as gcloud's
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _StepRefused(f"ERROR: (gcloud.storage.cp) {message}" if gcloud
                               else f"CommandException: {message}") from exc  # fmt: skip
        finally:
            client.close()

    def _copy(
        self, step: _StepRun, client: storage.Client, sources: list[str], dest: str, gcloud: bool
    ) -> _Outcome:
        from google.api_core.exceptions import NotFound

        dest_gs = _parse_gs(dest, folder=True)
        dest_local = None if dest_gs is not None else step.local(dest)
        folder = (
            dest.endswith("/")
            or (dest_gs is not None and not dest_gs[1])
            or (dest_local is not None and dest_local.is_dir())
        )
        if len(sources) > 1 and not folder:
            raise _StepRefused(
                "Destination URL must name a directory, bucket, or bucket subdirectory for "
                "the multiple source form of the cp command."
            )
        missing = []
        for source in sources:  # every source must be there before anything is copied
            gs = _parse_gs(source)
            if gs is not None:
                try:
                    client.bucket(gs[0]).blob(gs[1]).reload()
                except NotFound:
                    missing.append(source)
            elif source.startswith("gs://"):
                raise _StepRefused(f"the stand-in copies objects, not buckets: {source}")
            elif not os.path.lexists(step.local(source)):
                missing.append(source)
        if missing:
            if gcloud:
                listed = "\n".join(f"-{m}" for m in missing)
                raise _StepRefused("ERROR: (gcloud.storage.cp) The following URLs matched no "
                                   f"objects or files:\n{listed}")  # fmt: skip
            raise _StepRefused(f"CommandException: No URLs matched: {missing[0]}")
        for source in sources:
            if step.run.cancel.is_set() or time.monotonic() >= step.deadline:
                return _Outcome(1, "CANCELLED" if step.run.cancel.is_set() else "TIMEOUT")
            gs = _parse_gs(source)
            base = (gs[1] if gs else source).rstrip("/").rpartition("/")[2]
            if dest_gs is not None:
                name = dest_gs[1] + base if folder else dest_gs[1]  # a folder ends in "/"
                target = client.bucket(dest_gs[0]).blob(name)
                shown = f"gs://{dest_gs[0]}/{name}"
                step.emit(f"Copying {source} to {shown}")
                if gs is not None:
                    src_bucket = client.bucket(gs[0])
                    src_bucket.copy_blob(src_bucket.blob(gs[1]), client.bucket(dest_gs[0]), name)
                else:
                    self._upload(step, step.local(source), source, target)
            else:
                assert dest_local is not None
                path = dest_local / base if folder else dest_local
                step.emit(f"Copying {source} to file://{dest.rstrip('/')}"
                          + (f"/{base}" if folder else ""))  # fmt: skip
                if gs is None:
                    raise _StepRefused("the stand-in copies between Cloud Storage and the "
                                       "workspace, not within the workspace")  # fmt: skip
                self._download(step, client.bucket(gs[0]).blob(gs[1]), path)
        step.emit(f"  Completed files {len(sources)}/{len(sources)}")
        return _Outcome(0)

    @staticmethod
    def _upload(step: _StepRun, path: Path, shown: str, blob: storage.Blob) -> None:
        if not _within(step.workspace, path.parent):
            raise _StepRefused(f"refusing to upload {shown}: it is not inside /workspace")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if os.path.islink(path):
                raise _StepRefused(f"refusing to upload {shown}: a symbolic link") from exc
            raise _StepRefused(f"cannot read {shown}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _StepRefused(f"refusing to upload {shown}: not a regular file")
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            blob.upload_from_file(handle, size=info.st_size, content_type=content_type)

    @staticmethod
    def _download(step: _StepRun, blob: storage.Blob, path: Path) -> None:
        if not _within(step.workspace, path.parent):
            raise _StepRefused(f"refusing to write {path.name}: not inside /workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise _StepRefused(f"cannot write {path.name}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            blob.download_to_file(handle)

    # ------------------------------------------------------------------ processes
    def _process(
        self,
        step: _StepRun,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        preexec: Callable[[], None] | None = None,
    ) -> _Outcome:
        """Run ``argv`` to its end, its output into the log; killed (its whole process
        group) at the step's deadline or on cancel."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=preexec,  # limits must apply before exec (the sandbox's)
            start_new_session=preexec is None,
        )
        assert proc.stdout is not None
        pump = _Pump(proc.stdout, step)
        stop: str | None = None
        while True:
            try:
                proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if step.run.cancel.is_set():
                stop = "CANCELLED"
            elif time.monotonic() >= step.deadline:
                stop = "TIMEOUT"
            if stop:
                step.emit(
                    "[the stand-in killed the step: "
                    + ("the build was cancelled]" if stop == "CANCELLED" else "timeout]")
                )
                break
        _kill_group(proc)  # what the step left running in its group goes too
        pump.join()
        code = proc.returncode
        return _Outcome(128 - code if code < 0 else code, stop)

    def _utility_step(self, step: _StepRun, command: str, args: list[str]) -> _Outcome:
        mapped = []
        for arg in args:
            if command == "tar" and arg.partition("=")[0] in TAR_PROGRAM_OPTIONS:
                raise _StepRefused(f"the stand-in does not pass {arg.partition('=')[0]} to tar")
            name, eq, value = arg.partition("=")
            if re.match(r"-[A-Za-z]+/", arg):
                raise _StepRefused(f"{arg}: give the path as an argument of its own")
            if arg.startswith("/"):
                mapped.append(str(step.local(arg)))
            elif arg.startswith("-") and eq and value.startswith("/"):
                mapped.append(f"{name}={step.local(value)}")
            else:
                if ".." in PurePosixPath(value if eq else arg).parts:
                    raise _StepRefused(f"{arg}: paths may not leave /workspace")
                mapped.append(arg)
        program = shutil.which(command)
        if program is None:
            raise _StepRefused(f"{command}: not found on this machine")
        cwd = step.cwd()
        if not _within(step.workspace, cwd):
            raise _StepRefused("the step's folder is not inside /workspace")
        cwd.mkdir(parents=True, exist_ok=True)
        return self._process(step, [program, *mapped], env={**child_env(), **step.env}, cwd=cwd)

    def _runtime_argv(self, image: str) -> list[str] | None:
        if self.runtime_images is None:
            return [sys.executable, "-m", "runtime"] if _default_runtime(image) else None
        for ref, argv in self.runtime_images.items():
            if image == ref or (ref.endswith(":") and image.startswith(ref)):
                return list(argv)
        return None

    def _docker_step(self, step: _StepRun, args: list[str]) -> _Outcome:
        run = DockerRun.parse(args)
        missing = run.missing_hardening()
        if missing:
            raise _StepRefused(
                "docker: the stand-in refuses to run a container without "
                + ", ".join(missing)
                + " (the build's hardening flags)",
                DOCKER_ERROR,
            )
        entry = self._runtime_argv(run.image)
        if entry is None:
            raise _StepRefused(
                f"Unable to find image '{run.image}' locally\ndocker: the stand-in knows only "
                "its runtime images (runtime_images)",
                DOCKER_ERROR,
            )
        limits = run.limits(step.deadline - time.monotonic())
        try:
            sandbox = Sandbox.detect(limits)
        except SandboxUnavailable as exc:
            raise _StepRefused(f"docker: {exc}", DOCKER_ERROR) from exc
        if sandbox.isolation is not Isolation.BUBBLEWRAP:
            raise _StepRefused("docker: the stand-in runs containers only with bubblewrap "
                               "(a private file system for the volumes)", DOCKER_ERROR)  # fmt: skip
        uid = run.user()
        assert uid is not None  # missing_hardening checked it
        sandbox = dataclasses.replace(sandbox, uid=uid)
        mounts = [self._volume(step, spec) for spec in run.options.get("--volume", [])]
        # the image's own environment: as the runtime image's PYTHONPATH=/opt/app, the folder
        # holding our runtime package (mounted by the sandbox at its path; a venv with tradeops
        # installed editable finds it anyway)
        env = {**child_env(), "HOME": "/tmp", "MPLCONFIGDIR": "/tmp"}  # noqa: S108
        env["PYTHONPATH"] = str(_runtime_root())
        for spec in run.options.get("--env", []):
            key, eq, value = spec.partition("=")
            if eq:
                env[key] = value
            elif key in step.env:
                env[key] = step.env[key]
        workdir = run.last("--workdir") or "/"
        if not workdir.startswith("/"):
            raise _StepRefused(f"docker: the working directory '{workdir}' is invalid, it "
                               "needs to be an absolute path", DOCKER_ERROR)  # fmt: skip
        cmd = sandbox.command([*entry, *run.command], mounts, env, workdir, network=False)
        cgroup = sandbox.cgroup(f"cloudbuild-{step.run.id[:8]}-{step.index}-{os.getpid()}")
        try:
            return self._process(
                step, cmd, env=child_env(), cwd=step.workspace, preexec=sandbox.preexec(cgroup)
            )
        finally:
            remove_cgroup(cgroup)

    @staticmethod
    def _volume(step: _StepRun, spec: str) -> Mount:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            raise _StepRefused(f"docker: invalid volume specification: '{spec}'", DOCKER_ERROR)
        source, target = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) == 3 else []
        if any(o not in ("ro", "rw", "z", "Z") for o in opts):
            raise _StepRefused(f"docker: invalid volume options: '{spec}'", DOCKER_ERROR)
        host = _map_workspace(step.workspace, source) if source.startswith("/") else None
        if host is None:
            raise _StepRefused(f"docker: the stand-in mounts only /workspace folders, not "
                               f"'{source}'", DOCKER_ERROR)  # fmt: skip
        if target == "/" or any(
            PurePosixPath(target).is_relative_to(p)
            for p in ("/usr", "/proc", "/dev", "/tmp")  # noqa: S108
        ):
            raise _StepRefused(f"docker: the stand-in cannot mount over {target}", DOCKER_ERROR)
        if not _within(step.workspace, host):
            raise _StepRefused(f"docker: '{source}' leads outside /workspace", DOCKER_ERROR)
        host.mkdir(parents=True, exist_ok=True)  # as docker makes a missing host folder
        return Mount(Path(os.path.realpath(host)), target, writable="ro" not in opts)


# ---------------------------------------------------------------------- HTTP
class _Handler(StandInHandler):
    methods = ("GET", "POST", "PATCH", "DELETE")

    def serve(self, method: str, body: bytes) -> None:
        try:
            reply = self.owner.handle(method, self.path, body)
        except Exception:
            log.exception("CloudBuildServer failed on %s %s", method, self.path)
            reply = _error(500, "internal error in the Cloud Build stand-in")
        if reply.text is not None:
            payload, kind = reply.text.encode(), "text/plain; charset=utf-8"
        else:
            payload, kind = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        self.answer(reply.status, payload, [("Content-Type", kind)])

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("CloudBuildServer: " + format, *args)
