"""The Cloud Build stand-in (``infra/emulators/cloudbuild.py``) through the official client
(``CloudBuildClient``, REST transport): its API as the client sees it, and the builds it
really runs here, their storage steps and logs on a real fake-gcs-server, their
``docker run`` steps in our bubblewrap sandbox and refused without the hardening flags."""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api_core import exceptions
from google.api_core.operation import Operation
from google.cloud.devtools import cloudbuild_v1 as cb

from infra.emulators.cloudbuild import CloudBuildServer
from runtime.backtest import BacktestRequest, load_and_check
from runtime.prepared import save as save_prepared
from tests.cloudbuild_server import FAST_POLLING, cloudbuild_server_fixture  # noqa: F401
from tests.conftest import EXAMPLES_DIR, REPO_ROOT
from tests.gcs_server import (  # noqa: F401 (fixtures)
    FakeGcsServer,
    GcsBucket,
    gcs_bucket_fixture,
    gcs_server_fixture,
)

PROJECT = "tradeops-test"
SDK = "gcr.io/google.com/cloudsdktool/cloud-sdk:slim"
DOCKER = "gcr.io/cloud-builders/docker"
PYTHON_IMAGE = "img/runtime:test"  # on the `python_builds` server: `python -c`
BUILD_FILE = REPO_ROOT / "infra" / "deploy" / "cloudbuild.yaml"
HARDENING = [
    "--network=none",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--user=10001:10001",
    "--memory=1024m",
    "--pids-limit=32",
    "--tmpfs=/tmp:rw,noexec,nosuid,nodev,size=64m",
]
MAKE_OUT = {
    "id": "make-out",
    "name": "ubuntu",
    "entrypoint": "install",
    "args": ["-d", "-o", "10001", "-g", "10001", "-m", "0700", "/workspace/out"],
}


# ---------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def python_builds(gcs_server: FakeGcsServer) -> Iterator[CloudBuildServer]:
    """A stand-in whose one runtime image is ``python -c``: a step's command is a snippet."""
    images = {PYTHON_IMAGE: [sys.executable, "-c"]}
    with CloudBuildServer(storage_host=gcs_server.url, runtime_images=images) as server:
        yield server


@pytest.fixture
def client(cloudbuild_server: CloudBuildServer) -> Iterator[cb.CloudBuildClient]:
    with cloudbuild_server.client() as c:
        yield c


@pytest.fixture
def py_client(python_builds: CloudBuildServer) -> Iterator[cb.CloudBuildClient]:
    with python_builds.client() as c:
        yield c


def copy_step(ident: str, *paths: str) -> dict[str, Any]:
    return {"id": ident, "name": SDK, "entrypoint": "gcloud", "args": ["storage", "cp", *paths]}


def docker_run(ident: str, flags: list[str], image: str, *command: str, **fields: Any) -> dict:
    volumes = fields.pop("volumes", ["/workspace/out:/out:rw"])
    args = ["run", "--rm", *flags, *(f"--volume={v}" for v in volumes), image, *command]
    return {"id": ident, "name": DOCKER, "args": args, **fields}


def submit(client: cb.CloudBuildClient, doc: dict[str, Any], **where: str) -> Operation:
    """``create_build`` of a Build written as Cloud Build's JSON (camelCase, as in YAML)."""
    build = cb.Build.from_json(json.dumps(doc))
    if "parent" in where:
        return client.create_build(request={"parent": where["parent"], "build": build})
    return client.create_build(project_id=where.get("project", PROJECT), build=build)


def build_id(op: Operation) -> str:
    return str(op.metadata.build.id)


def text_of(bucket: GcsBucket, name: str) -> str | None:
    blob = bucket.client.bucket(bucket.name).get_blob(name)
    return None if blob is None else blob.download_as_bytes().decode()


def processes_with(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (a container's unique snippet)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def eventually(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def sleeper(marker: float) -> str:
    """A snippet that says it waits, then sleeps ``marker`` seconds (its unique mark)."""
    return f"import time\nprint('waiting', flush=True)\ntime.sleep({marker!r})"


# ---------------------------------------------------------------------- storage builds
def test_a_build_of_storage_copies_runs_and_reads_back(
    cloudbuild_server: CloudBuildServer, client: cb.CloudBuildClient, gcs_bucket: GcsBucket
) -> None:
    name = gcs_bucket.name
    payload = bytes(range(256)) * 40
    bucket = gcs_bucket.client.bucket(name)
    bucket.blob("in/data.bin").upload_from_string(payload)
    bucket.blob("in/note.txt").upload_from_string(b"a note")
    tag = f"t-{name}"
    doc = {
        "steps": [
            copy_step(
                "fetch", f"gs://{name}/in/data.bin", f"gs://{name}/in/note.txt", "/workspace/in/"
            ),
            copy_step("upload", "/workspace/in/data.bin", "gs://${_BUCKET}/out/$BUILD_ID/d.bin"),
            {
                "name": "gcr.io/cloud-builders/gsutil",
                "args": ["cp", "in/note.txt", f"gs://{name}/out/"],
            },
        ],
        "substitutions": {"_BUCKET": name},
        "tags": [tag, "project-$PROJECT_ID"],
        "timeout": "120s",
        "logsBucket": f"gs://{name}/logs",
    }
    cloudbuild_server.reset_requests()
    op = submit(client, doc)
    ident = build_id(op)
    assert op.operation.name.startswith(f"operations/build/{PROJECT}/")
    assert op.metadata.build.status.name in ("QUEUED", "WORKING")

    done = op.result(polling=FAST_POLLING)

    assert done.status.name == "SUCCESS" and done.id == ident
    assert [(s.status.name, s.exit_code) for s in done.steps] == [("SUCCESS", 0)] * 3
    assert all(s.timing.start_time and s.timing.end_time for s in done.steps)
    assert done.create_time and done.start_time and done.finish_time
    assert len(done.results.build_step_outputs) == 3
    assert bucket.blob(f"out/{ident}/d.bin").download_as_bytes() == payload
    assert bucket.blob("out/note.txt").download_as_bytes() == b"a note"
    # get_build and list_builds agree; tags and substitutions come back substituted / as sent
    got = client.get_build(project_id=PROJECT, id=ident)
    assert got.status.name == "SUCCESS" and list(got.tags) == [tag, f"project-{PROJECT}"]
    assert dict(got.substitutions) == {"_BUCKET": name}
    assert list(got.steps[1].args)[-1] == f"gs://{name}/out/{ident}/d.bin"
    assert got.timeout.total_seconds() == 120 and got.logs_bucket == f"gs://{name}/logs"
    [listed] = list(client.list_builds(project_id=PROJECT, filter=f'tags="{tag}"'))
    assert listed.id == ident and listed.status.name == "SUCCESS"
    # what the client sent: camelCase JSON, enums as integers, substitutions unapplied
    [create] = [r for r in cloudbuild_server.requests if r.method == "POST"]
    assert create.path == f"/v1/projects/{PROJECT}/builds"
    assert create.params["$alt"] == "json;enum-encoding=int"
    assert create.body["substitutions"] == {"_BUCKET": name}
    assert create.body["steps"][0]["entrypoint"] == "gcloud"
    # the log: in the logs bucket as Cloud Build writes it, and at the build's logUrl
    cloudbuild_server.wait(ident)
    log = text_of(gcs_bucket, f"logs/log-{ident}.txt")
    assert log is not None and log.startswith(f'starting build "{ident}"')
    assert f'Step #0 - "fetch": Copying gs://{name}/in/data.bin' in log
    assert "Step #2: Copying in/note.txt" in log and log.rstrip().endswith("DONE")
    with urllib.request.urlopen(got.log_url) as reply:
        assert reply.read().decode() == log


def test_a_missing_source_object_fails_the_build(
    client: cb.CloudBuildClient, cloudbuild_server: CloudBuildServer, gcs_bucket: GcsBucket
) -> None:
    name = gcs_bucket.name
    doc = {
        "steps": [
            copy_step("fetch", f"gs://{name}/nope.txt", "/workspace/in/"),
            copy_step("never", "/workspace/in/nope.txt", f"gs://{name}/copy"),
        ]
    }
    op = submit(client, doc)

    with pytest.raises(exceptions.Unknown, match="Build failed; check build logs"):
        op.result(polling=FAST_POLLING)  # as the client raises for a failed Cloud Build build

    build = client.get_build(project_id=PROJECT, id=build_id(op))
    assert build.status.name == "FAILURE"
    assert 'build step 0 "gcr.io/google.com/cloudsdktool/cloud-sdk:slim" failed' in (
        build.status_detail
    )
    assert build.status_detail.endswith("step exited with non-zero status: 1")
    assert build.failure_info.type_.name == "USER_BUILD_STEP"
    assert (build.steps[0].status.name, build.steps[0].exit_code) == ("FAILURE", 1)
    assert build.steps[1].status.name == "QUEUED"  # never started
    log = cloudbuild_server.log(build.id)
    assert "The following URLs matched no objects or files" in log
    assert f"-gs://{name}/nope.txt" in log and 'Starting Step #1 - "never"' not in log
    assert gcs_bucket.client.bucket(name).get_blob("copy") is None


def test_a_symbolic_link_in_the_workspace_is_never_uploaded(
    client: cb.CloudBuildClient, cloudbuild_server: CloudBuildServer, gcs_bucket: GcsBucket
) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    name = gcs_bucket.name
    gcs_bucket.client.bucket(name).blob("links.tar").upload_from_string(archive.getvalue())
    doc = {
        "steps": [
            copy_step("fetch", f"gs://{name}/links.tar", "/workspace/links.tar"),
            {
                "name": "ubuntu",
                "args": [
                    "tar",
                    "--extract",
                    "--file=/workspace/links.tar",
                    "--directory=/workspace",
                ],
            },
            copy_step("leak", "/workspace/link", f"gs://{name}/leaked"),
        ]
    }
    op = submit(client, doc)
    with pytest.raises(exceptions.Unknown):
        op.result(polling=FAST_POLLING)
    build = cloudbuild_server.wait(build_id(op))
    assert [s["status"] for s in build["steps"]] == ["SUCCESS", "SUCCESS", "FAILURE"]
    assert "refusing to upload /workspace/link: a symbolic link" in cloudbuild_server.log(
        build["id"]
    )
    assert gcs_bucket.client.bucket(name).get_blob("leaked") is None


# ---------------------------------------------------------------------- checks at create
def test_substitutions_must_match_unless_loose(
    client: cb.CloudBuildClient, cloudbuild_server: CloudBuildServer, gcs_bucket: GcsBucket
) -> None:
    name = gcs_bucket.name
    gcs_bucket.client.bucket(name).blob("in/a.txt").upload_from_string(b"a")
    step = copy_step("fetch", f"gs://{name}/in/${{_MISSING}}a.txt", "/workspace/a$$b.txt")
    before = set(cloudbuild_server.builds)
    # over REST a 400 is BadRequest (InvalidArgument is the gRPC status' class)
    with pytest.raises(exceptions.BadRequest, match='"_MISSING" is not matched') as refused:
        submit(client, {"steps": [step]})
    assert refused.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(exceptions.BadRequest, match='"_UNUSED" in the substitution data'):
        submit(client, {"steps": [step], "substitutions": {"_MISSING": "", "_UNUSED": "1"}})
    with pytest.raises(exceptions.BadRequest, match='"HOME" is not a valid built-in'):
        submit(client, {"steps": [copy_step("x", "$HOME/a", "/workspace/")]})
    assert set(cloudbuild_server.builds) == before  # nothing was created

    loose = {
        "steps": [step],
        "substitutions": {"_UNUSED": "1"},
        "options": {"substitutionOption": "ALLOW_LOOSE"},
    }
    done = submit(client, loose).result(polling=FAST_POLLING)
    assert done.status.name == "SUCCESS"
    assert list(done.steps[0].args)[2:] == [f"gs://{name}/in/a.txt", "/workspace/a$b.txt"]


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"steps": []}, "at least one step"),
        ({"steps": [{"name": "ubuntu", "waitFor": ["nope"]}]}, "waitFor"),
        ({"steps": [{"name": "ubuntu", "id": "a"}, {"name": "ubuntu", "id": "a"}]}, "unique"),
        ({"steps": [{"name": "ubuntu", "timeout": "30s"}], "timeout": "10s"}, "less than"),
        ({"steps": [{"name": "ubuntu"}], "images": ["gcr.io/p/i"]}, "'images' is not supported"),
        ({"steps": [{"name": "ubuntu"}], "logsBucket": "gs://no-such-bucket-here"}, "bucket"),
    ],
)
def test_builds_the_service_would_refuse_are_refused(
    client: cb.CloudBuildClient, doc: dict[str, Any], says: str
) -> None:
    with pytest.raises(exceptions.BadRequest, match=says):
        submit(client, doc)


def test_unknown_builds_are_not_found(client: cb.CloudBuildClient) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_build(project_id=PROJECT, id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(exceptions.NotFound):
        client.cancel_build(project_id=PROJECT, id="nope")
    with pytest.raises(exceptions.NotFound):
        client.get_build(name=f"projects/{PROJECT}/locations/europe-west1/builds/nope")


def test_a_build_in_a_location_is_found_there_only(client: cb.CloudBuildClient) -> None:
    parent = f"projects/{PROJECT}/locations/europe-west1"
    doc = {
        "steps": [{"name": "bash", "entrypoint": "install", "args": ["-d", "/workspace/x"]}],
        "tags": ["in-$LOCATION"],
    }
    op = submit(client, doc, parent=parent)
    assert op.operation.name.startswith(f"{parent}/operations/")
    done = op.result(polling=FAST_POLLING)  # polled in the location form
    assert done.status.name == "SUCCESS" and list(done.tags) == ["in-europe-west1"]
    assert client.get_build(name=f"{parent}/builds/{done.id}").id == done.id
    with pytest.raises(exceptions.NotFound):
        client.get_build(project_id=PROJECT, id=done.id)  # the global form: another location


def test_builds_are_listed_newest_first_page_by_page_and_retried(
    client: cb.CloudBuildClient, cloudbuild_server: CloudBuildServer
) -> None:
    tag = f"page-{random.randrange(1 << 30)}"
    step = {"name": "ubuntu", "entrypoint": "install", "args": ["-d", "/workspace/x"]}
    made = [submit(client, {"steps": [step], "tags": [tag]}) for _ in range(3)]
    ids = [op.result(polling=FAST_POLLING).id for op in made]
    cloudbuild_server.reset_requests()
    pages = client.list_builds(
        request={"project_id": PROJECT, "filter": f'tags="{tag}"', "page_size": 2}
    )
    assert [b.id for b in pages] == ids[::-1]
    tokens = [r.params.get("pageToken") for r in cloudbuild_server.requests]
    assert tokens == [None, "2"]  # two pages
    retried = client.retry_build(project_id=PROJECT, id=ids[0]).result(polling=FAST_POLLING)
    assert retried.id not in ids and retried.status.name == "SUCCESS"
    assert list(retried.tags) == [tag]


def test_cancelling_the_operation_cancels_the_build(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient
) -> None:
    marker = 60 + random.random()
    run = docker_run("sleep", HARDENING, PYTHON_IMAGE, sleeper(marker), volumes=[])
    op = submit(py_client, {"steps": [run]})
    eventually(lambda: processes_with(repr(marker)), what="the container started")
    assert op.cancel()  # POST /v1/operations/…:cancel
    assert op.cancelled()
    assert python_builds.wait(build_id(op))["status"] == "CANCELLED"
    assert processes_with(repr(marker)) == []


def test_stopping_the_server_ends_its_running_builds(gcs_server: FakeGcsServer) -> None:
    marker = 60 + random.random()
    images = {PYTHON_IMAGE: [sys.executable, "-c"]}
    with CloudBuildServer(storage_host=gcs_server.url, runtime_images=images) as server:
        with server.client() as c:
            run = docker_run("sleep", HARDENING, PYTHON_IMAGE, sleeper(marker), volumes=[])
            submit(c, {"steps": [run]})
        eventually(lambda: processes_with(repr(marker)), what="the container started")
    assert processes_with(repr(marker)) == []
    assert [b["status"] for b in server.builds.values()] == ["CANCELLED"]


def test_injected_failures_reach_the_client(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient
) -> None:
    doc = {"steps": [{"name": "ubuntu", "entrypoint": "install", "args": ["-d", "/workspace/x"]}]}
    python_builds.fail_next(403, message="no access")
    with pytest.raises(exceptions.Forbidden, match="no access"):
        submit(py_client, doc)
    assert submit(py_client, doc).result(polling=FAST_POLLING).status.name == "SUCCESS"


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"name": "alpine", "args": ["echo", "hi"]}, "does not run image 'alpine'"),
        ({"name": DOCKER, "args": ["build", "."]}, "only `docker run`"),
        (
            {"name": "ubuntu", "args": ["tar", "--create", "--file=/etc/x.tar", "."]},
            "only /workspace",
        ),
        (
            {"name": SDK, "entrypoint": "gcloud", "args": ["storage", "rm", "gs://b/o"]},
            "only `gcloud storage cp`",
        ),
    ],
)
def test_steps_the_stand_in_does_not_run_fail_saying_so(
    client: cb.CloudBuildClient,
    cloudbuild_server: CloudBuildServer,
    step: dict[str, Any],
    says: str,
) -> None:
    op = submit(client, {"steps": [step]})
    with pytest.raises(exceptions.Unknown):
        op.result(polling=FAST_POLLING)
    assert says in cloudbuild_server.log(build_id(op))


# ---------------------------------------------------------------------- docker run
REFUSED_RUNS = [
    pytest.param(drop, add, says, id=add or f"without {drop}")
    for drop, add, says in [
        ("--network=none", None, "--network=none"),
        ("--network=none", "--network=host", "--network=none"),
        ("--read-only", None, "--read-only"),
        ("--cap-drop=ALL", None, "--cap-drop=ALL"),
        ("--cap-drop=ALL", "--cap-drop=NET_RAW", "--cap-drop=ALL"),
        ("--security-opt=no-new-privileges", None, "--security-opt=no-new-privileges"),
        ("--user=10001:10001", None, "--user"),
        ("--user=10001:10001", "--user=0:0", "--user"),
        ("--user=10001:10001", "--user=nobody", "--user"),
        ("--memory=1024m", None, "--memory"),
        ("--pids-limit=32", None, "--pids-limit"),
        ("--tmpfs=/tmp:rw,noexec,nosuid,nodev,size=64m", None, "--tmpfs=/tmp"),
        (None, "--privileged", "--privileged"),
        (None, "--cap-add=SYS_ADMIN", "--cap-add"),
    ]
]


@pytest.mark.parametrize(("drop", "add", "says"), REFUSED_RUNS)
def test_a_container_without_its_hardening_is_refused(
    python_builds: CloudBuildServer,
    py_client: cb.CloudBuildClient,
    drop: str | None,
    add: str | None,
    says: str,
) -> None:
    flags = [f for f in HARDENING if f != drop] + ([add] if add else [])
    ran = "print('the container ran', flush=True)"
    op = submit(
        py_client,
        {
            "steps": [
                MAKE_OUT,
                docker_run("run", flags, PYTHON_IMAGE, ran),
                copy_step("after", "/workspace/out/x", "gs://b/x"),
            ]
        },
    )
    with pytest.raises(exceptions.Unknown):
        op.result(polling=FAST_POLLING)
    build = python_builds.wait(build_id(op))
    run = build["steps"][1]
    assert (run["status"], run["exitCode"]) == ("FAILURE", 125)  # as docker's own refusals
    assert build["steps"][2]["status"] == "QUEUED"
    assert "non-zero status: 125" in build["statusDetail"]
    log = python_builds.log(build["id"])
    [refusal] = [line for line in log.splitlines() if line.startswith('Step #1 - "run": ')]
    assert says in refusal
    assert "the container ran" not in log


def test_an_unknown_image_is_not_run(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient
) -> None:
    op = submit(
        py_client, {"steps": [docker_run("run", HARDENING, "ubuntu:22.04", "true", volumes=[])]}
    )
    with pytest.raises(exceptions.Unknown):
        op.result(polling=FAST_POLLING)
    build = python_builds.wait(build_id(op))
    assert build["steps"][0]["exitCode"] == 125
    assert "Unable to find image 'ubuntu:22.04' locally" in python_builds.log(build["id"])


CONTAINER = """
import os, socket, sys
print("hello from", open("/in/input.txt").read(), flush=True)
open("/out/result.txt", "w").write("written inside")
open("/tmp/scratch", "w").write("tmpfs")

def refused(what, attempt):
    try:
        attempt()
    except OSError as exc:
        print(what, "refused:", type(exc).__name__, flush=True)
    else:
        print(what, "ALLOWED", flush=True)

refused("network", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=2))
refused("write /in", lambda: open("/in/x", "w"))
refused("write /etc", lambda: open("/etc/x", "w"))
print(f"uid={os.getuid()}", flush=True)
sys.exit(3)
"""


def test_a_hardened_container_runs_in_the_sandbox(
    python_builds: CloudBuildServer,
    py_client: cb.CloudBuildClient,
    gcs_server: FakeGcsServer,
    gcs_bucket: GcsBucket,
) -> None:
    name = gcs_bucket.name
    bucket = gcs_bucket.client.bucket(name)
    bucket.blob("in/input.txt").upload_from_string(b"the bucket")
    snippet = CONTAINER.replace("PORT", str(gcs_server.port))  # a port that answers outside
    doc = {
        "steps": [
            copy_step("fetch", f"gs://{name}/in/input.txt", "/workspace/in/"),
            MAKE_OUT,
            docker_run(
                "run",
                HARDENING,
                PYTHON_IMAGE,
                snippet,
                allowFailure=True,
                volumes=["/workspace/in:/in:ro", "/workspace/out:/out:rw"],
            ),
            {
                "id": "pack",
                "name": "ubuntu",
                "entrypoint": "tar",
                "args": [
                    "--create",
                    "--gzip",
                    "--file=/workspace/outputs.tgz",
                    "--directory=/workspace/out",
                    ".",
                ],
            },
            copy_step("upload", "/workspace/outputs.tgz", f"gs://{name}/outputs.tgz"),
        ],
        "logsBucket": f"gs://{name}",
    }
    done = submit(py_client, doc).result(polling=FAST_POLLING)

    assert done.status.name == "SUCCESS"  # the run's failure was allowed
    run = done.steps[2]
    assert (run.status.name, run.exit_code) == ("FAILURE", 3)
    assert [done.steps[i].status.name for i in (3, 4)] == ["SUCCESS", "SUCCESS"]
    with tarfile.open(fileobj=io.BytesIO(bucket.blob("outputs.tgz").download_as_bytes())) as tar:
        member = tar.extractfile("./result.txt")
        assert member is not None and member.read() == b"written inside"
        assert tar.getmember("./result.txt").uid == 10001
    python_builds.wait(done.id)
    log = text_of(gcs_bucket, f"log-{done.id}.txt")
    assert log is not None
    assert 'Step #2 - "run": hello from the bucket' in log
    for what in ("network", "write /in", "write /etc"):
        assert f'Step #2 - "run": {what} refused: ' in log
    assert 'Step #2 - "run": uid=10001' in log and "ALLOWED" not in log


# ---------------------------------------------------------------------- timeouts, cancel
def test_the_build_timeout_kills_the_running_step(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient
) -> None:
    marker = 60 + random.random()
    run = docker_run("sleep", HARDENING, PYTHON_IMAGE, sleeper(marker), volumes=[])
    op = submit(py_client, {"steps": [run], "timeout": "2s"})
    eventually(lambda: processes_with(repr(marker)), what="the container started")
    with pytest.raises(exceptions.DeadlineExceeded, match="timed out"):
        op.result(polling=FAST_POLLING)
    build = python_builds.wait(build_id(op))
    assert build["status"] == "TIMEOUT" and build["steps"][0]["status"] == "TIMEOUT"
    assert processes_with(repr(marker)) == []
    assert py_client.get_build(project_id=PROJECT, id=build["id"]).status.name == "TIMEOUT"


def test_a_step_timeout_with_allow_failure_lets_the_build_go_on(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient
) -> None:
    marker = 60 + random.random()
    run = docker_run(
        "sleep",
        HARDENING,
        PYTHON_IMAGE,
        sleeper(marker),
        volumes=[],
        timeout="1s",
        allowFailure=True,
    )
    after = {"name": "ubuntu", "entrypoint": "install", "args": ["-d", "/workspace/x"]}
    done = submit(py_client, {"steps": [run, after]}).result(polling=FAST_POLLING)
    assert done.status.name == "SUCCESS"
    assert [s.status.name for s in done.steps] == ["TIMEOUT", "SUCCESS"]
    assert processes_with(repr(marker)) == []


def test_cancel_kills_a_running_build_whose_log_streams_to_its_bucket(
    python_builds: CloudBuildServer, py_client: cb.CloudBuildClient, gcs_bucket: GcsBucket
) -> None:
    marker = 60 + random.random()
    run = docker_run("sleep", HARDENING, PYTHON_IMAGE, sleeper(marker), volumes=[])
    op = submit(py_client, {"steps": [run], "logsBucket": f"gs://{gcs_bucket.name}/logs"})
    ident = build_id(op)
    eventually(lambda: processes_with(repr(marker)), what="the container started")
    log_name = f"logs/log-{ident}.txt"
    eventually(
        lambda: 'Step #0 - "sleep": waiting' in (text_of(gcs_bucket, log_name) or ""),
        what="the log object written while the build runs",
    )
    assert py_client.get_build(project_id=PROJECT, id=ident).status.name == "WORKING"

    cancelled = py_client.cancel_build(project_id=PROJECT, id=ident)

    assert cancelled.status.name == "CANCELLED"
    with pytest.raises(exceptions.Cancelled):
        op.result(polling=FAST_POLLING)
    build = python_builds.wait(ident)
    assert build["steps"][0]["status"] == "CANCELLED"
    assert processes_with(repr(marker)) == []


# ---------------------------------------------------------------------- the deploy build
def test_the_deploy_build_file_runs_a_backtest(
    client: cb.CloudBuildClient,
    cloudbuild_server: CloudBuildServer,
    gcs_bucket: GcsBucket,
    tmp_path: Path,
) -> None:
    """infra/deploy/cloudbuild.yaml as the runner submits it, run by the default runtime
    image (``python -m runtime``) on inputs staged as ``--stage-only`` leaves them."""
    name = gcs_bucket.name
    bucket = gcs_bucket.client.bucket(name)
    agent = (EXAMPLES_DIR / "minimal.py").read_bytes()
    sha = hashlib.sha256(agent).hexdigest()
    agent_url, run_url = f"gs://{name}/p/sha256/{sha[:2]}/{sha}", f"gs://{name}/p/runs/r-1"
    window = {"symbols": ("AAPL",), "start": date(2021, 1, 1), "end": date(2021, 6, 30)}
    bars = load_and_check(BacktestRequest(agent_file=tmp_path / "agent.py", **window))
    save_prepared(bars, tmp_path / "data.npz")
    inside = BacktestRequest(
        agent_file=Path("/in/agent.py"),
        run_id="r-1",
        data_dir=Path("/out"),
        prepared_data=Path("/in/data.npz"),
        fmel_dir=Path("/out/fmel"),
        **window,
    )
    bucket.blob(agent_url.removeprefix(f"gs://{name}/")).upload_from_string(agent)
    bucket.blob("p/runs/r-1/in/request.json").upload_from_string(inside.to_json())
    bucket.blob("p/runs/r-1/in/data.npz").upload_from_filename(tmp_path / "data.npz")
    doc = yaml.safe_load(BUILD_FILE.read_text())
    doc["substitutions"].update(
        _RUN_ID="r-1",
        _AGENT="minimal",
        _AGENT_URL=agent_url,
        _RUN_URL=run_url,
        _IMAGE="us-docker.pkg.dev/p/tradeops/runtime:test",
        _MEMORY_MB="2048",
    )
    doc["logsBucket"] = f"gs://{name}/p/logs"

    done = submit(client, doc).result(polling=FAST_POLLING)

    assert done.status.name == "SUCCESS", cloudbuild_server.log(done.id)
    assert [(s.id, s.status.name, s.exit_code) for s in done.steps][3] == ("run", "SUCCESS", 0)
    assert {"tradeops-backtest", "run-r-1", "agent-minimal"} <= set(done.tags)
    outputs = bucket.blob("p/runs/r-1/outputs.tgz").download_as_bytes()
    with tarfile.open(fileobj=io.BytesIO(outputs)) as tar:
        result = tar.extractfile("./result.json")
        assert result is not None
        doc_out = json.loads(result.read())
    assert doc_out["error"] is None and doc_out["run_id"] == "r-1"
    cloudbuild_server.wait(done.id)
    log = text_of(gcs_bucket, f"p/logs/log-{done.id}.txt")
    assert log is not None and 'Finished Step #3 - "run"' in log
    assert log.rstrip().endswith("DONE")
