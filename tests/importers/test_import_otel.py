"""`evallib import otel`: OTLP/JSON spans written by the OpenTelemetry SDK
(tests/fixtures/make_fixtures.py) become online traces, scores, feedback and retrievals
where the dashboard reads them; a second import adds nothing; bad files exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from evallib import connect, queries
from evallib.cli import main

OTEL = Path(__file__).parent.parent / "fixtures" / "otel"
LINES = OTEL / "traces.jsonl"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def _spans(path: Path = LINES) -> list[dict]:
    """Every span of the file, its attributes as a plain dict: the independent reading."""
    out = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in s["attributes"]}
                    out.append({**s, "attrs": attrs})
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> str:
    wh = str(tmp_path_factory.mktemp("otel") / "wh")
    code, out, err = _cli("import", "otel", str(LINES), "--warehouse", wh)
    assert code == 0, err
    for table, n in (("online_traces", 12), ("online_scores", 12), ("feedback", 5),
                     ("online_retrievals", 36)):
        assert f"{table}: {n} new, 0 replaced, 0 already present" in out
    return wh


def test_each_root_becomes_an_online_trace_with_its_fields(imported):
    spans = _spans()
    roots = {s["traceId"]: s for s in spans if not s.get("parentSpanId")}
    with connect(imported) as con:
        rows = {r["trace_id"]: r for r in
                con.sql("SELECT * FROM online_traces").pl().iter_rows(named=True)}
    assert set(rows) == set(roots)
    for trace_id, root in roots.items():
        row = rows[trace_id]
        start, end = int(root["startTimeUnixNano"]), int(root["endTimeUnixNano"])
        assert row["timestamp"] == datetime.fromtimestamp(start / 1e9, UTC)
        assert row["latency_ms"] == pytest.approx((end - start) / 1e6)
        assert row["input"] == root["attrs"]["input.value"]
        assert row["release"] == "v3.2"
        meta = json.loads(root["attrs"]["metadata"])
        assert dict(row["strata"]) == {"service": "support-bot", "environment": "prod",
                                       "provider": "openai", "model": "gpt-x-2026-10", **meta}
        mine = [s["attrs"] for s in spans if s["traceId"] == trace_id]
        tokens_in = sum(int(a.get("gen_ai.usage.input_tokens", 0)) +
                        int(a.get("llm.token_count.prompt", 0)) for a in mine)
        assert row["tokens_in"] == tokens_in
        assert row["cost_usd"] == pytest.approx(sum(a.get("llm.cost.total", 0) for a in mine))
    flagged = {(r["error"], r["refusal"], r["tool_error"]) for r in rows.values()
               if r["error"] or r["refusal"] or r["tool_error"]}
    assert flagged == {("generation timed out", False, False), (None, False, True),
                       (None, True, False)}
    refused = next(r for r in rows.values() if r["refusal"])
    assert refused["output"] == ""  # the content filter's empty answer, not a missing one


def test_the_online_pages_see_the_traces(imported):
    with connect(imported) as con:
        span = queries.online_date_range(con).row(0, named=True)
        releases = queries.online_releases(con, span["first_day"], span["last_day"])
        metrics = queries.online_metrics(con)
        keys = queries.online_strata_keys(con)
        daily = queries.online_daily(con, "relevance", span["first_day"], span["last_day"])
    assert (span["first_day"], span["last_day"]) == (date(2026, 11, 18), date(2026, 11, 20))
    assert releases.select("release", "n_traces").rows() == [("v3.2", 12)]
    assert metrics.select("metric", "kind", "n_scores").rows() == [("relevance", "continuous",
                                                                     12)]
    assert set(keys["key"]) == {"service", "environment", "provider", "model", "query_type",
                                "segment"}
    assert daily["n"].sum() == 12


def test_evaluation_events_become_scores_and_feedback_events_feedback(imported):
    spans = _spans()
    evals = {s["traceId"]: {a["key"]: next(iter(a["value"].values())) for a in e["attributes"]}
             for s in spans for e in s.get("events", []) if e["name"] == "gen_ai.evaluation.result"}
    with connect(imported) as con:
        scores = con.sql("SELECT trace_id, metric, value, passed, rationale, strata_json "
                         "FROM online_scores").pl()
        feedback = con.sql("SELECT trace_id, timestamp, kind, value, comment, user_id "
                           "FROM feedback ORDER BY timestamp").pl()
    assert scores.height == len(evals) == 12
    for r in scores.iter_rows(named=True):
        e = evals[r["trace_id"]]
        assert (r["metric"], r["value"]) == ("relevance", e["gen_ai.evaluation.score.value"])
        assert r["passed"] == (e["gen_ai.evaluation.score.label"] == "relevant")
        assert e["gen_ai.evaluation.explanation"] in r["rationale"]
        assert json.loads(r["strata_json"])["service"] == "support-bot"  # sliceable
    assert feedback["kind"].to_list().count("thumbs") == 4
    rating = feedback.filter(feedback["kind"] == "rating").row(0, named=True)
    assert (rating["value"], rating["comment"]) == (4.0, "quick and right")
    events = sorted(int(e["timeUnixNano"]) for s in spans for e in s.get("events", [])
                    if e["name"] == "user_feedback")
    assert [t.timestamp() for t in feedback["timestamp"]] == [t / 1e9 for t in events]


def test_retrieval_spans_in_both_conventions_become_ranked_documents(imported):
    expected = {}
    for s in _spans():
        a = s["attrs"]
        if "gen_ai.retrieval.documents" in a:
            expected[s["traceId"]] = [d["id"] for d in json.loads(a["gen_ai.retrieval.documents"])]
        elif a.get("openinference.span.kind") == "RETRIEVER":
            expected[s["traceId"]] = [a[f"retrieval.documents.{i}.document.id"] for i in range(3)]
    with connect(imported) as con:
        rows = con.sql("SELECT trace_id, rank, doc_id FROM online_retrievals "
                       "ORDER BY trace_id, rank").pl()
    got = {}
    for r in rows.iter_rows(named=True):
        got.setdefault(r["trace_id"], []).append((r["rank"], r["doc_id"]))
    assert got == {t: list(enumerate(ids, start=1)) for t, ids in expected.items()}
    assert len(expected) == 12


def test_one_export_document_imports_like_the_lines(tmp_path, imported):
    wh = str(tmp_path / "wh")
    code, out, _ = _cli("import", "otel", str(OTEL / "traces.json"), "--warehouse", wh)
    assert code == 0 and "online_traces: 12 new, 0 replaced, 0 already present" in out
    query = "SELECT * EXCLUDE (date) FROM online_traces ORDER BY trace_id"
    with connect(wh) as a, connect(imported) as b:
        assert a.sql(query).pl().equals(b.sql(query).pl())


def test_importing_again_adds_nothing(imported):
    before = _files(imported)
    for path in (LINES, OTEL / "traces.json"):  # the same spans, as lines or one document
        code, out, _ = _cli("import", "otel", str(path), "--warehouse", imported)
        assert code == 0
        for table, n in (("online_traces", 12), ("online_scores", 12), ("feedback", 5),
                         ("online_retrievals", 36)):
            assert f"{table}: 0 new, 0 replaced, {n} already present" in out
    assert _files(imported) == before


def test_a_trace_whose_root_is_not_in_the_file_is_left_out(tmp_path):
    """Spans of a trace may arrive in several files: only a trace with its root is whole."""
    lines = LINES.read_text().splitlines()
    first_root = next(s for s in _spans() if not s.get("parentSpanId"))
    kept = []
    for line in lines:
        doc = json.loads(line)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                ss["spans"] = [s for s in ss["spans"] if s["spanId"] != first_root["spanId"]]
        kept.append(json.dumps(doc))
    path = tmp_path / "partial.jsonl"
    path.write_text("\n".join(kept) + "\n")
    wh = str(tmp_path / "wh")
    code, out, _ = _cli("import", "otel", str(path), "--warehouse", wh)
    assert code == 0 and "online_traces: 11 new" in out
    assert "1 traces without their root span" in out
    with connect(wh) as con:
        ids = set(con.sql("SELECT trace_id FROM online_traces").pl()["trace_id"])
        orphans = con.sql("SELECT count(*) AS n FROM online_retrievals WHERE trace_id = $t",
                          params={"t": first_root["traceId"]}).pl()["n"][0]
    assert first_root["traceId"] not in ids and orphans == 0


def test_a_metric_judged_twice_keeps_the_latest_verdict(tmp_path):
    def rejudge(span: dict) -> None:
        span.setdefault("events", []).append({
            "timeUnixNano": str(int(span["endTimeUnixNano"]) + 10**12),
            "name": "gen_ai.evaluation.result",
            "attributes": [{"key": "gen_ai.evaluation.name", "value": {"stringValue":
                                                                       "relevance"}},
                           {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue":
                                                                              0.5}}]})

    path = _lines_with(tmp_path, rejudge)
    wh = str(tmp_path / "wh")
    assert _cli("import", "otel", path, "--warehouse", wh)[0] == 0
    trace_id = json.loads(Path(path).read_text().splitlines()[0])[
        "resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    with connect(wh) as con:
        scores = con.sql("SELECT trace_id, value FROM online_scores").pl()
    assert scores.height == 12
    assert scores.filter(scores["trace_id"] == trace_id)["value"].to_list() == [0.5]


def _lines_with(tmp_path: Path, edit) -> str:
    """The fixture with one span edited (``edit(span)``, the first span of line 1)."""
    lines = LINES.read_text().splitlines()
    doc = json.loads(lines[0])
    edit(doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join([json.dumps(doc), *lines[1:]]) + "\n")
    return str(path)


def _event(name: str, attrs: dict[str, str] | None = None) -> dict:
    return {"timeUnixNano": "1795000001000000000", "name": name,
            "attributes": [{"key": k, "value": {"stringValue": v}}
                           for k, v in (attrs or {}).items()]}


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "traces.jsonl"
    path.write_text(text)
    return str(path)


BAD = [
    (lambda t: _write(t, LINES.read_text() + "{oops\n"), ":7", "invalid JSON"),
    (lambda t: str(Path(__file__).parent.parent / "fixtures" / "promptfoo" / "results.json"),
     ":1, field 'resourceSpans'", "expected an OTLP/JSON trace export"),
    (lambda t: _write(t, '{"resourceLogs": []}\n'), ":1, field 'resourceSpans'",
     "this is OTLP logs, not traces"),
    (lambda t: _lines_with(t, lambda s: s.update(traceId="xyz")),
     ":1, field 'resourceSpans[0].scopeSpans[0].spans[0].traceId'",
     "'xyz' is not a 16-byte id"),
    (lambda t: _lines_with(t, lambda s: s.update(startTimeUnixNano="soon")),
     "field 'resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano'", "nanoseconds"),
    (lambda t: _lines_with(t, lambda s: s.setdefault("events", []).append(
        _event("gen_ai.evaluation.result"))),
     "spans[0].events[0], field 'gen_ai.evaluation.name'", "is required"),
    (lambda t: _lines_with(t, lambda s: s.setdefault("events", []).append(
        _event("user_feedback", {"feedback.kind": "smile"}))),
     "field 'feedback.kind'", "'smile' is not one of thumbs"),
    (lambda t: _write(t, "\n\n"), "traces.jsonl", "no exports"),
]


@pytest.mark.parametrize(("make", "where", "words"), BAD)
def test_a_file_that_is_not_otlp_traces_exits_2_naming_it(tmp_path, make, where, words):
    wh = tmp_path / "wh"
    path = make(tmp_path)
    code, out, err = _cli("import", "otel", path, "--warehouse", str(wh))
    assert code == 2 and out == ""
    assert path in err and where in err and words in err
    assert not wh.exists() or not _files(str(wh))
