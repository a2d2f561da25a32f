"""Job functions against the in-memory fakes (the real sandbox is in tests/integration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.local.market import LocalMarketData
from runtime.paths import DEFAULT_DATA_DIR, EXAMPLES_DIR
from tests.fakes import (
    InMemoryArtifactStore,
    InMemoryFmelStore,
    InMemoryRegistry,
    InMemoryRunner,
)
from workers import events as ev
from workers import jobs
from workers.ports import RunStatus


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ev.Event] = []

    def send(self, event: ev.Event) -> None:
        self.sent.append(event)


@pytest.fixture
def wired(tmp_path: Path) -> Any:
    def make(doc: dict[str, Any]) -> tuple[jobs.Services, Recorder, InMemoryRunner]:
        """Services whose runner answers with ``doc``'s error (or results)."""
        artifacts = InMemoryArtifactStore()
        notifier = Recorder()
        runner = InMemoryRunner(artifacts, error=doc.get("error"), results=doc.get("results"))
        meta: list[dict[str, Any]] = []
        services = jobs.Services(
            artifacts=artifacts,
            registry=InMemoryRegistry(),
            fmel=InMemoryFmelStore(),
            runner=runner,
            notifier=notifier,
            market=LocalMarketData(DEFAULT_DATA_DIR),
            progress_every_s=0.0,
            meta_sink=meta.append,
        )
        return services, notifier, runner

    return make


GOOD = (EXAMPLES_DIR / "sma_cross.py").read_bytes()


def test_upload_registers_versions(wired: Any) -> None:
    s, notifier, _ = wired({"error": None})
    first = jobs.register_agent(s, job_id="j1", owner="U1", name="sma", source=GOOD,
                                reply_to={"channel": "C1"})  # fmt: skip
    assert isinstance(first, ev.AgentRegistered) and first.version == 1
    assert first.reply_to == {"channel": "C1"}
    assert first.report["strategy"] == "SmaCross"
    second = jobs.register_agent(s, job_id="j2", owner="U1", name="sma", source=GOOD + b"\n# v2\n")
    assert isinstance(second, ev.AgentRegistered) and second.version == 2
    assert notifier.sent == [first, second]
    assert s.artifacts.get(s.registry.get_version("sma", 1).sha256) == GOOD


def test_invalid_upload_is_rejected_with_lines(wired: Any) -> None:
    s, notifier, _ = wired({"error": None})
    out = jobs.register_agent(s, job_id="j", owner="U1", name="bad", source=b"import os\n")
    assert isinstance(out, ev.AgentRejected)
    imports = [e for e in out.report["errors"] if e["code"] == "import"]
    assert imports and imports[0]["line"] == 1
    assert s.registry.get_agent("bad") is None
    assert notifier.sent == [out]


def test_backtest_of_a_registered_agent(wired: Any) -> None:
    s, notifier, runner = wired({"error": None, "results": {"sharpe_ratio": 1.0}})
    jobs.register_agent(s, job_id="j1", owner="U1", name="sma", source=GOOD)
    out = jobs.run_backtest(s, job_id="j2", run_id="r1", owner="U1", agent="sma",
                            parameters={"symbols": ["QQQ"], "cash": 5000})  # fmt: skip
    assert isinstance(out, ev.BacktestFinished)
    assert out.result["results"]["sharpe_ratio"] == 1.0
    req = runner.specs[0]
    assert req.symbols == ("QQQ",) and req.cash == 5000.0 and req.version == 1
    assert s.artifacts.get(req.agent_sha256) == GOOD  # the code, by its digest
    run = s.registry.get_run("r1")
    assert run.status == RunStatus.FINISHED and run.result["results"]["sharpe_ratio"] == 1.0
    kinds = [type(e).__name__ for e in notifier.sent]
    assert kinds == ["AgentRegistered", "BacktestProgress", "BacktestProgress", "BacktestFinished"]
    assert s.meta_sink is not None


def test_a_version_runs_the_strategy_it_was_registered_with(wired: Any) -> None:
    s, _, runner = wired({"error": None})
    two = b"import backtrader as bt\nclass A(bt.Strategy):\n    pass\n"
    two += b"class B(bt.Strategy):\n    pass\n"
    refused = jobs.register_agent(s, job_id="j0", owner="U1", name="two", source=two)
    assert isinstance(refused, ev.AgentRejected)
    added = jobs.register_agent(s, job_id="j1", owner="U1", name="two", source=two, strategy="B")
    assert isinstance(added, ev.AgentRegistered) and added.report["strategy"] == "B"
    jobs.run_backtest(s, job_id="j2", run_id="r1", owner="U1", agent="two", version=1)
    jobs.run_backtest(s, job_id="j3", run_id="r2", owner="U1", agent="two",
                      parameters={"strategy": "A"})  # fmt: skip
    assert [r.strategy for r in runner.specs] == ["B", "A"]


def test_an_agent_failure_is_an_event_not_an_exception(wired: Any) -> None:
    error = {"kind": "agent", "message": "ZeroDivisionError", "hint": "fix it", "line": 7}
    s, _, _ = wired({"error": error})
    jobs.register_agent(s, job_id="j1", owner="U1", name="sma", source=GOOD)
    out = jobs.run_backtest(s, job_id="j2", run_id="r1", owner="U1", agent="sma")
    assert isinstance(out, ev.BacktestFailed) and out.error["line"] == 7
    assert s.registry.get_run("r1").status == RunStatus.FAILED


def test_unknown_agent(wired: Any) -> None:
    s, _, runner = wired({"error": None})
    out = jobs.run_backtest(s, job_id="j", run_id="r", owner="U1", agent="ghost", version=3)
    assert isinstance(out, ev.BacktestFailed)
    assert out.error["message"] == "no agent ghost: upload it first"
    assert runner.specs == []


def test_a_lost_job_with_attempts_left_says_it_will_run_again(wired: Any) -> None:
    s, notifier, _ = wired({"error": None})
    kwargs = {"job_id": "j9", "run_id": "r9", "owner": "U1", "reply_to": {"channel": "C1"}}
    event = jobs.job_failed(s, work="run_backtest", kwargs=kwargs, reason="worker died",
                            attempts_left=1)  # fmt: skip
    assert isinstance(event, ev.JobFailed) and event.retrying and event.attempts_left == 1
    assert (event.job_id, event.user_id, event.reply_to) == ("j9", "U1", {"channel": "C1"})
    assert event.error["kind"] == "platform" and event.error["message"] == "worker died"
    assert notifier.sent == [event]


def test_a_lost_backtest_without_attempts_fails_its_run(wired: Any) -> None:
    s, _, _ = wired({"error": None})
    jobs.register_agent(s, job_id="j1", owner="U1", name="sma", source=GOOD)
    s.registry.create_run(run_id="r9", agent="sma", version=1, owner="U1", kind="backtest",
                          parameters={})  # fmt: skip
    s.registry.update_run("r9", status=RunStatus.RUNNING)
    event = jobs.job_failed(s, work="run_backtest", kwargs={"job_id": "j9", "run_id": "r9"},
                            reason="worker died")  # fmt: skip
    assert isinstance(event, ev.BacktestFailed) and event.error["kind"] == "platform"
    run = s.registry.get_run("r9")
    assert run.status == RunStatus.FAILED and run.error["message"] == "worker died"


def test_a_lost_backtest_that_had_finished_keeps_its_outcome(wired: Any) -> None:
    s, _, _ = wired({"error": None})
    jobs.register_agent(s, job_id="j1", owner="U1", name="sma", source=GOOD)
    jobs.run_backtest(s, job_id="j2", run_id="r2", owner="U1", agent="sma")
    jobs.job_failed(s, work="run_backtest", kwargs={"job_id": "j2", "run_id": "r2"}, reason="late")
    assert s.registry.get_run("r2").status == RunStatus.FINISHED


def test_every_queued_job_takes_its_services_first() -> None:
    """The worker calls each job as ``func(services, **kwargs)`` (ServicesJob)."""
    import importlib
    import inspect

    from bot.desk import WORK

    paths = [func for _, func, _ in WORK.values()] + ["workers.jobs.ping"]
    for path in paths:
        module, name = path.rsplit(".", 1)
        first = next(iter(inspect.signature(getattr(importlib.import_module(module), name))
                          .parameters.values()))  # fmt: skip
        assert first.kind is inspect.Parameter.POSITIONAL_ONLY, path
        assert first.annotation in ("Services", jobs.Services), path
