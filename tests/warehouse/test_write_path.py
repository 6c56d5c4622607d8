"""The fast write path (vectorised key check, one case lookup, the dataset hash computed while
Parquet is written) refuses and records exactly what the row-by-row rules say."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from evallib import DataError, Warehouse, connect
from evallib.warehouse.writer import dataset_version

N_CASES, METRICS = 20_000, 5


def _tables(duplicate: bool = False) -> tuple[pa.Table, pa.Table]:
    ids = pa.array([f"c{i:05d}" for i in range(N_CASES)])
    tiers = pa.array(["gold" if i % 3 else "free" for i in range(N_CASES)])
    strata = pa.MapArray.from_arrays(np.arange(N_CASES + 1, dtype=np.int32),
                                     pa.array(["tier"] * N_CASES), tiers)
    cases = pa.table({"case_id": ids, "strata": strata})
    chunks = [pa.table({"case_id": ids, "metric": pa.array([f"m{j}"] * N_CASES),
                        "value": np.full(N_CASES, j % 2, dtype=float),
                        "kind": pa.array(["binary"] * N_CASES)}) for j in range(METRICS)]
    if duplicate:  # the last chunk scores c00007 on m0 again (m0 is in the first chunk)
        last = chunks[-1]
        chunks[-1] = last.set_column(1, "metric", pa.array(
            ["m0" if i == 7 else f"m{METRICS - 1}" for i in range(N_CASES)]))
    return cases, pa.concat_tables(chunks)


def test_a_duplicate_far_apart_is_named(tmp_path) -> None:
    cases, scores = _tables(duplicate=True)
    assert scores["case_id"].num_chunks == METRICS
    with pytest.raises(DataError) as e:
        Warehouse(tmp_path).record_run({"name": "n", "dataset": "d"}, cases, scores)
    assert e.value.row == (METRICS - 1) * N_CASES + 7 and e.value.field == "metric"
    assert "duplicate case_id='c00007', metric='m0'" in str(e.value)
    assert not list(tmp_path.rglob("*.parquet"))  # nothing written


def test_a_large_run_is_recorded_with_strata_and_version(tmp_path) -> None:
    cases, scores = _tables()
    run_id = Warehouse(tmp_path).record_run({"name": "n", "dataset": "d"}, cases, scores)
    with connect(tmp_path) as con:
        got = con.sql("SELECT strata_json, count(*) FROM scores GROUP BY ALL ORDER BY 1"
                      ).fetchall()
        version = con.sql("SELECT dataset_version FROM runs WHERE run_id = $r",
                          params={"r": run_id}).fetchall()[0][0]
    free = len(range(0, N_CASES, 3))
    assert got == [('{"tier":"free"}', free * METRICS),
                   ('{"tier":"gold"}', (N_CASES - free) * METRICS)]
    assert version == dataset_version(cases.append_column(
        "input", pa.nulls(N_CASES, pa.string())).append_column(
        "expected", pa.nulls(N_CASES, pa.string())).append_column(
        "tags", pa.nulls(N_CASES, pa.list_(pa.string()))))
