"""The CLI contract: --warehouse / EVALLIB_WAREHOUSE, `runs`, `dashboard`, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evallib import Warehouse
from evallib.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _record(root, name: str, approved: bool = False) -> str:
    return Warehouse(root).record_run(
        {"name": name, "dataset": "support", "model": "m", "approved": approved,
         "started_at": "2026-11-01T10:00:00Z" if approved else "2026-11-02T10:00:00Z"},
        [{"case_id": "a"}, {"case_id": "b"}, {"case_id": "c"}],
    )


def test_runs_json_has_the_documented_fields(tmp_path, capsys):
    base = _record(tmp_path, "baseline", approved=True)
    cand = _record(tmp_path, "candidate")
    assert main(["runs", "--json", "--warehouse", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == [base, cand]  # oldest first
    assert set(rows[0]) == {"run_id", "name", "model", "dataset", "dataset_version",
                            "started_at", "n_cases", "source", "approved"}
    assert rows[0]["n_cases"] == 3 and rows[0]["approved"] is True
    assert rows[0]["started_at"].startswith("2026-11-01T10:00:00")


def test_warehouse_from_flag_either_side_or_env(tmp_path, capsys, monkeypatch):
    run_id = _record(tmp_path, "x")
    assert main(["--warehouse", str(tmp_path), "runs"]) == 0
    assert run_id in capsys.readouterr().out
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path))
    assert main(["runs"]) == 0
    assert run_id in capsys.readouterr().out
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path / "other"))
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("argv", [["runs"], ["compare", "a", "b"], ["report", "--month",
                                  "2026-01"], ["export-failures", "x"], ["check"],
                                  ["alerts"], ["dashboard"]])
def test_a_warehouse_path_that_does_not_exist_is_an_error(tmp_path, capsys, argv) -> None:
    """A typo in --warehouse is not an empty warehouse: exit 2, the path named, nothing
    created (only `demo` and the importers may create one)."""
    typo = tmp_path / "warehous"
    assert main([*argv, "--warehouse", str(typo)]) == 2
    err = capsys.readouterr().err
    assert f"no warehouse at {typo}: the path does not exist" in err
    assert "Traceback" not in err and not typo.exists()


def test_import_and_demo_may_create_the_warehouse(tmp_path, capsys) -> None:
    rows = tmp_path / "r.jsonl"
    rows.write_text('{"case_id": "a", "scores": {"ok": true}}\n')
    new = tmp_path / "new" / "warehouse"
    assert main(["import", "jsonl", str(rows), "--run-name", "x", "--warehouse",
                 str(new)]) == 0
    assert new.is_dir()


def test_an_unknown_run_gets_a_did_you_mean(tmp_path, capsys) -> None:
    _record(tmp_path, "rc-v3.1", approved=True)
    cand = _record(tmp_path, "rc-v3.2-candidate")
    assert main(["export-failures", "nope", "--warehouse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown run 'nope' (see: evallib runs)" in err and "run run" not in err
    assert main(["compare", "rc-v3.2", "rc-v3.1", "--warehouse", str(tmp_path)]) == 2
    assert ("unknown candidate run 'rc-v3.2'; did you mean 'rc-v3.2-candidate'?"
            in capsys.readouterr().err)
    assert main(["compare", "rc-v3.2-candidat", "rc-v3.1", "--warehouse", str(tmp_path)]) \
        == 2
    assert "did you mean 'rc-v3.2-candidate'?" in capsys.readouterr().err
    assert main(["compare", cand[:-3], "rc-v3.1", "--warehouse", str(tmp_path)]) == 2
    assert f"did you mean {cand!r}?" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["runs", "--bogus"])
    assert e.value.code == 2
    assert main(["demo", "--days", "0", "--warehouse", "/nonexistent-never"]) == 2
    assert "--days must be at least 1" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_on_loopback(tmp_path):
    _record(tmp_path, "x")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evallib.cli", "dashboard", "--port", str(port),
         "--warehouse", str(tmp_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        body = None
        for _ in range(600):  # bounded wait for the server to come up
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=1) as r:
                    body = r.read().decode()
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert body == "ok", proc.stdout.read().decode() if proc.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert "<html" in r.read().decode().lower()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
