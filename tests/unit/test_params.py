"""Strategy parameters set from chat: ``workers.params`` and the runtime's own check.

``workers.params`` (the trusted side, against the validation report's literals):
``read_value`` reads each kind of literal (whole numbers with a sign, decimals, exponents,
true/yes/on and false/no/off in any case, text) and refuses long or unprintable text;
``known_params`` and ``listing``; ``coerce`` and ``check`` accept what fits a default's type
(an int where a float is expected becomes a float, a whole float for an int becomes an int)
and refuse the rest, unknown names with the strategy's parameters listed, bad names and
more than ``MAX_PARAMS``; sweep values (``read_values``): lists, duplicates collapsed,
inclusive int and float ranges (no accumulated float error), bad syntax, zero or negative
steps, reversed bounds, non-finite bounds and the ``MAX_VALUES`` cap; ``grid_of``,
``count``, ``combinations`` (the last parameter varies fastest), ``swept``, ``describe``
and ``RANKS``.

``runtime.agent`` (the sandbox side, against real backtrader classes): ``strategy_params``
refuses an unknown name with a validation ``RunFailed`` listing the class's parameters, a
value of the wrong type and a parameter whose default is not a scalar, lets a None default
take any scalar; ``fresh_counters`` numbers the next order and trade from 1.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import backtrader as bt
import pytest

from runtime.agent import fresh_counters, strategy_params
from runtime.errors import ErrorKind, RunFailed
from workers import params
from workers.params import ParamError

KNOWN: dict[str, Any] = {"fast": 10, "slow": 30, "ratio": 0.5, "flag": True, "name": "sma"}


def same(got: Any, expected: Any) -> bool:
    """Equal and of the same type (True == 1 and 1 == 1.0 in Python)."""
    return type(got) is type(expected) and (
        got == expected or (isinstance(got, float) and math.isnan(got) and math.isnan(expected))
    )


def all_same(got: list[Any], expected: list[Any]) -> bool:
    return len(got) == len(expected) and all(same(g, e) for g, e in zip(got, expected, strict=True))


# ------------------------------------------------------------------- read_value
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5),
        ("0", 0),
        ("-5", -5),
        ("+7", 7),
        ("007", 7),
        (" 12 ", 12),
        ("999999999999999999", 999_999_999_999_999_999),  # 18 digits: still a whole number
        ("0.5", 0.5),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("-.5", -0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("-1.5e-2", -0.015),
        ("2.5E+2", 250.0),
    ],
)
def test_read_value_numbers(text: str, expected: int | float) -> None:
    assert same(params.read_value(text), expected)


@pytest.mark.parametrize("text", ["true", "TRUE", "True", "yes", "YES", "Yes", "on", "ON", "oN"])
def test_read_value_true_words(text: str) -> None:
    assert params.read_value(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "False", "no", "NO", "No", "off", "OFF", "oFf"])
def test_read_value_false_words(text: str) -> None:
    assert params.read_value(text) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ema", "ema"),
        ("  padded  ", "padded"),
        ("Close", "Close"),
        ("1e999", "1e999"),  # not a finite number: kept as the text typed
        ("nan", "nan"),
        ("inf", "inf"),
        ("5..", "5.."),
        ("1,2", "1,2"),
        ("ünïcode", "ünïcode"),
        ("", ""),
    ],
    ids=[
        "word",
        "padded",
        "capital",
        "overflow",
        "nan",
        "inf",
        "dots",
        "comma",
        "unicode",
        "empty",
    ],
)
def test_read_value_text(text: str, expected: str) -> None:
    assert same(params.read_value(text), expected)


def test_read_value_text_length_limit() -> None:
    at_limit = "x" * params.MAX_TEXT
    assert params.read_value(at_limit) == at_limit
    with pytest.raises(ParamError, match=f"longer than {params.MAX_TEXT} characters"):
        params.read_value(at_limit + "x")


def test_read_value_surrounding_spaces_do_not_count_towards_the_limit() -> None:
    assert params.read_value("  " + "x" * params.MAX_TEXT + "  ") == "x" * params.MAX_TEXT


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "new\nline", "tab\tin"])
def test_read_value_refuses_unprintable_text(text: str) -> None:
    with pytest.raises(ParamError, match="cannot be shown"):
        params.read_value(text)


def test_a_long_whole_number_is_not_silently_rounded() -> None:
    try:
        got = params.check({"seed": "1234567890123456789"}, {"seed": 1}, agent="sma")
    except ParamError:
        return  # refusing it is fine too
    assert got["seed"] == 1234567890123456789


# -------------------------------------------------------- known_params, listing
@pytest.mark.parametrize(
    "report",
    [None, {}, {"params": None}, {"params": ["fast", "slow"]}, {"params": "fast=10"}],
    ids=["none", "empty", "params-none", "params-list", "params-text"],
)
def test_known_params_without_a_mapping(report: dict[str, Any] | None) -> None:
    assert params.known_params(report) == {}


def test_known_params_is_a_copy_of_the_report_params() -> None:
    report = {"params": {"fast": 10, "slow": 30}, "other": 1}
    found = params.known_params(report)
    assert found == {"fast": 10, "slow": 30}
    found["fast"] = 99
    assert report["params"] == {"fast": 10, "slow": 30}


def test_listing() -> None:
    assert params.listing({}) == "it has no parameters"
    assert params.listing(KNOWN) == (
        "its parameters: fast=10, slow=30, ratio=0.5, flag=True, name='sma'"
    )


def test_listing_shows_twelve_and_counts_the_rest() -> None:
    many = {f"p{i}": i for i in range(15)}
    text = params.listing(many)
    assert text.startswith("its parameters: p0=0, p1=1,")
    assert "p11=11" in text
    assert "p12" not in text
    assert text.endswith(" and 3 more")


def test_listing_shortens_long_defaults() -> None:
    text = params.listing({"label": "y" * 40})
    shown = text.removeprefix("its parameters: label=")
    assert len(shown) == 24
    assert shown == "'" + "y" * 22 + "…"


# ------------------------------------------------------------------------ coerce
@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (5, 10, 5),
        (-3, 10, -3),
        (20.0, 10, 20),  # a whole float for an int: an int
        (1e3, 10, 1000),
        (5, 0.5, 5.0),  # an int where a float is expected: a float
        (0.25, 0.5, 0.25),
        (-2, 0.5, -2.0),
        (True, True, True),
        (False, True, False),
        (True, False, True),
        (5, "sma", 5),  # a text default (or one the report could not read) takes anything
        ("ema", "sma", "ema"),
        (True, "sma", True),
        (0.5, None, 0.5),
        ("x", None, "x"),
    ],
)
def test_coerce_accepts(value: params.Scalar, default: Any, expected: params.Scalar) -> None:
    assert same(params.coerce("p", value, default), expected)


@pytest.mark.parametrize(
    ("value", "default", "message"),
    [
        (5.5, 10, "p= expects a whole number (its default is 10), got 5.5"),
        ("five", 10, "p= expects a whole number (its default is 10), got 'five'"),
        (True, 10, "p= expects a whole number (its default is 10), got True"),
        ("abc", 0.5, "p= expects a number (its default is 0.5), got 'abc'"),
        (True, 0.5, "p= expects a number (its default is 0.5), got True"),
        (1, True, "p= expects true or false (its default is True), got 1"),
        (0, False, "p= expects true or false (its default is False), got 0"),
        (1.0, True, "p= expects true or false (its default is True), got 1.0"),
        ("maybe", True, "p= expects true or false (its default is True), got 'maybe'"),
    ],
    ids=[
        "float-for-int",
        "text-for-int",
        "bool-for-int",
        "text-for-float",
        "bool-for-float",
        "1-for-bool",
        "0-for-bool",
        "1.0-for-bool",
        "text-for-bool",
    ],
)
def test_coerce_refuses(value: params.Scalar, default: Any, message: str) -> None:
    with pytest.raises(ParamError) as caught:
        params.coerce("p", value, default)
    assert str(caught.value) == message


# ------------------------------------------------------------------------- check
def test_check_reads_and_coerces_each_value() -> None:
    got = params.check(
        {"fast": "5", "slow": "1e2", "ratio": "2", "flag": "OFF", "name": "ema"}, KNOWN, agent="sma"
    )
    assert got == {"fast": 5, "slow": 100, "ratio": 2.0, "flag": False, "name": "ema"}
    assert all_same(list(got.values()), [5, 100, 2.0, False, "ema"])


def test_check_takes_values_that_are_already_scalars() -> None:
    got = params.check({"fast": 7.0, "ratio": 1, "flag": True, "name": "x"}, KNOWN, agent="sma")
    assert all_same(list(got.values()), [7, 1.0, True, "x"])


def test_check_nothing_given() -> None:
    assert params.check({}, KNOWN, agent="sma") == {}


def test_check_unknown_name_lists_the_parameters() -> None:
    with pytest.raises(ParamError) as caught:
        params.check({"fats": "5"}, {"fast": 10, "slow": 30}, agent="sma")
    assert str(caught.value) == "sma has no parameter fats: its parameters: fast=10, slow=30"


def test_check_unknown_name_on_a_strategy_without_parameters() -> None:
    with pytest.raises(ParamError, match=r"^sma has no parameter fast: it has no parameters$"):
        params.check({"fast": "5"}, {}, agent="sma")


@pytest.mark.parametrize("name", ["9fast", "fast-ma", "fa st", "", "x" * 65, "é"])
def test_check_refuses_what_is_not_a_name(name: str) -> None:
    with pytest.raises(ParamError, match="is not a parameter name"):
        params.check({name: "5"}, {name: 10}, agent="sma")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5.5, "expects a whole number"),
        ("five", "expects a whole number"),
        ("true", "expects a whole number"),
    ],
)
def test_check_refuses_a_wrong_type_for_an_int(value: Any, message: str) -> None:
    with pytest.raises(ParamError, match=f"^fast= {message}"):
        params.check({"fast": value}, KNOWN, agent="sma")


@pytest.mark.parametrize("value", ["abc", "yes", True])
def test_check_refuses_a_wrong_type_for_a_float(value: Any) -> None:
    with pytest.raises(ParamError, match=r"^ratio= expects a number"):
        params.check({"ratio": value}, KNOWN, agent="sma")


@pytest.mark.parametrize("value", ["1", "0", 1, "maybe"])
def test_check_refuses_a_wrong_type_for_a_bool(value: Any) -> None:
    with pytest.raises(ParamError, match=r"^flag= expects true or false"):
        params.check({"flag": value}, KNOWN, agent="sma")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None, [1, 2], {"a": 1}], ids=repr)
def test_check_refuses_values_that_are_not_scalars(value: Any) -> None:
    with pytest.raises(ParamError, match=r"^name= must be a number, true/false or text$"):
        params.check({"name": value}, KNOWN, agent="sma")


def test_check_max_params() -> None:
    known = {f"p{i}": 0 for i in range(params.MAX_PARAMS + 1)}
    given = {f"p{i}": "1" for i in range(params.MAX_PARAMS)}
    assert len(params.check(given, known, agent="sma")) == params.MAX_PARAMS
    given[f"p{params.MAX_PARAMS}"] = "1"
    with pytest.raises(ParamError, match=f"at most {params.MAX_PARAMS} strategy parameters"):
        params.check(given, known, agent="sma")


# ------------------------------------------------------------------- read_values
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20,40,60", [20, 40, 60]),
        (" 20 , 40 ,, 60 ,", [20, 40, 60]),
        ("7", [7]),
        ("0.5", [0.5]),
        ("-1,0,1", [-1, 0, 1]),
        ("ema,sma", ["ema", "sma"]),
        ("true,false", [True, False]),
        ("60,20,40", [60, 20, 40]),  # in the order given
        ("20,40,20,60,40", [20, 40, 60]),  # a value given twice is one run
        ("on,yes,TRUE", [True]),
        ("1,1.0", [1]),  # the same number
    ],
    ids=[
        "list",
        "spaces-and-empties",
        "single-int",
        "single-float",
        "negatives",
        "text",
        "bools",
        "order-kept",
        "duplicates",
        "duplicate-bools",
        "int-and-float",
    ],
)
def test_read_values_lists(text: str, expected: list[params.Scalar]) -> None:
    assert all_same(params.read_values("p", text), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5..20/5", [5, 10, 15, 20]),
        ("5..7", [5, 6, 7]),  # step 1 when left out
        ("5..5", [5]),
        ("5..22/5", [5, 10, 15, 20]),  # the last step within the bound
        ("-5..5/5", [-5, 0, 5]),
        ("-10..-4/3", [-10, -7, -4]),
        (" 5..20/5 ", [5, 10, 15, 20]),
        ("5.0..7", [5, 6, 7]),  # whole bounds and step: whole numbers
        ("1e3..2e3/500", [1000, 1500, 2000]),
        ("1..2/0.5", [1.0, 1.5, 2.0]),
        ("0.1..0.3/0.1", [0.1, 0.2, 0.3]),  # exactly: no float error accumulates
        ("0.1..0.5/0.1", [0.1, 0.2, 0.3, 0.4, 0.5]),
        ("0..0.3/0.1", [0.0, 0.1, 0.2, 0.3]),
        ("0..1/0.3", [0.0, 0.3, 0.6, 0.9]),
        (".5..1.5/.5", [0.5, 1.0, 1.5]),
        ("-0.5..0.5/0.25", [-0.5, -0.25, 0.0, 0.25, 0.5]),
        ("1e-3..3e-3/1e-3", [0.001, 0.002, 0.003]),
        ("0.7..0.9/0.1", [0.7, 0.8, 0.9]),
    ],
)
def test_read_values_ranges(text: str, expected: list[params.Scalar]) -> None:
    assert all_same(params.read_values("p", text), expected)


def test_float_range_matches_the_literals_exactly() -> None:
    got = params.read_values("p", "0.05..1/0.05")
    assert got == [float(f"{i * 5 / 100:.2f}") for i in range(1, 21)]
    assert got[2] == 0.15  # 0.05 + 0.05 + 0.05 would be 0.15000000000000002


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a..b", "p= range is FROM..TO/STEP with numbers, like 5..20/5"),
        ("1..10/x", "p= range is FROM..TO/STEP with numbers, like 5..20/5"),
        ("1..ten", "p= range is FROM..TO/STEP with numbers, like 5..20/5"),
        ("5..20..30", "p= range is FROM..TO/STEP with numbers, like 5..20/5"),
        ("1..10/0", "p= range step must be above 0"),
        ("1..10/0.0", "p= range step must be above 0"),
        ("1..10/-1", "p= range step must be above 0"),
        ("10..1", "p= range goes from 10 down to 1: write it low..high"),
        ("0.5..0.1/0.1", "p= range goes from 0.5 down to 0.1: write it low..high"),
        ("nan..5", "p= range needs finite numbers"),
        ("1..inf", "p= range needs finite numbers"),
        ("1..10/Infinity", "p= range needs finite numbers"),
        ("", "p= has no values"),
        (" , ,", "p= has no values"),
    ],
    ids=[
        "words",
        "word-step",
        "word-bound",
        "two-ranges",
        "zero-step",
        "zero-float-step",
        "negative-step",
        "reversed",
        "reversed-float",
        "nan",
        "inf",
        "inf-step",
        "empty",
        "only-commas",
    ],
)
def test_read_values_refusals(text: str, message: str) -> None:
    with pytest.raises(ParamError) as caught:
        params.read_values("p", text)
    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["5..", "..5", "5..20/", "5..20/5/2"])
def test_malformed_ranges_are_text_and_refused_for_a_number(text: str) -> None:
    assert params.read_values("p", text) == [text]
    with pytest.raises(ParamError) as caught:
        params.grid_of({"fast": text}, KNOWN, agent="sma")
    assert str(caught.value) == f"fast= expects a whole number (its default is 10), got {text!r}"


def test_a_range_inside_a_list_is_not_a_range() -> None:
    assert params.read_values("p", "5..10,20") == ["5..10", 20]
    with pytest.raises(ParamError, match=r"got '5..10'$"):
        params.grid_of({"fast": "5..10,20"}, KNOWN, agent="sma")


def test_read_values_max_values() -> None:
    assert len(params.read_values("p", ",".join(map(str, range(params.MAX_VALUES))))) == 1000
    with pytest.raises(ParamError, match=f"^p= has more than {params.MAX_VALUES} values$"):
        params.read_values("p", ",".join(map(str, range(params.MAX_VALUES + 1))))


def test_range_max_values() -> None:
    assert params.read_values("p", f"1..{params.MAX_VALUES}") == list(range(1, 1001))
    with pytest.raises(ParamError) as caught:
        params.read_values("p", f"1..{params.MAX_VALUES + 1}")
    assert str(caught.value) == "p= range spreads into 1001 values (at most 1000)"
    with pytest.raises(ParamError, match="spreads into 1000000001 values"):
        params.read_values("p", "0..1/0.000000001")


@pytest.mark.parametrize("text", ["0..1e999999999", "0..1/1e-999999999"], ids=["bound", "step"])
def test_a_huge_range_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ParamError):
        params.read_values("p", text)


@pytest.mark.parametrize(
    ("text", "default"), [("1,true", "sma"), ("true,1", True)], ids=["text", "bool"]
)
def test_true_and_1_are_different_sweep_values(text: str, default: Any) -> None:
    try:
        grid = params.grid_of({"p": text}, {"p": default}, agent="sma")
    except ParamError:
        return  # refusing the 1 for a bool parameter is right
    assert len(grid["p"]) == 2


# ------------------------------------------------------------------------ grids
def test_grid_of_reads_and_coerces_each_parameter_in_order() -> None:
    grid = params.grid_of(
        {"slow": "20,40,60", "fast": "5..20/5", "ratio": "1..3", "flag": "true,off"},
        KNOWN,
        agent="sma",
    )
    assert list(grid) == ["slow", "fast", "ratio", "flag"]
    assert grid["slow"] == [20, 40, 60]
    assert grid["fast"] == [5, 10, 15, 20]
    assert all_same(grid["ratio"], [1.0, 2.0, 3.0])
    assert grid["flag"] == [True, False]


def test_grid_of_collapses_values_equal_once_coerced() -> None:
    assert all_same(params.grid_of({"fast": "10,10.0,1e1"}, KNOWN, agent="s")["fast"], [10])
    assert all_same(params.grid_of({"ratio": "1,1.0"}, KNOWN, agent="s")["ratio"], [1.0])


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"fast": "1..2/0.5"}, "fast= expects a whole number (its default is 10), got 1.5"),
        ({"ratio": "0.1,abc"}, "ratio= expects a number (its default is 0.5), got 'abc'"),
        ({"flag": "0,1"}, "flag= expects true or false (its default is True), got 0"),
        ({"fats": "1,2"}, "sma has no parameter fats: " + params.listing(KNOWN)),
        ({"2fast": "1,2"}, "'2fast' is not a parameter name"),
        ({"fast": "10..1"}, "fast= range goes from 10 down to 1: write it low..high"),
    ],
    ids=[
        "float-in-int-range",
        "text-for-float",
        "ints-for-bool",
        "unknown",
        "bad-name",
        "reversed",
    ],
)
def test_grid_of_refusals(given: dict[str, str], message: str) -> None:
    with pytest.raises(ParamError) as caught:
        params.grid_of(given, KNOWN, agent="sma")
    assert str(caught.value) == message


def test_grid_of_max_params() -> None:
    known = {f"p{i}": 0 for i in range(params.MAX_PARAMS + 1)}
    given = {f"p{i}": "1,2" for i in range(params.MAX_PARAMS)}
    assert len(params.grid_of(given, known, agent="sma")) == params.MAX_PARAMS
    given[f"p{params.MAX_PARAMS}"] = "1"
    with pytest.raises(ParamError, match=f"at most {params.MAX_PARAMS} strategy parameters on"):
        params.grid_of(given, known, agent="sma")


@pytest.mark.parametrize(
    ("grid", "n"),
    [
        ({}, 0),
        ({"a": [1]}, 1),
        ({"a": [1, 2, 3, 4]}, 4),
        ({"a": [1, 2], "b": [1, 2, 3]}, 6),
        ({"a": [1, 2], "b": [1, 2, 3], "c": [True, False]}, 12),
        ({"a": [1, 2], "b": []}, 0),
    ],
)
def test_count(grid: dict[str, list[Any]], n: int) -> None:
    assert params.count(grid) == n


def test_combinations_last_parameter_varies_fastest() -> None:
    combos = params.combinations({"fast": [5, 10], "slow": [20, 40, 60]})
    assert combos == [
        {"fast": 5, "slow": 20},
        {"fast": 5, "slow": 40},
        {"fast": 5, "slow": 60},
        {"fast": 10, "slow": 20},
        {"fast": 10, "slow": 40},
        {"fast": 10, "slow": 60},
    ]
    assert all(list(c) == ["fast", "slow"] for c in combos)


def test_combinations_of_three_match_count_and_are_distinct() -> None:
    grid: dict[str, list[params.Scalar]] = {"a": [1, 2], "b": ["x", "y", "z"], "c": [True, False]}
    combos = params.combinations(grid)
    assert len(combos) == params.count(grid) == 12
    assert len({tuple(c.items()) for c in combos}) == 12
    assert combos[0] == {"a": 1, "b": "x", "c": True}
    assert combos[1] == {"a": 1, "b": "x", "c": False}
    assert combos[2] == {"a": 1, "b": "y", "c": True}
    assert combos[-1] == {"a": 2, "b": "z", "c": False}


def test_combinations_of_a_single_value_grid() -> None:
    assert params.combinations({"fast": [5]}) == [{"fast": 5}]


def test_combinations_from_grid_of() -> None:
    grid = params.grid_of({"fast": "5..20/5", "slow": "20,40,60"}, KNOWN, agent="sma")
    combos = params.combinations(grid)
    assert len(combos) == params.count(grid) == 12
    assert [c["slow"] for c in combos[:3]] == [20, 40, 60]
    assert [c["fast"] for c in combos[::3]] == [5, 10, 15, 20]


def test_swept() -> None:
    grid = {"a": [1], "b": [1, 2], "c": [3], "d": [4, 5, 6]}
    assert params.swept(grid) == ["b", "d"]
    assert params.swept({"a": [1]}) == []
    assert params.swept({}) == []


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ({}, ""),
        ({"fast": 5, "slow": 20}, "fast=5 slow=20"),
        ({"flag": True, "off": False}, "flag=true off=false"),
        ({"ratio": 0.5, "name": "ema", "n": -3}, "ratio=0.5 name=ema n=-3"),
    ],
)
def test_describe(given: dict[str, Any], text: str) -> None:
    assert params.describe(given) == text


def test_describe_reads_back_to_the_same_values() -> None:
    given: dict[str, params.Scalar] = {"fast": 5, "ratio": 0.25, "flag": False, "name": "ema"}
    typed = dict(word.split("=", 1) for word in params.describe(given).split())
    assert all_same(list(params.check(typed, KNOWN, agent="sma").values()), list(given.values()))


def test_ranks() -> None:
    assert params.RANKS == {
        "sharpe": True,
        "return": True,
        "drawdown": False,
        "win_rate": True,
        "profit_factor": True,
        "sqn": True,
        "calmar": True,
    }


# ------------------------------------------------------------- runtime.agent side
class Tunable(bt.Strategy):
    params: tuple[tuple[str, Any], ...] = (
        ("period", 10),
        ("ratio", 0.5),
        ("enabled", True),
        ("label", "sma"),
        ("limit", None),
        ("indicator", bt.indicators.SMA),  # a class: cannot be set from a command
        ("window", (1, 2)),  # a tuple: neither
    )


class MoreTunable(Tunable):
    params = (("extra", 3),)


class Plain(bt.Strategy):
    pass


class Many(bt.Strategy):
    params = tuple((f"p{i}", i) for i in range(15))


def run_failed(cls: type[bt.Strategy], given: dict[str, Any]) -> RunFailed:
    with pytest.raises(RunFailed) as caught:
        strategy_params(cls, given)
    assert caught.value.error.kind is ErrorKind.VALIDATION
    assert str(caught.value) == caught.value.error.message
    return caught.value


def test_strategy_params_nothing_given() -> None:
    assert strategy_params(Tunable, {}) == {}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("period", 20, 20),
        ("period", -1, -1),
        ("period", 20.0, 20),  # a whole float for an int: an int
        ("ratio", 1, 1.0),  # an int for a float: a float
        ("ratio", 0.25, 0.25),
        ("enabled", False, False),
        ("label", "ema", "ema"),
        ("label", 5, 5),  # a text default takes any scalar
        ("limit", 5, 5),  # so does None
        ("limit", 0.5, 0.5),
        ("limit", True, True),
        ("limit", "text", "text"),
    ],
)
def test_strategy_params_accepts(name: str, value: Any, expected: Any) -> None:
    got = strategy_params(Tunable, {name: value})
    assert list(got) == [name]
    assert same(got[name], expected)


def test_strategy_params_several_at_once() -> None:
    got = strategy_params(Tunable, {"period": 5, "ratio": 2, "enabled": False})
    assert all_same(list(got.values()), [5, 2.0, False])


def test_strategy_params_inherited_parameters() -> None:
    assert strategy_params(MoreTunable, {"period": 7, "extra": 4}) == {"period": 7, "extra": 4}


def test_strategy_params_unknown_name_lists_the_class_parameters() -> None:
    error = run_failed(Tunable, {"perod": 5}).error
    assert error.message.startswith("Tunable has no parameter perod (its parameters: ")
    for shown in ("period=10", "ratio=0.5", "enabled=True", "label='sma'", "limit=None"):
        assert shown in error.message
    assert "window=(1, 2)" in error.message


def test_strategy_params_unknown_name_on_a_class_without_parameters() -> None:
    error = run_failed(Plain, {"fast": 5}).error
    assert error.message == "Plain has no parameter fast (its parameters: none)"


def test_strategy_params_listing_shows_twelve() -> None:
    message = run_failed(Many, {"nope": 1}).error.message
    assert "p11=11" in message
    assert "p12" not in message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("period", 5.5, "period= expects a whole number (its default is 10), got 5.5"),
        ("period", "five", "period= expects a whole number (its default is 10), got 'five'"),
        ("period", True, "period= expects a whole number (its default is 10), got True"),
        ("ratio", "abc", "ratio= expects a number (its default is 0.5), got 'abc'"),
        ("ratio", False, "ratio= expects a number (its default is 0.5), got False"),
        ("enabled", 1, "enabled= expects true or false (its default is True), got 1"),
        ("enabled", "yes", "enabled= expects true or false (its default is True), got 'yes'"),
        ("limit", math.nan, "limit= must be a number, true/false or text"),
        ("limit", math.inf, "limit= must be a number, true/false or text"),
        ("limit", None, "limit= must be a number, true/false or text"),
        ("label", [1], "label= must be a number, true/false or text"),
        ("window", (3, 4), "window= must be a number, true/false or text"),
    ],
    ids=[
        "float-for-int",
        "text-for-int",
        "bool-for-int",
        "text-for-float",
        "bool-for-float",
        "1-for-bool",
        "text-for-bool",
        "nan",
        "inf",
        "none",
        "list",
        "tuple",
    ],
)
def test_strategy_params_refuses_a_wrong_type(name: str, value: Any, message: str) -> None:
    assert run_failed(Tunable, {name: value}).error.message == message


@pytest.mark.parametrize("name", ["indicator", "window"])
@pytest.mark.parametrize("value", [3, 0.5, True, "SMA"])
def test_a_non_scalar_default_cannot_be_set(name: str, value: Any) -> None:
    assert run_failed(Tunable, {name: value}).error.message == (
        f"{name} cannot be set from a command: its default is not a number, text or true/false"
    )


def test_fresh_counters_numbers_orders_and_trades_from_1(monkeypatch: pytest.MonkeyPatch) -> None:
    # put back whatever counters the process had when the test ends
    monkeypatch.setattr(bt.order.OrderBase, "refbasis", bt.order.OrderBase.refbasis)
    monkeypatch.setattr(bt.trade.Trade, "refbasis", bt.trade.Trade.refbasis)
    for _ in range(3):  # as an earlier run in the same process would
        bt.BuyOrder(simulated=True, size=1, price=10.0)
        bt.Trade()
    assert bt.BuyOrder(simulated=True, size=1, price=10.0).ref > 1
    assert bt.Trade().ref > 1

    fresh_counters()

    assert bt.BuyOrder(simulated=True, size=1, price=10.0).ref == 1
    assert bt.SellOrder(simulated=True, size=1, price=10.0).ref == 2
    assert [bt.Trade().ref for _ in range(3)] == [1, 2, 3]

    fresh_counters()  # again: from 1 once more
    assert bt.Trade().ref == 1
    assert bt.SellOrder(simulated=True, size=1, price=10.0).ref == 1
    assert isinstance(bt.order.OrderBase.refbasis, itertools.count)
