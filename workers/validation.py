"""Agent validation: a static check of an agent's source before any of it runs.

Agents are backtrader strategy files written by other people and uploaded from chat,
so they are hostile until proven otherwise. This module reads the source as bytes, as
text and as a syntax tree; it never imports or executes it (and imports nothing heavy:
no backtrader). It refuses everything it can see — imports outside the allow-list, the
builtins that evaluate code, open files or look attributes up by string (getattr only
with a literal name, as plain attribute access), double underscore attributes (the usual
way out of a Python sandbox), modules reached through attributes of allowed packages
(``bt.feed.os``, which needs no import) and their private names (``dataclasses._create_fn``),
the evaluators of strings (annotations through ``singledispatch``, format fields that read
attributes: ``"{0.__class__}".format``), unpickling however its argument is passed
(``np.load(f, None, True)``), and changes to the broker's cash, commission and fills — and
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
import string
import tokenize
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runtime.errors import APPROVED_PACKAGES, ErrorKind, RunError

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_ALLOWED = frozenset(APPROVED_PACKAGES)

# Builtins that evaluate code, open files, look attributes up by string or inspect the
# interpreter. A bare reference counts too (``f = eval``), so no alias slips through. The one
# exception is ``getattr(obj, "name"[, default])`` with a literal name that would be allowed
# as ``obj.name``: it is plain attribute access with a default.
BANNED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars",
    "breakpoint", "input", "getattr", "setattr", "delattr", "memoryview", "help", "exit",
    "quit",
})  # fmt: skip

# Modules an agent can reach with no import, as attributes of allowed ones:
# ``bt.feed.os``, ``backtrader.sys``, ``bt.utils.py3.urlopen``, ``random._os``,
# ``enum.bltns`` (builtins), ``bt.inspect``, ``bt.operator`` (attrgetter is getattr),
# ``json.codecs`` (codecs.open), ``re.copyreg``, ``np.testing.extbuild.pathlib``,
# ``bt.feeds.build_opener`` (urllib.request), pyarrow through pandas (its file systems, and pydoc).
# Compared with leading underscores stripped, since the stdlib imports ``sys as _sys``.
# ``test_no_dangerous_module_is_reachable`` walks what the approved packages expose and
# fails when a new version exposes one that is not covered here.
BANNED_MODULES = frozenset({
    "os", "sys", "subprocess", "urlopen", "urllib", "socket", "builtins", "importlib",
    "io", "pickle", "shutil", "ctypes",
    "bltns", "ctypeslib", "distutils", "f2py", "gc", "inspect", "marshal", "mmap",
    "multiprocessing", "operator", "posix", "pty", "runpy",
    "build_opener", "install_opener", "ProxyHandler", "codecs", "copyreg", "matplotlib",
    "pathlib", "pkgutil", "pydoc", "pyarrow", "tempfile", "zipimport",
})  # fmt: skip

# Parts of allowed packages that agents have no use for and that lead to packages that are not
# approved: backtrader's plotting (matplotlib), pandas' compatibility layer and expression
# engine, pyarrow as pandas imports it (``pa``, ``pc``). Refused on module paths only, since an
# agent's own objects may well use these names (``self.plot``, ``self.pa``).
BANNED_SUBMODULES = frozenset({"compat", "computation", "mpl", "pa", "pc", "plot"})

# Attributes that lead out without a dunder: frames and code objects (a generator's
# frame holds its module's globals, hence the builtins; a code object can be rebuilt
# with any bytecode), getattr in disguise, and evaluation of strings as code: pandas'
# expressions, and the evaluators of annotations (``get_type_hints``, ``singledispatch``'s
# ``register``, a ForwardRef's ``_evaluate``, inspect's ``signature`` with eval_str, which
# pandas exposes as ``pd.core.indexes.extension.signature``): string annotations, and strings
# in subscripts like ``list["…"]``, are only code when one of these evaluates them.
BANNED_ATTRIBUTES = frozenset({
    "ag_code", "ag_frame", "cr_code", "cr_frame", "gi_code", "gi_frame", "f_back",
    "f_builtins", "f_code", "f_globals", "f_locals", "tb_frame", "tb_next", "getframe",
    "currentframe", "CodeType",
    "attrgetter", "methodcaller", "getmembers", "getattr_static", "get_field",
    "eval", "exec", "query", "get_type_hints", "ForwardRef", "eval_type",
    "_evaluate", "get_annotations", "signature", "singledispatch", "singledispatchmethod",
})  # fmt: skip

# Keyword arguments that turn a reader into a code runner: np.load unpickles, and inspect's
# signature and get_annotations evaluate string annotations.
BANNED_KEYWORDS = frozenset({"allow_pickle", "eval_str"})

# Entry points that unpickle (run code): numpy's read_array and NpzFile, pandas' read_pickle,
# and read_hdf and HDFStore (PyTables), refused on every object; and load and loads (np.load,
# pandas' pickle_compat.loads, pickle's own), refused on the module paths of every package but
# SAFE_LOADERS (json.loads parses JSON).
UNPICKLERS = frozenset({
    "read_pickle", "read_array", "NpzFile", "Unpickler", "read_hdf", "HDFStore",
})  # fmt: skip
LOADERS = frozenset({"load", "loads"})
SAFE_LOADERS = frozenset({"json"})
# ``np.load(file, mmap_mode=None, allow_pickle=False, ...)``: with at most two positional
# arguments, no * or ** and only these keywords, allow_pickle keeps its default, False.
NUMPY_LOAD = "numpy.load"
NUMPY_LOAD_KEYWORDS = frozenset({"mmap_mode", "fix_imports", "encoding", "max_header_size"})

# backtrader's broker methods that change the cash, the commission or how orders fill
# (brokers/bbroker.py and broker.py), and Cerebro's setbroker. The result reports the
# return on the cash the request gave, so an agent must not change these.
BROKER_MUTATORS = frozenset({
    "add_cash", "set_cash", "setcash", "setcommission", "addcommissioninfo", "set_fundmode",
    "set_fundstartval", "set_int2pnl", "set_coc", "set_coo", "set_shortcash",
    "set_slippage_perc", "set_slippage_fixed", "set_filler", "set_checksubmit", "set_eosbar",
    "seteosbar", "add_order_history", "set_fund_history", "setbroker",
})  # fmt: skip
BROKER_NAMES = frozenset({"broker", "getbroker"})  # an expression through these is the broker

# ``"{0.__class__}".format(x)`` reads attributes named in a string: the format must be a
# literal, to be checked (str has no vformat: string.Formatter's is always refused).
FORMAT_METHODS = frozenset({"format", "format_map", "vformat"})

SAFE_DUNDERS = frozenset({
    "__init__", "__len__", "__name__", "__doc__", "__qualname__", "__version__",
})  # fmt: skip
# ``x.__class__`` only to read the class's name: ``self.__class__.__name__``.
CLASS_NAME_DUNDERS = frozenset({"__name__", "__qualname__"})

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
    "getattr": (
        'Use plain attribute access (obj.name), or getattr(obj, "name", default) with the '
        "name written as a string literal."
    ),
    "setattr": "Assign attributes directly (obj.name = value): setattr and delattr are refused.",
}
HINT_BY_NAME["delattr"] = HINT_BY_NAME["setattr"]
HINT_DUNDER = (
    "Double-underscore names reach Python's internals and are not available to agents "
    "(allowed: " + ", ".join(sorted(SAFE_DUNDERS)) + ", and x.__class__.__name__; "
    "defining methods like __init__ is fine)."
)
HINT_PRIVATE = (
    "Names starting with _ are a module's internals, not its API: use its public names "
    "(the _names of your own objects, like self._count, are fine)."
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
HINT_BY_KEYWORD = {"allow_pickle": HINT_KEYWORD}  # others: HINT_ATTRIBUTE
HINT_NUMPY_LOAD = (
    "Loading pickled data runs code: call np.load(file) or np.load(file, mmap_mode) without "
    "allow_pickle (and without * or **), or use plain arrays or CSV."
)
HINT_FORMAT = (
    'Use an f-string (f"{x.attr}"): a format string must be a literal, and its fields '
    "cannot read attributes or items ({0.attr}, {x[0]}), since they are looked up by name."
)
HINT_BROKER = (
    "Cash and commission come from the request (`/backtest … cash=N`); an agent cannot "
    "change them, nor how the broker fills orders."
)

HINT_NO_STRATEGY = "Define one class deriving from bt.Strategy (after `import backtrader as bt`)."
HINT_SEVERAL = "Name the one to run Agent (on the command line, --strategy NAME also picks one)."
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
    banned_submodules: frozenset[str] = BANNED_SUBMODULES
    banned_keywords: frozenset[str] = BANNED_KEYWORDS
    unpicklers: frozenset[str] = UNPICKLERS
    loaders: frozenset[str] = LOADERS
    safe_loaders: frozenset[str] = SAFE_LOADERS  # top-level packages whose load/loads is safe
    broker_mutators: frozenset[str] = BROKER_MUTATORS
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

    @cached_property
    def refusable_names(self) -> frozenset[str]:
        """Every name without a leading _ that some attribute rule refuses somewhere."""
        return (
            self.banned_modules
            | self.banned_submodules
            | self.banned_attributes
            | self.unpicklers
            | self.loaders
            | self.broker_mutators
            | FORMAT_METHODS
        )

    def refuses_module_attribute(self, module: str, name: str) -> bool:
        """Whether ``module.name`` is refused, ``module`` being a module's full name: what
        the test that walks the approved packages asks of every attribute it finds."""
        return _module_attribute_problem(module, name, self, f"'{module}.{name}'") is not None


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
    """(message, hint) if an attribute called ``name`` may not be reached on any object.

    ``subject`` is how the message shows it (``'bt.feed.os'``); the name by default.
    """
    subject = subject or f"'{name}'"
    if _is_dunder(name):
        allowed = name in policy.safe_dunders
        return None if allowed else (f"access to {subject} is not allowed", HINT_DUNDER)
    bare = name.lstrip("_")
    if bare in policy.banned_modules:
        return f"{subject} reaches '{bare}', which is not available to agents", HINT_MODULE
    if bare in policy.banned_attributes or name in policy.banned_attributes:
        return f"{subject} is not available to agents", HINT_ATTRIBUTE
    if name in policy.broker_mutators:
        return f"{subject} would change the broker's cash, commission or fills", HINT_BROKER
    if name in policy.unpicklers:
        return f"{subject} can load pickled data, which runs code", HINT_KEYWORD
    return None


def _module_attribute_problem(
    module: str, name: str, policy: Policy, subject: str
) -> tuple[str, str] | None:
    """(message, hint) if ``name`` may not be reached on ``module`` (its full name, like
    'numpy.lib'): what no object may give, and a module's private names, the parts of
    packages that are not for agents, and unpickling entry points."""
    problem = _attribute_problem(name, policy, subject)
    if problem:
        return problem
    if name.startswith("_") and not _is_dunder(name):
        return f"{subject} is private to its module", HINT_PRIVATE
    if name in policy.banned_submodules:
        return f"{subject} reaches '{name}', which is not available to agents", HINT_MODULE
    if name in policy.loaders and module.split(".")[0] not in policy.safe_loaders:
        hint = HINT_NUMPY_LOAD if f"{module}.{name}" == NUMPY_LOAD else HINT_KEYWORD
        return f"{subject} can load pickled data, which runs code", hint
    return None


def _literal_getattr(node: ast.AST | None) -> tuple[ast.expr, str] | None:
    """(object, name) of ``getattr(obj, "name")`` or ``getattr(obj, "name", default)``,
    the one form of getattr that is plain attribute access; None for anything else."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    args = node.args
    if node.func.id != "getattr" or node.keywords or not 2 <= len(args) <= 3:
        return None
    if any(isinstance(a, ast.Starred) for a in args):
        return None
    name = args[1]
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return args[0], name.value
    return None


@dataclass(frozen=True, slots=True)
class _Chain:
    """A dotted path: ``bt.utils.py3`` (or ``getattr(bt, "utils").py3``) is root 'bt', head
    ('utils', 'py3'), length 2. The head keeps the first MAX_SHOWN parts only, so that a file
    of long chains costs time in proportion to its size."""

    root: str
    head: tuple[str, ...]
    length: int


MAX_SHOWN = 8


def _chains(nodes: list[ast.AST]) -> dict[int, _Chain]:
    """The dotted path of every node that is one, by id; children before their parents
    (``nodes`` is in ast.walk's order, parents first), so each node extends its value's."""
    chains: dict[int, _Chain] = {}
    for node in reversed(nodes):
        if isinstance(node, ast.Name):
            chains[id(node)] = _Chain(node.id, (), 0)
            continue
        if isinstance(node, ast.Attribute):
            value, name = node.value, node.attr
        elif (literal := _literal_getattr(node)) is not None:
            value, name = literal
        else:
            continue
        base = chains.get(id(value))
        if base is not None:
            head = (*base.head, name) if base.length < MAX_SHOWN else base.head
            chains[id(node)] = _Chain(base.root, head, base.length + 1)
    return chains


def _module_path(
    expr: ast.AST, modules: Mapping[str, str], chains: Mapping[int, _Chain]
) -> str | None:
    """The full name of the module ``expr`` reaches (``np.lib`` -> 'numpy.lib'), if it is a
    dotted path from a name bound to a module; None for anything else. Past MAX_SHOWN parts
    the name ends in '.…', which still starts with the package."""
    chain = chains.get(id(expr))
    if chain is None or chain.root not in modules:
        return None
    more = ".…" if chain.length > len(chain.head) else ""
    return ".".join([modules[chain.root], *chain.head]) + more


def _root_name(expr: ast.AST) -> str | None:
    """The name an expression starts from: ``b`` in ``b.comminfo[None].p``."""
    while True:
        if (literal := _literal_getattr(expr)) is not None:
            expr = literal[0]
        elif isinstance(expr, ast.Attribute | ast.Subscript):
            expr = expr.value
        elif isinstance(expr, ast.Call):
            expr = expr.func
        else:
            return expr.id if isinstance(expr, ast.Name) else None


def _reaches_broker(expr: ast.AST, brokers: Mapping[str, bool]) -> bool:
    """Whether ``expr`` goes through the broker: ``self.broker.p``, ``self.env.getbroker()``,
    ``b.comminfo[None]`` after ``b = self.broker``."""
    while True:
        if (literal := _literal_getattr(expr)) is not None:
            if literal[1] in BROKER_NAMES:
                return True
            expr = literal[0]
        elif isinstance(expr, ast.Attribute):
            if expr.attr in BROKER_NAMES:
                return True
            expr = expr.value
        elif isinstance(expr, ast.Subscript):
            expr = expr.value
        elif isinstance(expr, ast.Call):
            expr = expr.func
        else:
            return isinstance(expr, ast.Name) and expr.id in brokers


def _bound_pairs(target: ast.AST, value: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """``a = x`` -> (a, x); ``a, b = x, y`` -> (a, x), (b, y)."""
    if isinstance(target, ast.Name) and isinstance(value, ast.expr):
        yield target.id, value
    elif (
        isinstance(target, ast.Tuple | ast.List)
        and isinstance(value, ast.Tuple | ast.List)
        and len(target.elts) == len(value.elts)
    ):
        for t, v in zip(target.elts, value.elts, strict=True):
            yield from _bound_pairs(t, v)


def _spread(
    pairs: list[tuple[str, ast.expr]],
    known: dict[str, Any],
    derive: Callable[[ast.expr, Mapping[str, Any]], Any],
) -> dict[str, Any]:
    """Names bound to what ``derive`` recognises, through aliases of aliases: each binding is
    looked at once, and again when the name its value starts from becomes known."""
    by_root: dict[str | None, list[tuple[str, ast.expr]]] = {}
    for name, value in pairs:
        by_root.setdefault(_root_name(value), []).append((name, value))
    queue = list(pairs)
    while queue:
        name, value = queue.pop()
        if name in known:
            continue
        found = derive(value, known)
        if found is not None:
            known[name] = found
            queue.extend(by_root.get(name, ()))
    return known


def _broker_or_none(value: ast.expr, known: Mapping[str, Any]) -> bool | None:
    return True if _reaches_broker(value, known) else None


@dataclass(frozen=True)
class _Bindings:
    """What the file's names hold, as far as the rules need to know. By name, whatever the
    scope: a name that is given a module anywhere counts as that module everywhere."""

    modules: Mapping[str, str]  # name -> full module name ('np' -> 'numpy'), also `from` names
    brokers: Mapping[str, bool]  # names given something reached through the broker

    @classmethod
    def collect(cls, nodes: Iterable[ast.AST], chains: Mapping[int, _Chain]) -> _Bindings:
        modules: dict[str, Any] = {}
        pairs: list[tuple[str, ast.expr]] = []
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    modules[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    if node.module != "__future__" and alias.name != "*":
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs += _bound_pairs(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
                pairs += _bound_pairs(node.target, node.value)
        return cls(
            modules=_spread(pairs, modules, lambda v, known: _module_path(v, known, chains)),
            brokers=_spread(pairs, {}, _broker_or_none),
        )


@dataclass(frozen=True)
class _Context:
    """What a rule may look at besides its node."""

    src: _Source
    policy: Policy
    parents: Mapping[int, ast.AST]  # id(node) -> the node it is part of
    chains: Mapping[int, _Chain]
    bindings: _Bindings

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    def module_path(self, expr: ast.AST) -> str | None:
        return _module_path(expr, self.bindings.modules, self.chains)


def _check_import(node: ast.Import, ctx: _Context) -> Iterator[Finding]:
    policy = ctx.policy
    for alias in node.names:
        if not policy.may_import(alias.name):
            message = f"import of '{alias.name}' is not allowed"
            yield ctx.src.finding(IMPORT, message, policy.import_hint(), alias)
            continue
        problem = _module_path_problem(alias.name, policy)
        if problem:
            yield ctx.src.finding(IMPORT, f"import of {problem[0]}", problem[1], alias)


def _module_path_problem(module: str, policy: Policy) -> tuple[str, str] | None:
    """``backtrader.feed.os``, ``numpy._core``, ``pandas.compat.pickle_compat``."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        problem = _module_attribute_problem(".".join(parts[:i]), parts[i], policy, f"'{module}'")
        if problem:
            return problem
    return None


def _check_import_from(node: ast.ImportFrom, ctx: _Context) -> Iterator[Finding]:
    module, policy = node.module or "", ctx.policy
    if node.level:
        message = f"relative import 'from {'.' * node.level}{module} import …' is not allowed"
        yield ctx.src.finding(IMPORT, message, HINT_RELATIVE, node)
    elif not policy.may_import(module):
        message = f"import from '{module}' is not allowed"
        yield ctx.src.finding(IMPORT, message, policy.import_hint(), node)
    elif (problem := _module_path_problem(module, policy)) is not None:
        yield ctx.src.finding(IMPORT, f"import from {problem[0]}", problem[1], node)
    elif module != "__future__":
        yield from _check_imported_names(node, module, ctx)


def _check_imported_names(node: ast.ImportFrom, module: str, ctx: _Context) -> Iterator[Finding]:
    """``from backtrader.feed import os`` reaches os with an allowed top-level name."""
    for alias in node.names:
        if alias.name == "*":
            message = f"'from {module} import *' is not allowed"
            yield ctx.src.finding(IMPORT, message, HINT_STAR, alias)
            continue
        subject = f"'{alias.name}' from {module}"
        problem = _module_attribute_problem(module, alias.name, ctx.policy, subject)
        if problem:
            yield ctx.src.finding(IMPORT, problem[0], problem[1], alias)


def _check_name(node: ast.Name, ctx: _Context) -> Iterator[Finding]:
    policy = ctx.policy
    if node.id == "getattr" and node.id in policy.banned_names:
        yield from _check_getattr(node, ctx)
    elif node.id in policy.banned_names:
        hint = HINT_BY_NAME.get(node.id, HINT_NAME)
        yield ctx.src.finding(CALL, f"'{node.id}' is not available to agents", hint, node)
    elif (
        _is_dunder(node.id)
        and node.id not in policy.safe_dunders
        and not _reads_class_name(node, ctx)
    ):
        message = f"the name '{node.id}' is not allowed"
        yield ctx.src.finding(ATTRIBUTE, message, HINT_DUNDER, node)


def _check_getattr(node: ast.Name, ctx: _Context) -> Iterator[Finding]:
    """``getattr(obj, "name"[, default])`` is ``obj.name`` and checked as such; any other use
    of getattr (a name that is not a literal, a bare reference) is refused."""
    call = ctx.parent(node)
    literal = _literal_getattr(call) if isinstance(call, ast.Call) and call.func is node else None
    if literal is None:
        message = "'getattr' is not available to agents"
        yield ctx.src.finding(CALL, message, HINT_BY_NAME["getattr"], node)
        return
    obj, name = literal
    problem = _getattr_problem(obj, name, ctx)
    if problem:
        message = f"getattr with the name '{name}' is not allowed: {problem[0]}"
        yield ctx.src.finding(CALL, message, problem[1], node)


def _getattr_problem(obj: ast.expr, name: str, ctx: _Context) -> tuple[str, str] | None:
    """What ``obj.name`` would be refused for, and more: getattr does not tell a module from
    another object when the object is not a dotted name, so names refused on modules or
    only in some places (private names, format, load) are refused on every object."""
    module = ctx.module_path(obj)
    subject = f"'{name}'"
    if module is not None:
        problem = _module_attribute_problem(module, name, ctx.policy, subject)
    else:
        problem = _attribute_problem(name, ctx.policy, subject)
    if problem:
        return problem
    if _is_dunder(name):
        return "double-underscore names are not looked up by name", HINT_DUNDER
    if name.startswith("_"):
        return "private names are read as obj._name", HINT_BY_NAME["getattr"]
    if name in FORMAT_METHODS:
        return "the format cannot be checked", HINT_FORMAT
    if name in ctx.policy.loaders or name in ctx.policy.banned_submodules:
        return "the object could be a module", HINT_BY_NAME["getattr"]
    return None


def _reads_class_name(node: ast.Attribute | ast.Name, ctx: _Context) -> bool:
    """``self.__class__.__name__`` (or bare ``__class__.__name__``): the class's name only."""
    is_class = (node.attr if isinstance(node, ast.Attribute) else node.id) == "__class__"
    parent = ctx.parent(node)
    return (
        is_class
        and isinstance(parent, ast.Attribute)
        and parent.value is node
        and parent.attr in CLASS_NAME_DUNDERS
    )


def _check_attribute(node: ast.Attribute, ctx: _Context) -> Iterator[Finding]:
    problem = _attribute_node_problem(node, ctx)
    if problem:
        yield ctx.src.attribute_finding(problem[0], problem[1], node)


def _attribute_node_problem(node: ast.Attribute, ctx: _Context) -> tuple[str, str] | None:
    name, storing = node.attr, isinstance(node.ctx, ast.Store | ast.Del)
    if not (name.startswith("_") or name in ctx.policy.refusable_names or storing):
        return None  # the common case, decided without looking further
    if _reads_class_name(node, ctx):
        return None
    subject = _attribute_subject(node, ctx)
    module = ctx.module_path(node.value)
    if module is None:
        problem = _attribute_problem(node.attr, ctx.policy, subject)
    else:
        problem = _module_attribute_problem(module, node.attr, ctx.policy, subject)
        if problem and f"{module}.{node.attr}" == NUMPY_LOAD and _safe_numpy_load(node, ctx):
            problem = None
    if problem:
        return problem
    value = node.value
    literal = isinstance(value, ast.Constant) and isinstance(value.value, str)
    # str.format on a literal: its fields are checked as a string (_check_constant); on a
    # module path, format is the module's own (np.lib.format)
    if node.attr in FORMAT_METHODS and not literal and module is None:
        return f"'.{node.attr}' on a format that is not a literal is not allowed", HINT_FORMAT
    if storing and _reaches_broker(node, ctx.bindings.brokers):
        return f"changing {subject} is not allowed", HINT_BROKER
    return None


def _safe_numpy_load(node: ast.Attribute, ctx: _Context) -> bool:
    """``np.load(file)``, ``np.load(file, mmap_mode)``, with keywords other than
    allow_pickle: a third positional argument, * or ** could set allow_pickle."""
    call = ctx.parent(node)
    return (
        isinstance(call, ast.Call)
        and call.func is node
        and len(call.args) <= 2
        and not any(isinstance(a, ast.Starred) for a in call.args)
        and all(k.arg in NUMPY_LOAD_KEYWORDS for k in call.keywords)  # ** has no arg
    )


def _attribute_subject(node: ast.Attribute, ctx: _Context) -> str:
    """``'bt.feed.os'`` for a dotted name (``'….x.y.os'`` past MAX_SHOWN parts), else ``'.os'``."""
    chain = ctx.chains.get(id(node))
    if chain is None:
        return f"'.{node.attr}'"
    if chain.length <= len(chain.head):
        return f"'{'.'.join([chain.root, *chain.head])}'"
    parts: list[str] = []  # the last parts, read back from the node
    expr: ast.expr = node
    while isinstance(expr, ast.Attribute) and len(parts) < MAX_SHOWN:
        parts.append(expr.attr)
        expr = expr.value
    return f"'….{'.'.join(reversed(parts))}'"


def _check_subscript(node: ast.Subscript, ctx: _Context) -> Iterator[Finding]:
    """``self.broker.comminfo[None] = …`` changes the broker as an attribute would."""
    if isinstance(node.ctx, ast.Store | ast.Del) and _reaches_broker(node, ctx.bindings.brokers):
        message = f"changing {ctx.src.segment(node)} is not allowed"
        yield ctx.src.finding(ATTRIBUTE, message, HINT_BROKER, node)


_FORMATTER = string.Formatter()


def _lookup_field(text: str) -> str | None:
    """The first replacement field that, were ``text`` used as a format, would read an
    attribute or an item (``0.__class__``, ``x[0]``), in nested specs too; None if none.
    A malformed format is read up to where str.format would stop too."""
    pending = [text]
    while pending:
        try:
            for _text, name, spec, _conversion in _FORMATTER.parse(pending.pop()):
                if name and ("." in name or "[" in name):
                    return name
                if spec and "{" in spec:
                    pending.append(spec)
        except ValueError:
            continue
    return None


def _check_constant(node: ast.Constant, ctx: _Context) -> Iterator[Finding]:
    """A string that, used as a format (``"{0.__class__}".format(x)``, or by a library that
    formats it), would read attributes or items by name. A string on its own as a statement
    (a docstring) is never used, so it is not checked."""
    if not isinstance(node.value, str) or "{" not in node.value:
        return
    if isinstance(ctx.parent(node), ast.Expr):
        return
    field_name = _lookup_field(node.value)
    if field_name is not None:
        message = f"the format field '{{{field_name}}}' reads an attribute or item by name"
        yield ctx.src.finding(ATTRIBUTE, message, HINT_FORMAT, node)


def _check_match_class(node: ast.MatchClass, ctx: _Context) -> Iterator[Finding]:
    """``case object(__class__=c)`` looks the attribute up just as ``x.__class__`` does."""
    for name in node.kwd_attrs:
        problem = _attribute_problem(name, ctx.policy)
        if problem:
            yield ctx.src.finding(ATTRIBUTE, problem[0], problem[1], node)


def _check_keyword(node: ast.keyword, ctx: _Context) -> Iterator[Finding]:
    if node.arg in ctx.policy.banned_keywords:
        message = f"the argument '{node.arg}=' is not allowed"
        hint = HINT_BY_KEYWORD.get(node.arg, HINT_ATTRIBUTE)
        yield ctx.src.finding(CALL, message, hint, node)


_Check = Callable[[Any, _Context], Iterator[Finding]]
_CHECKS: dict[type[ast.AST], _Check] = {
    ast.Import: _check_import,
    ast.ImportFrom: _check_import_from,
    ast.Name: _check_name,
    ast.Attribute: _check_attribute,
    ast.Subscript: _check_subscript,
    ast.Constant: _check_constant,
    ast.MatchClass: _check_match_class,
    ast.keyword: _check_keyword,
}


def _walk(tree: ast.AST) -> tuple[list[ast.AST], dict[int, ast.AST]]:
    """Every node, in ast.walk's order, and each one's parent, in one pass. Iterative: a
    deeply nested file cannot overflow the stack."""
    nodes, parents = [tree], {}
    for node in nodes:  # grows as it goes
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
            nodes.append(child)
    return nodes, parents


def _rule_findings(tree: ast.Module, src: _Source, policy: Policy) -> Iterator[Finding]:
    nodes, parents = _walk(tree)
    chains = _chains(nodes)
    ctx = _Context(src, policy, parents, chains, _Bindings.collect(nodes, chains))
    for node in nodes:
        check = _CHECKS.get(type(node))
        if check:
            yield from check(node, ctx)


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
    bases: tuple[_StrategyClass, ...] = field(default=(), compare=False, repr=False)

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
        bases=tuple(inherited),
    )


def _method(node: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    return next((s for s in node.body if isinstance(s, defs) and s.name == name), None)


def _choose(
    classes: list[_StrategyClass], wanted: str | None, filename: str
) -> tuple[_StrategyClass | None, Finding | None]:
    """The rule of ``runtime.agent.pick_strategy``: the named one, the only one, the one
    named Agent, or the only one that no other strategy of the file derives from (a base
    class with helpers and the strategy built on it)."""
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
    derived_from = {id(base) for c in classes for base in c.bases}
    leaves = [c for c in classes if id(c) not in derived_from]
    if len(leaves) == 1:
        return leaves[0], None
    message = (
        f"{filename} defines several strategies ({', '.join(sorted(c.name for c in leaves))}): "
        "name the one to run Agent (or pick one with --strategy on the command line)"
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
