"""The BacktestRunner contract: the in-memory fake and the local sandbox runner behave alike.

One spec (two symbols, a window inside the synthetic data, cash and commission that are
not the defaults) runs once per runner; the contract tests read that one outcome. The
local runner runs the real ``runtime/examples/sma_cross.py``, fetched from a real artifact
store by its digest, in the bubblewrap sandbox; what only it does (the decisions in the
FMEL store, an agent's exception as the run's error) is in the ``test_local_*`` tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from infra.local.artifacts import LocalArtifactStore
from infra.local.fmel import LocalFmelStore
from infra.local.market import LocalMarketData
from infra.local.runner import SubprocessRunner
from tests.conftest import SMA_CROSS
from tests.fakes import InMemoryArtifactStore, InMemoryFmelStore, InMemoryRunner
from workers.payloads import ResultDoc
from workers.ports import (
    ArtifactStore,
    BacktestRunner,
    BacktestSpec,
    FmelStore,
    NotFound,
    check_sha256,
)

# bar dates of the synthetic data (business days 2000-01-03 .. 2000-12-15), so the window a
# runner states is the spec's whether it repeats the spec or reports the bars it loaded
START, END = date(2000, 2, 1), date(2000, 11, 30)

SLOW_AGENT = b"""import time

import backtrader as bt


class Slow(bt.Strategy):
    def next(self):
        time.sleep(0.008)
"""


@dataclass
class Rig:
    kind: str
    runner: BacktestRunner
    artifacts: ArtifactStore
    fmel: FmelStore
    sha256: str  # the example agent's code in the artifact store
    root: Path | None = None  # the local runner's runs_dir

    def spec(self, run_id: str, sha256: str | None = None) -> BacktestSpec:
        return BacktestSpec(
            run_id=run_id, agent="sma-cross", version=3, agent_sha256=sha256 or self.sha256,
            owner="U123", symbols=("SYN", "ALT"), start=START, end=END, cash=25_000.0,
            commission=0.001,
        )  # fmt: skip


@dataclass
class Ran:
    rig: Rig
    spec: BacktestSpec
    doc: ResultDoc
    progress: list[tuple[int, int | None]]


def run(rig: Rig, spec: BacktestSpec) -> Ran:
    progress: list[tuple[int, int | None]] = []
    doc = rig.runner.run(spec, lambda done, total: progress.append((done, total)))
    return Ran(rig, spec, doc, progress)


@pytest.fixture(scope="module")
def memory_rig() -> Rig:
    artifacts, fmel = InMemoryArtifactStore(), InMemoryFmelStore()
    sha256 = artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    return Rig("memory", InMemoryRunner(artifacts, fmel), artifacts, fmel, sha256)


@pytest.fixture(scope="module")
def local_rig(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Rig:
    root = tmp_path_factory.mktemp("runner")
    artifacts, fmel = LocalArtifactStore(root / "artifacts"), LocalFmelStore(root / "fmel")
    runner = SubprocessRunner(
        artifacts=artifacts, fmel=fmel, market=LocalMarketData(synthetic_data),
        runs_dir=root / "runs", timeout_s=120, poll_s=0.02,
    )  # fmt: skip
    sha256 = artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    return Rig("local", runner, artifacts, fmel, sha256, root / "runs")


@pytest.fixture(scope="module")
def memory_ran(memory_rig: Rig) -> Ran:
    return run(memory_rig, memory_rig.spec("20000101T000000-c0ffee01"))


@pytest.fixture(scope="module")
def local_ran(local_rig: Rig) -> Ran:
    return run(local_rig, local_rig.spec("20000101T000000-c0ffee02"))


@pytest.fixture(scope="module", params=["memory", pytest.param("local", marks=pytest.mark.slow)])
def rig(request: pytest.FixtureRequest) -> Rig:
    found: Rig = request.getfixturevalue(f"{request.param}_rig")
    return found


@pytest.fixture(scope="module")
def ran(request: pytest.FixtureRequest, rig: Rig) -> Ran:
    found: Ran = request.getfixturevalue(f"{rig.kind}_ran")  # one run per runner
    return found


# ------------------------------------------------------------------------ the contract
def test_the_document_states_the_spec(ran: Ran) -> None:
    doc, spec = ran.doc, ran.spec
    assert doc["run_id"] == spec.run_id
    assert doc["agent_id"] == "sma-cross"
    params = doc["parameters"]
    assert params["symbols"] == ["SYN", "ALT"]
    assert params["initial_cash"] == 25_000.0
    assert params["commission"] == 0.001
    assert (params["start_date"], params["end_date"]) == ("2000-02-01", "2000-11-30")


def test_a_good_agent_runs_without_error(ran: Ran) -> None:
    assert ran.doc["error"] is None, ran.doc["error"]
    assert ran.doc["results"] is not None


def test_the_chart_is_a_reference_into_the_artifact_store(ran: Ran) -> None:
    assert ran.doc["chart"] is None  # never a path on the runner's host
    ref = ran.doc.get("chart_artifact")
    assert isinstance(ref, str) and check_sha256(ref) == ref
    png = ran.rig.artifacts.get(ref)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(png).hexdigest() == ref


def test_progress_never_goes_back(rig: Rig) -> None:
    # the runtime reports at most every 0.5 s, so this agent takes about 1.7 s (sma_cross
    # is done before its first report); the fake ignores the code and reports anyway
    sha256 = rig.artifacts.put(SLOW_AGENT, kind="agent")
    ran = run(rig, rig.spec("20000101T000000-510e510e", sha256=sha256))
    assert ran.doc["error"] is None, ran.doc["error"]
    assert ran.progress, "no progress reported"
    dones = [done for done, _ in ran.progress]
    assert dones == sorted(dones)
    totals = {total for _, total in ran.progress}
    assert len(totals) == 1, totals
    (total,) = totals
    assert total is not None and 0 < max(dones) <= total


def test_the_code_that_ran_is_the_specs(ran: Ran) -> None:
    assert ran.doc["agent_sha256"] == ran.spec.agent_sha256
    assert ran.doc["agent_sha256"] == hashlib.sha256(SMA_CROSS.read_bytes()).hexdigest()


def test_an_unknown_digest_is_not_found(rig: Rig) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(NotFound):
        rig.runner.run(rig.spec("20000101T000000-0000dead", sha256=missing))


# ------------------------------------------------------- what only the local runner does
@pytest.mark.slow
def test_local_decisions_are_in_the_fmel_store(local_ran: Ran) -> None:
    fmel, run_id, doc = local_ran.rig.fmel, local_ran.spec.run_id, local_ran.doc
    summary = fmel.summary(run_id)
    assert summary is not None
    assert doc["fmel"] is not None
    assert summary["decisions"] == doc["fmel"]["decisions"] > 100  # a bar a decision
    assert summary["chain_head"] == doc["fmel"]["chain_head"]
    rows = fmel.decisions(run_id, last=3)
    assert len(rows) == 3
    assert [r["bar_number"] for r in rows] == [summary["decisions"] - n for n in (2, 1, 0)]
    assert {(r["run_id"], r["agent_id"], r["user_id"]) for r in rows} == {
        (run_id, "sma-cross", "U123")
    }
    assert rows[-1]["complete_state_hash"] == summary["chain_head"]
    assert fmel.verify(run_id).ok


@pytest.mark.slow
def test_local_chart_does_not_stay_in_the_runs_folder(local_ran: Ran) -> None:
    assert local_ran.rig.root is not None
    work = local_ran.rig.root / local_ran.spec.run_id
    assert work.is_dir()
    assert not (work / "chart.png").exists()


@pytest.mark.slow
def test_local_agent_raising_in_next_is_the_agents_error(local_rig: Rig) -> None:
    code = b"""import backtrader as bt


class Boom(bt.Strategy):
    def next(self):
        if len(self) == 5:
            raise ValueError("boom at bar five")
"""
    sha256 = local_rig.artifacts.put(code, kind="agent")
    spec = local_rig.spec("20000101T000000-b00b00b0", sha256=sha256)
    doc = local_rig.runner.run(spec)  # returns: the run's failure is in the document
    error = doc["error"]
    assert error is not None
    assert error["kind"] == "agent", error
    assert "boom at bar five" in error["message"]
    assert doc["run_id"] == spec.run_id
    assert doc["agent_sha256"] == sha256
    assert doc["results"] is None
