"""`evallib alerts --notify` and `evallib gate --notify` against a real HTTP server on
127.0.0.1 (tests/webhook_server.py): both wire formats, what a message says, retries and
giving up, sending once per state, and webhook URLs kept secret everywhere."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from evallib import Warehouse, connect
from evallib.cli import main
from evallib.errors import EvallibError
from evallib.notify import Settings, Target, resolve_targets
from evallib.notify.config import fingerprint, load_settings
from evallib.notify.send import post, scrub
from tests.webhook_server import webhook

LAST = date(2026, 3, 31)
TOKEN = "T0AAA/B0BBB/s3cr3tW3bh00kT0k3n"  # what a Slack webhook path holds
DASHBOARD = "https://evals.example.com"


def _traffic(days: int, spike_last: bool, seed: int = 0, last: date = LAST
             ) -> tuple[list[dict], list[dict]]:
    """300 traces a day ending ``last``; on a spiked last day errors jump to 20% and
    correctness drops by 0.3."""
    rng = np.random.default_rng(seed)
    traces, scores = [], []
    for d in range(days):
        day = last - timedelta(days=days - 1 - d)
        spike = spike_last and day == last
        for i in range(300):
            ts = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(seconds=i)
            tid = f"t{day:%m%d}-{i}-{seed}"
            traces.append({
                "trace_id": tid, "timestamp": ts, "release": "r1", "variant": "control",
                "strata": {"topic": "billing" if i % 2 else "account"},
                "latency_ms": float(rng.lognormal(7.3, 0.3)),
                "cost_usd": float(rng.lognormal(-7.5, 0.2)),
                "error": "timeout" if rng.random() < (0.2 if spike else 0.004) else None,
                "refusal": bool(rng.random() < 0.02), "tool_error": False})
            ok = rng.random() < 0.85 - (0.3 if spike else 0)
            scores.append({"trace_id": tid, "timestamp": ts, "metric": "correctness",
                           "kind": "binary", "value": float(ok), "passed": bool(ok)})
    return traces, scores


@pytest.fixture
def spiked(tmp_path: Path) -> str:
    root = str(tmp_path / "wh")
    Warehouse(root).record_online(*_traffic(21, spike_last=True))
    return root


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An evallib.toml in the working directory with fast retries; no dashboard URL, no
    webhooks from the environment unless a test sets them."""
    monkeypatch.chdir(tmp_path)
    for var in ("EVALLIB_DASHBOARD_URL", "EVALLIB_WEBHOOKS", "EVALLIB_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "evallib.toml"
    path.write_text("[notify]\nattempts = 3\nbackoff_seconds = 0.01\ntimeout_seconds = 5\n")
    return path


def _sent(root: str) -> list[dict]:
    with connect(root) as con:
        return con.sql("SELECT * FROM notifications ORDER BY sent_at").pl().to_dicts()


# --- alerts ----------------------------------------------------------------------------------


def test_alerts_post_slack_messages_that_say_what_moved(spiked: str, config: Path, capsys,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("EVALLIB_DASHBOARD_URL", DASHBOARD + "/")
    with webhook() as hook:
        assert main(["alerts", "--warehouse", spiked, "--notify",
                     "slack:" + hook.url(f"/services/{TOKEN}")]) == 1
    bodies = {b["blocks"][0]["text"]["text"]: b for b in hook.bodies()}
    assert len(bodies) == len(hook.requests) >= 2  # one message per open alert
    assert all(r.headers["Content-Type"] == "application/json" for r in hook.requests)
    errors = next(b for t, b in bodies.items() if t.startswith("Alert: error rate rose"))
    assert errors["text"].startswith("Alert: error rate rose since 2026-03-31")
    section = errors["blocks"][1]["text"]["text"]
    assert "on 2026-03-31 against" in section and "points)" in section  # by how much
    assert "Since 2026-03-31 (1 day flagged)" in section
    assert "one-sided p = " in section and "n = 300 on 2026-03-31" in section
    quality = next(b for t, b in bodies.items() if "correctness (online score)" in t)
    link = quality["blocks"][2]["elements"][0]["text"]
    assert link == (f"<{DASHBOARD}/online?days=2026-03-17&amp;days=2026-03-31"
                    "&amp;metric=correctness|Open in the dashboard> · evallib")
    assert "2 sent, 0 failed" in capsys.readouterr().err


def test_the_generic_json_body_follows_its_schema(spiked: str, config: Path) -> None:
    with webhook() as hook:
        assert main(["alerts", "--warehouse", spiked, "--notify", "json:" + hook.url()]) == 1
    body = next(b for b in hook.bodies() if b["subject"] == "alert:error_rate@2026-03-31")
    assert set(body) == {"schema", "id", "event", "subject", "state", "title", "text", "link",
                         "created_at", "alert", "gate"}
    assert (body["schema"], body["event"], body["state"]) == (
        "evallib.notification/1", "alert.open", "open")
    assert body["link"] is None and body["gate"] is None  # no dashboard URL configured
    a = body["alert"]
    assert (a["signal"], a["direction"], a["first_day"], a["days"], a["n"], a["change_unit"]) \
        == ("error_rate", "up", "2026-03-31", 1, 300, "points")
    assert a["change"] == pytest.approx(a["observed"] - a["baseline"]) and a["change"] > 0.1
    assert 0 < a["p_value"] < a["alpha"] == 0.001
    assert re.match(r"error rate rose: \d+\.\d\d% on 2026-03-31 against \d\.\d\d% over the 14 "
                    r"days before \(\+\d+\.\d points\)$", body["text"].splitlines()[0])


def test_an_alert_is_sent_once_per_state_and_its_end_is_told(spiked: str, config: Path,
                                                             capsys) -> None:
    with webhook() as hook:
        notify = ["--notify", "json:" + hook.url()]
        assert main(["alerts", "--warehouse", spiked, *notify]) == 1
        first = len(hook.requests)
        assert main(["alerts", "--warehouse", spiked, *notify]) == 1  # cron runs again
        assert len(hook.requests) == first
        assert f"0 sent, 0 failed, {first} already sent" in capsys.readouterr().err
        # One more ordinary day: the alerts close, and the same targets hear so once.
        traces, scores = _traffic(1, spike_last=False, seed=9, last=LAST + timedelta(days=1))
        Warehouse(spiked).record_online(traces, scores)
        assert main(["alerts", "--warehouse", spiked, *notify]) == 0
        closed = hook.bodies()[first:]
        assert len(closed) == first and {b["event"] for b in closed} == {"alert.closed"}
        assert all(b["title"].startswith("Resolved: ") for b in closed)
        assert main(["alerts", "--warehouse", spiked, *notify]) == 0
        assert len(hook.requests) == 2 * first
        # A new target was never told of the start: it does not hear of the end either.
        assert main(["alerts", "--warehouse", spiked, "--notify",
                     "json:" + hook.url("/other")]) == 0
        assert len(hook.requests) == 2 * first
    log = _sent(spiked)
    assert [r["status"] for r in log] == ["sent"] * 2 * first
    assert {(r["state"], r["format"]) for r in log} == {("open", "json"), ("closed", "json")}
    assert all(r["target"] == fingerprint(hook.url()) for r in log)


def test_429_and_5xx_are_retried_with_backoff(spiked: str, config: Path, monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("evallib.notify.send.time.sleep", waits.append)
    with webhook() as hook:
        hook.script = [(503, {}, "busy"), (429, {"Retry-After": "0.05"}, "slow down")]
        assert main(["alerts", "--warehouse", spiked, "--notify", "json:" + hook.url()]) == 1
    first = [r for r in _sent(spiked) if r["attempts"] > 1]
    assert len(first) == 1 and first[0]["status"] == "sent" and first[0]["attempts"] == 3
    assert waits[0] == pytest.approx(0.01, rel=0.25) and waits[1] == pytest.approx(0.05)
    assert len(hook.requests) == 3 + len(_sent(spiked)) - 1


def test_giving_up_keeps_the_exit_code_and_the_alert_and_retries_next_run(
        spiked: str, config: Path, capsys) -> None:
    with webhook() as hook:
        hook.script = [(500, {}, "down")] * 100
        assert main(["alerts", "--warehouse", spiked, "--notify", "json:" + hook.url()]) == 1
        err = capsys.readouterr().err
        assert "HTTP 500 Internal Server Error: down (gave up after 3 attempts)" in err
        failed = _sent(spiked)
        assert {r["status"] for r in failed} == {"failed"} and len(failed) >= 2
        assert {r["attempts"] for r in failed} == {3} and {r["http_status"]
                                                          for r in failed} == {500}
        with connect(spiked) as con:  # the alerts themselves were recorded as usual
            assert con.sql("SELECT count(*) FROM alerts WHERE status = 'open'").fetchall() \
                == [(len(failed),)]
        hook.script = []  # the receiver is back: the next run delivers what failed
        assert main(["alerts", "--warehouse", spiked, "--notify", "json:" + hook.url()]) == 1
    assert [r["status"] for r in _sent(spiked)] == ["failed"] * len(failed) + [
        "sent"] * len(failed)


def test_a_4xx_is_not_retried_and_no_server_at_all_is_given_up(config: Path) -> None:
    settings = Settings(attempts=3, backoff_seconds=0.01)
    with webhook() as hook:
        hook.script = [(404, {}, "no_service")]
        d = post(Target("t", "slack", hook.url()), {"text": "x"}, settings)
        assert (d.sent, d.attempts, d.http_status) == (False, 1, 404)
        assert d.reason == "HTTP 404 Not Found: no_service"
        gone = hook.url()
    d = post(Target("t", "json", gone), {"text": "x"}, settings)  # the server has stopped
    assert (d.sent, d.attempts, d.http_status) == (False, 3, None)
    assert d.reason.startswith("no response: ") and "gave up after 3 attempts" in d.reason


def test_a_redirect_is_refused_not_followed(config: Path) -> None:
    with webhook() as hook, webhook() as elsewhere:
        hook.script = [(302, {"Location": elsewhere.url()}, "")]
        d = post(Target("t", "json", hook.url()), {"text": "x"}, Settings(attempts=2))
    assert (d.sent, d.attempts, d.http_status) == (False, 1, 302)
    assert elsewhere.requests == []


# --- secrets ---------------------------------------------------------------------------------


def _everything_stored(root: str) -> str:
    """Every value of every Parquet file in the warehouse, as text, and the raw bytes."""
    out = []
    for path in Path(root).rglob("*"):
        if path.is_file():
            out.append(path.read_bytes().decode("latin-1"))
            if path.suffix == ".parquet":
                out.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
    return "\n".join(out)


def test_webhook_urls_are_never_printed_logged_or_stored(spiked: str, config: Path, capsys,
                                                         caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook() as hook:
        secret = hook.url(f"/services/{TOKEN}")
        hook.echo_path = True  # its error pages quote the path, token and all
        hook.script = [(500, {}, "oops")] * 3 + [(403, {}, "invalid_token")]
        config.write_text(config.read_text() + '\n[[notify.targets]]\nname = "team"\n'
                          'format = "slack"\nurl_env = "TEAM_HOOK"\n')
        env_run = ["alerts", "--warehouse", spiked, "--notify", "team"]
        import os

        os.environ["TEAM_HOOK"] = secret
        try:
            assert main(env_run) == 1
            assert main(["alerts", "--warehouse", spiked, "--json", "--notify", secret]) == 1
            assert main(["alerts", "--warehouse", spiked, "--notify", "env:TEAM_HOOK"]) == 1
        finally:
            del os.environ["TEAM_HOOK"]
    out = capsys.readouterr()
    printed = out.out + out.err + caplog.text
    assert "oops for [webhook]" in out.err  # the reason is told, the path is not
    assert "oops for [webhook]" in caplog.text  # and logged (evallib.notify)
    stored = _everything_stored(spiked)
    for part in (TOKEN, "s3cr3tW3bh00kT0k3n", secret):
        assert part not in printed and part not in stored
    targets = {r["target"] for r in _sent(spiked)}
    assert targets == {"team", fingerprint(secret)}
    assert "team" in repr(Target("team", "slack", secret)) and secret not in repr(
        Target("team", "slack", secret))


@pytest.mark.parametrize("value", [
    "ftp://hooks.example.com/s3cr3tW3bh00kT0k3n", "https:///s3cr3tW3bh00kT0k3n",
    "slack:notaurl/s3cr3tW3bh00kT0k3n"])
def test_a_bad_webhook_is_exit_2_without_echoing_it(spiked: str, config: Path, capsys,
                                                    value: str) -> None:
    assert main(["alerts", "--warehouse", spiked, "--notify", value]) == 2
    err = capsys.readouterr().err
    assert "s3cr3tW3bh00kT0k3n" not in err and "Traceback" not in err
    assert not (Path(spiked) / "alerts").exists()  # refused before any work


def test_scrub_removes_the_url_and_its_parts() -> None:
    url = f"https://user:pw@hooks.example.com/services/{TOKEN}?key=abc123xyz"
    text = f"failed {url} at /services/{TOKEN} with key=abc123xyz (s3cr3tW3bh00kT0k3n)"
    clean = scrub(text, url)
    assert "s3cr3t" not in clean and "abc123xyz" not in clean and "user:pw" not in clean


# --- configuration ---------------------------------------------------------------------------


def test_targets_from_evallib_toml_and_the_environment(config: Path, monkeypatch) -> None:
    config.write_text(config.read_text() + """
[[notify.targets]]
name = "alerts-channel"
url_env = "ALERTS_HOOK"
events = ["alerts"]

[[notify.targets]]
name = "releases"
format = "json"
url = "https://ci.example.com/hooks/releases"
events = ["gate"]
""")
    monkeypatch.setenv("ALERTS_HOOK", "https://hooks.slack.com/services/" + TOKEN)
    monkeypatch.setenv("EVALLIB_WEBHOOKS", "json:http://127.0.0.1:9/a https://hooks.slack.com/x")
    every = resolve_targets([""], "alerts")
    assert [(t.name, t.format) for t in every] == [
        ("alerts-channel", "slack"), (fingerprint("http://127.0.0.1:9/a"), "json"),
        (fingerprint("https://hooks.slack.com/x"), "slack")]
    assert [t.name for t in resolve_targets([""], "gate")][0] == "releases"
    assert [t.name for t in resolve_targets(["releases", "releases"], "alerts")] == [
        "releases"]  # named explicitly: sent, once
    monkeypatch.delenv("ALERTS_HOOK")
    assert [t.name for t in resolve_targets(["releases"], "gate")] == ["releases"]
    with pytest.raises(EvallibError, match="ALERTS_HOOK is not set"):
        resolve_targets([""], "alerts")
    with pytest.raises(EvallibError, match="no target of that name .* releases"):
        resolve_targets(["relases"], "gate")
    monkeypatch.setenv("EVALLIB_DASHBOARD_URL", "not a url")
    with pytest.raises(EvallibError, match="EVALLIB_DASHBOARD_URL"):
        load_settings()


@pytest.mark.parametrize(("text", "words"), [
    ("[notify]\nretries = 3\n", "[notify]: unknown key 'retries'"),
    ("[notify]\nattempts = 0\n", "attempts must be a number of at least 1"),
    ('[[notify.targets]]\nformat = "slack"\nurl = "https://x.example/h"\n', "'name' is required"),
    ('[[notify.targets]]\nname = "a"\nformat = "teams"\nurl = "https://x.example/h"\n',
     "format must be slack or json"),
    ('[[notify.targets]]\nname = "a"\n', "give exactly one of url and url_env"),
    ("[notify\n", "not readable TOML"),
])
def test_a_bad_evallib_toml_is_exit_2_naming_the_file(spiked: str, config: Path, capsys,
                                                      text: str, words: str) -> None:
    config.write_text(text)
    assert main(["alerts", "--warehouse", spiked, "--notify"]) == 2
    err = capsys.readouterr().err
    assert "evallib.toml" in err and words in err and "Traceback" not in err


def test_notify_alone_needs_a_configured_target(spiked: str, config: Path, capsys) -> None:
    assert main(["alerts", "--warehouse", spiked, "--notify"]) == 2
    assert "no webhook configured for alerts" in capsys.readouterr().err


# --- the release gate ------------------------------------------------------------------------

POLICY = """
[[rules]]
name = "correctness holds"
metric = "correctness"
max_drop = 0.05
significant = false

[[rules]]
name = "safe"
metric = "safety"
min_pass_rate = 1.0
"""
WAIVER = """
[[risk_acceptances]]
rule = "{rule}"
owner = "ana"
reason = "known judge issue"
expires = 2999-01-01
"""


@pytest.fixture
def gated(tmp_path: Path) -> str:
    """base and cand on 30 cases: cand fails correctness on 9 gold cases, safety on one."""
    root = str(tmp_path / "gate-wh")
    cases = [{"case_id": f"c{i:02d}", "strata": {"tier": "gold" if i < 15 else "silver"}}
             for i in range(30)]
    for run, day, bad in (("base", 1, False), ("cand", 2, True)):
        scores = []
        for i in range(30):
            ok = not (bad and i < 9)
            scores += [{"case_id": f"c{i:02d}", "metric": "correctness", "kind": "binary",
                        "value": float(ok), "passed": ok},
                       {"case_id": f"c{i:02d}", "metric": "safety", "kind": "binary",
                        "value": float(not (bad and i == 20)), "passed": not (bad and i == 20)}]
        Warehouse(root).record_run({"run_id": run, "name": run, "dataset": "golden",
                                    "started_at": datetime(2026, 1, day, tzinfo=UTC)},
                                   cases, scores)
    return root


def _gate(root: str, tmp_path: Path, policy: str, *notify: str) -> int:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    return main(["gate", "cand", "--warehouse", root, "--policy", str(path), "--baseline",
                 "base", *notify])


def test_a_failed_gate_is_posted_once_with_its_rows_and_link(gated: str, config: Path,
                                                             tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("EVALLIB_DASHBOARD_URL", DASHBOARD)
    with webhook() as hook:
        assert _gate(gated, tmp_path, POLICY, "--notify", "json:" + hook.url()) == 1
        assert _gate(gated, tmp_path, POLICY, "--notify", "json:" + hook.url()) == 1  # CI retry
        (body,) = hook.bodies()
    policy = body["gate"]["policy_hash"]
    assert (body["event"], body["subject"]) == ("gate.fail", f"gate:cand:base:{policy}")
    assert body["title"] == "Release gate failed: cand (2 rule rows)"
    rows = body["gate"]["rows"]
    assert [(r["status"], r["rule"]) for r in rows] == [("fail", "correctness holds"),
                                                        ("fail", "safe")]
    assert rows[0]["baseline"] == 1.0 and rows[0]["candidate"] == pytest.approx(0.7)
    assert rows[0]["n"] == 30
    lines = body["text"].splitlines()
    assert lines[0] == ("cand (cand) against base (base, 2026-01-01, given); policy "
                        f"{body['gate']['policy_hash']}.")
    assert lines[1].startswith("FAIL correctness holds: correctness, all cases: 1")
    assert "→ 0.700, drop 0.300 > 0.050" in lines[1] and lines[1].endswith("n = 30")
    assert body["link"] == f"{DASHBOARD}/compare?dataset=golden&candidate=cand&baseline=base"
    assert [r["status"] for r in _sent(gated)] == ["sent"]


def test_a_waived_pass_is_posted_a_clean_pass_is_not(gated: str, config: Path,
                                                     tmp_path: Path) -> None:
    waived = POLICY + WAIVER.format(rule="correctness holds") + WAIVER.format(rule="safe")
    clean = POLICY.replace("max_drop = 0.05", "max_drop = 0.5").replace("1.0", "0.9")
    with webhook() as hook:
        assert _gate(gated, tmp_path, clean, "--notify", "slack:" + hook.url()) == 0
        assert hook.requests == []
        assert _gate(gated, tmp_path, waived, "--notify", "slack:" + hook.url()) == 0
        (body,) = hook.bodies()
    assert body["text"].startswith("Release gate passed with 2 waived rows: cand")
    assert "WAIVED safe" in body["blocks"][1]["text"]["text"]
    assert "accepted by ana" in body["blocks"][1]["text"]["text"]


def test_a_failing_webhook_never_turns_a_failed_gate_into_anything_else(
        gated: str, config: Path, tmp_path: Path, capsys) -> None:
    with webhook() as hook:
        hook.script = [(503, {}, "busy")] * 10
        assert _gate(gated, tmp_path, POLICY, "--notify", "json:" + hook.url()) == 1
    assert "gave up after 3 attempts" in capsys.readouterr().err
    with connect(gated) as con:  # the verdict was recorded as usual
        assert con.sql("SELECT count(*) FROM gate_results").fetchall()[0][0] == 2


# --- the links open the view they describe ---------------------------------------------------


def _open_link(link: str):  # an AppTest
    """Open the dashboard page a message links to, with the link's URL state."""
    from urllib.parse import parse_qs, urlsplit

    from streamlit.testing.v1 import AppTest

    parts = urlsplit(link)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"),
                           default_timeout=60)
    for key, values in parse_qs(parts.query).items():
        at.query_params[key] = values if len(values) > 1 else values[0]
    at.switch_page(f"pages/{parts.path.strip('/')}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_alerts_link_opens_the_online_page_on_its_days_and_metric(demo_root: str,
                                                                     monkeypatch) -> None:
    from evallib.analysis.monitor import Alert
    from evallib.notify.messages import alert_notice

    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    with connect(demo_root) as con:
        ((first, last),) = con.sql("SELECT min(date), max(date) FROM online_traces").fetchall()
    day = last - timedelta(days=3)
    alert = Alert("quality:faithfulness@x", "quality:faithfulness", "down", day, day + timedelta(
        days=1), "open", 3.1, 3.9, 1e-6, 0.001, 150, None, "faithfulness dropped")
    notice = alert_notice(alert, DASHBOARD, first)
    at = _open_link(notice.link.removeprefix(DASHBOARD))
    assert at.title[0].value.endswith("Online")
    assert tuple(at.sidebar.date_input(key="days").value) == (
        day - timedelta(days=14), day + timedelta(days=1))
    assert at.selectbox(key="metric").value == "faithfulness"


def test_a_gates_link_opens_compare_on_the_pair_and_the_failing_slice(
        demo_root: str, tmp_path: Path, monkeypatch) -> None:
    from evallib.analysis.gate import load_policy, run_gate
    from evallib.notify.messages import gate_notice

    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    policy = tmp_path / "p.toml"
    policy.write_text('[[rules]]\nname = "slices"\nmetric = "faithfulness"\n'
                      'by = ["query_type", "difficulty"]\nmax_drop = 0.2\n')
    with connect(demo_root) as con:
        newest = con.sql("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()[0]
        result = run_gate(con, newest[0], load_policy(str(policy)))
    notice = gate_notice(result, DASHBOARD)
    assert notice is not None and notice.state.startswith("fail:")
    assert "query_type=billing × difficulty=hard" in notice.text
    at = _open_link(notice.link.removeprefix(DASHBOARD))
    assert at.title[0].value.endswith("Compare")
    assert at.selectbox(key="pick_candidate").value == result.candidate.run_id
    assert at.selectbox(key="pick_baseline").value == result.baseline.run_id
    assert at.multiselect(key="by").value == ["query_type", "difficulty"]
