"""Human review sheets out and labels in; failing production traces promoted to golden cases."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from evallib import Warehouse, connect, load_dataset
from evallib.authoring.datasets import load_version
from evallib.cli import main

TS = datetime(2026, 3, 2, 9, tzinfo=UTC)
SEGMENTS = ["smb"] * 12 + ["enterprise"] * 3 + ["free"] * 3


def _traffic(root) -> None:
    """18 judged traces; every third fails correctness; t16 and t17 ask what t1 asked."""
    inputs = {i: f"Question {i} from bo{i}@corp.com" for i in range(18)}
    inputs[1] = "How do I get a refund?"
    inputs[16] = "  how do I get a REFUND  "
    inputs[17] = "How do I get a refund?!"
    inputs[4] = '=HYPERLINK("http://evil", "click")'
    Warehouse(root).record_online(
        traces=[{"trace_id": f"t{i:02d}", "timestamp": TS, "input": inputs[i],
                 "output": f"answer {i}", "strata": {"segment": s, "query_type": "billing"}}
                for i, s in enumerate(SEGMENTS)],
        scores=[row for i in range(18) for row in (
            {"trace_id": f"t{i:02d}", "timestamp": TS, "metric": "correctness",
             "value": float(i % 3 != 1), "kind": "binary", "rationale": f"judge says {i}"},
            {"trace_id": f"t{i:02d}", "timestamp": TS, "metric": "helpfulness",
             "value": 4.0, "kind": "ordinal", "passed": True})],
    )


def _sheet(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def _write_sheet(path, rows) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_review_sample_writes_a_safe_labelling_sheet(tmp_path, capsys):
    _traffic(tmp_path)
    out = tmp_path / "labels.csv"
    args = ["review", "sample", "--n", "18", "--since", "2026-03-01", "--out", str(out),
            "--warehouse", str(tmp_path)]
    assert main(args) == 0
    rows = _sheet(out)
    assert list(rows[0]) == ["trace_id", "metric", "strata", "input", "output", "judge_score",
                             "judge_rationale", "value", "rater", "note"]
    assert len(rows) == 36 and {r["metric"] for r in rows} == {"correctness", "helpfulness"}
    assert all(r["value"] == "" and r["rater"] == "" for r in rows)
    t04 = next(r for r in rows if r["trace_id"] == "t04")
    assert t04["input"] == "'=HYPERLINK(\"http://evil\", \"click\")"  # shown as text
    assert t04["strata"] == "query_type=billing × segment=smb"
    assert main(args) == 2  # never over a sheet someone may be filling in
    assert "exists" in capsys.readouterr().err


def test_stratified_review_sample_reaches_rare_strata(tmp_path):
    _traffic(tmp_path)
    out = tmp_path / "labels.csv"
    assert main(["review", "sample", "--n", "6", "--stratified", "--by", "segment",
                 "--metric", "correctness", "--since", "2026-03-01", "--out", str(out),
                 "--warehouse", str(tmp_path)]) == 0
    rows = _sheet(out)
    assert len(rows) == 6 and {r["metric"] for r in rows} == {"correctness"}
    segments = Counter(r["strata"].split("segment=")[1] for r in rows)
    assert segments == {"smb": 2, "enterprise": 2, "free": 2}  # 12/3/3 in the traffic


def test_review_import_stores_labels_and_is_idempotent(tmp_path, capsys):
    _traffic(tmp_path)
    out = tmp_path / "labels.csv"
    assert main(["review", "sample", "--n", "4", "--metric", "correctness", "--since",
                 "2026-03-01", "--out", str(out), "--warehouse", str(tmp_path)]) == 0
    rows = _sheet(out)
    rows[0]["value"], rows[1]["value"], rows[1]["rater"] = "yes", "0", "bob"
    rows[2]["value"], rows[2]["note"] = "1", "borderline"  # rows[3] left for later
    _write_sheet(out, rows)
    capsys.readouterr()
    args = ["review", "import", str(out), "--rater", "ana", "--warehouse", str(tmp_path)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == \
        "imported 3 new labels, replaced 0 changed ones (1 rows without a value, 0 already " \
        "stored)"
    with connect(tmp_path) as con:
        got = con.sql("SELECT trace_id, metric, value, labeler, note FROM human_labels "
                      "ORDER BY trace_id").pl().rows()
    assert got == [(rows[0]["trace_id"], "correctness", 1.0, "ana", None),
                   (rows[1]["trace_id"], "correctness", 0.0, "bob", None),
                   (rows[2]["trace_id"], "correctness", 1.0, "ana", "borderline")]
    assert main(args) == 0
    assert "imported 0 new labels, replaced 0 changed ones (1 rows without a value, 3 already " \
        "stored)" in capsys.readouterr().out
    # An edited label replaces the rater's earlier one: readers see the newer value only.
    rows[2]["value"] = "0"
    _write_sheet(out, rows)
    assert main(args) == 0
    assert "imported 0 new labels, replaced 1 changed ones (1 rows without a value, 2 already " \
        "stored)" in capsys.readouterr().out
    with connect(tmp_path) as con:
        assert con.sql("SELECT value, note FROM human_labels WHERE trace_id = $t",
                       params={"t": rows[2]["trace_id"]}).fetchall() == [(0.0, "borderline")]
    # Labelled traces are not offered again.
    assert main(["review", "sample", "--n", "50", "--metric", "correctness", "--since",
                 "2026-03-01", "--out", str(tmp_path / "next.csv"),
                 "--warehouse", str(tmp_path)]) == 0
    assert len(_sheet(tmp_path / "next.csv")) == 15


@pytest.mark.parametrize(("change", "message"), [
    ({"value": "maybe"}, "labels.csv:3, field 'value': 'maybe' is not a number or yes/no"),
    ({"value": "3"}, "labels.csv:3, field 'value': 'correctness' is binary: the label must "
                     "be 0/1 or yes/no, not 3"),
    ({"trace_id": "t99"}, "labels.csv:3, field 'trace_id': 't99' is not a trace in the "
                          "warehouse"),
    ({"metric": ""}, "labels.csv:3, field 'metric': is empty"),
    ({"rater": ""}, "labels.csv:3, field 'rater': is empty; fill it or pass --rater NAME"),
])
def test_review_import_refuses_a_bad_row_by_line_and_field(tmp_path, capsys, change, message):
    _traffic(tmp_path)
    out = tmp_path / "labels.csv"
    assert main(["review", "sample", "--n", "3", "--metric", "correctness", "--since",
                 "2026-03-01", "--out", str(out), "--warehouse", str(tmp_path)]) == 0
    rows = _sheet(out)
    for r in rows:
        r.update(value="1", rater="ana")
    rows[1].update(change)
    _write_sheet(out, rows)
    capsys.readouterr()
    assert main(["review", "import", str(out), "--warehouse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(message) and "Traceback" not in err
    with connect(tmp_path) as con:  # all or nothing
        assert con.sql("SELECT count(*) FROM human_labels").fetchall() == [(0,)]


GOLDEN = [{"case_id": "g1", "input": "Where is my invoice?", "expected": "Billing > Invoices",
           "strata": {"segment": "smb"}}]


def test_promote_appends_failing_traces_deduplicated_redacted_with_provenance(tmp_path, capsys):
    _traffic(tmp_path / "wh")
    golden = tmp_path / "golden.jsonl"
    original = json.dumps(GOLDEN[0], indent=None) + "\n"
    golden.write_text(original, encoding="utf-8")
    before = load_dataset(golden).version
    args = ["promote", "--failing", "--since", "2026-03-01", "--dataset", str(golden),
            "--metric", "correctness", "--warehouse", str(tmp_path / "wh")]
    assert main(args) == 0
    out = capsys.readouterr().out
    ds = load_dataset(golden)
    new = ds.cases[1:]
    # failing: t01 t04 t07 t10 t13 t16; t16 asks t01's question (normalised): one case.
    assert [c.case_id for c in new] == ["prod-t01", "prod-t04", "prod-t07", "prod-t10",
                                        "prod-t13"]
    assert golden.read_text(encoding="utf-8").startswith(original)  # kept byte for byte
    t07 = new[2]
    assert t07.input == "Question 7 from [EMAIL]" and t07.expected is None
    assert t07.strata == {"segment": "smb", "query_type": "billing"}
    assert t07.tags == ("promoted", "promoted:t07")
    assert t07.metadata["failed_metrics"] == ["correctness"]
    assert t07.metadata["judge_rationale"] == "judge says 7"
    assert t07.metadata["failing_output"] == "answer 7"
    assert f"version {before} -> {ds.version}" in out and "+ prod-t07" in out
    assert "6 failing traces; 5 new cases, 0 already promoted, 1 with an input" in out
    assert load_version(ds.version, Warehouse(tmp_path / "wh")).cases == ds.cases
    assert main(args) == 0  # the same traces again: nothing new, no new version
    out = capsys.readouterr().out
    assert "0 new cases, 5 already promoted, 1 with an input already in the set" in out
    assert load_dataset(golden).version == ds.version


def test_promote_into_csv_dry_run_and_limit(tmp_path, capsys):
    _traffic(tmp_path / "wh")
    golden = tmp_path / "golden.csv"
    golden.write_text("case_id,input,expected,strata.segment\ng1,Where is my invoice?,x,smb\n",
                      encoding="utf-8")
    before = golden.read_bytes()
    base = ["promote", "--failing", "--since", "2026-03-01", "--dataset", str(golden),
            "--warehouse", str(tmp_path / "wh")]
    assert main([*base, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("dry run: 6 failing traces; 5 new cases")
    assert golden.read_bytes() == before
    assert main([*base, "--limit", "2"]) == 0
    ds = load_dataset(golden)
    assert [c.case_id for c in ds] == ["g1", "prod-t01", "prod-t04"]
    assert ds.cases[2].input == '=HYPERLINK("http://evil", "click")'  # safe in the file
    assert "'=HYPERLINK" in golden.read_text(encoding="utf-8-sig")
    with pytest.raises(SystemExit) as e:  # --failing says what to promote: required
        main(["promote", "--since", "2026-03-01", "--dataset", str(golden)])
    assert e.value.code == 2
