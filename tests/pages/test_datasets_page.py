"""The Datasets page and `evallib datasets`: a golden set's versions over time, its growth
per month (promoted vs written by hand), a diff of two versions with the changed fields,
its strata mix beside production, and which runs used which version. A hand-made warehouse
whose answers are known, and the demo in a real Streamlit runtime (AppTest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from evallib import Dataset, Warehouse
from evallib.cli import main
from tests.apptest import open_app

V1 = [{"case_id": "c1", "input": "Refund?", "expected": "30 days", "strata": {"t": "billing"}},
      {"case_id": "c2", "input": "Reset password", "expected": "Settings",
       "strata": {"t": "account"}},
      {"case_id": "c3", "input": "Old question", "expected": "Gone", "strata": {"t": "account"}}]
V2 = [V1[0] | {"expected": "30 days, prorated"}, V1[1],
      {"case_id": "p1", "input": "Why was I charged twice?", "strata": {"t": "billing"},
       "tags": ["promoted", "promoted:tr-9"]},
      {"case_id": "h1", "input": "Export my data", "expected": "Settings > Export",
       "strata": {"t": "account"}}]


def _run(wh: Warehouse, run_id: str, day: int, month: int, version: str, cases: list) -> None:
    wh.record_run({"run_id": run_id, "name": run_id, "dataset": "support",
                   "dataset_version": version,
                   "started_at": datetime(2026, month, day, tzinfo=UTC)},
                  cases=[{k: c[k] for k in ("case_id", "input", "expected", "strata", "tags")
                          if k in c} for c in cases])


def _warehouse(root: Path) -> tuple[str, str, str]:
    """v1 stored and run in January; v2 (one answer corrected, one case dropped, one
    promoted and one hand-written case) stored and run twice in March; v3 only run (an
    imported run: its cases come from the run) in April, adding one case."""
    wh = Warehouse(root)
    v1, v2 = Dataset("support", V1).store(wh), Dataset("support", V2).store(wh)
    _run(wh, "jan", 5, 1, v1, V1)
    _run(wh, "mar-a", 2, 3, v2, V2)
    _run(wh, "mar-b", 9, 3, v2, V2)
    v3 = "imported-v3"
    _run(wh, "apr", 1, 4, v3, [*V2, {"case_id": "h2", "input": "Delete account",
                                     "strata": {"t": "account"}}])
    return v1, v2, v3


def test_evallib_datasets_lists_versions_growth_and_runs(tmp_path, capsys):
    v1, v2, v3 = _warehouse(tmp_path)
    assert main(["datasets", "--json", "--warehouse", str(tmp_path)]) == 0
    (d,) = json.loads(capsys.readouterr().out)["datasets"]
    assert d["dataset"] == "support"
    got = [(v["dataset_version"], v["n_cases"], v["added"], v["added_promoted"], v["removed"],
            v["changed"], v["n_runs"], v["stored"]) for v in d["versions"]]
    assert got == [(v1, 3, 0, 0, 0, 0, 1, True), (v2, 4, 2, 1, 1, 1, 2, True),
                   (v3, 5, 1, 0, 0, 0, 1, False)]
    assert d["versions"][1]["date"].startswith("2026-03-02")
    assert d["growth"] == [{"month": "2026-03", "promoted": 1, "hand_written": 1},
                           {"month": "2026-04", "promoted": 0, "hand_written": 1}]
    assert {(r["run_id"], r["dataset_version"]) for r in d["runs"]} == {
        ("jan", v1), ("mar-a", v2), ("mar-b", v2), ("apr", v3)}
    assert main(["datasets", "--warehouse", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "support: 3 versions, 4 runs" in text and "no (from its first run)" in text


def test_a_diff_names_added_removed_and_changed_cases_with_their_fields(tmp_path, capsys):
    v1, v2, v3 = _warehouse(tmp_path)
    assert main(["datasets", "--json", "--diff", v1, v2, "--warehouse", str(tmp_path)]) == 0
    cases = json.loads(capsys.readouterr().out)["diff"]["cases"]
    assert [(c["change"], c["case_id"], c["fields"]) for c in cases] == [
        ("added", "h1", []), ("added", "p1", []), ("changed", "c1", ["expected"]),
        ("removed", "c3", [])]
    changed = cases[2]
    assert (changed["old_expected"], changed["expected"]) == ("30 days", "30 days, prorated")
    # a stored version against one known from its run: text compares as text
    assert main(["datasets", "--json", "--diff", v2, v3, "--warehouse", str(tmp_path)]) == 0
    cases = json.loads(capsys.readouterr().out)["diff"]["cases"]
    assert [(c["change"], c["case_id"]) for c in cases] == [("added", "h2")]
    assert main(["datasets", "--diff", v1, "nope", "--warehouse", str(tmp_path)]) == 2
    assert "no dataset version 'nope'" in capsys.readouterr().err


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


_open = partial(open_app, "pages/datasets.py", timeout=60)


def test_the_datasets_page_on_the_demo(demo_app: str):
    runs = pl.read_parquet(f"{demo_app}/runs/*.parquet")
    stored = pl.read_parquet(f"{demo_app}/dataset_cases/*/*.parquet", hive_partitioning=True)
    versions = runs.group_by("dataset_version").agg(pl.col("started_at").min()) \
        .sort("started_at")["dataset_version"].to_list()
    assert len(versions) >= 2 and set(versions) == set(stored["dataset_version"])
    at = _open()
    metrics = {m.label: m.value for m in at.metric}
    newest = stored.filter(pl.col("dataset_version") == versions[-1])
    assert metrics["Versions"] == str(len(versions))
    assert metrics["Cases now"] == str(newest.height)
    promoted = newest.filter(pl.col("tags").list.contains("promoted")).height
    assert metrics["Promoted from production"] == str(promoted) and promoted > 0
    # the answer first: the newest version, what it changed, and whether it has been run
    before = set(stored.filter(pl.col("dataset_version") == versions[-2])["case_id"])
    added = set(newest["case_id"]) - before
    n_runs = runs.filter(pl.col("dataset_version") == versions[-1]).height
    (verdict,) = at.info[:1]
    assert verdict.value.startswith(f"**support-golden** is at version `{versions[-1]}`: "
                                    f"{newest.height:,} cases, {len(added)} added (")
    assert verdict.value.endswith(f"{n_runs} run{'s' if n_runs != 1 else ''} used it.")
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    growth = {t["name"]: sum(t["y"]) for t in charts["growth_chart"]["data"]}
    first = set(stored.filter(pl.col("dataset_version") == versions[0])["case_id"])
    assert growth["promoted from production"] == promoted
    assert growth["promoted from production"] + growth["written by hand"] == \
        newest.height - len(first)
    assert charts["versions_chart"]["data"][0]["y"] == [
        stored.filter(pl.col("dataset_version") == v).height for v in versions]
    # the default diff: the newest version against the one before it
    diff = at.dataframe[1].value
    assert set(diff.loc[diff["change"] == "added", "case_id"]) == added
    assert set(diff.loc[diff["change"] == "changed", "changed fields"]) <= {"expected"}
    assert "mix_chart" in charts
    assert len(at.dataframe[3].value) == runs["run_id"].n_unique()


def test_picking_two_versions_shows_their_diff(demo_app: str):
    stored = pl.read_parquet(f"{demo_app}/dataset_cases/*/*.parquet", hive_partitioning=True)
    runs = pl.read_parquet(f"{demo_app}/runs/*.parquet")
    versions = runs.group_by("dataset_version").agg(pl.col("started_at").min()) \
        .sort("started_at")["dataset_version"].to_list()
    at = _open(new=versions[-1], old=versions[0])
    diff = at.dataframe[1].value
    first = set(stored.filter(pl.col("dataset_version") == versions[0])["case_id"])
    last = set(stored.filter(pl.col("dataset_version") == versions[-1])["case_id"])
    assert set(diff.loc[diff["change"] == "added", "case_id"]) == last - first
    assert any(f"{versions[0]} → {versions[-1]}" in m.value for m in at.markdown)
