"""parse_result on the figures that are lists and long mappings: ``trades`` and
``monthly_returns``. What the runtime writes passes; anything else is refused in one line."""

from __future__ import annotations

import copy
import json
from typing import Any

import backtrader as bt
import pytest

from runtime.data import synthetic_frame
from runtime.metrics import MAX_TRADES, TRADE_KEYS, MetricsAnalyzer
from workers.collect import MAX_MONTHS, Refused, Trusted, parse_result


class Flipper(bt.Strategy):
    """Long, then short, then long… in both datas: trades of both directions close often."""

    def next(self) -> None:
        for i, data in enumerate(self.datas):
            if len(self) % (5 + i) == 0:
                self.order_target_size(
                    data=data, target=-10 if self.getposition(data).size > 0 else 10
                )


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    """A result document as the runtime writes it (its ``results`` from MetricsAnalyzer)."""
    cerebro = bt.Cerebro(stdstats=False)
    for i, name in enumerate(("AAA", "BBB")):
        frame = synthetic_frame(300, seed=i, start="2021-01-04")
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.addstrategy(Flipper)
    cerebro.addanalyzer(MetricsAnalyzer, _name="metrics")
    results = cerebro.run()[0].analyzers.metrics.get_analysis()
    assert results["trades_closed"] > 20
    return {"results": results}


def trusted(start: str | None = "2021-01-04", end: str | None = "2022-12-31") -> Trusted:
    return Trusted(
        run_id="r1",
        agent_id="a",
        agent_version="1",
        user_id="u",
        agent_sha256=None,
        parameters={"symbols": ["AAA", "BBB"], "start_date": start, "end_date": end},
        data_checks=[],
        symbols=["AAA", "BBB"],
    )


def parse(doc: dict[str, Any], who: Trusted | None = None) -> dict[str, Any]:
    return parse_result(json.dumps(doc).encode(), who or trusted())


def test_what_the_runtime_writes_is_taken_as_it_is(real: dict[str, Any]) -> None:
    out = parse(real)["results"]
    assert out["trades"] == real["results"]["trades"]
    assert out["monthly_returns"] == real["results"]["monthly_returns"]
    assert {t["direction"] for t in out["trades"]} == {"long", "short"}
    assert {t["symbol"] for t in out["trades"]} == {"AAA", "BBB"}
    assert all(list(t) == list(TRADE_KEYS) for t in out["trades"])


def test_without_a_known_window_any_real_date_passes(real: dict[str, Any]) -> None:
    assert parse(real, trusted(None, None))["results"]["trades"]


def changed(real: dict[str, Any], change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(real)
    change(doc["results"])
    return doc


def set_trade(field: str, value: Any, index: int = 0) -> Any:
    def change(r: dict[str, Any]) -> None:
        r["trades"][index][field] = value

    return change


def drop_first(r: dict[str, Any]) -> None:
    del r["trades"][0]


def add_field(r: dict[str, Any]) -> None:
    r["trades"][0]["note"] = "x"


def drop_field(r: dict[str, Any]) -> None:
    del r["trades"][0]["bars_held"]


def as_object(r: dict[str, Any]) -> None:
    r["trades"] = {str(i): t for i, t in enumerate(r["trades"])}


def too_many(r: dict[str, Any]) -> None:
    r["trades"] = [r["trades"][0]] * (MAX_TRADES + 1)
    r["trades_closed"] = MAX_TRADES + 1


def not_an_object(r: dict[str, Any]) -> None:
    r["trades"][0] = ["AAA", "long"]


def mixed_forms(r: dict[str, Any]) -> None:
    r["trades"][1]["entry_date"] += "T10:00:00"
    r["trades"][1]["exit_date"] += "T10:00:00"


def bad_month(key: str) -> Any:
    def change(r: dict[str, Any]) -> None:
        r["monthly_returns"][key] = 1.0

    return change


def too_many_months(r: dict[str, Any]) -> None:
    r["monthly_returns"] = {
        f"{1000 + i // 12}-{i % 12 + 1:02d}": 0.1 for i in range(MAX_MONTHS + 1)
    }


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (drop_first, "trades does not list the last closed trades"),
        (as_object, "trades is not a list of at most 500 trades"),
        (too_many, "trades is not a list of at most 500 trades"),
        (not_an_object, "trades[0] is not an object"),
        (add_field, "trades[0] does not have exactly the known fields"),
        (drop_field, "trades[0] does not have exactly the known fields"),
        (set_trade("symbol", "ZZZ"), "trades[0].symbol is not a symbol the run was given"),
        (set_trade("symbol", ["AAA"]), "trades[0].symbol is not a symbol"),
        (set_trade("direction", "sideways"), "trades[0].direction is not long or short"),
        (set_trade("entry_date", "2021-02-30"), "trades[0].entry_date is not a real date"),
        (set_trade("exit_date", "2021-01-05T25:00:00"), "trades[0].exit_date is not a real date"),
        (set_trade("entry_date", "yesterday"), "trades[0].entry_date is not a date like"),
        (set_trade("entry_date", 20210105), "trades[0].entry_date is not a date like"),
        (set_trade("entry_date", "2020-12-31"), "entry_date lies outside the run's data"),
        (set_trade("exit_date", "2023-01-02", -1), "exit_date lies outside the run's data"),
        (set_trade("exit_date", "2021-01-04"), "trades[0] exits before it enters"),
        (mixed_forms, "trades mixes dates and datetimes"),
        (set_trade("size", -10), "trades[0].size is not a positive size"),
        (set_trade("size", 0), "trades[0].size is not a positive size"),
        (set_trade("pnl", "a lot"), "trades[0].pnl is not a number"),
        (set_trade("entry_price", True), "trades[0].entry_price is not a number"),
        (set_trade("pnl_net", 1e30), "trades[0].pnl_net is out of range"),
        (set_trade("bars_held", -1), "trades[0].bars_held is not a count"),
        (set_trade("bars_held", 2.5), "trades[0].bars_held is not a count"),
        (bad_month("2021-13"), "monthly_returns has a key that is not a month"),
        (bad_month("2021-1"), "monthly_returns has a key that is not a month"),
        (bad_month("2021"), "monthly_returns has a key that is not a month"),
        (bad_month("2021-01-01"), "monthly_returns has a key that is not a month"),
        (too_many_months, "monthly_returns is not an object of at most 1200 entries"),
    ],
)
def test_a_malformed_trade_or_month_is_refused(real: dict[str, Any], change: Any, why: str) -> None:
    with pytest.raises(Refused) as refused:
        parse(changed(real, change))
    message = str(refused.value)
    assert why in message, message
    assert "\n" not in message


def test_a_century_of_months_is_taken(real: dict[str, Any]) -> None:
    """Far more months than the generic cap on a mapping (200) in the document."""
    months = {f"{1925 + i // 12}-{i % 12 + 1:02d}": 0.5 for i in range(MAX_MONTHS)}
    doc = changed(real, lambda r: r.update(monthly_returns=months))
    assert parse(doc)["results"]["monthly_returns"] == months


def test_undefined_trade_figures_are_null(real: dict[str, Any]) -> None:
    """A trade whose orders were never notified has no size or prices: null, as the runtime
    says of any undefined figure (a non-finite number is read as null too)."""
    raw = json.dumps(changed(real, set_trade("size", None))).replace(
        '"exit_price": ' + json.dumps(real["results"]["trades"][0]["exit_price"]),
        '"exit_price": NaN',
        1,
    )
    out = parse_result(raw.encode(), trusted())["results"]["trades"][0]
    assert out["size"] is None and out["exit_price"] is None
    assert out["pnl"] == real["results"]["trades"][0]["pnl"]
