"""Shared fixtures: a real demo warehouse (built once per session) and an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
               ) -> None:
    """The local cache of remote warehouses (`evallib.warehouse.cache`) in a temporary
    directory, never the user's."""
    monkeypatch.setenv("EVALLIB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small but complete demo warehouse: the story the dashboard has to tell."""
    from evallib.demo import build_demo

    root = tmp_path_factory.mktemp("demo") / "warehouse"
    build_demo(str(root), days=60, online_per_day=150, cases=200, seed=7)
    return str(root)


@pytest.fixture
def empty_root(tmp_path: Path) -> str:
    """A warehouse directory with nothing in it yet."""
    root = tmp_path / "empty-warehouse"
    root.mkdir()
    return str(root)
