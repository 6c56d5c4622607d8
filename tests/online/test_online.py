"""Online: sampling shared by every process, redaction, the buffered recorder (including a
SIGKILL), feedback, and `evallib score-online`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evallib import Warehouse, connect
from evallib.cli import main
from evallib.errors import EvallibError
from evallib.online import (
    BufferedRecorder,
    Redactor,
    Sampler,
    feedback_rows,
    luhn_ok,
    record_feedback,
    redact,
)
from evallib.warehouse import schema as S

ROOT = Path(__file__).resolve().parents[2]
IDS = [f"trace-{i:05d}" for i in range(4000)]


# --- sampling ----------------------------------------------------------------------------------


def test_sampling_decisions_are_identical_in_other_processes():
    sampler = Sampler(0.05, per_stratum={"segment": {"enterprise": 0.2}})
    here = "".join("1" if sampler(t, {"segment": "enterprise" if i % 3 == 0 else "smb"})
                   else "0" for i, t in enumerate(IDS))
    code = textwrap.dedent("""
        from evallib.online import Sampler
        s = Sampler(0.05, per_stratum={"segment": {"enterprise": 0.2}})
        ids = [f"trace-{i:05d}" for i in range(4000)]
        print("".join("1" if s(t, {"segment": "enterprise" if i % 3 == 0 else "smb"})
                      else "0" for i, t in enumerate(ids)))""")
    for seed in ("1", "2"):  # Python's own str hash differs per process; ours must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=ROOT, check=True).stdout.strip()
        assert out == here


def test_sampling_rates_per_stratum_and_nesting():
    low, high = Sampler(0.05), Sampler(0.2)
    kept_low = {t for t in IDS if low(t)}
    kept_high = {t for t in IDS if high(t)}
    assert kept_low <= kept_high  # a trace kept at 5% is kept at 20%: one hash, two cuts
    # 4000 fixed ids: the counts are fixed; the bounds are 6 binomial sd wide.
    assert abs(len(kept_low) - 200) < 6 * (4000 * 0.05 * 0.95) ** 0.5
    assert abs(len(kept_high) - 800) < 6 * (4000 * 0.2 * 0.8) ** 0.5
    s = Sampler(0.05, per_stratum={"segment": {"enterprise": 1.0}, "tier": {"gold": 0.5}})
    assert all(s(t, {"segment": "enterprise"}) for t in IDS[:100])
    assert s.rate_for({"segment": "smb", "tier": "gold"}) == 0.5
    assert s.rate_for({}) == 0.05
    assert {t for t in IDS if Sampler(0.05, salt="b")(t)} != kept_low
    with pytest.raises(EvallibError, match="between 0 and 1"):
        Sampler(1.5)
    with pytest.raises(EvallibError, match=r"per_stratum\['segment'\]\['x'\]"):
        Sampler(0.1, per_stratum={"segment": {"x": -0.1}})


# --- redaction ----------------------------------------------------------------------------------

REDACTED = [
    ("write to jane.doe+billing@example.co.uk today", "write to [EMAIL] today"),
    ("J_SMITH@Mail.Example.COM", "[EMAIL]"),
    ("call +1 (555) 123-4567 now", "call [PHONE] now"),
    ("555-123-4567", "[PHONE]"),
    ("(555) 123 4567", "[PHONE]"),
    ("+44 20 7946 0958", "[PHONE]"),
    ("mobile: +4915123456789.", "mobile: [PHONE]."),
    ("555.123.4567", "[PHONE]"),
    ("card 4111 1111 1111 1111 expired", "card [CARD] expired"),
    ("4111-1111-1111-1111", "[CARD]"),
    ("4111111111111111", "[CARD]"),
    ("amex 3782 822463 10005", "amex [CARD]"),
    ("378282246310005", "[CARD]"),
    ("a@b.io and 555-123-4567 and 5500 0000 0000 0004", "[EMAIL] and [PHONE] and [CARD]"),
]
KEPT = [
    "4111 1111 1111 1112",  # fails the Luhn check
    "1234567812345678",  # 16 digits, not a card number
    "on 2024-01-15 at 12:30:45",
    "server 192.168.1.1",
    "version 1.2.3 and v10.20.30",
    "ISBN 978-3-16-148410-0",
    "order #12345678",
    "costs $1,234.56",
    "1 000 000 000 users",
    "user@localhost",
    "@support on twitter",
    "zip 12345-6789",
    "card ending in 0005",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_redaction_replaces_personal_data(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_redaction_keeps_what_is_not_personal_data(text):
    assert redact(text) == text


def test_redaction_is_extensible_and_reaches_into_json():
    r = Redactor({"EMPLOYEE_ID": r"\bEMP-\d{6}\b"}, phones=False)
    assert r("EMP-123456 at 555-123-4567") == "[EMPLOYEE_ID] at 555-123-4567"
    value = {"q": "mail me: a@b.com", "history": ["4111 1111 1111 1111", 3]}
    assert r.value(value) == {"q": "mail me: [EMAIL]", "history": ["[CARD]", 3]}
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    with pytest.raises(EvallibError, match="UPPER_SNAKE_CASE"):
        Redactor({"lower": "x"})
    with pytest.raises(EvallibError, match="BAD"):
        Redactor({"BAD": "("})


# --- the recorder --------------------------------------------------------------------------------


def _rows(root, sql: str):
    with connect(root) as con:
        return con.sql(sql).pl()


def test_recorder_flushes_by_size_redacts_and_close_flushes_the_rest(tmp_path):
    rec = BufferedRecorder(tmp_path, max_batch=10, flush_interval=3600)
    for i in range(25):
        assert rec.record(f"t{i:02d}", input=f"I am x{i}@corp.com", output="ok",
                          strata={"segment": "smb"}, retrieved=["d1", "d2"], cited=["d2"],
                          relevant=["d1"], latency_ms=12.5)
    _wait(lambda: rec.stats.written == 20)  # two full batches, with no timer involved
    rec.close()
    stats = rec.stats
    assert (stats.sampled, stats.written, stats.batches, stats.dropped) == (25, 25, 3, 0)
    traces = _rows(tmp_path, "SELECT * FROM online_traces ORDER BY trace_id")
    assert traces.height == 25 and traces["input"][3] == "I am [EMAIL]"
    assert traces["strata"][0] == {"segment": "smb"}
    docs = _rows(tmp_path, "SELECT doc_id, rank, relevant, cited FROM online_retrievals "
                           "WHERE trace_id = 't00' ORDER BY rank")
    assert docs.rows() == [("d1", 1, True, False), ("d2", 2, False, True)]
    assert not rec.record("late", input="q", output="a")  # closed: dropped, not raised
    assert rec.stats.dropped == 1


def test_recorder_flushes_by_time_and_skips_unsampled(tmp_path):
    keep = Sampler(0.5)
    rec = BufferedRecorder(tmp_path, sampler=keep, max_batch=1000, flush_interval=0.05)
    queued = [rec.record(t, input="q", output="a") for t in IDS[:200]]
    _wait(lambda: rec.stats.written == sum(queued))  # the timer flushed, no close yet
    assert sum(queued) == sum(keep(t) for t in IDS[:200])
    assert rec.stats.skipped == 200 - sum(queued)
    rec.close()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    entered, release = threading.Event(), threading.Event()
    rec = BufferedRecorder(tmp_path, max_batch=1, flush_interval=3600, max_queue=5)
    real = rec.warehouse

    class Stuck:  # a storage outage: the writer thread hangs in its first write
        def record_online(self, **tables):
            entered.set()
            release.wait(30)
            return real.record_online(**tables)

    rec.warehouse = Stuck()
    assert rec.record("t-first", input="q", output="a")
    assert entered.wait(30)
    results = [rec.record(f"t{i}", input="q", output="a") for i in range(12)]
    assert results == [True] * 5 + [False] * 7  # the queue holds 5; the rest are dropped
    assert rec.stats.dropped == 7
    release.set()
    rec.close()
    assert rec.stats.written == 6
    assert _rows(tmp_path, "SELECT count(*) AS n FROM online_traces")["n"][0] == 6


def test_errors_are_logged_not_raised_and_bad_items_cost_only_themselves(tmp_path, caplog):
    rec = BufferedRecorder(tmp_path, max_batch=100, flush_interval=3600)
    assert rec.record("good-1", input="q", output="a")
    assert rec.record("typo", input="q", output="a", latency=5)  # unknown field
    assert rec.record("negative", input="q", output="a", latency_ms=-1)  # refused by schema
    assert rec.record("good-2", input="q", output="a")
    assert rec.feedback("good-1", rating=9)  # out of range
    assert rec.feedback("good-1", thumbs=False)
    assert rec.flush()
    ids = _rows(tmp_path, "SELECT trace_id FROM online_traces ORDER BY 1")["trace_id"]
    assert ids.to_list() == ["good-1", "good-2"]
    assert rec.stats.rejected == 3 and rec.stats.feedback == 1
    assert "unknown trace fields: latency" in caplog.text
    assert "latency_ms" in caplog.text and "a rating is a number from 1 to 5" in caplog.text

    class Broken:
        def record_online(self, **tables):
            raise OSError("disk full")

    rec.warehouse = Broken()
    assert rec.record("lost", input="q", output="a")
    assert rec.flush()
    assert rec.stats.lost == 1 and "disk full" in caplog.text
    rec.close()


_CHILD = """
import sys
import threading
from evallib.online import BufferedRecorder

LOCK = threading.Lock()  # two threads print: keep each line whole

def say(line):
    with LOCK:
        print(line, flush=True)

def flushed(stats):
    say(f"flushed {stats.written}")

rec = BufferedRecorder(sys.argv[1], max_batch=20, flush_interval=0.05, max_queue=200,
                       on_flush=flushed)
i = 0
while True:
    if rec.record(f"t{i:07d}", input=f"question {i} from a{i}@corp.com", output="answer"):
        say(f"queued {i}")
    i += 1
"""


def test_a_killed_service_loses_at_most_its_buffer_and_no_file_is_corrupt(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(_CHILD)
    root = tmp_path / "wh"
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    flushed, queued = 0, set()

    def read(line: str) -> None:
        nonlocal flushed
        what, n = line.split()
        if what == "flushed":
            flushed = int(n)
        else:
            queued.add(f"t{int(n):07d}")

    try:
        for line in proc.stdout:
            read(line)
            if flushed >= 300:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        rest = proc.communicate()[0]
    for line in rest.splitlines():  # what it printed before the signal landed
        read(line)
    assert main(["check", "--tmp-age", "0", "--warehouse", str(root)]) == 0
    for part in Warehouse(root).store.all_parts(S.ONLINE_TRACES):
        pq.read_table(part)  # every file that is visible is whole
    ids = _rows(root, "SELECT trace_id FROM online_traces")["trace_id"]
    assert ids.n_unique() == ids.len() >= flushed  # what was reported flushed is there
    assert set(ids.to_list()) <= queued
    assert len(queued) - ids.len() <= 200 + 20  # lost at most the queue and one batch
    assert "corp.com" not in "".join(
        _rows(root, "SELECT input FROM online_traces")["input"].to_list())


# --- feedback ----------------------------------------------------------------------------------


def test_feedback_rows_and_record_feedback(tmp_path):
    rows = feedback_rows("t1", thumbs=True, rating=4, edit=("kitten", "sitting"),
                         comment="call me on 555-123-4567", user_id="u1")
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["thumbs"]["value"] == 1.0 and by_kind["rating"]["value"] == 4.0
    assert by_kind["edit"]["value"] == pytest.approx(3 / 7)  # Levenshtein 3 over length 7
    assert by_kind["edit"]["comment"] == "sitting"
    assert by_kind["comment"]["comment"] == "call me on [PHONE]"
    assert feedback_rows("t1", thumbs=False)[0]["value"] == 0.0
    assert feedback_rows("t1", edit=("same", "same"))[0]["value"] == 0.0
    assert record_feedback(tmp_path, "t1", thumbs=False, user_id="u2") == 1
    fb = _rows(tmp_path, "SELECT trace_id, kind, value, user_id FROM feedback")
    assert fb.rows() == [("t1", "thumbs", 0.0, "u2")]
    for bad in ({"rating": 0}, {"rating": True}, {}):
        with pytest.raises(EvallibError):
            feedback_rows("t1", **bad)


# --- score-online ---------------------------------------------------------------------------


def _traffic(root) -> None:
    ts = datetime(2026, 3, 2, 9, tzinfo=UTC)
    Warehouse(root).record_online(
        traces=[{"trace_id": f"t{i}", "timestamp": ts, "input": f"q{i}", "output": f"a{i}",
                 "strata": {"segment": "smb"}} for i in range(4)],
        retrievals=[{"trace_id": f"t{i}", "timestamp": ts, "doc_id": d, "rank": r,
                     "relevant": d == "good", "cited": r == 1}
                    for i in range(4) for r, d in enumerate(["good", "bad"] if i % 2
                                                            else ["bad", "good"], start=1)])


def test_score_online_scores_only_what_is_not_scored_yet_without_a_judge(tmp_path, capsys):
    _traffic(tmp_path)
    args = ["score-online", "--since", "2026-03-01", "--scorers", "recall@1,mrr",
            "--warehouse", str(tmp_path)]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == ["recall@1: 4 scored, 0 unscored",
                                                    "mrr: 4 scored, 0 unscored"]
    scores = _rows(tmp_path, "SELECT trace_id, metric, value, strata_json FROM online_scores "
                             "WHERE metric = 'mrr' ORDER BY trace_id")
    assert scores["value"].to_list() == [0.5, 1.0, 0.5, 1.0]
    assert scores["strata_json"][0] == '{"segment":"smb"}'
    assert main(args) == 0  # nothing left to score
    assert capsys.readouterr().out == ""
    assert _rows(tmp_path, "SELECT count(*) AS n FROM online_scores")["n"][0] == 8
    assert main(["score-online", "--since", "2026-03-01", "--scorers", "nope",
                 "--warehouse", str(tmp_path)]) == 2
    assert "unknown scorer 'nope'" in capsys.readouterr().err
    assert main(["score-online", "--since", "2026-03-01", "--scorers", "judge_reference",
                 "--warehouse", str(tmp_path)]) == 2
    assert "pass --judge-model" in capsys.readouterr().err


def test_score_online_with_an_llm_judge(tmp_path, capsys, monkeypatch):
    from tests.openai_server import OpenAIServer, Reply

    _traffic(tmp_path / "wh")
    module = tmp_path / "my_online_judges.py"
    module.write_text(textwrap.dedent("""
        from evallib.scorers import Judge, judge_rubric
        LEVELS = {1: "no help", 2: "little", 3: "some", 4: "most", 5: "fully answers"}
        scorers = [judge_rubric(Judge("judge-1", max_retries=0),
                                {"helpfulness": {"question": "Does it help?", "levels": LEVELS}},
                                pass_at=4)]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reply = Reply.json({"verdicts": [{"criterion": "helpfulness", "reason": "clear",
                                      "score": 4}]})
    with OpenAIServer(reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        assert main(["score-online", "--since", "2026-03-01", "--scorers",
                     "my_online_judges:scorers", "--warehouse", str(tmp_path / "wh")]) == 0
        assert server.count == 4
        assert capsys.readouterr().out.strip() == "helpfulness: 4 scored, 0 unscored"
        # A judge factory by name gets Judge(--judge-model); with no reference to compare
        # against, online traces are unscored, with the reason, and no request is made.
        assert main(["score-online", "--since", "2026-03-01", "--scorers", "judge_reference",
                     "--judge-model", "judge-2", "--warehouse", str(tmp_path / "wh")]) == 0
        assert server.count == 4
    assert capsys.readouterr().out.strip() == "correctness: 0 scored, 4 unscored"
    rows = _rows(tmp_path / "wh", "SELECT metric, value, passed, rationale, scorer_version "
                                  "FROM online_scores ORDER BY metric, trace_id")
    assert rows.filter(rows["metric"] == "helpfulness")["passed"].to_list() == [True] * 4
    assert "judge-1" in rows["scorer_version"][4]
    assert rows["rationale"][0].startswith("unscored: the case has no reference answer")


def _wait(condition, timeout: float = 30.0) -> None:
    """Poll for a background effect (not a timing assertion: it only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_recorder_scores_and_json_inputs(tmp_path):
    from evallib.scorers import exact_match

    score = exact_match().make(1, rationale="ok")
    with BufferedRecorder(tmp_path, flush_interval=3600) as rec:
        rec.record("t1", input={"question": "q", "email": "a@b.com"}, output="a",
                   scores=[score, {"metric": "latency_ok", "value": 1, "kind": "binary"}],
                   timestamp=datetime(2026, 1, 5, tzinfo=UTC))
    trace = _rows(tmp_path, "SELECT input, date FROM online_traces").row(0, named=True)
    assert json.loads(trace["input"]) == {"question": "q", "email": "[EMAIL]"}
    assert str(trace["date"]) == "2026-01-05"
    scores = _rows(tmp_path, "SELECT metric, value, scorer_version FROM online_scores "
                             "ORDER BY metric")
    assert scores.rows() == [("exact_match", 1.0, exact_match().scorer_version),
                             ("latency_ok", 1.0, None)]
