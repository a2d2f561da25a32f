"""bot.commands: the chat command grammar (DESIGN.md section 4) as a Slack user types it."""

from __future__ import annotations

from datetime import date

import pytest

from bot.commands import (
    AGENT_REF,
    HELP,
    MAX_SYMBOLS,
    USAGE,
    Command,
    UsageError,
    parse,
    split_command,
)

NBSP = "\u00a0"
NOISE = ("Traceback", "object at 0x", "ValueError", "KeyError", "TypeError", "\\x", "\\u")
SYMBOLS_21 = ",".join(f"S{i}" for i in range(MAX_SYMBOLS + 1))
SYMBOLS_20 = tuple(f"S{i}" for i in range(MAX_SYMBOLS))


def usage_error(command: str, text: str = "") -> str:
    """Parse a malformed command; check the message is the one-line reply a user sees."""
    with pytest.raises(UsageError) as caught:
        parse(command, text)
    message = str(caught.value)
    name = command.strip().lstrip("/").lower()
    assert "\n" not in message and "\r" not in message, message
    assert message.endswith(f"; usage: {USAGE[name]}"), message
    assert message.count("; usage: ") == 1, message
    for noise in NOISE:
        assert noise not in message, message
    return message


# ---------------------------------------------------------------------------- happy paths

HAPPY = [
    # /backtest
    pytest.param(
        "/backtest",
        "sma@v3 spy,qqq start=2020-01-01 end=2021-12-31 cash=25,000",
        Command(
            name="backtest",
            agent="sma",
            version=3,
            symbols=("SPY", "QQQ"),
            start=date(2020, 1, 1),
            end=date(2021, 12, 31),
            cash=25000.0,
        ),
        id="backtest-everything",
    ),
    pytest.param("/backtest", "sma", Command(name="backtest", agent="sma"), id="backtest-bare"),
    pytest.param("backtest", "sma", Command(name="backtest", agent="sma"), id="backtest-no-slash"),
    pytest.param(
        "/BackTest", "sma", Command(name="backtest", agent="sma"), id="backtest-mixed-case"
    ),
    pytest.param(" /backtest ", "sma", Command(name="backtest", agent="sma"), id="command-padded"),
    pytest.param(
        "/backtest", "sma@3", Command(name="backtest", agent="sma", version=3), id="version-no-v"
    ),
    pytest.param(
        "/backtest",
        "sma@v123456",
        Command(name="backtest", agent="sma", version=123456),
        id="version-six-digits",
    ),
    pytest.param(
        "/backtest",
        "sma@v007",
        Command(name="backtest", agent="sma", version=7),
        id="version-zeros",
    ),
    pytest.param(
        "/backtest",
        "My_Agent-2",
        Command(name="backtest", agent="My_Agent-2"),
        id="agent-name-keeps-case-digits-dash-underscore",
    ),
    pytest.param(
        "/backtest", "a" * 64, Command(name="backtest", agent="a" * 64), id="agent-name-64-chars"
    ),
    pytest.param(
        "/backtest",
        "sma SPY",
        Command(name="backtest", agent="sma", symbols=("SPY",)),
        id="one-symbol",
    ),
    pytest.param(
        "/backtest",
        "sma brk.b,bf-b,x",
        Command(name="backtest", agent="sma", symbols=("BRK.B", "BF-B", "X")),
        id="symbols-upper-cased-dots-dashes",
    ),
    pytest.param(
        "/backtest",
        "sma SPY,,QQQ,",
        Command(name="backtest", agent="sma", symbols=("SPY", "QQQ")),
        id="symbols-empty-items-skipped",
    ),
    pytest.param(
        "/backtest",
        "sma qqq,SPY,qqq",
        Command(name="backtest", agent="sma", symbols=("QQQ", "SPY")),
        id="symbols-deduplicated-in-order",
    ),
    pytest.param(
        "/backtest",
        "sma " + ",".join(SYMBOLS_20),
        Command(name="backtest", agent="sma", symbols=SYMBOLS_20),
        id="symbols-max",
    ),
    pytest.param(
        "/backtest",
        "sma cash=5000 end=2021-06-30 QQQ start=2021-01-04",
        Command(
            name="backtest",
            agent="sma",
            symbols=("QQQ",),
            start=date(2021, 1, 4),
            end=date(2021, 6, 30),
            cash=5000.0,
        ),
        id="options-any-order",
    ),
    pytest.param(
        "/backtest",
        "sma START=2020-01-01 End=2020-12-31 CASH=1000",
        Command(
            name="backtest",
            agent="sma",
            start=date(2020, 1, 1),
            end=date(2020, 12, 31),
            cash=1000.0,
        ),
        id="option-keys-case-insensitive",
    ),
    pytest.param(
        "/backtest",
        "sma start=2021-03-01 end=2021-03-01",
        Command(name="backtest", agent="sma", start=date(2021, 3, 1), end=date(2021, 3, 1)),
        id="start-equals-end",
    ),
    pytest.param(
        "/backtest",
        "sma start=2020-01-01",
        Command(name="backtest", agent="sma", start=date(2020, 1, 1)),
        id="start-only",
    ),
    pytest.param(
        "/backtest",
        "sma end=2020-01-01",
        Command(name="backtest", agent="sma", end=date(2020, 1, 1)),
        id="end-only",
    ),
    pytest.param(
        "/backtest",
        "sma cash=$1,000,000",
        Command(name="backtest", agent="sma", cash=1_000_000.0),
        id="cash-dollar-commas",
    ),
    pytest.param(
        "/backtest",
        "sma cash=10_000.50",
        Command(name="backtest", agent="sma", cash=10000.5),
        id="cash-underscores-decimals",
    ),
    pytest.param(
        "/backtest",
        "sma cash=1e4",
        Command(name="backtest", agent="sma", cash=10000.0),
        id="cash-exp",
    ),
    pytest.param(
        "/backtest",
        "sma cash=0.01",
        Command(name="backtest", agent="sma", cash=0.01),
        id="cash-small-positive",
    ),
    pytest.param(
        "/backtest",
        f"{NBSP}sma@v2{NBSP}SPY,QQQ{NBSP}start=2020-01-01{NBSP}cash=25,000{NBSP}",
        Command(
            name="backtest",
            agent="sma",
            version=2,
            symbols=("SPY", "QQQ"),
            start=date(2020, 1, 1),
            cash=25000.0,
        ),
        id="non-breaking-spaces",
    ),
    pytest.param(
        "/backtest",
        f"  sma \t SPY{NBSP} {NBSP}\n cash=100  ",
        Command(name="backtest", agent="sma", symbols=("SPY",), cash=100.0),
        id="mixed-whitespace",
    ),
    # /paper-start
    pytest.param(
        "/paper-start",
        "sma@v2 spy,qqq cash=50,000",
        Command(name="paper-start", agent="sma", version=2, symbols=("SPY", "QQQ"), cash=50000.0),
        id="paper-start-everything",
    ),
    pytest.param(
        "/paper-start",
        "sma SPY feed=Alpaca start=2024-01-02 speed=0.5s",
        Command(
            name="paper-start",
            agent="sma",
            symbols=("SPY",),
            feed="alpaca",
            start=date(2024, 1, 2),
            speed=0.5,
        ),
        id="paper-start-feed-start-speed",
    ),
    pytest.param(
        "/paper-start", "sma", Command(name="paper-start", agent="sma"), id="paper-start-bare"
    ),
    pytest.param(
        "PAPER-START",
        f"sma{NBSP}Cash=10",
        Command(name="paper-start", agent="sma", cash=10.0),
        id="paper-start-upper-nbsp",
    ),
    # /paper-stop, /paper-status, /runs
    pytest.param("/paper-stop", "sma", Command(name="paper-stop", agent="sma"), id="paper-stop"),
    pytest.param(
        "/paper-stop",
        f"{NBSP}sma{NBSP}",
        Command(name="paper-stop", agent="sma"),
        id="paper-stop-nbsp",
    ),
    pytest.param("/paper-status", "", Command(name="paper-status"), id="paper-status-all"),
    pytest.param(
        "/paper-status", "sma", Command(name="paper-status", agent="sma"), id="paper-status-agent"
    ),
    pytest.param("/runs", "", Command(name="runs"), id="runs-all"),
    pytest.param("/runs", "   ", Command(name="runs"), id="runs-blank-text"),
    pytest.param("/runs", "sma", Command(name="runs", agent="sma"), id="runs-agent"),
    pytest.param(
        "runs", "Momentum_2", Command(name="runs", agent="Momentum_2"), id="runs-no-slash"
    ),
    # /agents, /digest, /help
    pytest.param("/agents", "", Command(name="agents"), id="agents"),
    pytest.param("/AGENTS", NBSP, Command(name="agents"), id="agents-nbsp-only"),
    pytest.param("/digest", "", Command(name="digest"), id="digest"),
    pytest.param("digest", " ", Command(name="digest"), id="digest-no-slash"),
    pytest.param("/help", "", Command(name="help"), id="help"),
    pytest.param("/help", "backtest", Command(name="help"), id="help-with-topic"),
    pytest.param("/help", "anything at all", Command(name="help"), id="help-ignores-words"),
    # /fmel
    pytest.param("/fmel", "sma", Command(name="fmel", agent="sma"), id="fmel-agent"),
    pytest.param(
        "/fmel",
        "sma last=20 verify",
        Command(name="fmel", agent="sma", last=20, verify=True),
        id="fmel-last-verify",
    ),
    pytest.param(
        "/fmel",
        "sma VERIFY LAST=5",
        Command(name="fmel", agent="sma", last=5, verify=True),
        id="fmel-case-insensitive-any-order",
    ),
    pytest.param(
        "/fmel", "sma last=1", Command(name="fmel", agent="sma", last=1), id="fmel-last-min"
    ),
    pytest.param(
        "/fmel", "sma last=500", Command(name="fmel", agent="sma", last=500), id="fmel-last-max"
    ),
    pytest.param(
        "/fmel",
        "bt-20240101-abc123 verify",
        Command(name="fmel", agent="bt-20240101-abc123", verify=True),
        id="fmel-run-id",
    ),
    pytest.param(
        "/fmel",
        "7f3a9c0e_run",
        Command(name="fmel", agent="7f3a9c0e_run"),
        id="fmel-run-id-starting-with-digit",
    ),
    pytest.param(
        "FMEL",
        f"sma{NBSP}last=3{NBSP}verify",
        Command(name="fmel", agent="sma", last=3, verify=True),
        id="fmel-upper-nbsp",
    ),
    pytest.param(
        "/fmel",
        "20261124T004443-4d87e7d5 trades",
        Command(name="fmel", agent="20261124T004443-4d87e7d5", trades=True),
        id="fmel-trades",
    ),
    pytest.param(
        "/fmel",
        "sma TRADES verify last=5",
        Command(name="fmel", agent="sma", last=5, verify=True, trades=True),
        id="fmel-trades-with-the-rest",
    ),
]


@pytest.mark.parametrize(("command", "text", "expected"), HAPPY)
def test_parse_happy_path(command: str, text: str, expected: Command) -> None:
    assert parse(command, text) == expected


def test_text_defaults_to_empty() -> None:
    assert parse("/agents") == Command(name="agents")
    assert parse("runs") == Command(name="runs")


def test_command_is_frozen() -> None:
    cmd = parse("/backtest", "sma")
    with pytest.raises(AttributeError):
        cmd.agent = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(USAGE))
def test_every_command_parses_to_its_name(name: str) -> None:
    """Each command either parses bare or asks for its usage: none is unhandled."""
    try:
        cmd = parse(f"/{name}")
    except UsageError:
        usage_error(f"/{name}")
    else:
        assert cmd.name == name


# ---------------------------------------------------------------------------- parameters()

PARAMETERS = [
    pytest.param(
        "/backtest",
        "sma@v3 spy,qqq start=2020-01-01 end=2021-12-31 cash=25,000",
        {"symbols": ["SPY", "QQQ"], "start": "2020-01-01", "end": "2021-12-31", "cash": 25000.0},
        id="backtest-everything",
    ),
    pytest.param("/backtest", "sma@v3", {}, id="backtest-bare-is-empty"),
    pytest.param("/backtest", "sma SPY", {"symbols": ["SPY"]}, id="symbols-only"),
    pytest.param("/backtest", "sma start=2020-02-03", {"start": "2020-02-03"}, id="start-only"),
    pytest.param("/backtest", "sma end=2020-02-03", {"end": "2020-02-03"}, id="end-only"),
    pytest.param("/backtest", "sma cash=1", {"cash": 1.0}, id="cash-only"),
    pytest.param(
        "/paper-start",
        "sma QQQ cash=$2,500",
        {"symbols": ["QQQ"], "cash": 2500.0},
        id="paper-start",
    ),
    pytest.param(
        "/paper-start",
        "sma feed=replay start=2024-01-02 speed=2",
        {"feed": "replay", "start": "2024-01-02", "bar_seconds": 2.0},
        id="paper-start-feed-start-speed",
    ),
    pytest.param("/paper-stop", "sma", {}, id="paper-stop"),
    pytest.param("/fmel", "sma last=5 verify", {}, id="fmel-has-no-job-parameters"),
    pytest.param("/agents", "", {}, id="agents"),
]


@pytest.mark.parametrize(("command", "text", "expected"), PARAMETERS)
def test_parameters(command: str, text: str, expected: dict[str, object]) -> None:
    params = parse(command, text).parameters()
    assert params == expected
    assert "symbols" not in params or isinstance(params["symbols"], list)
    assert "cash" not in params or isinstance(params["cash"], float)


def test_parameters_excludes_agent_and_version() -> None:
    params = parse("/backtest", "sma@v3 SPY").parameters()
    assert set(params) == {"symbols"}


def test_parameters_returns_a_fresh_copy() -> None:
    cmd = parse("/backtest", "sma SPY")
    first = cmd.parameters()
    first["symbols"].append("QQQ")  # type: ignore[attr-defined]
    first["cash"] = 1.0
    assert cmd.parameters() == {"symbols": ["SPY"]}
    assert cmd.symbols == ("SPY",)


# ---------------------------------------------------------------------------- errors

ERRORS = [
    # missing / bad agent
    pytest.param("/backtest", "", ["/backtest needs an agent"], id="backtest-missing-agent"),
    pytest.param("/backtest", f" {NBSP} ", ["/backtest needs an agent"], id="backtest-blank-agent"),
    pytest.param(
        "/paper-start", "", ["/paper-start needs an agent"], id="paper-start-missing-agent"
    ),
    pytest.param("/paper-stop", "", ["/paper-stop needs an agent"], id="paper-stop-missing-agent"),
    pytest.param("/backtest", "1sma", ["'1sma'", "not an agent name"], id="agent-starts-digit"),
    pytest.param("/backtest", "-sma", ["'-sma'", "not an agent name"], id="agent-starts-dash"),
    pytest.param("/backtest", "sma!", ["'sma!'", "not an agent name"], id="agent-punctuation"),
    pytest.param("/backtest", "sm.a", ["'sm.a'", "not an agent name"], id="agent-dot"),
    pytest.param("/backtest", "a" * 65, ["not an agent name"], id="agent-name-too-long"),
    pytest.param("/backtest", "sma@", ["'sma@'", "not an agent name"], id="agent-at-no-version"),
    pytest.param("/backtest", "sma@v", ["'sma@v'", "not an agent name"], id="agent-at-v-no-digit"),
    pytest.param("/backtest", "sma@vx", ["'sma@vx'", "not an agent name"], id="version-not-number"),
    pytest.param("/backtest", "sma@v1234567", ["not an agent name"], id="version-seven-digits"),
    pytest.param("/backtest", "sma@v-1", ["not an agent name"], id="version-negative"),
    pytest.param("/paper-start", "sma!", ["not an agent name"], id="paper-start-bad-agent"),
    pytest.param("/paper-stop", "sma!", ["not an agent name"], id="paper-stop-bad-agent"),
    pytest.param(
        "/paper-stop", "sma@v2", ["'sma@v2'", "not an agent name"], id="paper-stop-no-version"
    ),
    pytest.param("/paper-status", "sma?", ["not an agent name"], id="paper-status-bad-agent"),
    pytest.param("/runs", "1abc", ["not an agent name"], id="runs-bad-agent"),
    pytest.param("/runs", "sma@v1", ["not an agent name"], id="runs-no-version"),
    # v0
    pytest.param("/backtest", "sma@v0", ["versions start at v1"], id="v0"),
    pytest.param("/backtest", "sma@0", ["versions start at v1"], id="v0-no-v"),
    pytest.param("/backtest", "sma@v000", ["versions start at v1"], id="v000"),
    pytest.param("/paper-start", "sma@v0", ["versions start at v1"], id="paper-start-v0"),
    # symbols
    pytest.param("/backtest", "sma SP+Y", ["'SP+Y'", "not a symbol like SPY"], id="symbol-plus"),
    pytest.param("/backtest", "sma 1SPY", ["'1SPY'", "not a symbol"], id="symbol-starts-digit"),
    pytest.param("/backtest", "sma SPY,QQ*Q", ["'QQ*Q'", "not a symbol"], id="symbol-bad-in-list"),
    pytest.param("/backtest", "sma ABCDEFGHIJKLM", ["not a symbol"], id="symbol-too-long"),
    pytest.param("/backtest", "sma $SPY", ["'$SPY'", "not a symbol"], id="symbol-dollar"),
    pytest.param("/backtest", "sma ,", ["','", "not a symbol"], id="symbol-list-empty"),
    pytest.param("/backtest", "sma ,,,", ["not a symbol"], id="symbol-list-only-commas"),
    pytest.param("/paper-start", "sma SP+Y", ["not a symbol"], id="paper-start-bad-symbol"),
    pytest.param(
        "/backtest",
        f"sma {SYMBOLS_21}",
        [f"at most {MAX_SYMBOLS} symbols"],
        id="too-many-symbols",
    ),
    pytest.param(
        "/paper-start",
        f"sma {SYMBOLS_21}",
        [f"at most {MAX_SYMBOLS} symbols"],
        id="paper-start-too-many-symbols",
    ),
    pytest.param(
        "/backtest",
        "sma SPY QQQ",
        ["unexpected 'QQQ'", "symbols go in one list"],
        id="two-symbol-lists",
    ),
    pytest.param(
        "/backtest",
        "sma SPY cash=1 QQQ",
        ["unexpected 'QQQ'", "symbols go in one list"],
        id="two-symbol-lists-split-by-option",
    ),
    pytest.param(
        "/paper-start",
        "sma SPY QQQ",
        ["unexpected 'QQQ'", "one list"],
        id="paper-start-two-symbol-lists",
    ),
    # options
    pytest.param(
        "/backtest",
        "sma feed=replay",
        ["unknown option feed=", "options: start, end, cash"],
        id="unknown-option",
    ),
    pytest.param(
        "/backtest",
        "sma Symbols=SPY",
        ["unknown option symbols=", "options: start, end, cash"],
        id="unknown-option-symbols",
    ),
    pytest.param(
        "/backtest",
        "sma =5",
        ["'' is not a parameter name"],
        id="unknown-option-empty-key",
    ),
    pytest.param(
        "/paper-start",
        "sma END=2020-01-01",
        ["unknown option end=", "options: cash, feed, start, speed"],
        id="paper-start-no-end",
    ),
    pytest.param("/paper-start", "sma feed=ib", ["feed= is replay or alpaca"], id="bad-feed"),
    pytest.param("/paper-start", "sma speed=fast", ["speed= expects seconds"], id="bad-speed"),
    pytest.param("/paper-start", "sma speed=0", ["from 0.01 to 86400"], id="speed-zero"),
    pytest.param("/paper-start", "sma speed=nan", ["from 0.01 to 86400"], id="speed-nan"),
    pytest.param("/backtest", "sma cash=1 cash=2", ["cash= given twice"], id="repeated-cash"),
    pytest.param(
        "/backtest",
        "sma start=2020-01-01 START=2020-02-01",
        ["start= given twice"],
        id="repeated-start-any-case",
    ),
    pytest.param(
        "/backtest",
        "sma end=2020-01-01 end=2020-01-01",
        ["end= given twice"],
        id="repeated-end-same-value",
    ),
    pytest.param(
        "/paper-start", "sma cash=1 Cash=1", ["cash= given twice"], id="paper-start-repeated-cash"
    ),
    # dates
    pytest.param(
        "/backtest",
        "sma start=2020-13-01",
        ["start= expects a date like 2021-01-31", "'2020-13-01'"],
        id="bad-month",
    ),
    pytest.param(
        "/backtest", "sma start=2021-02-29", ["start= expects a date"], id="not-a-leap-year"
    ),
    pytest.param(
        "/backtest", "sma end=yesterday", ["end= expects a date", "'yesterday'"], id="bad-end-word"
    ),
    pytest.param("/backtest", "sma start=01/02/2020", ["start= expects a date"], id="us-date"),
    pytest.param("/backtest", "sma start=2020-1-1", ["start= expects a date"], id="unpadded-date"),
    pytest.param("/backtest", "sma end=", ["end= expects a date", "''"], id="empty-date"),
    pytest.param(
        "/backtest",
        "sma start=2021-12-31 end=2020-01-01",
        ["start=2021-12-31 is after end=2020-01-01"],
        id="start-after-end",
    ),
    pytest.param(
        "/backtest",
        "sma end=2020-01-01 start=2020-01-02",
        ["start=2020-01-02 is after end=2020-01-01"],
        id="start-after-end-any-order",
    ),
    # cash
    pytest.param(
        "/backtest", "sma cash=0", ["cash= must be a positive amount", "'0'"], id="cash-zero"
    ),
    pytest.param(
        "/backtest", "sma cash=-5", ["cash= must be a positive amount", "'-5'"], id="cash-negative"
    ),
    pytest.param(
        "/backtest", "sma cash=$0.00", ["cash= must be a positive amount"], id="cash-dollar-zero"
    ),
    pytest.param("/backtest", "sma cash=nan", ["cash="], id="cash-nan"),
    pytest.param("/backtest", "sma cash=inf", ["cash="], id="cash-inf"),
    pytest.param(
        "/backtest", "sma cash=lots", ["cash= expects a number", "'lots'"], id="cash-non-numeric"
    ),
    pytest.param("/backtest", "sma cash=", ["cash= expects a number", "''"], id="cash-empty"),
    pytest.param("/backtest", "sma cash=10k", ["cash= expects a number"], id="cash-suffix"),
    pytest.param(
        "/paper-start", "sma cash=0", ["cash= must be a positive amount"], id="paper-start-cash-0"
    ),
    pytest.param(
        "/paper-start", "sma cash=abc", ["cash= expects a number"], id="paper-start-cash-text"
    ),
    # no-argument commands
    pytest.param("/agents", "sma", ["/agents takes no arguments", "'sma'"], id="agents-extra-arg"),
    pytest.param("/agents", "a b", ["/agents takes no arguments", "'a'"], id="agents-extra-args"),
    pytest.param("/digest", "now", ["/digest takes no arguments", "'now'"], id="digest-extra-arg"),
    # one-agent commands
    pytest.param(
        "/paper-stop",
        "sma momentum",
        ["/paper-stop takes one agent", "'sma momentum'"],
        id="paper-stop-two-agents",
    ),
    pytest.param(
        "/paper-status",
        "sma momentum",
        ["/paper-status takes one agent"],
        id="paper-status-two-agents",
    ),
    pytest.param("/runs", "sma momentum", ["/runs takes one agent"], id="runs-two-agents"),
    # /fmel
    pytest.param("/fmel", "", ["/fmel needs an agent or a run id"], id="fmel-no-target"),
    pytest.param("/fmel", NBSP, ["/fmel needs an agent or a run id"], id="fmel-blank-target"),
    pytest.param("/fmel", "sma!", ["'sma!'", "not an agent name or run id"], id="fmel-bad-target"),
    pytest.param("/fmel", "sma@v3", ["not an agent name or run id"], id="fmel-versioned-target"),
    pytest.param("/fmel", "_run", ["not an agent name or run id"], id="fmel-target-underscore"),
    pytest.param(
        "/fmel",
        "x" * 81,
        ["not an agent name or run id"],
        id="fmel-target-too-long",
    ),
    pytest.param(
        "/fmel",
        "sma last=0",
        ["last= expects a number from 1 to 500", "'0'"],
        id="fmel-last-0",
    ),
    pytest.param("/fmel", "sma trades=5", ["unexpected 'trades=5'"], id="fmel-trades-value"),
    pytest.param(
        "/fmel",
        "sma last=9999",
        ["last= expects a number from 1 to 500", "'9999'"],
        id="fmel-last-9999",
    ),
    pytest.param("/fmel", "sma last=501", ["from 1 to 500", "'501'"], id="fmel-last-501"),
    pytest.param("/fmel", "sma last=x", ["last= expects a number", "'x'"], id="fmel-last-x"),
    pytest.param(
        "/fmel", "sma last=-1", ["last= expects a number", "'-1'"], id="fmel-last-negative"
    ),
    pytest.param("/fmel", "sma last=2.5", ["last= expects a number"], id="fmel-last-fraction"),
    pytest.param("/fmel", "sma last=", ["last= expects a number", "''"], id="fmel-last-empty"),
    pytest.param("/fmel", "sma please", ["unexpected 'please'"], id="fmel-unexpected-word"),
    pytest.param("/fmel", "sma run2", ["unexpected 'run2'"], id="fmel-two-targets"),
    pytest.param("/fmel", "sma last", ["unexpected 'last'"], id="fmel-last-without-value"),
    pytest.param("/fmel", "sma verify=yes", ["unexpected 'verify=yes'"], id="fmel-verify-value"),
    pytest.param("/fmel", "sma n=5", ["unexpected 'n=5'"], id="fmel-unknown-option"),
]


@pytest.mark.parametrize(("command", "text", "fragments"), ERRORS)
def test_usage_errors(command: str, text: str, fragments: list[str]) -> None:
    message = usage_error(command, text)
    for fragment in fragments:
        assert fragment in message, message


def test_usage_error_is_a_value_error() -> None:
    assert issubclass(UsageError, ValueError)


def test_usage_error_message_shape() -> None:
    message = usage_error("/backtest", "sma cash=0")
    assert message == (
        f"cash= must be a positive amount below 1,000,000,000,000, got '0'; "
        f"usage: {USAGE['backtest']}"
    )


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("/nope", id="unknown"),
        pytest.param("nope", id="unknown-no-slash"),
        pytest.param("/BackTests", id="near-miss"),
        pytest.param("/paper", id="prefix"),
        pytest.param("/upload", id="shell-only-command"),
        pytest.param("", id="empty"),
        pytest.param("/", id="slash-only"),
    ],
)
def test_unknown_command_lists_the_commands(command: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(command, "sma SPY")
    message = str(caught.value)
    name = command.strip().lstrip("/").lower()
    assert message.startswith(f"unknown command /{name};"), message
    assert "\n" not in message
    for noise in NOISE:
        assert noise not in message
    for known in USAGE:
        assert f"/{known}" in message, known


def test_unknown_command_names_every_command_exactly() -> None:
    with pytest.raises(UsageError) as caught:
        parse("/nope")
    _, _, listed = str(caught.value).partition("; commands: ")
    assert listed.split() == [f"/{name}" for name in USAGE]


@pytest.mark.parametrize(
    "value", [pytest.param("²", id="superscript-2"), pytest.param("①", id="circled-1")]
)
def test_fmel_last_unicode_digit_is_a_usage_error(value: str) -> None:
    message = usage_error("/fmel", f"sma last={value}")
    assert "last= expects a number from 1 to 500" in message


# ---------------------------------------------------------------------------- split_command

SPLITS = [
    pytest.param("/backtest sma SPY", ("backtest", "sma SPY"), id="slash"),
    pytest.param("backtest sma SPY", ("backtest", "sma SPY"), id="no-slash"),
    pytest.param("/BACKTEST sma SPY", ("backtest", "sma SPY"), id="command-lower-cased"),
    pytest.param("/backtest Sma spy", ("backtest", "Sma spy"), id="text-keeps-case"),
    pytest.param("  /agents  ", ("agents", ""), id="padded-no-text"),
    pytest.param("/agents", ("agents", ""), id="no-text"),
    pytest.param("/backtest   sma   SPY  ", ("backtest", "sma   SPY"), id="text-stripped"),
    pytest.param("/paper-start sma cash=1", ("paper-start", "sma cash=1"), id="dashed-command"),
    pytest.param("", ("", ""), id="empty"),
]


@pytest.mark.parametrize(("line", "expected"), SPLITS)
def test_split_command(line: str, expected: tuple[str, str]) -> None:
    assert split_command(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("/backtest sma@v3 spy start=2020-01-01", id="spaces"),
        pytest.param(f"backtest sma@v3{NBSP}spy\tstart=2020-01-01", id="nbsp-and-tab-in-text"),
        pytest.param("  /Backtest   sma@v3  SPY start=2020-01-01  ", id="padded"),
    ],
)
def test_split_then_parse(line: str) -> None:
    assert parse(*split_command(line)) == Command(
        name="backtest", agent="sma", version=3, symbols=("SPY",), start=date(2020, 1, 1)
    )


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"/backtest{NBSP}sma SPY", id="nbsp"),
        pytest.param("/backtest\tsma SPY", id="tab"),
    ],
)
def test_split_command_other_whitespace(line: str) -> None:
    assert split_command(line) == ("backtest", "sma SPY")


# ---------------------------------------------------------------------------- tables


def test_usage_and_help_have_the_same_commands() -> None:
    assert list(USAGE) == list(HELP)


@pytest.mark.parametrize("name", sorted(USAGE))
def test_usage_starts_with_the_command(name: str) -> None:
    usage = USAGE[name]
    assert usage == f"/{name}" or usage.startswith(f"/{name} ")
    assert "\n" not in usage
    assert HELP[name].strip() and "\n" not in HELP[name]


def test_design_commands_are_all_there() -> None:
    assert set(USAGE) == {
        "backtest", "paper-start", "sweep", "parity", "paper-stop", "paper-status",
        "agents", "runs", "fmel", "digest", "help",
    }  # fmt: skip


# ---------------------------------------------------------------------------- AGENT_REF


@pytest.mark.parametrize(
    ("ref", "name", "version"),
    [
        pytest.param("sma", "sma", None, id="bare"),
        pytest.param("sma@v3", "sma", "3", id="v-version"),
        pytest.param("sma@3", "sma", "3", id="plain-version"),
        pytest.param("My-Agent_2@v10", "My-Agent_2", "10", id="punctuated"),
    ],
)
def test_agent_ref_matches(ref: str, name: str, version: str | None) -> None:
    found = AGENT_REF.fullmatch(ref)
    assert found is not None
    assert found["name"] == name
    assert found["version"] == version


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("", id="empty"),
        pytest.param("2sma", id="leading-digit"),
        pytest.param("sma@", id="dangling-at"),
        pytest.param("sma@vv1", id="double-v"),
        pytest.param("sma v3", id="space"),
        pytest.param("a" * 65, id="too-long"),
    ],
)
def test_agent_ref_rejects(ref: str) -> None:
    assert AGENT_REF.fullmatch(ref) is None


def test_fmel_last_given_twice_is_refused() -> None:
    assert "last= given twice" in usage_error("/fmel", "sma last=5 last=10")


def test_repeated_symbols_count_once_toward_the_limit() -> None:
    assert parse("/backtest", "sma " + ",".join(["SPY"] * 21)).symbols == ("SPY",)


@pytest.mark.parametrize("value", ["20200101", "2020-W01-1", "2020-1-5"])
def test_dates_must_be_written_yyyy_mm_dd(value: str) -> None:
    assert "start= expects a date like 2021-01-31" in usage_error("/backtest", f"sma start={value}")


def test_an_unknown_command_is_echoed_printable_and_short() -> None:
    with pytest.raises(UsageError) as caught:
        parse("/" + "x\n" * 40, "")
    message = str(caught.value)
    assert "\n" not in message and len(message.split(";")[0]) < 60
