"""Agent validation: a static check of an agent's source before any of it runs.

Agents are backtrader strategy files written by other people and uploaded from chat,
so they are hostile until proven otherwise. This module reads the source as bytes, as
text and as a syntax tree; it never imports or executes it (and imports nothing heavy:
no backtrader). It refuses everything it can see — imports outside the allow-list, the
builtins that evaluate code, open files or look attributes up by string, double
underscore attributes (the usual way out of a Python sandbox), and modules reached
through attributes of allowed packages (``bt.feed.os``, which needs no import) — and
says what would run: the strategy class, its parameters and the indicators it uses.

It is the first filter, not the wall. Python is too dynamic for a static check to be
complete (the known gaps are spelled out in ``tests/unit/test_validation.py``), so the
sandbox (DESIGN.md section 5) still runs every agent without network, secrets or a
writable root, under hard limits.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import io
import math
import re
import tokenize
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import APPROVED_PACKAGES, ErrorKind, RunError

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_ALLOWED = frozenset(APPROVED_PACKAGES)

# Builtins that evaluate code, open files, look attributes up by string or inspect the
# interpreter. A bare reference counts too (``f = eval``), so no alias slips through.
BANNED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars",
    "breakpoint", "input", "getattr", "setattr", "delattr", "memoryview", "help", "exit",
    "quit",
})  # fmt: skip

# Modules an agent can reach with no import, as attributes of allowed ones:
# ``bt.feed.os``, ``backtrader.sys``, ``bt.utils.py3.urlopen``, ``random._os``,
# ``enum.bltns`` (builtins), ``bt.inspect``, ``bt.operator`` (attrgetter is getattr).
# Compared with leading underscores stripped, since the stdlib imports ``sys as _sys``.
BANNED_MODULES = frozenset({
    "os", "sys", "subprocess", "urlopen", "urllib", "socket", "builtins", "importlib",
    "io", "pickle", "shutil", "ctypes",
    "bltns", "ctypeslib", "distutils", "f2py", "gc", "inspect", "marshal", "mmap",
    "multiprocessing", "operator", "posix", "pty", "runpy",
})  # fmt: skip

# Attributes that lead out without a dunder: frames and code objects (a generator's
# frame holds its module's globals, hence the builtins; a code object can be rebuilt
# with any bytecode), getattr in disguise, and evaluation of strings as code.
BANNED_ATTRIBUTES = frozenset({
    "ag_code", "ag_frame", "cr_code", "cr_frame", "gi_code", "gi_frame", "f_back",
    "f_builtins", "f_code", "f_globals", "f_locals", "tb_frame", "tb_next", "getframe",
    "currentframe", "CodeType",
    "attrgetter", "methodcaller", "getmembers", "getattr_static", "get_field",
    "eval", "exec", "query", "get_type_hints", "ForwardRef", "eval_type", "read_pickle",
})  # fmt: skip

# Keyword arguments that turn a data loader into a code loader (np.load unpickles).
BANNED_KEYWORDS = frozenset({"allow_pickle"})

SAFE_DUNDERS = frozenset({"__init__", "__len__", "__name__", "__doc__"})

SIZE, ENCODING, SYNTAX = "size", "encoding", "syntax"
IMPORT, CALL, ATTRIBUTE, STRATEGY = "import", "call", "attribute", "strategy"
NO_NEXT, PRINT_IN_LOOP, BARE_EXCEPT, TRUNCATED = (
    "no-next", "print-in-loop", "bare-except", "truncated",
)  # fmt: skip

HINT_SIZE = "An agent is one Python file of code; keep data out of it (it comes in as self.datas)."
HINT_ENCODING = "Save the file as UTF-8 (and drop any other coding declaration)."
HINT_SYNTAX = "Fix the syntax at the line shown; `python -m py_compile FILE` finds these."
HINT_RELATIVE = "An agent is a single file: import only pre-approved packages, by full name."
HINT_STAR = "Import the names you use, e.g. `from math import sqrt`."
HINT_NAME = (
    "Agents cannot evaluate code, open files, read input or inspect the interpreter; "
    "use backtrader's API (self.datas, self.broker, indicators) instead."
)
HINT_BY_NAME = {
    "open": "Agents cannot read or write files: market data comes in as self.datas.",
    "getattr": "Use plain attribute access (obj.name) instead of getattr/setattr/delattr.",
}
HINT_BY_NAME |= {"setattr": HINT_BY_NAME["getattr"], "delattr": HINT_BY_NAME["getattr"]}
HINT_DUNDER = (
    "Double-underscore names reach Python's internals and are not available to agents "
    "(allowed: " + ", ".join(sorted(SAFE_DUNDERS)) + "; defining methods like __init__ is fine)."
)
HINT_MODULE = (
    "Modules such as os, sys, subprocess, urllib and socket are not available to agents, "
    "not even through attributes of backtrader or other packages; use backtrader's API."
)
HINT_ATTRIBUTE = (
    "Frames, code objects, string evaluation and lookups by name are not available to "
    "agents; use plain attribute access and backtrader's API."
)
HINT_KEYWORD = "Loading pickled data runs code; agents cannot do it. Use plain arrays or CSV."

HINT_NO_STRATEGY = "Define one class deriving from bt.Strategy (after `import backtrader as bt`)."
HINT_SEVERAL = "Name the one to run with --strategy NAME, or call it Agent."
HINT_WANTED = "Check the class name (it is case-sensitive), or leave the strategy unnamed."
HINT_NO_NEXT = "backtrader calls next(self) on every bar: that is where a strategy trades."
HINT_PRINT = "print runs on every bar and every pass of the loop: log less, or keep values."
HINT_BARE_EXCEPT = "Catch the errors you expect, e.g. `except (ValueError, ZeroDivisionError):`."

BACKTRADER = "backtrader"
STRATEGY_BASES = frozenset({"Strategy", "SignalStrategy"})
STRATEGY_MODULES = frozenset({"strategies", "strats"})  # bt.strategies.SMA_CrossOver
INDICATOR_MODULES = frozenset({"ind", "indicators", "talib"})
MAX_PARAM_TEXT = 200
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]")


# ------------------------------------------------------------------ the report
@dataclass(frozen=True)
class Finding:
    """One problem, said for the agent's author: what, where, and what to do about it."""

    code: str
    message: str
    hint: str
    line: int | None = None
    column: int | None = None  # 1-based, in characters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        return cls(d["code"], d["message"], d["hint"], d.get("line"), d.get("column"))


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found; it travels in job results, so it round-trips JSON."""

    ok: bool
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    strategy: str | None
    params: dict[str, Any]
    indicators: tuple[str, ...]
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
            "strategy": self.strategy,
            "params": dict(self.params),
            "indicators": list(self.indicators),
            "sha256": self.sha256,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidationReport:
        return cls(
            ok=d["ok"],
            errors=tuple(Finding.from_dict(f) for f in d["errors"]),
            warnings=tuple(Finding.from_dict(f) for f in d["warnings"]),
            strategy=d["strategy"],
            params=dict(d["params"]),
            indicators=tuple(d["indicators"]),
            sha256=d["sha256"],
            size=d["size"],
        )

    def first_error_as_run_error(self) -> RunError | None:
        """The first error in the shape a failed run reports, for the same renderers."""
        if not self.errors:
            return None
        first = self.errors[0]
        kind = ErrorKind.IMPORT if first.code == IMPORT else ErrorKind.VALIDATION
        return RunError(kind=kind, message=first.message, hint=first.hint, line=first.line)


@dataclass(frozen=True)
class Policy:
    """What an agent may use: the platform's defaults, plus imports an operator allows."""

    max_bytes: int = DEFAULT_MAX_BYTES
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED  # top-level module names
    banned_names: frozenset[str] = BANNED_NAMES
    banned_modules: frozenset[str] = BANNED_MODULES
    banned_attributes: frozenset[str] = BANNED_ATTRIBUTES
    banned_keywords: frozenset[str] = BANNED_KEYWORDS
    safe_dunders: frozenset[str] = SAFE_DUNDERS
    max_findings: int = 100  # a hostile file could hold a million; the report stays small

    def import_hint(self) -> str:
        """The seed's wording, listing what this policy allows (the approved ones first)."""
        names = [n for n in APPROVED_PACKAGES if n in self.allowed_imports]
        names += sorted(self.allowed_imports - DEFAULT_ALLOWED)
        return "Only pre-approved packages are available: " + ", ".join(names)

    def may_import(self, module: str) -> bool:
        top = module.split(".")[0]
        return top == "__future__" or top in self.allowed_imports


DEFAULT_POLICY = Policy()


# ------------------------------------------------------------------ entry points
def validate_file(
    path: Path, *, strategy: str | None = None, policy: Policy = DEFAULT_POLICY
) -> ValidationReport:
    """Validate the agent file at ``path``; OSError if it cannot be read.

    An oversized file is refused from its size alone, without reading it into memory.
    """
    size = path.stat().st_size
    if size > policy.max_bytes:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return _failed(digest, size, _size_finding(size, policy))
    source = path.read_bytes()
    return validate_source(source, filename=path.name, strategy=strategy, policy=policy)


def validate_source(
    source: bytes,
    *,
    filename: str = "agent.py",
    strategy: str | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> ValidationReport:
    """Validate an agent's source: size, encoding, syntax, then the whole tree.

    The first three stop the check (there is no tree to look at); after them every
    error is collected, sorted by position.
    """
    digest, size = hashlib.sha256(source).hexdigest(), len(source)
    early = _size_check(source, policy) or _encoding_check(source)
    if early:
        return _failed(digest, size, early)
    text = source.decode("utf-8-sig")
    tree = _parse(text, filename)
    if isinstance(tree, Finding):
        return _failed(digest, size, tree)
    return _Analysis(tree, text, policy).report(digest, size, filename, strategy)


def _failed(digest: str, size: int, finding: Finding) -> ValidationReport:
    return ValidationReport(False, (finding,), (), None, {}, (), digest, size)


# ------------------------------------------------------------ size, encoding, syntax
def _size_finding(size: int, policy: Policy) -> Finding:
    message = f"the file is {size:,} bytes, over the limit of {policy.max_bytes:,} bytes"
    return Finding(SIZE, message, HINT_SIZE)


def _size_check(source: bytes, policy: Policy) -> Finding | None:
    return _size_finding(len(source), policy) if len(source) > policy.max_bytes else None


def _encoding_check(source: bytes) -> Finding | None:
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _byte_position(source, exc.start)
        message = f"the file is not UTF-8: byte 0x{source[exc.start]:02x} cannot be decoded"
        return Finding(ENCODING, message, HINT_ENCODING, line, column)
    return _coding_declaration_check(source)


def _coding_declaration_check(source: bytes) -> Finding | None:
    """Python decodes a file by its ``# coding:`` line, so a UTF-7 file could hide code
    in what reads as a comment here. Only UTF-8 declarations are accepted."""
    try:
        declared, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError as exc:
        return Finding(ENCODING, str(exc), HINT_ENCODING, _cookie_line(source))
    if codecs.lookup(declared).name in ("utf-8", "utf-8-sig"):
        return None
    message = f"the file declares the encoding '{declared}': agents must be UTF-8"
    return Finding(ENCODING, message, HINT_ENCODING, _cookie_line(source))


def _cookie_line(source: bytes) -> int | None:
    first_two = _LINE_BREAK_BYTES.split(source, maxsplit=2)[:2]
    return next((i for i, ln in enumerate(first_two, 1) if _COOKIE.match(ln)), None)


def _byte_position(source: bytes, offset: int) -> tuple[int, int]:
    """(line, 1-based character column) of a byte offset."""
    lines = _LINE_BREAK_BYTES.split(source[:offset])
    return len(lines), len(lines[-1].decode("utf-8", errors="replace")) + 1


def _parse(text: str, filename: str) -> ast.Module | Finding:
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences: not our report
            warnings.simplefilter("ignore")
            return ast.parse(text, filename=filename)
    except (SyntaxError, ValueError) as exc:
        return _syntax_finding(exc, text)
    except (RecursionError, MemoryError):
        return Finding(SYNTAX, "SyntaxError: the code is nested too deeply to parse", HINT_SYNTAX)


def _syntax_finding(exc: SyntaxError | ValueError, text: str) -> Finding:
    msg = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    line = exc.lineno if isinstance(exc, SyntaxError) else None
    column = (exc.offset or None) if isinstance(exc, SyntaxError) else None
    if line is None and "\0" in text:  # Python reports null bytes without a position
        before = _LINE_BREAK.split(text[: text.index("\0")])
        line, column = len(before), len(before[-1]) + 1
    return Finding(SYNTAX, f"SyntaxError: {msg}", HINT_SYNTAX, line, column)


# --------------------------------------------------------------------- the tree
class _Source:
    """Positions for people: AST columns count UTF-8 bytes, editors count characters."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _LINE_BREAK.split(text)

    def column(self, lineno: int, col_offset: int) -> int:
        line = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        if line.isascii():
            return col_offset + 1
        return len(line.encode()[:col_offset].decode("utf-8", errors="ignore")) + 1

    def finding(self, code: str, message: str, hint: str, node: Any) -> Finding:
        line, col = node.lineno, node.col_offset
        return Finding(code, message, hint, line, self.column(line, col))

    def attribute_finding(self, message: str, hint: str, node: ast.Attribute) -> Finding:
        """Points at the attribute's own name: in ``bt.feed.os.system``, at ``os``."""
        line = node.end_lineno or node.lineno
        col = max((node.end_col_offset or 0) - len(node.attr.encode()), 0)
        if line == node.lineno:
            col = max(col, node.col_offset)
        return Finding(ATTRIBUTE, message, hint, line, self.column(line, col))

    def segment(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.text, node) or "?"
        return text if len(text) <= MAX_PARAM_TEXT else text[: MAX_PARAM_TEXT - 1] + "…"


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _dotted(expr: ast.expr) -> list[str] | None:
    """``bt.ind.SMA`` -> ["bt", "ind", "SMA"]; None for anything but a dotted name."""
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return parts[::-1]


# ------------------------------------------------------------------ the rules
def _attribute_problem(name: str, policy: Policy, subject: str = "") -> tuple[str, str] | None:
    """(message, hint) if an attribute called ``name`` may not be reached, else None.

    ``subject`` is how the message shows it (``'bt.feed.os'``); the name by default.
    """
    subject = subject or f"'{name}'"
    if _is_dunder(name):
        allowed = name in policy.safe_dunders
        return None if allowed else (f"access to {subject} is not allowed", HINT_DUNDER)
    bare = name.lstrip("_")
    if bare in policy.banned_modules:
        return f"{subject} reaches '{bare}', which is not available to agents", HINT_MODULE
    if bare in policy.banned_attributes:
        return f"{subject} is not available to agents", HINT_ATTRIBUTE
    return None


def _check_import(node: ast.Import, src: _Source, policy: Policy) -> Iterator[Finding]:
    for alias in node.names:
        if not policy.may_import(alias.name):
            message = f"import of '{alias.name}' is not allowed"
            yield src.finding(IMPORT, message, policy.import_hint(), alias)
            continue
        for part in alias.name.split(".")[1:]:
            problem = _attribute_problem(part, policy, f"'{alias.name}'")
            if problem:
                message = f"import of {problem[0]}"
                yield src.finding(IMPORT, message, problem[1], alias)
                break


def _check_import_from(node: ast.ImportFrom, src: _Source, policy: Policy) -> Iterator[Finding]:
    module = node.module or ""
    if node.level:
        message = f"relative import 'from {'.' * node.level}{module} import …' is not allowed"
        yield src.finding(IMPORT, message, HINT_RELATIVE, node)
    elif not policy.may_import(module):
        message = f"import from '{module}' is not allowed"
        yield src.finding(IMPORT, message, policy.import_hint(), node)
    elif module != "__future__":
        yield from _check_imported_names(node, module, src, policy)


def _check_imported_names(
    node: ast.ImportFrom, module: str, src: _Source, policy: Policy
) -> Iterator[Finding]:
    """``from backtrader.feed import os`` reaches os with an allowed top-level name."""
    for alias in node.names:
        if alias.name == "*":
            message = f"'from {module} import *' is not allowed"
            yield src.finding(IMPORT, message, HINT_STAR, alias)
            continue
        problem = _attribute_problem(alias.name, policy, f"'{alias.name}' from {module}")
        if problem:
            yield src.finding(IMPORT, problem[0], problem[1], alias)


def _check_name(node: ast.Name, src: _Source, policy: Policy) -> Iterator[Finding]:
    if node.id in policy.banned_names:
        hint = HINT_BY_NAME.get(node.id, HINT_NAME)
        yield src.finding(CALL, f"'{node.id}' is not available to agents", hint, node)
    elif _is_dunder(node.id) and node.id not in policy.safe_dunders:
        yield src.finding(ATTRIBUTE, f"the name '{node.id}' is not allowed", HINT_DUNDER, node)


def _check_attribute(node: ast.Attribute, src: _Source, policy: Policy) -> Iterator[Finding]:
    problem = _attribute_problem(node.attr, policy, _attribute_subject(node))
    if problem:
        yield src.attribute_finding(problem[0], problem[1], node)


def _attribute_subject(node: ast.Attribute) -> str:
    """``'bt.feed.os'`` for a dotted name, else ``'.os'``."""
    parts = _dotted(node)
    return f"'{'.'.join(parts)}'" if parts else f"'.{node.attr}'"


def _check_match_class(node: ast.MatchClass, src: _Source, policy: Policy) -> Iterator[Finding]:
    """``case object(__class__=c)`` looks the attribute up just as ``x.__class__`` does."""
    for name in node.kwd_attrs:
        problem = _attribute_problem(name, policy)
        if problem:
            yield src.finding(ATTRIBUTE, problem[0], problem[1], node)


def _check_keyword(node: ast.keyword, src: _Source, policy: Policy) -> Iterator[Finding]:
    if node.arg in policy.banned_keywords:
        yield src.finding(CALL, f"the argument '{node.arg}=' is not allowed", HINT_KEYWORD, node)


_Check = Callable[[Any, _Source, Policy], Iterator[Finding]]
_CHECKS: dict[type[ast.AST], _Check] = {
    ast.Import: _check_import,
    ast.ImportFrom: _check_import_from,
    ast.Name: _check_name,
    ast.Attribute: _check_attribute,
    ast.MatchClass: _check_match_class,
    ast.keyword: _check_keyword,
}


def _rule_findings(tree: ast.Module, src: _Source, policy: Policy) -> Iterator[Finding]:
    for node in ast.walk(tree):  # iterative: a deeply nested file cannot overflow the stack
        check = _CHECKS.get(type(node))
        if check:
            yield from check(node, src, policy)


# ------------------------------------------------------- what the agent would run
@dataclass
class _Aliases:
    """The names this file binds to backtrader, its Strategy classes and indicators."""

    backtrader: set[str] = field(default_factory=set)
    strategy_bases: dict[str, str] = field(default_factory=dict)  # local name -> class
    indicator_modules: set[str] = field(default_factory=set)
    indicators: dict[str, str] = field(default_factory=dict)  # local name -> indicator

    @classmethod
    def collect(cls, tree: ast.Module) -> _Aliases:
        found = cls()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found._add_import(alias)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    found._add_from(node.module.split("."), alias)
        return found

    def _add_import(self, alias: ast.alias) -> None:
        parts = alias.name.split(".")
        if parts[0] != BACKTRADER:
            return
        if alias.asname is None or len(parts) == 1:
            self.backtrader.add(alias.asname or BACKTRADER)
        elif len(parts) == 2 and parts[1] in INDICATOR_MODULES:
            self.indicator_modules.add(alias.asname)

    def _add_from(self, parts: list[str], alias: ast.alias) -> None:
        if parts[0] != BACKTRADER:
            return
        local = alias.asname or alias.name
        if len(parts) == 1 and alias.name in INDICATOR_MODULES:
            self.indicator_modules.add(local)
        elif alias.name in STRATEGY_BASES:
            self.strategy_bases[local] = alias.name
        elif len(parts) > 1 and parts[1] in INDICATOR_MODULES:
            self.indicators[local] = alias.name

    def base_kind(self, expr: ast.expr, local: Mapping[str, _StrategyClass]) -> str | None:
        """'Strategy' or 'SignalStrategy' if ``expr`` names a strategy class, else None."""
        parts = _dotted(expr)
        if not parts:
            return None
        if len(parts) == 1:
            if parts[0] in local:
                return local[parts[0]].kind
            return self.strategy_bases.get(parts[0])
        if parts[0] not in self.backtrader:
            return None
        if parts[-1] in STRATEGY_BASES:
            return parts[-1]
        return "Strategy" if len(parts) > 2 and parts[1] in STRATEGY_MODULES else None

    def indicator(self, expr: ast.expr) -> str | None:
        """The indicator a call creates: ``bt.ind.SMA(...)``, ``btind.EMA(...)``, ``SMA(...)``."""
        parts = _dotted(expr)
        if not parts:
            return None
        if len(parts) == 1:
            return self.indicators.get(parts[0])
        if parts[0] in self.indicator_modules:
            return parts[-1]
        if len(parts) > 2 and parts[0] in self.backtrader and parts[1] in INDICATOR_MODULES:
            return parts[-1]
        return None


@dataclass(frozen=True)
class _StrategyClass:
    """A strategy class of the file, with what it inherits from the file's other ones
    (worked out when the class is met, so a long chain of subclasses needs no recursion)."""

    node: ast.ClassDef
    kind: str  # "Strategy" or "SignalStrategy" (which trades without next)
    has_next: bool
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.node.name


def _module_level_classes(body: Iterable[Any]) -> Iterator[ast.ClassDef]:
    """Classes bound at module level, also under a module-level if/try/with/match."""
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            yield stmt
        elif not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for block in ("body", "orelse", "finalbody", "handlers", "cases"):
                yield from _module_level_classes(getattr(stmt, block, None) or ())


def _strategy_classes(tree: ast.Module, aliases: _Aliases, src: _Source) -> list[_StrategyClass]:
    """The file's strategies in binding order, as ``runtime.agent.strategy_classes`` finds
    them: subclasses of bt.Strategy, and of strategies defined earlier in the file."""
    found: dict[str, _StrategyClass] = {}
    for node in _module_level_classes(tree.body):
        bases = [aliases.base_kind(b, found) for b in node.bases]
        inherited = [found[b.id] for b in node.bases if isinstance(b, ast.Name) and b.id in found]
        found.pop(node.name, None)  # a later class of the same name replaces it
        if any(bases):
            found[node.name] = _strategy_class(node, bases, inherited, src)
    return list(found.values())


def _strategy_class(
    node: ast.ClassDef, bases: list[str | None], inherited: list[_StrategyClass], src: _Source
) -> _StrategyClass:
    params: dict[str, Any] = {}
    for base in inherited:
        params.update(base.params)
    params.update(_own_params(node, src))
    return _StrategyClass(
        node=node,
        kind="SignalStrategy" if "SignalStrategy" in bases else "Strategy",
        has_next=_method(node, "next") is not None or any(b.has_next for b in inherited),
        params=params,
    )


def _method(node: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    return next((s for s in node.body if isinstance(s, defs) and s.name == name), None)


def _choose(
    classes: list[_StrategyClass], wanted: str | None, filename: str
) -> tuple[_StrategyClass | None, Finding | None]:
    """The rule of ``runtime.agent.pick_strategy``: the named one, the only one, or Agent."""
    names = [c.name for c in classes]
    if wanted:
        chosen = next((c for c in classes if c.name == wanted), None)
        if chosen:
            return chosen, None
        message = f"no strategy class named '{wanted}' in {filename} (found: "
        return None, Finding(STRATEGY, message + f"{', '.join(names) or 'none'})", HINT_WANTED)
    if len(classes) == 1:
        return classes[0], None
    if not classes:
        message = f"{filename} defines no backtrader Strategy (a class deriving from bt.Strategy)"
        return None, Finding(STRATEGY, message, HINT_NO_STRATEGY)
    agent = next((c for c in classes if c.name == "Agent"), None)
    if agent:
        return agent, None
    message = (
        f"{filename} defines several strategies ({', '.join(sorted(names))}): "
        "name one with --strategy, or call the one to run Agent"
    )
    return None, Finding(STRATEGY, message, HINT_SEVERAL)


# ------------------------------------------------------------------- parameters
def _own_params(node: ast.ClassDef, src: _Source) -> dict[str, Any]:
    """``params = (("period", 20), ...)`` or ``params = dict(period=20)`` or a dict literal."""
    out: dict[str, Any] = {}
    for stmt in node.body:
        value = _params_value(stmt)
        if value is not None:
            out = {name: _param_default(v, src) for name, v in _param_items(value)}
    return out


def _params_value(stmt: ast.stmt) -> ast.expr | None:
    if isinstance(stmt, ast.Assign):
        names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        return stmt.value if "params" in names else None
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.value if stmt.target.id == "params" else None
    return None


def _param_items(value: ast.expr) -> Iterator[tuple[str, ast.expr]]:
    if isinstance(value, ast.Tuple | ast.List):
        for item in value.elts:
            if isinstance(item, ast.Tuple | ast.List) and len(item.elts) == 2:
                key = item.elts[0]
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, item.elts[1]
    elif isinstance(value, ast.Dict):
        for k, v in zip(value.keys, value.values, strict=True):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                yield k.value, v
    elif isinstance(value, ast.Call) and _dotted(value.func) == ["dict"]:
        yield from ((kw.arg, kw.value) for kw in value.keywords if kw.arg)


_NOT_JSON = object()


def _param_default(node: ast.expr, src: _Source) -> Any:
    """The literal value when JSON can carry it unchanged, else the source text."""
    try:
        value = _as_json(ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = _NOT_JSON
    return src.segment(node) if value is _NOT_JSON else value


def _as_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_JSON
    if isinstance(value, tuple | list):
        items = [_as_json(v) for v in value]
        return _NOT_JSON if any(i is _NOT_JSON for i in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items_ = {k: _as_json(v) for k, v in value.items()}
        return _NOT_JSON if any(v is _NOT_JSON for v in items_.values()) else items_
    return _NOT_JSON


# --------------------------------------------------------------------- analysis
class _Analysis:
    """The checks that need the tree: rules, strategy, params, indicators, warnings."""

    def __init__(self, tree: ast.Module, text: str, policy: Policy) -> None:
        self.tree, self.src, self.policy = tree, _Source(text), policy
        self.aliases = _Aliases.collect(tree)

    def report(self, digest: str, size: int, filename: str, wanted: str | None) -> ValidationReport:
        classes = _strategy_classes(self.tree, self.aliases, self.src)
        chosen, problem = _choose(classes, wanted, filename)
        errors = list(_rule_findings(self.tree, self.src, self.policy))
        errors += [problem] if problem else []
        warnings_ = self._bare_excepts() + (self._strategy_warnings(chosen) if chosen else [])
        return ValidationReport(
            ok=not errors,
            errors=_limited(_sorted(errors), self.policy.max_findings),
            warnings=_limited(_sorted(warnings_), self.policy.max_findings),
            strategy=chosen.name if chosen else None,
            params=dict(chosen.params) if chosen else {},
            indicators=self._indicators(),
            sha256=digest,
            size=size,
        )

    def _indicators(self) -> tuple[str, ...]:
        calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]
        calls.sort(key=lambda n: (n.lineno, n.col_offset))
        names = (self.aliases.indicator(c.func) for c in calls)
        return tuple(dict.fromkeys(n for n in names if n))

    def _bare_excepts(self) -> list[Finding]:
        message = "a bare 'except:' also catches KeyboardInterrupt, SystemExit and MemoryError"
        return [
            self.src.finding(BARE_EXCEPT, message, HINT_BARE_EXCEPT, node)
            for node in ast.walk(self.tree)
            if isinstance(node, ast.ExceptHandler) and node.type is None
        ]

    def _strategy_warnings(self, cls: _StrategyClass) -> list[Finding]:
        out = []
        if not cls.has_next and cls.kind != "SignalStrategy":
            message = f"strategy {cls.name} has no next method, so it does nothing on a bar"
            out.append(self.src.finding(NO_NEXT, message, HINT_NO_NEXT, cls.node))
        next_def = _method(cls.node, "next")
        for call in _prints_in_loops(next_def) if next_def else ():
            message = "print inside a loop in next: it runs for every bar and every pass"
            out.append(self.src.finding(PRINT_IN_LOOP, message, HINT_PRINT, call))
        return out


def _prints_in_loops(func: ast.AST) -> list[ast.Call]:
    loops = [n for n in ast.walk(func) if isinstance(n, ast.For | ast.AsyncFor | ast.While)]
    calls = {
        id(n): n
        for loop in loops
        for n in ast.walk(loop)
        if isinstance(n, ast.Call) and _dotted(n.func) == ["print"]
    }
    return list(calls.values())


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line or 0, f.column or 0))


def _limited(findings: list[Finding], limit: int) -> tuple[Finding, ...]:
    if len(findings) <= limit:
        return tuple(findings)
    more = len(findings) - limit
    note = Finding(TRUNCATED, f"… and {more} more not listed", "Fix the ones above first.")
    return (*findings[:limit], note)
