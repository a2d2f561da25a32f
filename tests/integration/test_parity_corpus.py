"""Backtest–paper parity over the strategy corpus (``tests/corpus``): each strategy runs as a
backtest and through the paper runtime's live feeds and simulated broker on the same bars,
and the two decision records are compared as ``tradeops parity`` compares them.

The runs are in this process (the runtime's own entry point, no sandbox) so the whole
corpus takes seconds; ``tests/integration/test_parity.py`` runs the job through the sandbox.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from runtime.backtest import BacktestRequest, run_backtest
from runtime.fmel import store
from tests.corpus import ENTRIES, CorpusEntry, write_data_dir
from workers.parity import compare

# What backtrader itself does differently on live feeds, found by this check; each is the
# strategy's, and the check is right to report it.
DIFFERENT = {
    # Ichimoku's chikou span is the close 26 bars *ahead*: preloaded, the backtest reads the
    # future; live, the paper run cannot (NaN). The backtest is the one that is wrong.
    "idiom_multiline_indicators": "indicators",
    # a coupled (resampled) data's line is filled on its first bar when fed live, NaN when
    # preloaded and run vectorised
    "idiom_coupled_data": "indicators",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("parity") / "data")


def _rows(entry: CorpusEntry, engine: str, data: Path, out: Path) -> list[dict[str, object]]:
    run_id = f"{entry.name.replace('_', '-')}-{engine}"
    req = BacktestRequest(agent_file=entry.path, run_id=run_id, engine=engine,
                          fmel_dir=out / engine, symbols=entry.symbols, start=entry.start,
                          end=entry.end, data_dir=data)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        doc = run_backtest(req)
    assert doc["error"] is None, (engine, doc["error"])
    assert doc["fmel"] is not None
    rows: list[dict[str, object]] = store.read_rows(out / engine, run_id)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_paper_replay_matches_the_backtest(
    entry: CorpusEntry, data_dir: Path, tmp_path: Path
) -> None:
    backtest = _rows(entry, "backtest", data_dir, tmp_path)
    paper = _rows(entry, "paper", data_dir, tmp_path)
    found = compare(backtest, paper)
    assert found["bars"] == len(backtest) > 0
    first = found["first_difference"]
    if entry.name in DIFFERENT:
        assert first is not None and first["field"] == DIFFERENT[entry.name], first
    else:
        assert first is None, first
        assert found["differing_bars"] == 0
        # the records are alike to the last bit the hash sees: the same chain
        assert backtest[-1]["complete_state_hash"] == paper[-1]["complete_state_hash"] or (
            found["log_only_bars"] > 0
        )
