"""Security: every query's parameters and every page's URL parameters fuzzed (hypothesis) for
SQL injection and crashes; the dashboard's DuckDB connection refuses writes and other files;
login only when configured; no secret in what a run prints."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.request
from datetime import UTC, date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from evallib import EvallibError, connect, queries

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
INJECTIONS = ["x' OR '1'='1", "'; DROP VIEW scores; --", "') UNION SELECT * FROM runs --",
              "$dataset", "?", "%", "_", "\\", '"', "correctness' --",
              "x'); COPY (SELECT 1) TO '/tmp/evallib-pwned.csv'; --",
              "'] OR 1=1 --", "../../etc/passwd", "ü🎡", " ", ""]
FUZZ = settings(max_examples=15, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def real_values(demo_root: str) -> list[str]:
    """Names the demo really has, so some fuzzed calls find rows."""
    with connect(demo_root) as con:
        runs = queries.runs_overview(con)
        return sorted({*runs["run_id"].head(3), *runs["dataset"].unique(),
                       *queries.metrics(con)["metric"], *queries.strata_keys(con)["key"]})


def _text(real: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(INJECTIONS + real),
                     st.text(st.characters(exclude_categories=("Cs",),
                                           exclude_characters="\x00"), max_size=30))


def _strategy(hint: str, real: list[str]) -> st.SearchStrategy[typing.Any]:
    """A value for a parameter annotated ``hint`` (as the query module spells it)."""
    optional = hint.endswith("| None")
    base = hint.removesuffix(" | None")
    days = st.dates(date(2020, 1, 1), date(2030, 12, 31))
    out: st.SearchStrategy[typing.Any] = {
        "<class 'str'>": _text(real), "str": _text(real),
        "<class 'datetime.date'>": days, "datetime.date": days,
        "datetime.datetime": st.datetimes(timezones=st.just(UTC)),
        "<class 'bool'>": st.booleans(), "<class 'int'>": st.integers(1, 20),
        "collections.abc.Sequence[str]": st.lists(_text(real), max_size=4),
        "collections.abc.Sequence[datetime.date]": st.lists(days, max_size=4),
        "collections.abc.Sequence[float]": st.lists(st.floats(-1e6, 1e6), max_size=4),
    }[base]
    return st.one_of(st.none(), out) if optional else out


def _files(root: str) -> list[tuple[str, int]]:
    return sorted((str(p), p.stat().st_size) for p in Path(root).rglob("*") if p.is_file())


@pytest.mark.parametrize("name", queries.__all__)
def test_every_query_takes_any_value(name: str, demo_root: str, real_values: list[str]
                                     ) -> None:
    """Hostile or odd values are just values: no error but the function's own refusals
    (ValueError), a frame every time, and nothing written, dropped or read elsewhere."""
    fn = getattr(queries, name)
    hints = {k: str(v) for k, v in typing.get_type_hints(fn).items()}
    params = list(inspect.signature(fn).parameters)[1:]
    before = _files(demo_root)
    con = connect(demo_root)  # a writable connection: an injection would have had its chance
    counts = con.sql("SELECT (SELECT count(*) FROM scores), (SELECT count(*) FROM runs)"
                     ).fetchall()

    @FUZZ
    @given(st.fixed_dictionaries({p: _strategy(hints[p], real_values) for p in params}))
    def call(kwargs: dict[str, typing.Any]) -> None:
        try:
            out = fn(con.cursor(), **kwargs)
        except (ValueError, EvallibError):
            return  # the function's own refusal of a value it documents as invalid
        assert isinstance(out, pl.DataFrame | dict), type(out)

    call()
    assert con.sql("SELECT (SELECT count(*) FROM scores), (SELECT count(*) FROM runs)"
                   ).fetchall() == counts
    assert _files(demo_root) == before
    assert not Path("/tmp/evallib-pwned.csv").exists()


def test_an_injection_finds_nothing(demo_root: str) -> None:
    with connect(demo_root) as con:
        for bad in INJECTIONS[:3] + ["'] OR 1=1 --"]:
            assert queries.runs_overview(con, bad).height == 0
            assert queries.run_lookup(con, bad).height == 0
            assert queries.metrics(con, bad).height == 0
            assert queries.offline_trend(con, bad, "correctness").height == 0
            dataset = queries.datasets(con)["dataset"][0]
            # a stratum key nobody has: one group, the null stratum
            split = queries.offline_trend(con, dataset, "correctness", bad)
            assert split["stratum"].null_count() == split.height > 0


def _page_params() -> list[str]:
    """Every URL parameter the pages read, from their source."""
    names = {"candidate", "baseline", "run", "vs", "dataset", "days", "view"}
    for page in (ROOT / "pages").glob("*.py"):
        text = page.read_text()
        names |= set(re.findall(r'key=f?"(?:\{prefix\})?(\w+)"', text))
        names |= {f"online_{n}" for n in re.findall(r'key=f"\{prefix\}(\w+)"', text)}
        names |= set(re.findall(r'query_params\["(\w+)"\]', text))
        names |= set(re.findall(r'url_choice\([^,]+, "(\w+)"', text))
    return sorted(names)


def _pages() -> list[str]:
    return sorted(re.findall(r'st\.Page\("(pages/\w+\.py)"', Path(APP).read_text()))


@FUZZ
@given(page=st.sampled_from(_pages()),
       params=st.dictionaries(st.sampled_from(_page_params()),
                              st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=12),
                                        st.lists(st.sampled_from(INJECTIONS), max_size=2)),
                              max_size=4))
def test_pages_take_any_url(page: str, params: dict[str, typing.Any], demo_root: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared link with hostile or stale parameters renders the page (its defaults)."""
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, (page, params, [e.value for e in at.exception])


def test_the_dashboard_connection_refuses_writes(demo_root: str, tmp_path: Path) -> None:
    from pages._common import _connection

    con = _connection(demo_root, ("test",))
    assert queries.runs_overview(con.cursor()).height > 0  # reads its files
    victim = next(Path(demo_root, "runs").glob("part-*.parquet"))
    before = victim.read_bytes()
    for sql in (f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
                f"COPY (SELECT * FROM runs) TO '{victim}' (FORMAT parquet)",
                "SELECT * FROM read_csv('/etc/passwd')",
                f"SELECT * FROM read_parquet('{demo_root}/*/*/*.parquet')",
                f"ATTACH '{tmp_path}/x.duckdb'",
                "INSTALL httpfs"):
        with pytest.raises(duckdb.PermissionException):
            con.cursor().execute(sql)
    for sql in ("SET enable_external_access = true", "SET lock_configuration = false",
                "RESET allowed_paths"):
        with pytest.raises(duckdb.Error, match="locked"):
            con.cursor().execute(sql)
    assert not list(tmp_path.iterdir()) and victim.read_bytes() == before


AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "cookie-SECRET-4f9a2c", "client_id": "evals-dashboard",
        "client_secret": "client-SECRET-8e1d07",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def _everything_shown(at: AppTest) -> str:
    return "\n".join(str(getattr(e, "value", "")) + str(getattr(e, "label", ""))
                     for e in at.main) + "\n".join(str(getattr(e, "value", ""))
                                                   for e in at.sidebar)


def test_login_only_when_auth_is_configured(demo_root: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = AUTH
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.dataframe and "Sign in" in at.info[0].value  # nothing of the warehouse
    shown = _everything_shown(at)
    assert AUTH["client_secret"] not in shown and AUTH["cookie_secret"] not in shown

    open_app = AppTest.from_file(APP, default_timeout=120)
    open_app.run()
    assert not open_app.exception
    assert open_app.dataframe and "Log in" not in [b.label for b in open_app.button]


SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-SECRET-0c7e51", "OPENAI_API_KEY": "sk-SECRET-93b1aa",
           "AWS_ACCESS_KEY_ID": "AKIASECRET7Q2W"}


def _run(*args: str, env: dict[str, str], cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("evallib")), *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_no_secret_in_what_a_run_prints(tmp_path: Path) -> None:
    env = {**os.environ, **SECRETS, "EVALLIB_WAREHOUSE": str(tmp_path / "wh")}
    out = [_run("demo", "--days", "14", "--cases", "50", "--online-per-day", "30", env=env)]
    runs = json.loads(_run("runs", "--json", env=env).stdout)
    out += [_run("compare", runs[0]["run_id"], runs[1]["run_id"], "--by", "query_type",
                 env=env),
            _run("check", env=env), _run("compact", "--grace", "0", env=env),
            _run("rollup", env=env), _run("runs", "--warehouse", str(tmp_path / "none"),
                                          env=env),
            _run("import", "jsonl", str(tmp_path / "missing.jsonl"), "--run-name", "x",
                 env=env)]
    # a warehouse path that does not exist, and an import of a missing file: exit 2
    assert [p.returncode for p in out] == [0] * 5 + [2, 2]
    # the dashboard server, with its logs
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("evallib")), "dashboard",
                               "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # its streamlit child: same group
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        logs, _ = server.communicate(timeout=60)
    printed = "\n".join([*(p.stdout + p.stderr for p in out), logs])
    assert "Eval Flywheel on http://127.0.0.1" in printed
    for name, secret in SECRETS.items():
        assert secret not in printed, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
