"""Loading an agent: a Python file that defines a backtrader Strategy.

The strategy is the one the caller names, else the one ``bt.Strategy`` subclass defined in
the file, else the class named ``Agent`` (the Course-1 convention), else the only one that
no other strategy of the file derives from (a base class with helpers, and the strategy built
on it). ``workers.validation`` reports the same choice without running the file. The module is
registered in ``sys.modules`` before its code runs, because backtrader looks classes up
by module name (its metaclass creates parameter classes inside the defining module).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import backtrader as bt

from runtime.errors import ErrorKind, RunFailed, classify, make_error
from runtime.params import BadParam, as_default_type

MODULE_PREFIX = "tradeops_agent_"


@dataclass(frozen=True)
class LoadedAgent:
    path: Path
    module: ModuleType
    strategy: type[bt.Strategy]
    sha256: str

    @property
    def name(self) -> str:
        return self.strategy.__name__


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_name_for(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "agent"
    return MODULE_PREFIX + stem


def strategy_classes(module: ModuleType) -> list[type[bt.Strategy]]:
    """Strategy subclasses defined in the module itself (not imported into it)."""
    found: list[type[bt.Strategy]] = []
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, bt.Strategy)
            and value is not bt.Strategy
            and value.__module__ == module.__name__
            and value not in found  # `Agent = MyStrategy` names one class twice
        ):
            found.append(value)
    return found


def pick_strategy(
    classes: list[type[bt.Strategy]], wanted: str | None, *, where: str
) -> type[bt.Strategy]:
    names = [c.__name__ for c in classes]
    if wanted:
        for cls in classes:
            if cls.__name__ == wanted:
                return cls
        have = ", ".join(names) or "none"
        raise RunFailed(
            make_error(
                ErrorKind.VALIDATION,
                f"no strategy class named '{wanted}' in {where} (found: {have})",
            )
        )
    if len(classes) == 1:
        return classes[0]
    if not classes:
        raise RunFailed(
            make_error(
                ErrorKind.VALIDATION,
                f"{where} defines no backtrader Strategy (a class deriving from bt.Strategy)",
            )
        )
    for cls in classes:
        if cls.__name__ == "Agent":
            return cls
    leaves = [c for c in classes if not any(d is not c and issubclass(d, c) for d in classes)]
    if len(leaves) == 1:
        return leaves[0]
    several = ", ".join(sorted(c.__name__ for c in leaves))
    raise RunFailed(
        make_error(
            ErrorKind.VALIDATION,
            f"{where} defines several strategies ({several}): "
            "name the one to run Agent (or pick one with --strategy on the command line)",
        )
    )


def load_agent(path: Path, strategy: str | None = None) -> LoadedAgent:
    """Execute the agent file as a module and pick its strategy class.

    Raises :class:`RunFailed` with a RunError (syntax error with its line, import of a
    package that is not there, the agent's own exception, no or several strategies).
    """
    path = path.resolve()
    if not path.is_file():
        raise RunFailed(make_error(ErrorKind.VALIDATION, f"agent file not found: {path}"))
    name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RunFailed(make_error(ErrorKind.VALIDATION, f"cannot load {path.name} as Python"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise RunFailed(
            make_error(ErrorKind.VALIDATION, f"SyntaxError: {exc.msg}", exc.lineno)
        ) from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise RunFailed(classify(exc, path)) from exc
    cls = pick_strategy(strategy_classes(module), strategy, where=path.name)
    return LoadedAgent(path=path, module=module, strategy=cls, sha256=file_sha256(path))


def strategy_params(cls: type[bt.Strategy], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked against the strategy's own ``params``: what ``addstrategy`` takes.

    The trusted side checked the names and literal defaults before the run was queued; this
    is the check against the class itself (a default computed at import time, an agent
    registered before its report listed parameters). An unknown name, a value of the wrong
    type, or a parameter whose default is not a number, text or true/false is refused.
    """
    defaults = dict(cls.params._getitems())
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in defaults:
            have = ", ".join(f"{k}={v!r}" for k, v in list(defaults.items())[:12]) or "none"
            raise _bad_param(f"{cls.__name__} has no parameter {name} (its parameters: {have})")
        out[name] = _as_default_type(name, value, defaults[name])
    return out


def _as_default_type(name: str, value: Any, default: Any) -> Any:
    try:
        return as_default_type(name, value, default)
    except BadParam as exc:
        raise _bad_param(str(exc)) from None


def _bad_param(message: str) -> RunFailed:
    return RunFailed(make_error(ErrorKind.VALIDATION, message))


def fresh_counters() -> None:
    """Number a run's orders and trades from 1, as a fresh process would.

    backtrader counts order and trade refs per process: a warm sandbox's rehearsal, or
    another run earlier in the same process, would shift every ref an agent logs, so the
    same run would record different log lines (and a different chain head) depending on
    what ran before it.
    """
    bt.order.OrderBase.refbasis = itertools.count(1)
    bt.trade.Trade.refbasis = itertools.count(1)
