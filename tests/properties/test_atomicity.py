"""A writer killed mid-write leaves nothing visible; `evallib check` cleans up after it."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq

from evallib import Warehouse, connect
from evallib.cli import main

WRITER = textwrap.dedent("""
    import sys
    import numpy as np, pyarrow as pa
    from evallib import Warehouse
    n_cases, metrics = 100_000, 12
    ids = pa.array([f"c{i}" for i in range(n_cases)])
    cases = pa.table({"case_id": ids})
    scores = pa.table({
        "case_id": pa.concat_arrays([ids] * metrics),
        "metric": np.repeat([f"m{j}" for j in range(metrics)], n_cases),
        "value": np.random.default_rng(0).random(n_cases * metrics),
        "kind": pa.array(["continuous"] * (n_cases * metrics)),
    })
    Warehouse(sys.argv[1]).record_run({"name": "big", "dataset": "d", "run_id": "big"},
                                      cases, scores)
""")


def _wait_for(pattern: str, proc: subprocess.Popen, limit_s: float = 120) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if glob.glob(pattern):
            return True
        time.sleep(0.01)
    return False


def _kill_during(root: str, pattern: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, root])
    try:
        assert _wait_for(pattern, proc), "the writer never reached the point to kill it at"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _committed_run(root) -> None:
    Warehouse(root).record_run({"name": "small", "dataset": "d", "run_id": "small"},
                               [{"case_id": "a"}, {"case_id": "b"}],
                               [{"case_id": "a", "metric": "m", "value": 1, "kind": "binary"}])


def _visible(root) -> tuple:
    con = connect(root)
    return tuple(con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                 for t in ("runs", "cases", "scores"))


def test_kill_while_a_part_file_is_written(tmp_path):
    root = str(tmp_path)
    _committed_run(root)
    _kill_during(root, f"{root}/scores/run_id=big/_tmp-*")
    assert glob.glob(f"{root}/scores/run_id=big/_tmp-*.inprogress")  # the dead write's temp
    assert _visible(root) == (1, 2, 1)  # the committed run, untouched; nothing of "big"
    # readers that glob for part files never see the temp file
    assert not glob.glob(f"{root}/scores/run_id=big/part-*.parquet")


def test_kill_between_tables_leaves_the_run_invisible(tmp_path):
    """cases are renamed into place, scores are half written: still nothing of the run."""
    root = str(tmp_path)
    _committed_run(root)
    _kill_during(root, f"{root}/cases/run_id=big/part-*.parquet")
    assert pq.read_table(glob.glob(f"{root}/cases/run_id=big/part-*.parquet")[0]).num_rows
    assert _visible(root) == (1, 2, 1)


def test_check_removes_what_a_dead_writer_left(tmp_path, capsys):
    root = str(tmp_path)
    _committed_run(root)
    _kill_during(root, f"{root}/scores/run_id=big/_tmp-*")
    assert main(["check", "--warehouse", root, "--tmp-age", "0"]) == 0
    out = capsys.readouterr().out
    assert "removed dead temp file" in out and "removed uncommitted part file" in out
    assert not glob.glob(f"{root}/**/_tmp-*", recursive=True)
    assert not glob.glob(f"{root}/*/run_id=big/*")
    assert _visible(root) == (1, 2, 1)


def test_check_leaves_a_write_in_progress_alone(tmp_path, capsys):
    root = str(tmp_path)
    _committed_run(root)
    young = tmp_path / "scores" / "run_id=small" / "_tmp-abc.parquet.inprogress"
    young.write_bytes(b"PAR1 half")
    assert main(["check", "--warehouse", root]) == 0  # default age: an hour
    assert young.exists()


def test_check_quarantines_unreadable_files(tmp_path, capsys):
    root = str(tmp_path)
    _committed_run(root)
    bad = tmp_path / "scores" / "run_id=small" / "part-20260101T000000-broken.parquet"
    bad.write_bytes(b"not parquet at all")
    wrong = tmp_path / "cases" / "run_id=small" / "part-20260101T000000-wrong.parquet"
    pq.write_table(pa.table({"case_id": [1, 2]}), wrong)
    assert main(["check", "--warehouse", root]) == 1
    out = capsys.readouterr().out
    assert "unreadable Parquet" in out and "missing columns" in out
    assert not bad.exists() and not wrong.exists()
    assert (tmp_path / "_quarantine" / "scores" / "run_id=small" / bad.name).exists()
    assert _visible(root) == (1, 2, 1)  # queries work again
    assert main(["check", "--warehouse", root]) == 0
