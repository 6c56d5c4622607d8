"""Every page's answer comes first, in words, and nothing on a page rests on an emoji.

A real Streamlit runtime (AppTest) over the demo warehouse; expected findings come from the
demo's planted story (`evallib.demo`), not from the code under test.
"""

from __future__ import annotations

import json
import logging
import re

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_app

# Emoji need a font that servers and this machine's Chromium lack (they render as empty
# boxes). Text symbols such as ✓ → × ● are fine: ordinary fonts carry them.
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u2712\u2714-\u27BF\u2B00-\u2BFF"
                   "\u2300-\u23FF\uFE0F]")
PAGES = [("pages/runs.py", {}), ("pages/compare.py", {}), ("pages/slices.py", {}),
         ("pages/slices.py", {"source": "Online"}), ("pages/rag.py", {}),
         ("pages/rag.py", {"source": "Online"}), ("pages/trends.py", {}),
         ("pages/online.py", {}), ("pages/correlation.py", {})]


def _open(page: str, **params: str) -> AppTest:
    return open_app(None if page == "pages/runs.py" else page, timeout=90, **params)


def _shown_text(at: AppTest) -> list[str]:
    """Every string a reader sees: titles, text, alerts (and their icons), metric cards,
    picker labels and options, tabs, buttons, table headers and cells, chart specs."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success"):
        for e in getattr(at, kind):
            out.append(str(e.value))
            out.append(str(getattr(e, "icon", "") or ""))
    for m in at.metric:
        out += [m.label, str(m.value), str(m.proto.delta)]
    for w in (*at.selectbox, *at.multiselect):
        out += [w.label, *map(str, w.options)]
    for w in at.get("button_group"):
        out.append(str(w.proto))
    for t in at.tabs:
        out.append(t.label)
    for b in (*at.button, *at.get("download_button")):
        out.append(b.proto.label)
    for d in at.dataframe:
        frame = d.value
        out += [str(c) for c in frame.columns]
        for col in frame.columns:
            if frame[col].dtype == object:
                out += [str(v) for v in frame[col].tolist()]
    out += [c.proto.spec for c in at.get("plotly_chart")]
    return out


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


@pytest.mark.parametrize(("page", "params"), PAGES)
def test_no_emoji_on_any_page(demo_app: str, page: str, params: dict) -> None:
    at = _open(page, **params)
    found = sorted({m for text in _shown_text(at) for m in EMOJI.findall(text)})
    assert found == [], f"emoji on {page}: {found}"
    assert at.sidebar.button[0].proto.icon == ":material/refresh:"


def _alerts(at: AppTest) -> list[str]:
    return [str(e.value) for kind in ("error", "warning", "success", "info")
            for e in getattr(at, kind)]


def _baseline(root: str) -> tuple[str, str]:
    runs = pl.read_parquet(f"{root}/runs/*.parquet").sort("committed_at") \
        .group_by("run_id").last().sort("started_at", descending=True)
    return runs["run_id"][0], runs.slice(1).filter(pl.col("approved"))["run_id"][0]


def test_compare_names_the_planted_slice_first(demo_app: str) -> None:
    at = _open("pages/compare.py")
    verdict = at.error[0].value  # the first alert under the pickers
    assert verdict.startswith("**Worse in ")
    assert "**billing × hard**" in verdict and "after correction" in verdict
    link = next(e.proto for e in at.get("page_link") if "billing × hard" in e.proto.label)
    assert "case_slice=query_type%3Dbilling" in link.query_string
    assert "case_status=regressed" in link.query_string
    # the cases below open on that slice, its worst metric, regressions first
    assert at.selectbox(key="case_slice").value == "query_type=billing × difficulty=hard"
    assert at.selectbox(key="case_metric").value in ("correctness", "faithfulness")


def test_compare_without_a_drop_says_what_it_could_not_see(demo_app: str) -> None:
    cand, base = _baseline(demo_app)
    at = _open("pages/compare.py", candidate=base, baseline=base.replace(base, cand))
    assert at.error  # the swapped pair: the slice got better, nothing is worse overall …
    at = _open("pages/compare.py", candidate=cand, baseline=base, by="user_segment")
    text = (at.error or at.success)[0].value
    assert "after correction" in text


def test_a_picked_slice_opens_its_cases_without_a_state_warning(
        demo_app: str, caplog: pytest.LogCaptureFixture) -> None:
    """What a click on the slice table or a heatmap cell does (its callback sets the case
    pickers): Streamlit must not warn that a widget got a default and a state value."""
    from streamlit.elements.lib import policies

    policies._shown_default_value_warning = False  # once per process otherwise
    at = _open("pages/compare.py")
    at.session_state["case_slice"] = "query_type=technical × difficulty=easy"
    at.session_state["case_metric"] = "tone"
    with caplog.at_level(logging.WARNING):
        at.run()
    assert not at.exception
    assert at.selectbox(key="case_slice").value == "query_type=technical × difficulty=easy"
    assert at.selectbox(key="case_metric").value == "tone"
    assert not [r for r in caplog.records if "default value" in r.getMessage()]
    assert at.get("plotly_chart")[0].proto.spec  # the heatmap is drawn with its cells
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    cells = next(t for t in spec["data"] if (t.get("meta") or {}).get("role") == "cells")
    assert ["query_type=billing × difficulty=hard", "correctness"] in cells["customdata"]


def test_slices_rag_online_and_correlation_answer_first(demo_app: str) -> None:
    slices = _open("pages/slices.py").warning[0].value
    assert slices.startswith("Worst cell: **billing × hard**, correctness")
    rag = _alerts(_open("pages/rag.py"))
    assert any(a.startswith("Most failures are **") and "Against **" in a for a in rag)
    online = _alerts(_open("pages/online.py"))
    assert any(re.match(r"\*\*(No open alert|\d+ open alerts?)\*\*", a) for a in online)
    corr = _open("pages/correlation.py")
    months = corr.selectbox(key="month").options
    assert corr.selectbox(key="month").value == months[1]  # the last complete month


def test_the_case_panel_shows_both_sides(demo_app: str) -> None:
    at = _open("pages/compare.py", case_status="all")
    texts = [t.value for t in at.get("text")]
    row = at.dataframe[2].value.iloc[0]
    assert str(row["input"]) in texts and str(row["candidate output"]) in texts
    assert str(row["baseline output"]) in texts


def test_rag_online_lists_traces_whenever_it_counts_some(demo_app: str) -> None:
    """The failing-trace list is never empty when its class × slice has failing traces:
    every class, every slice of the split key."""
    at = _open("pages/rag.py", source="Online")
    per = next(d.value for d in at.dataframe if "share [95% CI]" in d.value.columns)
    key = at.selectbox(key="rag_key").value
    counts = {(r["stratum"], r["class"]): r["n"] for r in per.to_dict("records")}
    classes = ["all", "retrieval", "both", "generation", "other"]
    for cls in classes:
        for stratum in at.selectbox(key="rag_slice").options:
            at.segmented_control(key="rag_class").set_value(cls)
            at.selectbox(key="rag_slice").set_value(stratum)
            at.run()
            assert not at.exception
            listed = next(d.value for d in at.dataframe if "class" in d.value.columns
                          and d.value.columns[0] == "trace_id")
            expected = sum(n for (s, c), n in counts.items()
                           if (cls == "all" or c == cls) and stratum in ("All cases", s))
            assert (len(listed) > 0) == (expected > 0), (cls, key, stratum, expected)
            if cls != "all":
                assert set(listed["class"]) <= {cls}


def test_an_inconclusive_gate_is_not_called_passed() -> None:
    """The Compare page's gate sentence and table: a gate whose only non-passing row is
    inconclusive says so, and lists that row after failures and before waivers."""
    from datetime import datetime

    from pages._tables import gate_failures
    from pages._verdicts import _gate_sentence

    def gate(*statuses: str) -> pl.DataFrame:
        n = len(statuses)
        return pl.DataFrame({"created_at": [datetime(2026, 12, 1, 9)] * n, "status": statuses,
                             "rule": [f"r{i}" for i in range(n)], "slice": [None] * n,
                             "observed": [0.1] * n, "threshold": [0.05] * n, "n": [40] * n,
                             "p_adjusted": [0.2] * n, "message": ["m"] * n, "owner": [None] * n})

    text, failed = _gate_sentence(gate("pass", "inconclusive"))
    assert "inconclusive" in text and "passed" not in text and not failed
    assert _gate_sentence(gate("pass", "pass"))[0].startswith(" Release gate passed")
    assert _gate_sentence(gate("inconclusive", "fail"))[1]
    rows = gate_failures(gate("waived", "pass", "inconclusive", "fail"))
    assert rows["status"].to_list() == ["fail", "inconclusive", "waived"]
