"""Judge calibration (`evallib judge-check`, evallib.analysis.calibration): numbers checked
against the krippendorff package, statsmodels and scipy; a simulated calibrated judge and an
uncalibrated one told apart through a real warehouse; the flag's error rate by simulation;
the demo's drift-month judge fails while the others pass."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from evallib import Warehouse, connect
from evallib.analysis.calibration import calibrate, humans_agreement, judge_check
from evallib.cli import main
from evallib.stats.agreement import agreement_from_counts

TS = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _pairs(judge, human, kind: str, version: str = "j@1", length=None) -> pl.DataFrame:
    n = len(judge)
    return pl.DataFrame({
        "metric": ["m"] * n, "item": [f"t{i}" for i in range(n)], "labeler": ["ana"] * n,
        "human": np.asarray(human, float), "judge": np.asarray(judge, float), "kind": [kind] * n,
        "judge_version": [version] * n,
        "output_length": np.arange(n) if length is None else np.asarray(length)})


@pytest.mark.parametrize(("kind", "level"), [("binary", "nominal"), ("ordinal", "ordinal")])
def test_calibration_numbers_equal_krippendorff_statsmodels_and_scipy(kind: str, level: str):
    import krippendorff
    from scipy import stats
    from statsmodels.stats.inter_rater import cohens_kappa
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(3)
    if kind == "binary":
        human = (rng.random(300) < 0.7).astype(float)
        judge = np.where(rng.random(300) < 0.9, human, 1 - human)
    else:
        human = rng.integers(1, 6, 300).astype(float)
        judge = np.clip(human + rng.integers(-1, 2, 300), 1, 5)
    row = calibrate(_pairs(judge, human, kind), n_boot=300).row(0, named=True)
    assert row["n"] == 300
    assert row["alpha"] == pytest.approx(krippendorff.alpha(
        reliability_data=np.stack([judge, human]), level_of_measurement=level))
    values = np.unique(np.concatenate([judge, human]))
    table = np.zeros((len(values), len(values)))
    np.add.at(table, (np.searchsorted(values, judge), np.searchsorted(values, human)), 1)
    want = cohens_kappa(table, wt="linear" if kind == "ordinal" else None)
    assert row["kappa"] == pytest.approx(want.kappa)
    exact = float((judge == human).mean())
    assert row["exact"] == pytest.approx(exact)
    low, high = proportion_confint(round(exact * 300), 300, method="wilson")
    assert (row["exact_low"], row["exact_high"]) == pytest.approx((low, high))
    diff = judge - human
    ci = stats.ttest_1samp(diff, 0).confidence_interval()
    assert (row["bias"], row["bias_low"], row["bias_high"]) == pytest.approx(
        (diff.mean(), ci.low, ci.high))
    rho = stats.spearmanr(diff, np.arange(300)).statistic
    assert row["verbosity"] == pytest.approx(rho)
    assert row["alpha_low"] < row["alpha"] < row["alpha_high"]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_agreement_among_people_equals_the_package_with_missing_labels(level: str):
    """Items labelled by two to four of four raters (the rest missing)."""
    import krippendorff

    rng = np.random.default_rng(11)
    truth = rng.integers(1, 6, 120).astype(float)
    data = np.where(rng.random((4, 120)) < 0.8, truth, rng.integers(1, 6, (4, 120)))
    data = data.astype(float)
    data[rng.random((4, 120)) < 0.35] = np.nan
    rows = [{"item": f"i{u}", "labeler": f"r{r}", "value": data[r, u], "kind": kind}
            for r in range(4) for u in range(120) if not np.isnan(data[r, u])
            for kind in [{"nominal": "binary", "ordinal": "ordinal",
                          "interval": "continuous"}[level]]]
    got = humans_agreement(pl.DataFrame(rows), n_boot=300).row(0, named=True)
    rated = np.sum(~np.isnan(data), axis=0) >= 2
    assert got["items"] == int(rated.sum())
    assert got["alpha"] == pytest.approx(krippendorff.alpha(
        reliability_data=data, level_of_measurement=level))
    assert got["alpha_low"] < got["alpha"] < got["alpha_high"]


def _judged_warehouse(root, rng: np.random.Generator, n: int = 300) -> None:
    """n traces with a true 1-5 quality; a calibrated judge (v1) scores the first half, a
    careless one (v2) the second half; a person labels every trace."""
    truth = rng.integers(1, 6, n).astype(float)
    good = np.clip(truth + np.where(rng.random(n) < 0.15, rng.choice([-1, 1], n), 0), 1, 5)
    bad = np.clip(np.round(3 + 0.3 * (truth - 3) + rng.normal(0, 1.2, n)), 1, 5)
    ids = [f"t{i:03d}" for i in range(n)]
    wh = Warehouse(root)
    wh.record_online(
        traces=[{"trace_id": t, "timestamp": TS, "input": f"q{t}", "output": "x" * (20 + i)}
                for i, t in enumerate(ids)],
        scores=[{"trace_id": t, "timestamp": TS, "metric": "helpfulness",
                 "value": float(good[i] if i < n // 2 else bad[i]), "kind": "ordinal",
                 "scorer_version": "judge@v1" if i < n // 2 else "judge@v2"}
                for i, t in enumerate(ids)])
    wh.record_human_labels([{"trace_id": t, "metric": "helpfulness", "value": truth[i],
                             "labeler": "ana", "labeled_at": TS + timedelta(days=1)}
                            for i, t in enumerate(ids)])


def test_judge_check_tells_a_calibrated_judge_from_an_uncalibrated_one(tmp_path, capsys):
    _judged_warehouse(tmp_path, np.random.default_rng(1))
    assert main(["judge-check", "--metric", "helpfulness", "--json",
                 "--warehouse", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    by = {v["judge_version"]: v for v in report["versions"]}
    assert by["judge@v1"]["status"] == "calibrated" and by["judge@v1"]["alpha_low"] > 0.8
    assert by["judge@v2"]["status"] == "below" and by["judge@v2"]["alpha_high"] < 0.8
    assert by["judge@v1"]["n"] == by["judge@v2"]["n"] == 150
    assert sum(c[2] for c in by["judge@v1"]["confusion"]) == 150
    # the text report names both, with the flag in words
    assert main(["judge-check", "--metric", "helpfulness", "--warehouse", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "judge@v1" in text and "calibrated" in text and "below" in text
    assert "judge (rows) x human (columns)" in text


def test_judge_check_reads_a_sheet_without_importing_it(tmp_path, capsys):
    """--labels FILE: the same numbers as the warehouse's labels, and nothing stored."""
    _judged_warehouse(tmp_path, np.random.default_rng(2), n=60)
    with connect(tmp_path) as con:
        stored = con.sql("SELECT trace_id, metric, value, labeler FROM human_labels").pl()
    sheet = tmp_path / "labels.csv"
    with sheet.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trace_id", "metric", "value", "rater"])
        w.writerows(stored.rows())
    assert main(["judge-check", "--metric", "helpfulness", "--json",
                 "--warehouse", str(tmp_path)]) in (0, 1)
    from_warehouse = json.loads(capsys.readouterr().out)["versions"]
    other = tmp_path / "empty"
    other.mkdir()
    assert main(["judge-check", "--metric", "helpfulness", "--json", "--labels", str(sheet),
                 "--warehouse", str(tmp_path)]) in (0, 1)
    from_sheet = json.loads(capsys.readouterr().out)["versions"]
    assert from_sheet == from_warehouse


def test_judge_check_errors_name_the_problem(tmp_path, capsys):
    _judged_warehouse(tmp_path, np.random.default_rng(3), n=30)
    assert main(["judge-check", "--metric", "helpfulnes", "--warehouse", str(tmp_path)]) == 2
    assert "no scores of metric 'helpfulnes'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("trace_id,metric,value\nt000,helpfulness,maybe\n")
    assert main(["judge-check", "--metric", "helpfulness", "--labels", str(bad),
                 "--warehouse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2, field 'value': 'maybe' is not a number" in err and "Traceback" not in err


def test_no_labels_is_not_calibrated(tmp_path, capsys):
    Warehouse(tmp_path).record_online(
        traces=[{"trace_id": "t1", "timestamp": TS}],
        scores=[{"trace_id": "t1", "timestamp": TS, "metric": "m", "value": 1.0,
                 "kind": "binary"}])
    assert main(["judge-check", "--metric", "m", "--warehouse", str(tmp_path)]) == 1
    assert "nothing is calibrated" in capsys.readouterr().err


def test_the_flag_rarely_calls_a_judge_at_the_bar_calibrated():
    """A judge whose true alpha is 0.8 (on the bar) passes only when its interval clears
    0.8 by chance: at most ~2.5% of the time (one side of a 95% interval); one at 0.92 with
    the same n passes nearly always. 300 simulated label sets of 300 pass/fail labels."""
    rng = np.random.default_rng(0)

    def passed(flip: float) -> float:
        hits = 0
        for _ in range(300):
            human = (rng.random(300) < 0.5).astype(float)
            judge = np.where(rng.random(300) < flip, 1 - human, human)
            a = agreement_from_counts(judge, human, np.ones(300), "binary", n_boot=400,
                                      seed=int(rng.integers(1 << 30)), threshold=0.8)
            hits += a.status == "ok"
        return hits / 300

    at_bar = passed(0.10)  # alpha ≈ 1 - 0.1 / 0.5 = 0.80
    print("P(calibrated) at alpha 0.80:", at_bar)
    assert at_bar <= 0.06
    assert passed(0.04) >= 0.9  # alpha ≈ 0.92


def test_verbosity_bias_is_found_when_the_judge_favours_long_outputs():
    rng = np.random.default_rng(4)
    n = 400
    length = rng.integers(50, 2000, n)
    human = rng.integers(1, 6, n).astype(float)
    fair = np.clip(human + rng.integers(-1, 2, n), 1, 5)
    verbose = np.clip(human + (length > 1000) * rng.integers(0, 2, n), 1, 5)
    got = calibrate(pl.concat([_pairs(fair, human, "ordinal", "fair", length),
                               _pairs(verbose, human, "ordinal", "verbose", length)]),
                    n_boot=200)
    by = {r["judge_version"]: r for r in got.iter_rows(named=True)}
    assert by["verbose"]["verbose"] and by["verbose"]["verbosity_low"] > 0
    assert not by["fair"]["verbose"]
    assert by["verbose"]["bias"] > by["fair"]["bias"]


def test_on_the_demo_the_drift_months_judge_fails_and_the_others_pass(demo_root: str):
    scores = pl.read_parquet(f"{demo_root}/online_scores/*/*.parquet", hive_partitioning=True)
    versions = set(scores.filter(pl.col("metric") == "correctness")["scorer_version"])
    with connect(demo_root) as con:
        table, cells = judge_check(con, "correctness", n_boot=500)
    status = dict(table.select("judge_version", "status").iter_rows())
    assert set(status) == versions and len(versions) == 2
    drift = next(v for v in versions if "nano" in v)
    assert status.pop(drift) == "below"
    assert set(status.values()) == {"calibrated"}
    labels = pl.read_parquet(f"{demo_root}/human_labels/*.parquet")
    assert cells["n"].sum() == labels.height  # every demo label is of a judged trace
