"""`evallib dashboard` from an installed wheel, not a checkout. The wheel is built from a copy
of what it may need (pyproject.toml, README.md, evallib/, app.py, pages/), installed with its
dependencies into a fresh venv from uv's cache (offline: `make install` filled it), and run
from a directory outside the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from evallib import Warehouse
from tests.cli.test_cli import _free_port

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # `make install` puts uv in the venv
SOURCES = ("pyproject.toml", "README.md", "app.py", "evallib", "pages")


def _run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh venv it is installed in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(path, src / name)
    _run(UV, "build", "--wheel", "--offline", "--quiet", "-o", tmp / "dist", src)
    (wheel,) = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    _run(UV, "venv", "--offline", "--quiet", "--python", sys.executable, venv)
    _run(UV, "pip", "install", "--offline", "--quiet", "--python", venv / "bin" / "python", wheel)
    return wheel, venv


def test_the_wheel_holds_every_package_and_nothing_else(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} \
        == {"evallib"}
    packaged = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
    in_checkout = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "evallib").rglob("__init__.py")}
    assert in_checkout <= packaged, "add the missing packages to [tool.setuptools] packages"
    pages = {Path(p).name for p in names if p.startswith("evallib/dashboard/pages/")}
    assert pages == {p.name for p in (ROOT / "pages").glob("*.py")}
    assert "evallib/dashboard/app.py" in names


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel-warehouse")
    for run in ("baseline", "candidate"):
        Warehouse(root).record_run(
            {"run_id": run, "name": run, "dataset": "golden"}, [{"case_id": "c1"}],
            [{"case_id": "c1", "metric": "correctness", "value": 1.0, "kind": "binary"}])
    return root


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no checkout on the path: only what the venv installed."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **extra}


def test_evallib_dashboard_serves_from_the_installed_package(
        built: tuple[Path, Path], warehouse: Path, tmp_path: Path) -> None:
    _, venv = built
    port = _free_port()
    proc = subprocess.Popen(
        [str(venv / "bin" / "evallib"), "dashboard", "--port", str(port),
         "--warehouse", str(warehouse)],
        cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
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
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# Run by the venv's own python, outside the checkout: the installed app and pages render.
_RENDER = """
import evallib
from streamlit.testing.v1 import AppTest
from evallib.cli.dashboard import dashboard_entry

app = dashboard_entry()
print(evallib.__file__)
print(app)
at = AppTest.from_file(str(app), default_timeout=60)
at.run()
assert not at.exception, [e.value for e in at.exception]
print("titles", [t.value for t in at.title], "tables", len(at.dataframe))
at.switch_page("pages/compare.py").run()
assert not at.exception, [e.value for e in at.exception]
print("titles", [t.value for t in at.title])
"""


def test_the_installed_pages_render(built: tuple[Path, Path], warehouse: Path,
                                    tmp_path: Path) -> None:
    _, venv = built
    out = _run(venv / "bin" / "python", "-c", _RENDER, cwd=tmp_path,
               env=_clean_env(EVALLIB_WAREHOUSE=str(warehouse))).stdout.splitlines()
    site = str(venv / "lib")
    assert out[0].startswith(site) and out[1].startswith(site), out[:2]  # not the checkout's
    assert out[1].endswith("evallib/dashboard/app.py")
    assert "titles ['Runs'] tables" in out[2] and not out[2].endswith("tables 0"), out[2]
    assert out[3] == "titles ['Compare']", out[3]
