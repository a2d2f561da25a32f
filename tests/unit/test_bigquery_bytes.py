"""logical_bytes: BigQuery's published data sizes, which its on-demand queries bill."""

from __future__ import annotations

import pyarrow as pa

from infra.gcp.bigquery import logical_bytes


def test_each_type_counts_as_bigquery_says() -> None:
    table = pa.table({
        "s": pa.array(["ab", None, "é"]),  # 2 + 2, NULL 0, 2 + 2 (UTF-8 bytes)
        "i": pa.array([1, None, 3]),  # 8 each, NULL 0
        "l": pa.array([["x"], [], None], pa.list_(pa.string())),  # the items: 2 + 1
        "m": pa.array([[("k", 1.0)], [], None], pa.map_(pa.string(), pa.float64())),  # 3 + 8
        "r": pa.array([{"a": 1, "b": "zz"}, None, {"a": None, "b": None}],
                      pa.struct([("a", pa.int64()), ("b", pa.string())])),  # 8 + 4, 0, 0
    })  # fmt: skip
    assert logical_bytes(table) == 8 + 16 + 3 + 11 + 12
    assert logical_bytes(table, ["s", "r"]) == 8 + 12
    assert logical_bytes(table.slice(0, 0)) == 0
