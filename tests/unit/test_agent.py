"""runtime.agent: loading an agent file and picking its strategy class."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import backtrader as bt
import pytest

from runtime.agent import (
    MODULE_PREFIX,
    LoadedAgent,
    load_agent,
    module_name_for,
    pick_strategy,
    strategy_classes,
)
from runtime.errors import ErrorKind, RunError, RunFailed
from tests.conftest import SMA_CROSS, WriteAgent


@pytest.fixture(autouse=True)
def _forget_agent_modules() -> Iterator[None]:
    """Agents register themselves in sys.modules; do not leak them between tests."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(MODULE_PREFIX):
            del sys.modules[name]


def load_error(path: Path, strategy: str | None = None) -> RunError:
    with pytest.raises(RunFailed) as caught:
        load_agent(path, strategy)
    assert str(caught.value) == caught.value.error.message
    return caught.value.error


def test_loads_the_single_strategy() -> None:
    agent = load_agent(SMA_CROSS)
    assert isinstance(agent, LoadedAgent)
    assert agent.name == "SmaCross"
    assert issubclass(agent.strategy, bt.Strategy)
    assert agent.path == SMA_CROSS.resolve()
    assert agent.sha256 == hashlib.sha256(SMA_CROSS.read_bytes()).hexdigest()
    assert agent.module.__name__ == "tradeops_agent_sma_cross"
    assert sys.modules["tradeops_agent_sma_cross"] is agent.module


def test_relative_path_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SMA_CROSS.parent)
    assert load_agent(Path(SMA_CROSS.name)).path == SMA_CROSS.resolve()


def test_module_is_registered_before_the_code_runs(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import sys

        import backtrader as bt

        SEEN_DURING_IMPORT = sys.modules.get(__name__)


        class Sized(bt.Strategy):
            params = (("size", 3),)
        """,
        name="sized.py",
    )
    agent = load_agent(path)
    assert agent.module.SEEN_DURING_IMPORT is agent.module
    assert agent.strategy.params.size == 3


def test_module_name_is_an_identifier() -> None:
    name = module_name_for(Path("/x/my-agent v2.py"))
    assert name == "tradeops_agent_my_agent_v2"
    assert name.isidentifier()


def test_class_named_agent_is_picked_among_several(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Helper(bt.Strategy):
            pass


        class Agent(Helper):
            pass


        class Other(bt.Strategy):
            pass
        """
    )
    assert load_agent(path).name == "Agent"


def test_several_strategies_without_agent_fail_naming_all(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Zeta(bt.Strategy):
            pass


        class Alpha(bt.Strategy):
            pass
        """,
        name="pair.py",
    )
    err = load_error(path)
    assert err.kind is ErrorKind.VALIDATION
    assert "pair.py" in err.message
    assert "Alpha, Zeta" in err.message
    assert "--strategy" in err.message
    # the name picks one, even when a class called Agent exists
    assert load_agent(path, "Zeta").name == "Zeta"


def test_the_only_strategy_no_other_derives_from_is_picked(write_agent: WriteAgent) -> None:
    """A base class with helpers and the strategy built on it: the one at the end runs."""
    path = write_agent(
        """
        import backtrader as bt


        class Base(bt.Strategy):
            def log(self, text):
                print(text)


        class Middle(Base):
            pass


        class Mine(Middle):
            def next(self):
                self.log("bar")
        """
    )
    assert load_agent(path).name == "Mine"
    assert load_agent(path, "Base").name == "Base"  # a name still picks any of them


def test_several_strategies_no_other_derives_from_fail_naming_them(
    write_agent: WriteAgent,
) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Base(bt.Strategy):
            pass


        class Fast(Base):
            pass


        class Slow(Base):
            pass
        """,
        name="two.py",
    )
    err = load_error(path)
    assert err.kind is ErrorKind.VALIDATION
    assert "several strategies (Fast, Slow)" in err.message  # Base is no candidate
    assert "name the one to run Agent" in err.message
    assert err.message.index("Agent") < err.message.index("--strategy")  # chat has no flag


def test_wanted_name_overrides_agent(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Agent(bt.Strategy):
            pass


        class Mine(bt.Strategy):
            pass
        """
    )
    assert load_agent(path, "Mine").name == "Mine"


def test_unknown_wanted_name(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Only(bt.Strategy):
            pass
        """
    )
    err = load_error(path, "Missing")
    assert err.kind is ErrorKind.VALIDATION
    assert "'Missing'" in err.message
    assert "Only" in err.message


def test_imported_strategies_do_not_count(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt
        from backtrader.strategies import SMA_CrossOver


        class Mine(bt.Strategy):
            pass
        """
    )
    agent = load_agent(path)
    assert agent.name == "Mine"
    assert [c.__name__ for c in strategy_classes(agent.module)] == ["Mine"]


def test_file_with_only_imported_strategy_has_none(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        from backtrader.strategies import SMA_CrossOver

        speed = 1
        """,
        name="imports_only.py",
    )
    err = load_error(path)
    assert err.kind is ErrorKind.VALIDATION
    assert "imports_only.py defines no backtrader Strategy" in err.message
    assert err.line is None


def test_pick_strategy_empty_list() -> None:
    with pytest.raises(RunFailed) as caught:
        pick_strategy([], None, where="x.py")
    assert "x.py defines no" in caught.value.error.message


def test_syntax_error_has_its_line(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt


        class Bad(bt.Strategy):
            def next(self):
                if self.position
                    pass
        """,
        name="bad_syntax.py",
    )
    err = load_error(path)
    assert err.kind is ErrorKind.VALIDATION
    assert err.line == 6
    assert err.message.startswith("SyntaxError:")
    assert module_name_for(path) not in sys.modules


def test_missing_module_is_an_import_error(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import math

        import backtrader as bt
        from sklearn.linear_model import LinearRegression
        """
    )
    err = load_error(path)
    assert err.kind is ErrorKind.IMPORT
    assert err.line == 4
    assert "sklearn" in err.message
    assert err.hint.startswith("Only pre-approved packages")
    assert err.traceback is not None and f'File "{path.name}"' in err.traceback


def test_module_level_exception_is_the_agents(write_agent: WriteAgent) -> None:
    path = write_agent(
        """
        import backtrader as bt

        WINDOWS = {"fast": 10}
        SLOW = WINDOWS["slow"]
        """,
        name="keyerr.py",
    )
    err = load_error(path)
    assert err.kind is ErrorKind.AGENT
    assert err.line == 4
    assert err.message == "KeyError: 'slow'"
    assert module_name_for(path) not in sys.modules


def test_missing_file(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nope.py")
    assert err.kind is ErrorKind.VALIDATION
    assert "not found" in err.message


def test_loaded_strategy_runs(write_agent: WriteAgent, synthetic_data: Path) -> None:
    """A strategy with params from a loaded file works in a plain Cerebro."""
    from runtime.data import load, to_feed

    path = write_agent(
        """
        import backtrader as bt


        class Agent(bt.Strategy):
            params = (("period", 5),)

            def __init__(self):
                self.sma = bt.ind.SMA(period=self.p.period)
                self.bars = 0

            def next(self):
                self.bars += 1
        """
    )
    agent = load_agent(path)
    cerebro = bt.Cerebro()
    cerebro.adddata(to_feed(load(synthetic_data, ["SYN"])[0]))
    cerebro.addstrategy(agent.strategy, period=7)
    [strat] = cerebro.run()
    assert strat.p.period == 7
    assert strat.bars == 250 - 6


@pytest.mark.parametrize("example", ["minimal.py", "advanced.py", "sma_cross.py"])
def test_every_shipped_example_trades_on_every_bundled_symbol(example: str) -> None:
    from runtime.backtest import BacktestRequest, run_backtest
    from runtime.paths import DEFAULT_DATA_DIR, EXAMPLES_DIR

    for symbol in sorted(p.stem for p in DEFAULT_DATA_DIR.glob("*.csv")):
        req = BacktestRequest(agent_file=EXAMPLES_DIR / example, symbols=(symbol,))
        doc = run_backtest(req)
        assert doc["error"] is None, doc["error"]
        assert doc["results"]["trades_closed"] >= 3, (example, symbol, doc["results"])
