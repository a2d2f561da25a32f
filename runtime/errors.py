"""What went wrong in a run, said so that the reader knows what to do next.

Every failure becomes a :class:`RunError` with a ``kind`` that says whose move it is:
the agent's author (``validation``, ``import``, ``agent``, ``memory``, ``timeout``,
``data``) or the operator (``platform``, never blamed on the agent).
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

APPROVED_PACKAGES = (
    "backtrader",
    "numpy",
    "pandas",
    "math",
    "statistics",
    "datetime",
    "collections",
    "itertools",
    "functools",
    "dataclasses",
    "typing",
    "enum",
    "decimal",
    "random",
    "time",
    "re",
    "json",
    "copy",
    "bisect",
    "heapq",
    "calendar",
    "string",
    "fractions",
    "numbers",
    "array",
    "abc",
    "zoneinfo",
)


class ErrorKind(StrEnum):
    VALIDATION = "validation"
    IMPORT = "import"
    AGENT = "agent"
    MEMORY = "memory"
    TIMEOUT = "timeout"
    DATA = "data"
    PLATFORM = "platform"


HINTS = {
    ErrorKind.VALIDATION: "Fix the agent file and upload it again.",
    ErrorKind.IMPORT: "Only pre-approved packages are available: " + ", ".join(APPROVED_PACKAGES),
    ErrorKind.AGENT: "Your agent raised an exception; fix the line shown and run again.",
    ErrorKind.MEMORY: "Optimize data usage: reduce the lookback period or the data range.",
    ErrorKind.TIMEOUT: "Simplify the strategy or reduce the data range.",
    ErrorKind.DATA: "Check the symbols and the date range.",
    ErrorKind.PLATFORM: "A tradeops fault, not your agent's: try again, or tell an operator.",
}


@dataclass(frozen=True)
class RunError:
    kind: ErrorKind
    message: str
    hint: str
    line: int | None = None
    traceback: str | None = None  # trimmed to the agent's own frames

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunError:
        return cls(
            kind=ErrorKind(doc["kind"]),
            message=doc["message"],
            hint=doc["hint"],
            line=doc.get("line"),
            traceback=doc.get("traceback"),
        )


def make_error(kind: ErrorKind, message: str, line: int | None = None, **kw: Any) -> RunError:
    """An error of ``kind`` with that kind's hint (or ``hint=`` for a more precise one)."""
    hint = kw.pop("hint", None) or HINTS[kind]
    return RunError(kind=kind, message=message, hint=hint, line=line, **kw)


class RunFailed(Exception):
    """Raised inside the runtime to stop a run with a prepared :class:`RunError`."""

    def __init__(self, error: RunError) -> None:
        super().__init__(error.message)
        self.error = error


def classify(exc: BaseException, agent_file: Path | None) -> RunError:
    """Turn an exception raised while loading or running an agent into a RunError."""
    if isinstance(exc, RunFailed):
        return exc.error
    if _raised_by_recorder(exc.__traceback__):
        return make_error(ErrorKind.PLATFORM, f"FMEL recorder failed: {type(exc).__name__}: {exc}")
    frames = _agent_frames(exc.__traceback__, agent_file)
    line = frames[-1].lineno if frames else None
    trimmed = _format(exc, frames) if frames else None
    if isinstance(exc, SystemExit):
        code = exc.code
        return make_error(ErrorKind.AGENT, f"the agent ended the run with exit({code!r})", line,
                          traceback=trimmed)  # fmt: skip
    if isinstance(exc, MemoryError):
        return make_error(ErrorKind.MEMORY, "MemoryError: the agent ran out of memory", line)
    if isinstance(exc, ModuleNotFoundError | ImportError) and frames:
        name = getattr(exc, "name", None) or str(exc)
        return make_error(ErrorKind.IMPORT, f"No module named '{name}'", line, traceback=trimmed)
    if isinstance(exc, SyntaxError) and agent_file and exc.filename == str(agent_file):
        return make_error(ErrorKind.VALIDATION, f"SyntaxError: {exc.msg}", exc.lineno)
    if frames:
        msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return make_error(ErrorKind.AGENT, msg, line, traceback=trimmed)
    return make_error(ErrorKind.PLATFORM, f"{type(exc).__name__}: {exc}")


_FMEL_DIR = str(Path(__file__).resolve().parent / "fmel")
_PROBES = str(Path(_FMEL_DIR) / "probe.py")  # stand-ins for data lines: their errors are the line's


def _raised_by_recorder(tb: TracebackType | None) -> bool:
    """The innermost frame is the recorder's, even when the agent's code called into it."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return False
    where = frames[-1].filename
    return where.startswith(_FMEL_DIR) and where != _PROBES


def _by_name(frame: traceback.FrameSummary) -> traceback.FrameSummary:
    return traceback.FrameSummary(
        Path(frame.filename).name, frame.lineno, frame.name, line=frame.line
    )


def _agent_frames(
    tb: TracebackType | None, agent_file: Path | None
) -> list[traceback.FrameSummary]:
    if agent_file is None:
        return []
    target = str(agent_file)
    return [f for f in traceback.extract_tb(tb) if f.filename == target]


def _format(exc: BaseException, frames: list[traceback.FrameSummary]) -> str:
    """The agent's frames, named by the file's own name (not where the sandbox put it)."""
    lines = ["Traceback (agent frames only):\n"]
    lines += traceback.format_list([_by_name(f) for f in frames])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()
