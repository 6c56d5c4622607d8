"""A snapshot: every table's part files at one moment, the one input of `connect()`.

`snapshot(root)` lists every table and rollup once (concurrently on object stores: one
paginated listing each). `snapshot(root, previous)` re-lists only what can have changed
since ``previous`` and reuses the rest:

- the unpartitioned tables (``runs``, ``approvals``, the rollups …): small, listed whole;
- the online tables: only the partitions of the recent days' months (today, the days around
  it and the newest days already there), where samplers and judges write: one listing per
  month on object stores that list by key prefix;
- the offline tables: only the partitions of runs with a new ``runs`` row (a new run, or
  one replaced with ``--replace``);
- everything, every ``FULL_EVERY`` seconds: a backfill of an old day shows up then. A
  compaction of an older month deletes the originals at once; a reader whose query finds
  one gone takes a full snapshot then (`db.retrying`, the dashboard's ``_read``).

Footers are read once per file and process either way (`evallib.warehouse.catalog`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq

from . import schema as S
from .catalog import Listing, Part, assemble, list_tables
from .store import Store

FULL_EVERY = 300.0  # seconds between full listings of an incrementally renewed snapshot
RECENT_DAYS = 1  # days before today (UTC) re-listed by an incremental snapshot
EVERY_TABLE = (*S.TABLES.values(), *S.ROLLUPS.values())


@dataclass(frozen=True)
class Snapshot:
    store: Store
    listings: dict[str, Listing]  # every table and rollup
    taken_at: float  # time.time() of the listing
    full_at: float  # … of its last full listing
    key: str  # changes when any listed file does

    @property
    def present(self) -> frozenset[str]:
        """Tables (not rollups) with part files, readable or not."""
        return frozenset(name for name in S.TABLES if self.listings[name].footers)


def snapshot(root: str | os.PathLike[str] | Store | None = None,
             previous: Snapshot | None = None, *, full: bool = False) -> Snapshot:
    """Every table's listing now: a full listing, or ``previous`` renewed (see the module
    doc)."""
    store = root if isinstance(root, Store) else Store(root)
    now = time.time()
    if previous is None or full or now - previous.full_at >= FULL_EVERY:
        return _made(store, list_tables(store, EVERY_TABLE), now, now)
    old = previous.listings
    months = {t.name: sorted({d[:8] for d in _recent_days(old[t.name])})  # "2026-12-"
              for t in EVERY_TABLE if t.partition == "date"}
    first = [t for t in EVERY_TABLE if t.name not in S.OFFLINE_DATA]
    fresh = list_tables(store, first, prefixes=months)
    new_runs = [p for p in fresh["runs"].footers if p.path not in _paths(old["runs"])]
    runs = sorted(_run_ids(store, new_runs))
    fresh.update(list_tables(store, [S.TABLES[n] for n in S.OFFLINE_DATA],
                             {n: runs for n in S.OFFLINE_DATA}))
    listings = {}
    for t in EVERY_TABLE:
        if t.name in months:
            listings[t.name] = _merged(old[t.name], fresh[t.name],
                                       lambda v, m=tuple(months[t.name]): v.startswith(m))
        elif t.name in S.OFFLINE_DATA:
            listings[t.name] = _merged(old[t.name], fresh[t.name], set(runs).__contains__)
        else:
            listings[t.name] = fresh[t.name]
    return _made(store, listings, now, previous.full_at)


def _made(store: Store, listings: dict[str, Listing], taken: float, full: float) -> Snapshot:
    h = hashlib.blake2b(digest_size=12)
    for name in sorted(listings):
        for p in sorted(listings[name].footers, key=lambda p: p.path):
            h.update(f"{p.path}\0{p.version}\n".encode())
    return Snapshot(store, listings, taken, full, h.hexdigest())


def _merged(old: Listing, fresh: Listing, redone: Callable[[str], bool]) -> Listing:
    """``old`` with the partitions ``redone`` says were listed again, as in ``fresh``."""
    kept = [p for p in old.footers if p.partition is None or not redone(p.partition)]
    parts = sorted([*kept, *fresh.footers], key=lambda p: p.path)
    return assemble(old.table, parts, {**old.footers, **fresh.footers})


def _paths(listing: Listing) -> set[str]:
    return {p.path for p in listing.footers}


def _recent_days(listing: Listing) -> list[str]:
    """Today (UTC) and ``RECENT_DAYS`` before it, tomorrow (clocks differ), and the newest
    days the table holds (a warehouse whose traffic stopped, like the demo's)."""
    today = datetime.now(UTC).date()
    days = {today + timedelta(days=d) for d in range(-RECENT_DAYS, 2)}
    held = sorted(p.partition for p in listing.footers if p.partition)
    if held:
        try:
            newest = date.fromisoformat(held[-1])
            days |= {newest - timedelta(days=d) for d in range(RECENT_DAYS + 1)}
        except ValueError:  # not a day: `connect()` reports nothing of it either
            pass
    return sorted(d.isoformat() for d in days)


def _run_ids(store: Store, parts: list[Part]) -> set[str]:
    """The runs these ``runs`` part files commit."""
    copies = {} if store.is_local else store.cache.fetch(store.fs, parts)
    out: set[str] = set()
    for p in parts:
        if store.is_local or p in copies:
            ids = pq.read_table(copies.get(p, p.path), columns=["run_id"])
        else:
            ids = pq.read_table(p.path, columns=["run_id"], filesystem=store.fs)
        out.update(ids["run_id"].to_pylist())
    return out
