"""The MarketData contract: the in-memory fake and the local CSV folder behave the same."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from infra.local.market import LocalMarketData
from runtime.data import DataError, load, prepare, write_synthetic_dir
from tests.fakes import InMemoryMarketData
from workers.ports import MarketData


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dir(tmp_path_factory.mktemp("bars"), ["AAA", "BBB"], n_bars=120,
                               seed=5)  # fmt: skip


@pytest.fixture(params=["memory", "local"])
def market(request: pytest.FixtureRequest, folder: Path) -> MarketData:
    if request.param == "memory":
        return InMemoryMarketData(prepare(load(folder, ["AAA", "BBB"])))
    return LocalMarketData(folder)


def test_the_symbols_there_are(market: MarketData) -> None:
    assert market.symbols() == ["AAA", "BBB"]


def test_bars_of_several_symbols_whole_and_windowed(market: MarketData) -> None:
    whole = market.bars(["AAA", "BBB"])
    assert [b.symbol for b in whole] == ["AAA", "BBB"]
    assert all(len(b.dates) == 120 and b.values.shape[0] == 120 for b in whole)
    days = whole[0].dates.astype("datetime64[D]")
    start, end = days[10].astype(date), days[49].astype(date)
    (window,) = market.bars(["AAA"], start, end)
    got = window.dates.astype("datetime64[D]")
    assert got[0] == np.datetime64(start) and got[-1] == np.datetime64(end) and got.size == 40


def test_what_cannot_be_had_is_one_data_error(market: MarketData) -> None:
    with pytest.raises(DataError, match="NOPE"):
        market.bars(["AAA", "NOPE"])
    with pytest.raises(DataError, match="AAA"):
        market.bars(["AAA"], date(2999, 1, 1), None)
