"""`Live`: the newest snapshot of one warehouse and a read-only connection over it, for a
long-running reader (the dashboard).

A background thread renews the snapshot every ``every`` seconds, incrementally
(`evallib.warehouse.snapshot`), so no reader waits for a listing: new data is visible within
``every`` seconds plus one renewal. While nothing changes, the snapshot's key, its
connection and every result cached under that key stay as they are; the connection is
rebuilt (same key, same answers) when files it read through the cache have been copied
locally since, or a copy it reads was evicted.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict

import duckdb

from .db import lost_file, open_snapshot, read_paths
from .snapshot import Snapshot, snapshot
from .store import Store

log = logging.getLogger("evallib.live")

KEEP = 3  # connections of the newest snapshots kept (sessions may still read older ones)


class Live:
    """>>> live = Live("s3://bucket/evals")
    >>> con = live.connection()  # the newest snapshot's; ``live.snapshot().key`` names it
    """

    def __init__(self, root: str | os.PathLike[str] | Store | None = None,
                 every: float = 30.0) -> None:
        self.store = root if isinstance(root, Store) else Store(root)
        self.every = every
        self._lock = threading.Lock()  # one renewal at a time
        self._snap: Snapshot | None = None
        self._cons: OrderedDict[str, tuple[frozenset[str], duckdb.DuckDBPyConnection]] = \
            OrderedDict()
        self._stop = threading.Event()
        self._started = False

    def snapshot(self) -> Snapshot:
        """The newest snapshot (taken now if there is none yet)."""
        snap = self._snap
        if snap is None:
            snap = self.refresh()
        return snap

    def connection(self, key: str | None = None) -> duckdb.DuckDBPyConnection:
        """A read-only connection over the snapshot ``key`` names, if it is still kept,
        else over the newest one."""
        snap = self.snapshot()
        entry = self._cons.get(key) if isinstance(key, str) else None
        return (entry or self._cons[snap.key])[1]

    def refresh(self, full: bool = False) -> Snapshot:
        """Renew the snapshot now (``full``: list everything again)."""
        with self._lock:
            for attempt in range(3):
                snap = snapshot(self.store, self._snap, full=full or attempt > 0)
                paths = read_paths(snap)  # marks the copies used: safe from eviction
                read = frozenset(paths.values())
                kept = self._cons.get(snap.key)
                if kept is not None and kept[0] == read:
                    break
                try:
                    self._cons[snap.key] = (read, open_snapshot(snap, paths, read_only=True,
                                                                shared_keys=True))
                    break
                except duckdb.Error as e:  # compaction deleted a listed file: list all
                    if attempt == 2 or not lost_file(e):
                        raise
            self._cons.move_to_end(snap.key)
            while len(self._cons) > KEEP:
                self._cons.popitem(last=False)
            self._snap = snap
            if not self._started:
                self._started = True
                _follow(weakref.ref(self), self._stop, self.every)
            return snap

    def close(self) -> None:
        """Stop renewing."""
        self._stop.set()

    def __del__(self) -> None:
        self._stop.set()


def _follow(ref: weakref.ref[Live], stop: threading.Event, every: float) -> None:
    """Renew in the background while the `Live` exists (a weak reference, so dropping it,
    e.g. from Streamlit's cache, ends the thread)."""

    def loop() -> None:
        while not stop.wait(every):
            live = ref()
            if live is None:
                return
            try:
                live.refresh()
            except Exception:  # the warehouse unreachable for a while: keep the last one
                log.exception("evallib: could not renew the snapshot of %s", live.store.root)
            del live

    threading.Thread(target=loop, name="evallib-live", daemon=True).start()
