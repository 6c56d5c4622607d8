"""`evallib check`: keep a warehouse healthy after crashes and bad copies.

- temp files of writes that died (older than ``tmp_age`` seconds, so a write in progress
  is left alone) are removed;
- part files that cannot be read, or whose columns are not the table's, are moved to
  ``_quarantine/`` (until then `connect()` skips them and the dashboard warns; the check is
  the same footer check, `evallib.warehouse.catalog`);
- files `evallib compact` merged into another are invisible already; once the merged file
  is older than ``tmp_age`` they are removed;
- offline part files whose write was never committed (no ``runs`` row with their write_id)
  are invisible already; older than ``tmp_age`` they are removed;
- keys stored more than once (a retried flush, a trace two collectors sent) are reported:
  readers see one row per key (`keys`), `evallib compact` keeps only that row. A key on
  two different days is two rows for every reader: reported apart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow.parquet as pq

from . import keys
from . import schema as S
from .catalog import Listing, list_table
from .compact import remove_replaced
from .db import _read, fetched
from .store import TMP_PREFIX, TMP_SUFFIX, Store

QUARANTINE = "_quarantine"


@dataclass
class Duplicates:
    """A keyed table's repeated keys in its current part files."""

    table: str
    rows: int  # rows readers do not see: a newer row of their key (same day) replaces them
    keys: int  # keys stored more than once on one day
    across_days: int  # keys on more than one day: every reader counts each of those rows


@dataclass
class CheckReport:
    files: int = 0
    removed_temp: list[str] = field(default_factory=list)
    removed_orphans: list[str] = field(default_factory=list)
    removed_replaced: list[str] = field(default_factory=list)  # merged by `compact` earlier
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    duplicates: list[Duplicates] = field(default_factory=list)  # keyed tables that have some

    @property
    def healthy(self) -> bool:
        return not self.quarantined


def check(root: str | os.PathLike[str] | Store | None = None, *, tmp_age: float = 3600.0
          ) -> CheckReport:
    store = root if isinstance(root, Store) else Store(root)
    report = CheckReport()
    now = time.time()
    for path in store.walk_files():
        name = path.rsplit("/", 1)[-1]
        rel = path[len(store.base.rstrip("/")) + 1:]
        if rel.startswith(QUARANTINE + "/") or not (name.startswith(TMP_PREFIX)
                                                    and name.endswith(TMP_SUFFIX)):
            continue
        if now - _mtime(store, path) >= tmp_age:  # younger: a write may be in progress
            store.remove([path])
            report.removed_temp.append(path)
    listings = {t.name: list_table(store, t) for t in (*S.TABLES.values(),
                                                       *S.ROLLUPS.values())}
    for listing in listings.values():
        report.files += len(listing.parts) + len(listing.unreadable) + len(listing.replaced)
        for part, why in listing.unreadable:  # what connect() skips: the same footer check
            _quarantine(store, part.path)
            report.quarantined.append((part.path, why))
        report.removed_replaced += remove_replaced(store, listing, tmp_age)
    for table in S.TABLES.values():
        found = duplicate_keys(store, listings[table.name]) if keys.is_keyed(table) else None
        if found is not None:
            report.duplicates.append(found)
    fs = None if store.is_local else store.fs
    committed = {w for p in listings["runs"].parts
                 for w in pq.read_table(p.path, columns=["write_id"], filesystem=fs)
                 ["write_id"].to_pylist()}
    for name in S.OFFLINE_DATA:
        for part in listings[name].parts:
            if now - part.mtime < tmp_age:
                continue
            ids = set(pq.read_table(part.path, columns=["write_id"], filesystem=fs)
                      ["write_id"].to_pylist())
            if not ids & committed:
                store.remove([part.path])
                report.removed_orphans.append(part.path)
    return report


def duplicate_keys(store: Store, listing: Listing) -> Duplicates | None:
    """Repeated keys among a keyed table's current files (None: none)."""
    table = listing.table
    if len(listing.parts) < 2:
        return None
    rows = _read(fetched(store, listing.parts), table, raw=True)  # on S3: cached copies
    if table.name == "feedback":
        rows = (f"SELECT * REPLACE (coalesce(event_id, {keys.DERIVED_EVENT_ID}) AS event_id) "
                f"FROM ({rows})")
    by_day, key = keys.key_sql(table), ", ".join(table.key)
    day = f"count(DISTINCT {table.partition})" if table.partition else "1"
    with duckdb.connect(":memory:") as con:
        if not store.is_local:
            con.register_filesystem(store.fs)
        extra, n_keys = con.sql(f"""
            SELECT coalesce(sum(n - 1), 0)::BIGINT, count(*) FROM (
                SELECT count(*) AS n FROM ({rows}) GROUP BY {by_day} HAVING n > 1)""").fetchall()[0]
        across = con.sql(f"""SELECT count(*) FROM (SELECT 1 FROM ({rows}) GROUP BY {key}
                             HAVING {day} > 1)""").fetchall()[0][0]
    if not extra and not across:
        return None
    return Duplicates(table.name, extra, n_keys, across)


def _mtime(store: Store, path: str) -> float:
    if store.is_local:
        return os.path.getmtime(path)
    info = store.fs.info(path)
    m = info.get("mtime") or info.get("LastModified") or info.get("created")
    return m.timestamp() if hasattr(m, "timestamp") else float(m or time.time())


def _quarantine(store: Store, path: str) -> None:
    rel = path[len(store.base.rstrip("/")) + 1:]
    target = "/".join([store.base.rstrip("/"), QUARANTINE, rel])
    if store.is_local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)
    else:
        store.fs.mv(path, target)
