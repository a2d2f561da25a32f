"""Parameter sweeps' pure parts (``workers.sweep``): the figures kept per combination, the
ranking, and the grid's refusals before anything is queued.

Covered: ``metrics_of`` takes each figure of a result's ``results`` by the names in
``METRICS`` (ints stay ints) and keeps None for a missing, NaN, infinite, boolean or textual
figure, or a result without figures; ``ranked`` puts the best first by the rank metric
(higher first, except "drawdown", lower first), then finished combinations without the
figure, then failed ones, each group in the grid's order (ties keep it too), without
changing its input; ``_grid`` refuses an unknown rank, an empty grid, a parameter both fixed
and swept, a parameter the strategy lacks, and more than ``MAX_COMBINATIONS`` combinations
(naming the sizes: ``4 fast × 30 slow is 120 combinations``), as ``Unrunnable`` validation
errors, and otherwise returns the grid in the order given.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from workers import sweep
from workers.jobs import Unrunnable
from workers.params import RANKS
from workers.payloads import RunParameters, SweepMember
from workers.sweep import MAX_COMBINATIONS, METRICS, metrics_of, ranked

FINISHED, FAILED = "finished", "failed"

FIGURES: dict[str, Any] = {
    "sharpe_ratio": 1.25,
    "portfolio_return_pct": 12.5,
    "max_drawdown_pct": 7.75,
    "trades_closed": 14,
    "win_rate_pct": 57.14,
    "profit_factor": 1.8,
    "sqn": 2.1,
    "calmar_ratio": 0.9,
    "total_net_pnl": 1250.0,  # a figure a sweep does not keep
}
REPORT: dict[str, Any] = {"params": {"fast": 10, "slow": 30, "ratio": 0.5}}


def member(
    n: int,
    status: str = FINISHED,
    *,
    by: dict[str, float | None] | None = None,
    **metrics: float | None,
) -> SweepMember:
    """Combination ``n`` (fast = n) with ``metrics`` and ``by`` (every other one None)."""
    given = {**metrics, **(by or {})}
    figures: dict[str, float | int | None] = dict.fromkeys(METRICS)
    figures.update(given)
    return {
        "run_id": f"sweep-{n:03d}",
        "params": {"fast": n},
        "status": status,
        "metrics": None if status == FAILED and not given else figures,
        "error": None if status == FINISHED else "it failed",
    }


def ids(members: list[SweepMember]) -> list[int]:
    return [int(m["run_id"].rsplit("-", 1)[1]) for m in members]


# -------------------------------------------------------------------- metrics_of
def test_metrics_names() -> None:
    assert set(RANKS) <= set(METRICS)
    assert sweep.RANKS is RANKS


def test_metrics_of_takes_each_figure_by_name() -> None:
    got = metrics_of({"run_id": "r", "results": FIGURES})
    assert got == {
        "sharpe": 1.25,
        "return": 12.5,
        "drawdown": 7.75,
        "trades": 14,
        "win_rate": 57.14,
        "profit_factor": 1.8,
        "sqn": 2.1,
        "calmar": 0.9,
    }
    assert type(got["trades"]) is int
    assert list(got) == list(METRICS)


@pytest.mark.parametrize(
    "result",
    [None, {}, {"results": None}, {"results": {}}, {"error": {"kind": "agent"}}],
    ids=["none", "empty", "results-none", "results-empty", "failed"],
)
def test_metrics_of_without_figures(result: dict[str, Any] | None) -> None:
    assert metrics_of(result) == dict.fromkeys(METRICS)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, True, False, "1.25", None, [1.0], {"value": 1.0}],
    ids=["nan", "inf", "-inf", "true", "false", "text", "none", "list", "map"],
)
def test_metrics_of_keeps_none_for_what_is_not_a_finite_number(bad: Any) -> None:
    got = metrics_of({"results": {**FIGURES, "sharpe_ratio": bad, "trades_closed": bad}})
    assert got["sharpe"] is None
    assert got["trades"] is None
    assert got["return"] == 12.5


def test_metrics_of_missing_figures() -> None:
    got = metrics_of({"results": {"sharpe_ratio": 0.5}})
    assert got["sharpe"] == 0.5
    assert all(got[name] is None for name in METRICS if name != "sharpe")


def test_metrics_of_zero_and_negative_figures_are_kept() -> None:
    got = metrics_of({"results": {"sharpe_ratio": -0.75, "trades_closed": 0, "sqn": 0.0}})
    assert (got["sharpe"], got["trades"], got["sqn"]) == (-0.75, 0, 0.0)


# ------------------------------------------------------------------------ ranked
def test_ranked_by_sharpe_best_first() -> None:
    members = [member(1, sharpe=0.5), member(2, sharpe=2.0), member(3, sharpe=1.0)]
    assert ids(ranked(members, "sharpe")) == [2, 3, 1]


def test_ranked_by_drawdown_lowest_first() -> None:
    members = [member(1, drawdown=12.0), member(2, drawdown=3.5), member(3, drawdown=8.0)]
    assert ids(ranked(members, "drawdown")) == [2, 3, 1]


@pytest.mark.parametrize(("rank", "higher"), list(RANKS.items()), ids=list(RANKS))
def test_ranked_by_each_rank(rank: str, higher: bool) -> None:
    members = [member(1, by={rank: 1.0}), member(2, by={rank: 3.0}), member(3, by={rank: 2.0})]
    members.append(member(4, by={rank: -1.0}))
    assert ids(ranked(members, rank)) == ([2, 3, 1, 4] if higher else [4, 1, 3, 2])


def test_ranked_only_looks_at_its_metric() -> None:
    members = [member(1, sharpe=1.0, sqn=9.0), member(2, sharpe=2.0, sqn=0.1)]
    assert ids(ranked(members, "sharpe")) == [2, 1]
    assert ids(ranked(members, "sqn")) == [1, 2]


def test_ranked_without_the_figure_next_then_failed_last() -> None:
    members = [
        member(1, FAILED),
        member(2),  # finished, no trades: no Sharpe
        member(3, sharpe=-2.0),
        member(4, FAILED, sharpe=5.0),  # a figure, yet failed: last
        member(5, sharpe=0.1),
        member(6),
    ]
    assert ids(ranked(members, "sharpe")) == [5, 3, 2, 6, 1, 4]


@pytest.mark.parametrize("rank", ["sharpe", "drawdown"])
def test_ranked_ties_keep_the_grid_order(rank: str) -> None:
    members = [
        member(1, by={rank: 1.0}),
        member(2, by={rank: 2.0}),
        member(3, by={rank: 1.0}),
        member(4, by={rank: 2.0}),
        member(5, by={rank: 1.0}),
    ]
    expected = [2, 4, 1, 3, 5] if RANKS[rank] else [1, 3, 5, 2, 4]
    assert ids(ranked(members, rank)) == expected


def test_ranked_groups_keep_the_grid_order() -> None:
    members = [member(n, FAILED) if n % 2 else member(n) for n in range(1, 9)]
    assert ids(ranked(members, "sharpe")) == [2, 4, 6, 8, 1, 3, 5, 7]


def test_ranked_other_statuses_count_as_failed() -> None:
    members = [member(1, "running", sharpe=9.0), member(2), member(3, sharpe=0.0)]
    assert ids(ranked(members, "sharpe")) == [3, 2, 1]


def test_ranked_int_figures() -> None:
    members = [member(1, sqn=1), member(2, sqn=3), member(3, sqn=2.5)]
    assert ids(ranked(members, "sqn")) == [2, 3, 1]


def test_ranked_leaves_its_input_alone() -> None:
    members = [member(1, sharpe=0.5), member(2, sharpe=2.0), member(3, FAILED)]
    before = copy.deepcopy(members)
    out = ranked(members, "sharpe")
    assert members == before
    assert out is not members
    assert all(any(o is m for m in members) for o in out)


def test_ranked_nothing() -> None:
    assert ranked([], "sharpe") == []


def test_ranked_metrics_from_results() -> None:
    def finished(n: int, sharpe: Any) -> SweepMember:
        return {
            "run_id": f"sweep-{n:03d}",
            "params": {"fast": n},
            "status": FINISHED,
            "metrics": metrics_of({"results": {"sharpe_ratio": sharpe}}),
            "error": None,
        }

    members = [finished(1, math.nan), finished(2, 0.3), finished(3, math.inf), finished(4, 1.1)]
    assert ids(ranked(members, "sharpe")) == [4, 2, 1, 3]


# ------------------------------------------------------------------------- _grid
def grid_error(
    grid: dict[str, str],
    *,
    rank: str = "sharpe",
    fixed: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> Unrunnable:
    params: RunParameters = {"params": fixed} if fixed is not None else {}
    with pytest.raises(Unrunnable) as caught:
        sweep._grid(REPORT if report is None else report, grid, params, "sma", rank)
    error = caught.value.error
    assert error["kind"] == "validation"
    assert error["message"] == str(caught.value)
    return caught.value


def test_grid_as_given() -> None:
    params: RunParameters = {"params": {"ratio": 0.25}, "symbols": ["SPY"]}
    got = sweep._grid(REPORT, {"slow": "20,40,60", "fast": "5..20/5"}, params, "sma", "drawdown")
    assert got == {"slow": [20, 40, 60], "fast": [5, 10, 15, 20]}
    assert list(got) == ["slow", "fast"]


@pytest.mark.parametrize("rank", ["trades", "Sharpe", "", "pnl"])
def test_grid_unknown_rank(rank: str) -> None:
    exc = grid_error({"fast": "5,10"}, rank=rank)
    assert str(exc) == (
        "rank= is one of sharpe, return, drawdown, win_rate, profit_factor, sqn, calmar, "
        f"got {rank!r}"
    )
    assert exc.error["hint"] == sweep.HINT


def test_grid_empty() -> None:
    exc = grid_error({})
    assert str(exc) == "a sweep needs a parameter with values, like fast=5..20/5"


def test_grid_a_parameter_both_fixed_and_swept() -> None:
    exc = grid_error({"slow": "20,40", "fast": "5,10"}, fixed={"fast": 5, "slow": 30})
    assert str(exc) == "fast is both fixed and swept"  # the first by name


def test_grid_fixed_parameters_may_sit_beside_swept_ones() -> None:
    params: RunParameters = {"params": {"slow": 30}}
    assert sweep._grid(REPORT, {"fast": "5,10"}, params, "sma", "sharpe") == {"fast": [5, 10]}


@pytest.mark.parametrize(
    ("grid", "report", "message"),
    [
        (
            {"fats": "5,10"},
            REPORT,
            "sma has no parameter fats: its parameters: fast=10, slow=30, ratio=0.5",
        ),
        ({"fast": "5,10"}, {}, "sma has no parameter fast: it has no parameters"),
        ({"fast": "5,7.5"}, REPORT, "fast= expects a whole number (its default is 10), got 7.5"),
        ({"fast": "20..5"}, REPORT, "fast= range goes from 20 down to 5: write it low..high"),
    ],
    ids=["unknown", "no-params", "wrong-type", "reversed"],
)
def test_grid_parameter_errors(grid: dict[str, str], report: dict[str, Any], message: str) -> None:
    exc = grid_error(grid, report=report)
    assert str(exc) == message
    assert exc.error["hint"] == sweep.HINT


def test_grid_too_many_combinations_names_the_sizes() -> None:
    exc = grid_error({"fast": "5..20/5", "slow": "1..30"})
    assert str(exc) == (
        f"4 fast × 30 slow is 120 combinations; a sweep runs at most {MAX_COMBINATIONS}"
    )
    assert (
        exc.error["hint"] == "Narrow a range or widen its step, or sweep fewer parameters at once."
    )


def test_grid_too_many_in_one_parameter() -> None:
    exc = grid_error({"fast": "1..101"})
    assert str(exc).startswith("101 fast is 101 combinations;")


def test_grid_sizes_count_distinct_values() -> None:
    exc = grid_error({"ratio": "0.1..1/0.1", "fast": "1,2,2,3", "slow": "1..4"})
    assert str(exc).startswith("10 ratio × 3 fast × 4 slow is 120 combinations;")


def test_grid_exactly_the_cap() -> None:
    got = sweep._grid(REPORT, {"fast": "1..10", "slow": "1..10"}, {}, "sma", "sharpe")
    assert len(got["fast"]) * len(got["slow"]) == MAX_COMBINATIONS


def test_grid_a_huge_range_is_refused_in_one_line() -> None:
    grid_error({"fast": "0..1e999999999"})
