"""runtime.errors: RunError, hints and classify (whose fault, which line, trimmed traceback)."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from runtime.errors import (
    APPROVED_PACKAGES,
    HINTS,
    ErrorKind,
    RunError,
    RunFailed,
    classify,
    make_error,
)
from tests.conftest import WriteAgent

AGENT_SOURCE = """
import json


def divide(a, b):
    return a / b  # line 5


def outer():
    return divide(1, 0)  # line 9


def parse():
    return json.loads("{not json")  # line 13


def import_missing():
    import tensorflow  # line 17


def fail_empty():
    raise ValueError()  # line 21


def memory():
    raise MemoryError()


def call(fn):
    return fn()
"""


@pytest.fixture
def agent_module(write_agent: WriteAgent) -> Iterator[tuple[Path, ModuleType]]:
    """The agent above, executed from its file so its frames carry its path."""
    path = write_agent(AGENT_SOURCE, name="errs.py")
    module = ModuleType("errs_under_test")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    yield path, module
    del sys.modules[module.__name__]


def raised(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_every_kind_has_a_hint() -> None:
    assert set(HINTS) == set(ErrorKind)
    for kind in ErrorKind:
        assert make_error(kind, "m").hint == HINTS[kind]
    for package in APPROVED_PACKAGES:
        assert package in HINTS[ErrorKind.IMPORT]
    assert HINTS[ErrorKind.IMPORT].startswith("Only pre-approved packages are available:")


def test_kind_values() -> None:
    assert [k.value for k in ErrorKind] == [
        "validation", "import", "agent", "memory", "timeout", "data", "platform",
    ]  # fmt: skip


def test_run_error_dict_round_trip() -> None:
    err = make_error(ErrorKind.AGENT, "ValueError: x", 12, traceback="Traceback ...")
    doc = err.to_dict()
    assert doc == {
        "kind": "agent",
        "message": "ValueError: x",
        "hint": HINTS[ErrorKind.AGENT],
        "line": 12,
        "traceback": "Traceback ...",
    }
    assert json.loads(json.dumps(doc)) == doc
    assert RunError.from_dict(doc) == err
    bare = RunError.from_dict({"kind": "data", "message": "m", "hint": "h"})
    assert bare.line is None and bare.traceback is None


def test_run_failed_carries_its_error() -> None:
    err = make_error(ErrorKind.DATA, "no data for symbol 'X'")
    exc = RunFailed(err)
    assert exc.error is err
    assert str(exc) == "no data for symbol 'X'"
    assert classify(exc, None) is err


def test_agent_exception_names_the_innermost_agent_line(
    agent_module: tuple[Path, ModuleType],
) -> None:
    path, module = agent_module
    err = classify(raised(module.outer), path)
    assert err.kind is ErrorKind.AGENT
    assert err.line == 5
    assert err.message == "ZeroDivisionError: division by zero"
    assert err.hint == HINTS[ErrorKind.AGENT]
    assert err.traceback is not None
    lines = err.traceback.splitlines()
    assert lines[0] == "Traceback (agent frames only):"
    assert lines[1] == f'  File "{path.name}", line 9, in outer'
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert str(Path(__file__)) not in err.traceback  # the test's own frame is cut


def test_library_frames_are_trimmed(agent_module: tuple[Path, ModuleType]) -> None:
    path, module = agent_module
    exc = raised(module.parse)
    err = classify(exc, path)
    assert err.kind is ErrorKind.AGENT
    assert err.line == 13  # the agent's line, not json's
    assert err.message.startswith("JSONDecodeError: ")
    assert err.traceback is not None
    assert "json/decoder.py" not in err.traceback
    assert "json/__init__.py" not in err.traceback
    assert err.traceback.count('File "') == 1


def test_agent_frames_inside_a_library_call(agent_module: tuple[Path, ModuleType]) -> None:
    """Agent code called back from elsewhere (as backtrader calls next): agent frames only."""
    path, module = agent_module
    err = classify(raised(lambda: module.call(module.outer)), path)
    assert err.line == 5
    assert err.traceback is not None
    assert err.traceback.count('File "') == 3  # call, outer, divide


def test_exception_without_message(agent_module: tuple[Path, ModuleType]) -> None:
    path, module = agent_module
    err = classify(raised(module.fail_empty), path)
    assert err.message == "ValueError"
    assert err.line == 21


def test_import_in_the_agent(agent_module: tuple[Path, ModuleType]) -> None:
    path, module = agent_module
    err = classify(raised(module.import_missing), path)
    assert err.kind is ErrorKind.IMPORT
    assert err.message == "No module named 'tensorflow'"
    assert err.line == 17
    assert err.hint.startswith("Only pre-approved packages")


def test_import_error_outside_the_agent_is_the_platforms(tmp_path: Path) -> None:
    def platform_import() -> None:
        import tradeops_no_such_module  # noqa: F401

    err = classify(raised(platform_import), tmp_path / "agent.py")
    assert err.kind is ErrorKind.PLATFORM
    assert err.line is None and err.traceback is None


def test_memory_error(agent_module: tuple[Path, ModuleType]) -> None:
    path, module = agent_module
    err = classify(raised(module.memory), path)
    assert err.kind is ErrorKind.MEMORY
    assert err.line == 25
    assert err.hint == HINTS[ErrorKind.MEMORY]
    assert classify(MemoryError(), None).kind is ErrorKind.MEMORY


def test_syntax_error_in_the_agent(write_agent: WriteAgent) -> None:
    path = write_agent("x = 1\ndef f(:\n    pass\n")
    exc = raised(lambda: compile(path.read_text(), str(path), "exec"))
    err = classify(exc, path)
    assert err.kind is ErrorKind.VALIDATION
    assert err.line == 2
    assert err.message.startswith("SyntaxError: ")


def test_syntax_error_elsewhere_is_the_platforms(tmp_path: Path) -> None:
    exc = raised(lambda: compile("def f(:\n", "/elsewhere.py", "exec"))
    assert classify(exc, tmp_path / "agent.py").kind is ErrorKind.PLATFORM


def test_exception_outside_the_agent_is_the_platforms(tmp_path: Path) -> None:
    exc = raised(lambda: {}["key"])
    for agent_file in (tmp_path / "agent.py", None):
        err = classify(exc, agent_file)
        assert err.kind is ErrorKind.PLATFORM
        assert err.message == "KeyError: 'key'"
        assert err.line is None and err.traceback is None
        assert err.hint == HINTS[ErrorKind.PLATFORM]


def test_platform_warnings_stay_out_of_the_agents_log_and_its_own_do_not() -> None:
    from runtime.__main__ import quiet_platform_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_platform_warnings()
        for module in ("runtime.fmel.encoding", "numpy", "backtrader.linebuffer", "pandas.io"):
            warnings.warn_explicit("ours", RuntimeWarning, "x.py", 1, module=module)
        warnings.warn_explicit("theirs", RuntimeWarning, "agent.py", 9, module="tradeops_agent_x")
    assert [str(w.message) for w in caught] == ["theirs"]
