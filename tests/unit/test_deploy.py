"""What deploys the runtime: its image (hadolint, the lock it installs, what it must hold) and
the Cloud Build file that runs a backtest in it (the hardening each run gets)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "infra" / "deploy"
DOCKERFILE = DEPLOY / "runtime.Dockerfile"
RUNTIME_LOCK = REPO_ROOT / "requirements-runtime.lock"
# what runtime/ imports from PyPI (the rest of its needs follow from these)
RUNTIME_ROOTS = ("backtrader", "numpy", "pandas", "pyarrow", "matplotlib", "alpaca-py")
# imported inside runtime/ by functions only the trusted side calls, never in a run
TRUSTED_SIDE_ONLY = {"duckdb": "runtime.fmel.store.connect, the local FMEL store's reader"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {_norm(name): version for name, version in pairs}


def _closure(roots: tuple[str, ...]) -> set[str]:
    """The installed distributions ``roots`` need, themselves included (no extras)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        dist = metadata.distribution(todo.pop())
        name = _norm(dist.metadata["Name"])
        if name in seen:
            continue
        seen.add(name)
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_runtime_image_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runtime_lock_is_the_main_locks_pins_of_what_runtime_needs() -> None:
    runtime, main = _pins(RUNTIME_LOCK), _pins(REPO_ROOT / "requirements.lock")
    assert {name: main.get(name) for name in runtime} == runtime  # the same versions
    assert set(runtime) == _closure(RUNTIME_ROOTS)  # all it needs, and nothing else


def _imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_everything_runtime_imports_is_in_the_image() -> None:
    modules = _imports(REPO_ROOT / "runtime")
    assert not modules & {"bot", "workers", "infra", "tests"}  # the image holds runtime/ alone
    owners = metadata.packages_distributions()
    in_image = set(_pins(RUNTIME_LOCK))
    third_party = {m for m in modules - {"runtime"} - set(TRUSTED_SIDE_ONLY)
                   if m in owners and m not in sys.stdlib_module_names}  # fmt: skip
    missing = {m for m in third_party if not {_norm(d) for d in owners[m]} & in_image}
    assert not missing, f"runtime/ imports {sorted(missing)}, which the image does not install"


def test_the_image_holds_runtime_alone_and_runs_it_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    copies = re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M)
    assert copies == ["requirements-runtime.lock", "runtime/"]
    assert re.search(r"^USER 10001:10001$", text, flags=re.M)
    assert text.rstrip().endswith('ENTRYPOINT ["python", "-m", "runtime"]')
    assert re.search(r"^FROM python:3\.11-slim", text, flags=re.M)


# ---------------------------------------------------------------- the Cloud Build file
@pytest.fixture(scope="module")
def build() -> dict:  # type: ignore[type-arg]
    loaded: dict = yaml.safe_load((DEPLOY / "cloudbuild.yaml").read_text())  # type: ignore[type-arg]
    return loaded


HARDENING = ("--network=none", "--read-only", "--cap-drop=ALL",
             "--security-opt=no-new-privileges", "--user=10001:10001")  # fmt: skip


def test_the_run_step_is_hardened_as_the_seed_asks(build: dict) -> None:  # type: ignore[type-arg]
    [run] = [step for step in build["steps"] if step["id"] == "run"]
    args = run["args"]
    assert run["name"] == "gcr.io/cloud-builders/docker" and args[:2] == ["run", "--rm"]
    for flag in HARDENING:
        assert flag in args
    assert any(a.startswith("--tmpfs=/tmp:") and "noexec" in a for a in args)
    for limit in ("--memory=", "--memory-swap=", "--cpus=", "--pids-limit=", "--ulimit=fsize=",
                  "--ulimit=cpu="):  # fmt: skip
        assert any(a.startswith(limit) for a in args), limit
    assert "--volume=/workspace/in:/in:ro" in args and "--volume=/workspace/out:/out:rw" in args
    image = args.index("${_IMAGE}")
    assert all(a.startswith("--") for a in args[2:image])  # every flag before the image
    assert args[image + 1:] == ["backtest", "--request", "/in/request.json", "--out", "/out",
                                "--progress-log"]  # fmt: skip
    assert run["allowFailure"] is True  # a failed run's outputs are still packed


def test_the_build_times_out_at_20_minutes_and_packs_outputs_without_following_links(
    build: dict,  # type: ignore[type-arg]
) -> None:
    assert build["timeout"] == "1200s"
    assert [s["id"] for s in build["steps"]] == [
        "fetch-agent", "fetch-request", "make-out", "run", "pack", "upload",
    ]  # fmt: skip
    [pack] = [step for step in build["steps"] if step["id"] == "pack"]
    assert pack["entrypoint"] == "tar" and "--dereference" not in pack["args"]
    used = set(re.findall(r"\$\{(_[A-Z0-9_]+)\}", yaml.safe_dump(build)))
    defaults = set(build["substitutions"])
    assert used - defaults == {"_AGENT_URL", "_RUN_URL", "_IMAGE", "_RUN_ID", "_AGENT"}
