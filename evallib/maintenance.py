"""`evallib check`: keep a warehouse healthy after crashes and bad copies.

- temp files of writes that died (older than ``tmp_age`` seconds, so a write in progress
  is left alone) are removed;
- part files that cannot be read, or whose columns are not the table's, are moved to
  ``_quarantine/`` (DuckDB would fail every query over them);
- offline part files whose write was never committed (no ``runs`` row with their write_id)
  are invisible already; older than ``tmp_age`` they are removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from . import schema as S
from .store import TMP_PREFIX, TMP_SUFFIX, Store

QUARANTINE = "_quarantine"


@dataclass
class CheckReport:
    files: int = 0
    removed_temp: list[str] = field(default_factory=list)
    removed_orphans: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def healthy(self) -> bool:
        return not self.quarantined


def check(root: str | os.PathLike[str] | Store | None = None, *, tmp_age: float = 3600.0
          ) -> CheckReport:
    store = root if isinstance(root, Store) else Store(root)
    report = CheckReport()
    now = time.time()
    by_table = {t.name: t for t in S.TABLES.values()}
    committed: set[str] = set()
    offline_parts: list[tuple[str, str]] = []
    for path in store.walk_files():
        rel = path[len(store.base.rstrip("/")) + 1:]
        parts = rel.split("/")
        if parts[0] == QUARANTINE:
            continue
        name = parts[-1]
        old = now - _mtime(store, path) >= tmp_age
        if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
            if old:
                store.remove([path])
                report.removed_temp.append(path)
            continue
        table = by_table.get(parts[0])
        if table is None or not (name.startswith("part-") and name.endswith(".parquet")):
            continue
        report.files += 1
        why = _unreadable(store, path, table)
        if why:
            _quarantine(store, path, rel)
            report.quarantined.append((path, why))
            continue
        if table.name == "runs":
            committed |= set(pq.read_table(path, columns=["write_id"],
                                           filesystem=None if store.is_local else store.fs)
                             ["write_id"].to_pylist())
        elif table.name in S.OFFLINE_DATA and old:
            offline_parts.append((path, table.name))
    for path, _ in offline_parts:
        ids = set(pq.read_table(path, columns=["write_id"],
                                filesystem=None if store.is_local else store.fs)
                  ["write_id"].to_pylist())
        if not ids & committed:
            store.remove([path])
            report.removed_orphans.append(path)
    return report


def _mtime(store: Store, path: str) -> float:
    if store.is_local:
        return os.path.getmtime(path)
    info = store.fs.info(path)
    m = info.get("mtime") or info.get("LastModified") or info.get("created")
    return m.timestamp() if hasattr(m, "timestamp") else float(m or time.time())


def _unreadable(store: Store, path: str, table: S.Table) -> str | None:
    try:
        fs = None if store.is_local else store.fs
        schema = pq.read_schema(path, filesystem=fs)
    except Exception as e:  # any reason a reader would fail: report it, quarantine the file
        return f"unreadable Parquet ({type(e).__name__}: {e})"
    expected = table.schema
    missing = [f.name for f in expected if f.name not in schema.names]
    if missing:
        return f"missing columns {', '.join(missing)}"
    wrong = [f.name for f in expected if not schema.field(f.name).type.equals(f.type)]
    if wrong:
        return f"wrong column types for {', '.join(wrong)}"
    return None


def _quarantine(store: Store, path: str, rel: str) -> None:
    target = "/".join([store.base.rstrip("/"), QUARANTINE, rel])
    if store.is_local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)
    else:
        store.fs.mv(path, target)
