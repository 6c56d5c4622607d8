"""The storage layer, one room: the tables' schemas, where the warehouse lives (a folder or
an fsspec URL), validation and the one writer, what a reader sees (the catalog of part
files) and the DuckDB views over it, and upkeep (compaction, rollups, check).

Nothing above this package reads or writes part files except through it.
"""

from .db import connect, snapshot_key, tables_present
from .store import Store, resolve_root
from .writer import Warehouse, dataset_version

__all__ = ["Store", "Warehouse", "connect", "dataset_version", "resolve_root", "snapshot_key",
           "tables_present"]
