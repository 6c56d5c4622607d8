"""`evallib compact`: merge each partition's small part files into one.

A production sampler writes a part file per batch, so a day can hold thousands of small
files, and every query opens each of them. Per partition, safely beside running writers
and readers:

1. list the partition's current files (`evallib.warehouse.catalog`: readable, not already replaced);
2. write their rows as one new file, atomically, whose Parquet footer names the files it
   replaces (and counts the original files it holds, so rollups stay fresh);
3. from then on a listing that holds the new file hides the ones it names; a listing taken
   before still reads the originals. Either way each row is read once;
4. delete the originals once the new file is ``grace`` seconds old: a connection is a
   snapshot, and one opened before step 2 may still read them (the dashboard lists every
   file again every 5 minutes). ``grace=0`` deletes them at once.

Files a writer adds after step 1 are left alone; the next compaction merges them. Run one
compaction at a time per warehouse (a lock enforces it on local disks; on object stores
schedule it from one place).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EvallibError
from . import schema as S
from .catalog import COVERS, REPLACES, Listing, Part, leaf_hash, list_table
from .store import Store

# Append-only tables written a few rows at a time. Offline data is left out: one file per
# run and table already, and its file names carry the write that commits them.
COMPACTED = tuple(t for t in S.TABLES.values() if t.partition in (None, "date"))


@dataclass
class Merge:
    table: str
    partition: str | None
    files: int
    rows: int
    path: str | None = None  # the merged file (None on a dry run)


@dataclass
class CompactReport:
    merged: list[Merge] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # replaced files deleted
    kept: list[str] = field(default_factory=list)  # replaced files still in their grace


def compact(root: str | os.PathLike[str] | Store | None = None, *, day: date | None = None,
            before: date | None = None, grace: float = 600.0, dry_run: bool = False
            ) -> CompactReport:
    """Merge the small files of every date partition (only ``day``, or only days before
    ``before``, if given; unpartitioned tables only when neither is given) and delete the
    files earlier compactions replaced once their grace has passed."""
    store = root if isinstance(root, Store) else Store(root)
    report = CompactReport()
    with _lock(store, dry_run):
        for table in COMPACTED:
            listing = list_table(store, table)
            if dry_run:
                report.merged += [_merge_plan(listing, v, ps) for v, ps in
                                  _partitions(listing, day, before).items()]
                continue
            merges = [_merge(store, listing, v, ps)
                      for v, ps in _partitions(listing, day, before).items()]
            report.merged += merges
            if merges:  # list again: the new files and what they replace
                listing = list_table(store, table)
            remove_replaced(store, listing, grace, report)
    return report


def _partitions(listing: Listing, day: date | None, before: date | None
                ) -> dict[str | None, list[Part]]:
    """Partitions worth merging (two files or more) among those asked for."""
    groups: dict[str | None, list[Part]] = {}
    for p in listing.parts:
        groups.setdefault(p.partition, []).append(p)
    out = {}
    for value, parts in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        if len(parts) < 2:
            continue
        if listing.table.partition is None:
            if day is not None or before is not None:
                continue
        elif (day is not None and value != day.isoformat()) or \
                (before is not None and (value or "") >= before.isoformat()):
            continue
        out[value] = parts
    return out


def _merge_plan(listing: Listing, value: str | None, parts: list[Part]) -> Merge:
    return Merge(listing.table.name, value, len(parts),
                 sum(listing.footers[p].num_rows for p in parts))


def _merge(store: Store, listing: Listing, value: str | None, parts: list[Part]) -> Merge:
    table = listing.table
    fs = None if store.is_local else store.fs
    schema = table.schema
    data = pa.concat_tables([pq.read_table(p.path, columns=schema.names, filesystem=fs)
                             .cast(schema) for p in parts])
    n, x = 0, 0
    for p in parts:
        pn, px = listing.footers[p].covers or (1, leaf_hash(p.name))
        n, x = n + pn, x ^ px
    path = store.write_part(table, data, value, metadata={
        REPLACES: json.dumps([p.name for p in parts]), COVERS: f"{n}:{x:016x}"})
    return Merge(table.name, value, len(parts), data.num_rows, path)


def remove_replaced(store: Store, listing: Listing, grace: float,
                    report: CompactReport | None = None) -> list[str]:
    """Delete the files compactions replaced, once the file that replaced them is ``grace``
    seconds old. A file is deleted before the file that replaced it, so a crash half way
    never leaves a merged file's originals without it (they would be read twice)."""
    now = time.time()
    by = {old: new for old, new in listing.replaced}

    def depth(part: Part) -> int:
        return 1 + depth(by[part]) if part in by else 0

    removed = []
    for old, new in sorted(listing.replaced, key=lambda pair: -depth(pair[0])):
        if now - new.mtime >= grace:
            store.remove([old.path])
            removed.append(old.path)
        elif report is not None:
            report.kept.append(old.path)
    if report is not None:
        report.removed += removed
    return removed


@contextlib.contextmanager
def _lock(store: Store, dry_run: bool) -> Iterator[None]:
    """One compaction at a time: two at once could each merge the same files."""
    if dry_run or not store.is_local:
        yield
        return
    os.makedirs(store.base, exist_ok=True)
    with open(os.path.join(store.base, ".compact.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EvallibError(f"another `evallib compact` is running on {store.root}"
                               ) from None
        yield
