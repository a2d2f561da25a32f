"""The ``tradeops`` command line, end to end: every case runs the CLI as a real subprocess.

A CLI backtest costs about two seconds, most of it importing backtrader and pandas
twice (the CLI, then the runtime child). So the runs this module needs are declared
below as *jobs* and started together, a few at a time, when the first test asks for
one; each test then checks its own job's outcome. Only the jobs of the selected tests
run (``-k`` / ``-m "not slow"`` skip theirs).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.local.runner import DEFAULT_LOG_LIMIT
from runtime.backtest import DEFAULT_CASH
from runtime.data import DEFAULT_DATA_DIR, load, to_feed
from tests.conftest import (
    SMA_CROSS,
    CliResult,
    processes_mentioning,
    run_cli_in,
    survivors,
)

RESULT_KEYS = {
    "initial_value", "final_value", "portfolio_return_pct", "portfolio_net_pnl",
    "annualized_return_pct", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "sqn",
    "max_drawdown_pct", "max_drawdown_money", "max_drawdown_duration_bars", "total_trades",
    "trades_open", "trades_closed", "win_trades", "loss_trades", "win_rate_pct",
    "total_net_pnl", "average_win_pnl", "average_loss_pnl", "profit_factor", "expectancy",
    "max_consecutive_wins", "max_consecutive_losses", "average_trade_duration_bars",
    "exposure_pct", "buy_and_hold_return_pct", "annual_returns", "monthly_returns", "per_symbol",
    "trades",
}  # fmt: skip
DOC_KEYS = {
    "run_id", "agent_id", "agent_sha256", "parameters", "strategy", "results",
    "data_checks", "warnings", "fmel", "chart", "monitoring", "error", "sandbox", "validation",
    "agent_version", "chart_artifact",
}  # fmt: skip
SAMPLE_SYMBOLS = ("AAPL", "GLD", "MSFT", "QQQ", "SPY", "TLT")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECISION_ROW = re.compile(r"^\s*(\d+)\s+\d{4}-\d{2}-\d{2} \d{2}:\d{2}\s", re.MULTILINE)
MAX_PARALLEL = 3

# ------------------------------------------------------------------------ agents
AGENTS = {
    # ZeroDivisionError two calls deep in the agent's own code, raised at line 11
    "divider.py": """
        import backtrader as bt


        class Divider(bt.Strategy):
            def next(self):
                if len(self) > 5:
                    self.ratio()

            def ratio(self):
                zero = 0
                return 1 / zero  # line 11
        """,
    "broken.py": """
        import backtrader as bt


        class Broken(bt.Strategy):
            def next(self):
                raise RuntimeError("bad idea")
        """,
    "net.py": """
        import backtrader as bt
        import tensorflow


        class Net(bt.Strategy):
            pass
        """,
    "typo.py": """
        import backtrader as bt


        class Typo(bt.Strategy)
            pass
        """,
    "nothing.py": """
        import backtrader as bt

        answer = 42
        """,
    "two.py": """
        import backtrader as bt


        class First(bt.Strategy):
            pass


        class Second(bt.Strategy):
            def next(self):
                if not self.position:
                    self.buy()
        """,
    # an endless next() (helpers the agent starts are covered in test_sandbox.py)
    "forever_agent.py": """
        import backtrader as bt

        print("started", flush=True)


        class Forever(bt.Strategy):
            def next(self):
                while True:
                    pass
        """,
    "loud.py": """
        import backtrader as bt


        class Loud(bt.Strategy):
            def __init__(self):
                print("x" * 5_000_000)
                print("the end of the noise")
        """,
    "snoop.py": """
        import os

        import backtrader as bt


        class Snoop(bt.Strategy):
            def __init__(self):
                print("ENV", dict(os.environ))
        """,
}


# -------------------------------------------------------------------------- jobs
class Ctx:
    """What a job needs: folders under the module's tmp dir, and the other jobs."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root = root
        self.data = data
        self.agents = root / "agents"
        self.futures: dict[str, Future[Any]] = {}

    def home(self, name: str) -> Path:
        path = self.root / "homes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def agent(self, name: str) -> Path:
        return self.agents / name

    def cli(self, home: str, *args: Any, env: dict[str, str] | None = None) -> CliResult:
        return run_cli_in(self.home(home), args, env=env)

    def backtest(self, agent: str, *args: Any, env: dict[str, str] | None = None) -> CliResult:
        """Backtest one of AGENTS on the small synthetic data, in the shared home."""
        return self.cli(
            "shared", "backtest", self.agent(agent), "--data", self.data, "--symbols", "SYN",
            *args, env=env,
        )  # fmt: skip

    def result(self, job: str) -> Any:
        return self.futures[job].result(timeout=300)


@dataclass(frozen=True)
class Job:
    run: Callable[[Ctx], Any]
    tests: tuple[str, ...]


JOBS: dict[str, Job] = {}


def job(*tests: str) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
    """Register a job for the named tests (submitted in the order of registration)."""

    def register(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        JOBS[fn.__name__] = Job(fn, tests)
        return fn

    return register


FMEL_TESTS = (
    "test_fmel_verify_last",
    "test_fmel_verify_finds_a_tampered_row",
    "test_fmel_prefix_last_rows",
    "test_fmel_json",
    "test_fmel_unknown_run",
    "test_fmel_trades_lists_the_runs_closed_trades",
)
SMA_TESTS = (
    "test_backtest_json_is_the_result_document",
    "test_backtest_stdout_has_nothing_but_json",
    "test_agent_prints_go_to_the_run_log",
    "test_stray_spy_row_is_reported",
    "test_chart_png_is_written",
    "test_final_value_matches_plain_cerebro",
)


@job(*SMA_TESTS, *FMEL_TESTS)
def sma(ctx: Ctx) -> CliResult:
    """The brief's command, verbatim (relative path, from the repository root)."""
    return ctx.cli("sma", "backtest", "runtime/examples/sma_cross.py", "--symbols", "SPY", "--json")


@job("test_timeout_kills_the_whole_process_group")
def timeout(ctx: Ctx) -> CliResult:
    return ctx.cli(
        "timeout", "backtest", ctx.agent("forever_agent.py"), "--data", ctx.data,
        "--symbols", "SYN", "--timeout", "3", "--json",
    )  # fmt: skip


@job("test_readable_output")
def readable(ctx: Ctx) -> CliResult:
    chart = ctx.root / "elsewhere" / "equity.png"
    return ctx.cli("readable", "backtest", SMA_CROSS, "--symbols", "SPY", "--chart", chart)


@job("test_agent_exception_points_at_the_agent_line",
     "test_a_failed_run_keeps_the_decisions_before_its_failure")
def divider(ctx: Ctx) -> CliResult:
    return ctx.backtest("divider.py", "--json")


@job("test_a_failed_run_keeps_the_decisions_before_its_failure")
def fmel_of_failed(ctx: Ctx) -> dict[str, CliResult]:
    ctx.result("divider"), ctx.result("broken")
    return {"divider": ctx.cli("shared", "fmel", "divider", "--verify"),
            "broken": ctx.cli("shared", "fmel", "broken")}  # fmt: skip


@job("test_agent_exception_readable", "test_a_failed_run_keeps_the_decisions_before_its_failure")
def broken(ctx: Ctx) -> CliResult:
    return ctx.backtest("broken.py")


@job("test_unapproved_import")
def net(ctx: Ctx) -> CliResult:
    return ctx.backtest("net.py", "--json")


@job("test_syntax_error")
def typo(ctx: Ctx) -> CliResult:
    return ctx.backtest("typo.py", "--json")


@job("test_file_without_strategy")
def nothing(ctx: Ctx) -> CliResult:
    return ctx.backtest("nothing.py", "--json")


@job("test_two_strategies_need_a_name")
def two(ctx: Ctx) -> CliResult:
    return ctx.backtest("two.py", "--json")


@job("test_strategy_option_picks_one")
def two_second(ctx: Ctx) -> CliResult:
    return ctx.backtest("two.py", "--strategy", "Second", "--json")


@job("test_unknown_symbol")
def unknown_symbol(ctx: Ctx) -> CliResult:
    return ctx.cli("shared", "backtest", SMA_CROSS, "--symbols", "SPY,NOPE", "--json")


@job("test_huge_agent_output_is_truncated")
def loud(ctx: Ctx) -> CliResult:
    return ctx.backtest("loud.py", "--json")


@job("test_snooping_agent_is_refused_before_it_runs")
def snoop(ctx: Ctx) -> CliResult:
    return ctx.backtest(
        "snoop.py", "--json", env={"SLACK_BOT_TOKEN": "xoxb-canary", "TRADEOPS_SECRET": "canary"}
    )


BAD_USAGE = {
    "bad-date": (["--start", "2021-02-30"], "2021-02-30"),
    "negative-cash": (["--cash", "-5"], "--cash"),
    "word-date": (["--end", "yesterday"], "yesterday"),
}


@job("test_bad_options_exit_2", "test_missing_agent_file_exit_2")
def usage(ctx: Ctx) -> dict[str, CliResult]:
    out = {
        key: ctx.cli("usage", "backtest", SMA_CROSS, *args) for key, (args, _) in BAD_USAGE.items()
    }
    out["missing"] = ctx.cli("usage", "backtest", ctx.root / "no_such_agent.py", "--json")
    return out


@job("test_fmel_without_runs")
def fmel_without_runs(ctx: Ctx) -> CliResult:
    return ctx.cli("empty", "fmel", "last", "--verify")


@job("test_fmel_verify_last")
def fmel_verify_last(ctx: Ctx) -> CliResult:
    ctx.result("sma")
    return ctx.cli("sma", "fmel", "last", "--verify")


@job("test_fmel_prefix_last_rows")
def fmel_prefix(ctx: Ctx) -> CliResult:
    run_id = json.loads(ctx.result("sma").stdout)["run_id"]
    return ctx.cli("sma", "fmel", run_id[:-3], "--last", "5")


@job("test_fmel_json")
def fmel_json(ctx: Ctx) -> CliResult:
    ctx.result("sma")
    return ctx.cli("sma", "fmel", "last", "--last", "3", "--json")


@job("test_fmel_unknown_run")
def fmel_unknown(ctx: Ctx) -> CliResult:
    ctx.result("sma")
    return ctx.cli("sma", "fmel", "19990101T000000-deadbeef")


@job("test_fmel_trades_lists_the_runs_closed_trades")
def fmel_trades(ctx: Ctx) -> dict[str, CliResult]:
    ctx.result("sma")
    return {
        "text": ctx.cli("sma", "fmel", "last", "--trades"),
        "json": ctx.cli("sma", "fmel", "last", "--trades", "--json"),
    }


@job("test_fmel_verify_finds_a_tampered_row")
def fmel_tampered(ctx: Ctx) -> CliResult:
    """Copy the SPY run's FMEL folder, add 0.5 to portfolio_value of bar 100, verify."""
    run_id = json.loads(ctx.result("sma").stdout)["run_id"]
    shutil.copytree(ctx.home("sma") / "fmel", ctx.home("tampered") / "fmel")
    folder = ctx.home("tampered") / "fmel" / "trading_decisions" / run_id
    for part in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(part)
        bars = table.column("bar_number").to_pylist()
        if 100 not in bars:
            continue
        values = table.column("portfolio_value").to_pylist()
        values[bars.index(100)] += 0.5
        col = table.schema.get_field_index("portfolio_value")
        table = table.set_column(col, table.schema.field(col), pa.array(values, pa.float64()))
        pq.write_table(table, part)
        break
    else:
        raise AssertionError(f"no part file of {run_id} holds bar 100")
    return ctx.cli("tampered", "fmel", run_id, "--verify")


class Runs:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def __getitem__(self, name: str) -> Any:
        return self.ctx.result(name)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    synthetic_data: Path,
) -> Iterator[Runs]:
    selected = {
        getattr(item, "originalname", item.name)
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    }
    ctx = Ctx(tmp_path_factory.mktemp("cli"), synthetic_data)
    ctx.agents.mkdir()
    for name, source in AGENTS.items():
        ctx.agent(name).write_text(textwrap.dedent(source).lstrip("\n"))
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="cli-job")
    for name, spec in JOBS.items():
        if selected.intersection(spec.tests):
            ctx.futures[name] = pool.submit(spec.run, ctx)
    yield Runs(ctx)
    pool.shutdown(wait=True, cancel_futures=True)


def parse_json_only(out: CliResult) -> dict[str, Any]:
    """The whole of stdout must be one JSON document (json.loads rejects anything extra)."""
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def failed(out: CliResult) -> dict[str, Any]:
    """A --json run that failed: exit 1, pure JSON, error filled; returns the error."""
    assert out.code == 1, out
    doc = parse_json_only(out)
    assert set(doc) == DOC_KEYS
    assert doc["results"] is None
    err: dict[str, Any] = doc["error"]
    assert err is not None
    assert set(err) == {"kind", "message", "hint", "line", "traceback"}
    assert doc["monitoring"]["errors"] == 1
    assert "Traceback" not in out.stderr
    return err


# ---------------------------------------------------------- the SPY backtest (1)
@pytest.fixture(scope="module")
def spy(runs: Runs) -> dict[str, Any]:
    out = runs["sma"]
    assert out.code == 0, out
    return parse_json_only(out)


@pytest.fixture(scope="module")
def spy_dir(runs: Runs, spy: dict[str, Any]) -> Path:
    return runs.ctx.home("sma") / "runs" / spy["run_id"]


def test_backtest_json_is_the_result_document(spy: dict[str, Any], spy_dir: Path) -> None:
    doc = spy
    assert set(doc) == DOC_KEYS
    assert doc["error"] is None
    assert set(doc["results"]) == RESULT_KEYS
    assert doc["agent_id"] == "sma_cross"
    assert re.fullmatch(r"[0-9a-f]{64}", doc["agent_sha256"])
    assert doc["strategy"]["name"] == "SmaCross"
    assert doc["strategy"]["params"]["fast"] == 10
    p = doc["parameters"]
    assert p["symbols"] == ["SPY"]
    assert p["initial_cash"] == DEFAULT_CASH
    assert p["timeframe"] == "1d"
    assert (p["start_date"], p["end_date"]) == ("2020-07-27", "2025-04-04")
    r = doc["results"]
    assert r["initial_value"] == DEFAULT_CASH
    assert r["total_trades"] > 0
    assert set(r["per_symbol"]) == {"SPY"}
    assert doc["fmel"]["decisions"] > 1000
    assert sum(doc["fmel"]["actions"].values()) == doc["fmel"]["decisions"]
    assert re.fullmatch(r"[0-9a-f]{64}", doc["fmel"]["chain_head"])
    assert doc["monitoring"]["errors"] == 0
    assert doc["monitoring"]["decision_count"] == doc["fmel"]["decisions"]
    # the same document is kept in the run's folder
    assert json.loads((spy_dir / "result.json").read_text()) == doc


def test_backtest_stdout_has_nothing_but_json(runs: Runs) -> None:
    out = runs["sma"]
    assert out.stdout.startswith("{")
    assert out.stdout.rstrip("\n").endswith("}")
    assert "BUY" not in out.stdout
    assert "BUY" not in out.stderr


def test_agent_prints_go_to_the_run_log(spy_dir: Path) -> None:
    log = (spy_dir / "agent.log").read_text()
    assert re.search(r"^\d{4}-\d{2}-\d{2} BUY \d+ SPY at about", log, re.MULTILINE)
    assert "SELL" in log


def test_stray_spy_row_is_reported(spy: dict[str, Any]) -> None:
    stray = [c for c in spy["data_checks"] if c["symbol"] == "SPY" and c["kind"] == "stray_rows"]
    assert len(stray) == 1
    assert stray[0]["count"] == 1
    assert "2018-11-01" in stray[0]["message"]


def test_chart_png_is_written(spy: dict[str, Any], spy_dir: Path) -> None:
    chart = Path(spy["chart"])
    assert chart == spy_dir / "chart.png"
    assert chart.read_bytes()[:8] == PNG_SIGNATURE


def test_final_value_matches_plain_cerebro(spy: dict[str, Any]) -> None:
    """The recorder and analyzers must not change what the strategy does."""
    spec = importlib.util.spec_from_file_location("plain_sma_cross", SMA_CROSS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        cerebro = bt.Cerebro()
        cerebro.broker.setcash(DEFAULT_CASH)
        for d in load(DEFAULT_DATA_DIR, ["SPY"]):
            cerebro.adddata(to_feed(d), name=d.symbol)
        cerebro.addstrategy(module.SmaCross)
        cerebro.run()
    finally:
        del sys.modules[spec.name]
    expected = cerebro.broker.getvalue()
    assert expected != DEFAULT_CASH  # it traded
    assert spy["results"]["final_value"] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------ readable output (2)
def test_readable_output(runs: Runs) -> None:
    out = runs["readable"]
    assert out.code == 0, out
    [run_dir] = (runs.ctx.home("readable") / "runs").iterdir()
    chart = runs.ctx.root / "elsewhere" / "equity.png"
    assert run_dir.name in out.stdout
    assert "Sharpe" in out.stdout
    assert re.search(r"FMEL\s+\d+ decisions", out.stdout)
    assert "Monthly returns (%)" in out.stdout and "closed trades (tradeops fmel" in out.stdout
    assert str(chart) in out.stdout
    assert chart.read_bytes()[:8] == PNG_SIGNATURE
    assert "BUY" not in out.stdout  # the agent's prints are in its log only
    assert "BUY" in (run_dir / "agent.log").read_text()


# ------------------------------------------------------------------- errors (3)
def test_agent_exception_points_at_the_agent_line(runs: Runs) -> None:
    err = failed(runs["divider"])
    agent = str(runs.ctx.agent("divider.py"))
    assert err["kind"] == "agent"
    assert err["line"] == 11
    assert err["message"] == "ZeroDivisionError: division by zero"
    tb = err["traceback"]
    assert "backtrader" not in tb and "site-packages" not in tb and "runtime" not in tb
    lines = tb.splitlines()
    assert lines[0] == "Traceback (agent frames only):"
    name = Path(agent).name  # the agent's own file name, not where it sits in the sandbox
    assert re.findall(r'File "([^"]+)", line (\d+)', tb) == [(name, "7"), (name, "11")]
    assert "return 1 / zero" in tb
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_a_failed_run_keeps_the_decisions_before_its_failure(runs: Runs) -> None:
    doc = json.loads(runs["divider"].stdout)
    assert doc["error"]["kind"] == "agent" and doc["fmel"]["decisions"] == 5  # bar 6 failed
    out = runs["fmel_of_failed"]
    assert out["divider"].code == 0 and f"FMEL {doc['run_id']}: OK · 5 decisions" in out[
        "divider"].stdout  # fmt: skip
    # one that failed on its first bar has nothing recorded, and says how its run ended
    said = out["broken"].stderr
    assert out["broken"].code == 2 and "has no recorded decisions" in said, said
    assert "is failed: RuntimeError: bad idea" in said


def test_agent_exception_readable(runs: Runs) -> None:
    out = runs["broken"]
    assert out.code == 1
    assert "agent error at line 6" in out.stdout
    assert "RuntimeError: bad idea" in out.stdout
    assert "Hint:" in out.stdout
    assert "agent.log" in out.stdout
    assert "Traceback" not in out.stderr


def test_unapproved_import(runs: Runs) -> None:
    err = failed(runs["net"])
    assert err["kind"] == "import"
    assert err["line"] == 2
    assert "tensorflow" in err["message"]
    assert "Only pre-approved packages" in err["hint"]


def test_syntax_error(runs: Runs) -> None:
    err = failed(runs["typo"])
    assert err["kind"] == "validation"
    assert err["line"] == 4
    assert "SyntaxError" in err["message"]


def test_file_without_strategy(runs: Runs) -> None:
    err = failed(runs["nothing"])
    assert err["kind"] == "validation"
    assert err["line"] is None
    assert "nothing.py" in err["message"]
    assert "Strategy" in err["message"]


def test_two_strategies_need_a_name(runs: Runs) -> None:
    err = failed(runs["two"])
    assert err["kind"] == "validation"
    assert "First" in err["message"] and "Second" in err["message"]
    assert "--strategy" in err["message"]


def test_strategy_option_picks_one(runs: Runs) -> None:
    out = runs["two_second"]
    assert out.code == 0, out
    doc = parse_json_only(out)
    assert doc["error"] is None
    assert doc["strategy"]["name"] == "Second"
    assert doc["results"]["trades_open"] == 1  # Second buys; First never trades


def test_unknown_symbol(runs: Runs) -> None:
    err = failed(runs["unknown_symbol"])
    assert err["kind"] == "data"
    assert "\n" not in err["message"]
    assert "NOPE" in err["message"]
    for symbol in SAMPLE_SYMBOLS:
        assert symbol in err["message"]


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(runs: Runs) -> None:
    err = failed(runs["timeout"])
    assert err["kind"] == "timeout"
    assert "3 seconds" in err["message"]
    agent = runs.ctx.agent("forever_agent.py")
    [run_dir] = (runs.ctx.home("timeout") / "runs").iterdir()
    log = (run_dir / "agent.log").read_text()
    assert "started" in log, "the agent never started (machine overloaded?)"
    assert survivors(lambda: processes_mentioning(str(agent))) == []
    assert survivors(lambda: processes_mentioning(str(run_dir))) == []  # the runtime child itself


def test_huge_agent_output_is_truncated(runs: Runs) -> None:
    out = runs["loud"]
    assert out.code in (0, 1), out
    doc = parse_json_only(out)
    assert doc["error"] is None or doc["error"]["kind"] != "platform"
    assert "xxxx" not in out.stdout and "xxxx" not in out.stderr
    log = (runs.ctx.home("shared") / "runs" / doc["run_id"] / "agent.log").read_bytes()
    assert DEFAULT_LOG_LIMIT <= len(log) <= DEFAULT_LOG_LIMIT + 200
    assert log.startswith(b"x" * 1000)
    dropped = re.search(rb"\[log truncated: (\d+) more bytes not kept\]\n$", log)
    assert dropped is not None
    assert int(dropped.group(1)) > 5_000_000 - DEFAULT_LOG_LIMIT


# -------------------------------------------------------------- usage errors (4)
@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_bad_options_exit_2(runs: Runs, case: str) -> None:
    out = runs["usage"][case]
    assert out.code == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    errors = [ln for ln in out.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1
    assert BAD_USAGE[case][1] in errors[0]


def test_missing_agent_file_exit_2(runs: Runs) -> None:
    out = runs["usage"]["missing"]
    assert out.code == 2
    assert out.stdout == ""
    missing = runs.ctx.root / "no_such_agent.py"
    assert out.stderr == f"tradeops: error: agent file not found: {missing}\n"


# ------------------------------------------------------------------------ fmel (5)
def test_fmel_verify_last(runs: Runs, spy: dict[str, Any]) -> None:
    out = runs["fmel_verify_last"]
    assert out.code == 0, out
    assert re.search(rf"^FMEL {spy['run_id']}: OK\b", out.stdout)
    assert f"{spy['fmel']['decisions']} decisions" in out.stdout
    assert spy["fmel"]["chain_head"] in out.stdout


def test_fmel_verify_finds_a_tampered_row(runs: Runs) -> None:
    out = runs["fmel_tampered"]
    assert out.code == 1, out
    assert re.search(r"\bbar 100\b", out.stdout)
    assert "OK" not in out.stdout


def test_fmel_prefix_last_rows(runs: Runs, spy: dict[str, Any]) -> None:
    out = runs["fmel_prefix"]
    assert out.code == 0, out
    n = spy["fmel"]["decisions"]
    assert [int(b) for b in DECISION_ROW.findall(out.stdout)] == list(range(n - 4, n + 1))
    assert spy["run_id"] in out.stdout


def test_fmel_json(runs: Runs, spy: dict[str, Any]) -> None:
    out = runs["fmel_json"]
    assert out.code == 0, out
    doc = json.loads(out.stdout)
    assert doc["summary"]["run_id"] == spy["run_id"]
    assert doc["summary"]["chain_head"] == spy["fmel"]["chain_head"]
    n = spy["fmel"]["decisions"]
    assert [r["bar_number"] for r in doc["decisions"]] == [n - 2, n - 1, n]


def test_fmel_trades_lists_the_runs_closed_trades(runs: Runs, spy: dict[str, Any]) -> None:
    out = runs["fmel_trades"]
    trades, closed = spy["results"]["trades"], spy["results"]["trades_closed"]
    assert out["json"].code == 0, out["json"]
    assert json.loads(out["json"].stdout) == {
        "run_id": spy["run_id"],
        "trades_closed": closed,
        "trades": trades,
    }
    text = out["text"]
    assert text.code == 0, text
    head, columns, *rows = text.stdout.splitlines()
    assert head == (
        f"Closed trades of run {spy['run_id']} (all {closed}; net P&L after commission):"
    )
    assert columns.split()[:5] == ["#", "symbol", "side", "entry", "exit"]
    assert len(rows) == closed == len(trades) > 0
    last = trades[-1]
    shown = f"{closed} SPY {last['direction']} {last['entry_date']} {last['exit_date']}"
    assert " ".join(rows[-1].split()[:5]) == shown


def test_fmel_unknown_run(runs: Runs) -> None:
    out = runs["fmel_unknown"]
    assert out.code == 2
    assert out.stdout == ""
    assert out.stderr.startswith("tradeops: error: no agent or run '19990101T000000-deadbeef'")
    assert len(out.stderr.splitlines()) == 1


def test_fmel_without_runs(runs: Runs) -> None:
    out = runs["fmel_without_runs"]
    assert out.code == 2
    assert out.stdout == ""
    assert out.stderr.startswith("tradeops: error: no recorded runs yet")


# --------------------------------------------------------------------- secrets (6)
def test_snooping_agent_is_refused_before_it_runs(runs: Runs) -> None:
    # the sandbox keeps secrets from agents that pass validation (tests/integration/
    # test_sandbox.py); one that imports os does not even get that far
    out = runs["snoop"]
    assert out.code == 1, out
    doc = parse_json_only(out)
    assert doc["error"]["kind"] == "import" and doc["error"]["line"] == 1
    assert "canary" not in out.stdout + out.stderr
    assert not (runs.ctx.home("shared") / "runs" / doc["run_id"] / "agent.log").exists()


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    from tests.conftest import run_cli_in

    out = run_cli_in(tmp_path / "home", ["--version"])
    assert out.code == 0 and out.stdout.strip() == f"tradeops {version('tradeops')}"


def test_an_uncreatable_home_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli_in

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_cli_in(blocker / "home", ["agents", "list"])
    assert out.code == 2 and "Traceback" not in out.stderr
    said = f"tradeops: error: TRADEOPS_HOME {blocker / 'home'}: Not a directory"
    assert out.stderr.strip() == said


def test_slack_unreachable_at_start_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli_in

    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s",
           "SLACK_API_URL": "http://127.0.0.1:9/api/"}  # fmt: skip
    out = run_cli_in(tmp_path / "home", ["bot", "--http", "--port", "0"], env=env, timeout=60)
    assert out.code == 2 and "Traceback" not in out.stderr
    assert "tradeops: error: cannot reach Slack at http://127.0.0.1:9/api/" in out.stderr


def test_the_embedded_redis_can_be_stopped(redis_home: Path) -> None:
    from infra.local.redis_server import EmbeddedRedis
    from tests.conftest import run_cli_in

    EmbeddedRedis(redis_home).ensure_running()
    assert "runs (pid" in run_cli_in(redis_home, ["redis", "status"]).stdout
    stopped = run_cli_in(redis_home, ["redis", "stop"])
    assert stopped.code == 0 and "stopped the embedded Redis" in stopped.stdout
    assert not EmbeddedRedis(redis_home).running()
    assert "no embedded Redis runs" in run_cli_in(redis_home, ["redis", "status"]).stdout
