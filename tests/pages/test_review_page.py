"""The Review page in a real Streamlit runtime (AppTest) over a copy of the demo warehouse:
label, skip, undo, blind by default, the signed-in rater, a run's cases, and the agreement
and calibration section. Expected values come from the Parquet files read with polars."""

from __future__ import annotations

import csv
import shutil
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from evallib.cli import main
from tests.apptest import open_app


@pytest.fixture
def root(demo_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A copy: the page writes labels."""
    copy = str(tmp_path / "warehouse")
    shutil.copytree(demo_root, copy)
    monkeypatch.setenv("EVALLIB_WAREHOUSE", copy)
    return copy


_open = partial(open_app, "pages/review.py", timeout=60)


def _labels(root: str) -> pl.DataFrame:
    return pl.read_parquet(f"{root}/human_labels/*.parquet")


def _progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def _current(at: AppTest) -> str:
    """The trace (or case) on screen, from the item's caption."""
    caption = next(c.value for c in at.caption if c.value.startswith(("trace `", "run `")))
    return caption.split("`")[1] if caption.startswith("trace") else caption.split("`")[3]


def _click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_without_a_name_the_page_asks_for_one(root: str):
    at = _open()
    assert any("Type your name" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("value_")]
    at.text_input(key="rater").set_value("ana.new").run()
    assert _progress(at).startswith("**0 of 20** labelled")


def test_label_skip_and_undo_write_what_review_import_accepts(root: str, tmp_path: Path,
                                                              capsys):
    before = _labels(root).height
    at = _open(rater="zoe", n="5", metric="correctness", source="Online")
    first = _current(at)
    # blind: the judge's rationale is not on the page until the rater answers
    assert not any(i.value.startswith("Judge (") for i in at.info)
    at.text_input(key=f"note_{first}").set_value("close call")
    _click(at, "value_1")
    assert _progress(at).startswith("**1 of 5** labelled")
    assert any(f"you said **Pass · 1** for `{first}`" in i.value for i in at.info)
    second = _current(at)
    _click(at, "skip")
    third = _current(at)
    assert third not in (first, second)
    _click(at, "value_0")
    labels = _labels(root)
    mine = labels.filter(pl.col("labeler") == "zoe").sort("labeled_at")
    assert labels.height == before + 2
    assert mine.select("trace_id", "metric", "value", "note").rows() == [
        (first, "correctness", 1.0, "close call"), (third, "correctness", 0.0, None)]
    # undo takes the last label back; its item is on screen again
    _click(at, "undo")
    assert _current(at) == third and _progress(at).startswith("**1 of 5** labelled")
    with __import__("evallib").connect(root) as con:
        assert con.sql("SELECT count(*) FROM human_labels WHERE labeler = 'zoe'") \
            .fetchall() == [(1,)]
    # what the page wrote, as a sheet, is accepted and deduplicated by `review import`
    sheet = tmp_path / "labels.csv"
    with sheet.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trace_id", "metric", "value", "rater"])
        w.writerow([first, "correctness", "1", "zoe"])
    capsys.readouterr()
    assert main(["review", "import", str(sheet), "--warehouse", root]) == 0
    assert "imported 0 new labels, replaced 0 changed ones (0 rows without a value, 1 " \
        "already stored)" in capsys.readouterr().out
    # the skipped item comes back once the others are done
    for _ in range(3):
        _click(at, "value_1")
    assert _current(at) == second


def test_the_judge_is_shown_on_request_and_the_signed_in_user_is_the_rater(root: str):
    at = _open(user={"is_logged_in": True, "email": "pat@example.com"}, n="3",
               metric="correctness", source="Online")
    assert any("pat@example.com" in c.value for c in at.caption)
    assert not [t for t in at.text_input if t.key == "rater"]
    item = _current(at)
    at.toggle(key="show_judge").set_value(True).run()
    shown = [i.value for i in at.info if i.value.startswith("Judge (")]
    scores = pl.read_parquet(f"{root}/online_scores/*/*.parquet", hive_partitioning=True)
    judge = scores.filter((pl.col("trace_id") == item) & (pl.col("metric") == "correctness"))
    assert shown and judge["scorer_version"][0] in shown[0]
    assert f"**{judge['value'][0]:g}**" in shown[0]
    _click(at, "value_0")
    assert _labels(root).filter(pl.col("labeler") == "pat@example.com").height == 1


def test_a_runs_cases_are_labelled_on_the_metrics_own_scale(root: str):
    runs = pl.read_parquet(f"{root}/runs/*.parquet").sort("started_at")
    run = runs["run_id"][-1]
    at = _open(rater="zoe", source="Offline", run=run, metric="faithfulness", n="4")
    assert [b.key for b in at.button if b.key and b.key.startswith("value_")] == [
        f"value_{v}" for v in range(1, 6)]  # the 1-5 scale
    assert any(c.value.startswith(f"run `{run}`") for c in at.caption)
    case = _current(at)
    _click(at, "value_4")
    got = _labels(root).filter(pl.col("labeler") == "zoe")
    assert got.select("trace_id", "run_id", "case_id", "metric", "value").rows() == [
        (None, run, case, "faithfulness", 4.0)]


def test_agreement_and_calibration_on_the_demo(root: str):
    at = _open(rater="zoe", metric="correctness", source="Online",
               tab="Agreement and calibration")
    assert not [b for b in at.button if b.key and b.key.startswith("value_")]  # not computed
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["People with each other · reliable"]) > 0.8
    table = at.dataframe[-2].value  # the calibration table, then the confusion table
    status = dict(zip(table["judge version"], table["status"], strict=True))
    drift = next(v for v in status if "nano" in v)
    assert "below" in status.pop(drift)
    assert all("calibrated" in s for s in status.values())
    labels = _labels(root)
    confusion = at.dataframe[-1].value
    version = at.selectbox(key="confusion_version").value
    assert version in table["judge version"].to_list()
    n = int(table.set_index("judge version").loc[version, "n"])
    assert int(confusion.drop(columns="judge said").to_numpy().sum()) == n
    assert n < labels.height
