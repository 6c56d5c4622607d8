"""Golden sets: three file formats, a content version, stored versions, stratified subsets."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evallib import Warehouse, connect
from evallib.authoring.datasets import Case, Dataset, load_dataset, load_version, stored_versions
from evallib.errors import DataError, EvallibError
from evallib.warehouse import schema as S
from evallib.warehouse.maintenance import check

CASES = [
    {"case_id": "c1", "input": "How do I get a refund?", "expected": "Within 30 days.",
     "strata": {"query_type": "billing", "difficulty": "hard"}, "tags": ["critical"]},
    {"case_id": "c2", "input": "=HYPERLINK(\"http://x\")", "expected": "-5",
     "strata": {"query_type": "account", "difficulty": "easy"}, "tags": ["safety", "critical"]},
    {"case_id": "c3", "input": "Reset my password", "expected": None,
     "strata": {"query_type": "account", "difficulty": "hard"}, "relevant_docs": ["kb-1", "kb-2"]},
]


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_jsonl_csv_and_parquet_of_the_same_cases_have_one_version(tmp_path):
    ds = load_dataset(_jsonl(tmp_path / "golden.jsonl", CASES))
    assert ds.name == "golden" and len(ds) == 3
    assert ds.cases[0].strata == {"query_type": "billing", "difficulty": "hard"}
    assert ds.cases[1].tags == ("safety", "critical")
    assert ds.cases[2].relevant_docs == ("kb-1", "kb-2") and ds.cases[2].expected is None
    for suffix in (".csv", ".parquet"):
        ds.save(tmp_path / f"copy{suffix}")
        again = load_dataset(tmp_path / f"copy{suffix}", name="golden")
        assert again.cases == ds.cases, suffix
        assert again.version == ds.version, suffix


def test_csv_written_for_spreadsheets_is_safe_and_reads_back(tmp_path):
    ds = load_dataset(_jsonl(tmp_path / "golden.jsonl", CASES))
    ds.save(tmp_path / "golden.csv")
    text = (tmp_path / "golden.csv").read_text(encoding="utf-8-sig")
    header = text.splitlines()[0].split(",")
    assert "strata.query_type" in header and "strata.difficulty" in header
    assert "'=HYPERLINK" in text and ",'-5," in text  # neutralised for a spreadsheet
    assert load_dataset(tmp_path / "golden.csv").cases[1].input == "=HYPERLINK(\"http://x\")"


def test_version_ignores_row_order_and_follows_content(tmp_path):
    ds = load_dataset(_jsonl(tmp_path / "a.jsonl", CASES))
    assert load_dataset(_jsonl(tmp_path / "b.jsonl", CASES[::-1])).version == ds.version
    changed = [dict(CASES[0], expected="Within 14 days."), *CASES[1:]]
    assert load_dataset(_jsonl(tmp_path / "c.jsonl", changed)).version != ds.version
    docs = [*CASES[:2], dict(CASES[2], relevant_docs=["kb-1"])]
    assert load_dataset(_jsonl(tmp_path / "d.jsonl", docs)).version != ds.version


def test_version_is_the_hash_record_run_gives_the_same_cases(tmp_path):
    """Without relevant docs or metadata, an imported run of the same cases gets the same
    dataset_version as the dataset file, so the runs are comparable."""
    plain = [{k: v for k, v in c.items() if k != "relevant_docs"} for c in CASES]
    ds = load_dataset(_jsonl(tmp_path / "golden.jsonl", plain))
    run_id = Warehouse(tmp_path / "wh").record_run(
        {"name": "imported", "dataset": "golden"},
        [{k: v for k, v in c.items() if k != "strata" or v} for c in plain])
    with connect(tmp_path / "wh") as con:
        got = con.sql("SELECT dataset_version FROM runs WHERE run_id = $r",
                      params={"r": run_id}).fetchall()
    assert got == [(ds.version,)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_duplicate_case_id_names_file_and_both_lines(tmp_path, suffix):
    rows = [CASES[0], CASES[1], dict(CASES[2], case_id="c1")]
    path = tmp_path / f"golden{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, rows)
    else:
        path.write_text("case_id,input\nc1,a\nc2,b\nc1,c\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dataset(path)
    line, first = (3, 1) if suffix == ".jsonl" else (4, 2)  # CSV: line 1 is the header
    assert str(e.value) == \
        f"{path}:{line}, field 'case_id': duplicate case_id 'c1' (first on line {first})"


def test_missing_case_id_and_bad_fields_name_the_row(tmp_path):
    path = _jsonl(tmp_path / "g.jsonl", [CASES[0], {"input": "no id"}])
    with pytest.raises(DataError, match=r"g.jsonl:2, field 'case_id': is missing"):
        load_dataset(path)
    path = _jsonl(tmp_path / "h.jsonl", [dict(CASES[0], expeted="typo")])
    with pytest.raises(DataError, match=r"h.jsonl:1, field 'expeted': unknown field"):
        load_dataset(path)
    path = _jsonl(tmp_path / "i.jsonl", [dict(CASES[0], strata={"a": {"nested": 1}})])
    with pytest.raises(DataError, match=r"i.jsonl:1, field 'strata.a'"):
        load_dataset(path)
    pq.write_table(pa.table({"case_id": ["x", None], "input": ["a", "b"]}), tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p.parquet, row 1, field 'case_id': is missing"):
        load_dataset(tmp_path / "p.parquet")
    with pytest.raises(EvallibError, match=r"\.jsonl, \.csv or \.parquet"):
        load_dataset(tmp_path / "golden.txt")


def test_parquet_strata_columns_and_map_strata(tmp_path):
    pq.write_table(pa.table({"case_id": ["a", "b"], "input": ["q1", "q2"],
                             "strata.segment": ["pro", None]}), tmp_path / "cols.parquet")
    ds = load_dataset(tmp_path / "cols.parquet")
    assert [c.strata for c in ds] == [{"segment": "pro"}, {}]
    strata = pa.array([[("segment", "pro")], []], type=pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"case_id": ["a", "b"], "input": ["q1", "q2"], "strata": strata}),
                   tmp_path / "map.parquet")
    assert load_dataset(tmp_path / "map.parquet").version == ds.version


def test_each_version_is_stored_once_and_loads_back_exactly(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    cases = [Case("a", {"question": "q", "history": [1, 2]}, expected={"answer": 42},
                  strata={"k": "v"}, metadata={"source": "ticket-7"}),
             Case("b", "plain text", tags=("critical",), relevant_docs=("d1",))]
    ds = Dataset("support", cases)
    assert ds.store(wh) == ds.version
    ds.store(wh)
    assert len(wh.store.list_parts(S.DATASET_CASES, ds.version)) == 1
    back = load_version(ds.version, wh)
    assert back.cases == ds.cases and back.name == "support" and back.version == ds.version
    assert stored_versions(wh) == [ds.version]
    assert check(wh.store).healthy
    with connect(wh.store) as con:
        assert con.sql("SELECT count(*) FROM dataset_cases WHERE dataset_version = $v",
                       params={"v": ds.version}).fetchall() == [(2,)]
    with pytest.raises(EvallibError, match="not stored"):
        load_version("000000000000", wh)


def test_stratified_subset_keeps_every_stratum_in_proportion():
    cases = [Case(f"c{i}", f"q{i}", strata={"query_type": qt})
             for i, qt in enumerate(["billing"] * 60 + ["account"] * 30 + ["rare"] * 10)]
    ds = Dataset("golden", cases)
    sub = ds.subset(20, by=["query_type"], seed=3)
    counts = Counter(c.strata["query_type"] for c in sub)
    assert len(sub) == 20 and counts == {"billing": 12, "account": 6, "rare": 2}
    assert [c.case_id for c in sub] == sorted((c.case_id for c in sub),
                                              key=lambda s: int(s[1:]))  # file order
    assert sub.cases == ds.subset(20, by=["query_type"], seed=3).cases
    assert sub.cases != ds.subset(20, by=["query_type"], seed=4).cases
    assert sub.version != ds.version
    tiny = ds.subset(3, by=["query_type"], seed=0)
    assert {c.strata["query_type"] for c in tiny} == {"billing", "account", "rare"}
    assert ds.subset(500) is ds
    assert len(ds.subset(7, seed=1)) == 7
