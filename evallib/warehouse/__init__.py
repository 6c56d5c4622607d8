"""The storage layer, one room: the tables' schemas, where the warehouse lives (a folder or
an fsspec URL), validation and the one writer, what a reader sees (the catalog of part
files, a snapshot of them) and the DuckDB views over it, the local cache of a remote
warehouse's files, and upkeep (compaction, rollups, check).

Nothing above this package reads or writes part files except through it.
"""

from .db import Connection, connect, tables_present
from .live import Live
from .snapshot import Snapshot, snapshot
from .store import Store, resolve_root
from .writer import Warehouse, dataset_version

__all__ = ["Connection", "Live", "Snapshot", "Store", "Warehouse", "connect", "dataset_version",
           "resolve_root", "snapshot", "tables_present"]
