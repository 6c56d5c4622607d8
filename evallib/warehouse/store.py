"""Where the warehouse lives: a local directory or any fsspec URL (``s3://bucket/prefix``).

A part file becomes visible whole or not at all. Locally it is written under a temporary
name that no reader's glob matches, flushed, then renamed. On object stores a PUT is already
atomic (the object appears when the upload completes), so it is written in place.
"""

from __future__ import annotations

import inspect
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import Table

if TYPE_CHECKING:
    from .cache import PartCache

DEFAULT_ROOT = "warehouse"
TMP_PREFIX = "_tmp-"
TMP_SUFFIX = ".inprogress"


def resolve_root(root: str | os.PathLike[str] | None = None) -> str:
    """``--warehouse``, else env ``EVALLIB_WAREHOUSE``, else ``./warehouse``."""
    value = root if root not in (None, "") else os.environ.get("EVALLIB_WAREHOUSE") or DEFAULT_ROOT
    value = os.fspath(value)
    if "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


def new_stamp() -> str:
    """The writer's UTC clock as a part file name's prefix: ``20261205T163000123456``."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"


def stamp_of(name: str) -> str:
    """``part-<stamp>-<id>.parquet`` → stamp."""
    return name.split("-", 2)[1]


LISTERS = 16  # concurrent listings of an object store (one per table or partition)


class Entry(NamedTuple):
    """One listed part file."""

    path: str  # as the filesystem names it
    size: int
    mtime: float
    version: str  # changes whenever the object does: its ETag on object stores, else mtime


class Store:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = resolve_root(root)
        self.is_local = "://" not in self.root
        # Object stores: no listings cache, or a long-lived reader (the dashboard) would
        # never see another process's new files.
        options = {} if self.is_local else {"use_listings_cache": False}
        self.fs, self.base = fsspec.core.url_to_fs(self.root, **options)
        self._cache: PartCache | None = None

    @property
    def cache(self):
        """The local cache of this remote warehouse's part files (None on a local disk)."""
        if self._cache is None and not self.is_local:
            from .cache import PartCache, settings

            self._cache = PartCache.get(settings())
        return self._cache

    def url(self, *parts: str) -> str:
        """Path or URL that DuckDB reads (after ``register_filesystem`` for remote roots)."""
        return "/".join([self.root, *parts])

    def _path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def table_dir(self, table: Table, partition_value: str | None = None) -> str:
        parts = [table.name]
        if table.partition and partition_value is not None:
            parts.append(f"{table.partition}={partition_value}")
        return self._path(*parts)

    def has_files(self, table: Table) -> bool:
        top = self._path(table.name)
        if self.is_local:
            if not os.path.isdir(top):
                return False
            dirs = [top]
            if table.partition:
                dirs = [e.path for e in os.scandir(top) if e.is_dir()]
            return any(_has_part(d) for d in dirs)
        return bool(self.list_detailed(table))

    def all_parts(self, table: Table) -> list[str]:
        """Every part file of a table, across its partitions (one listing, no glob in SQL)."""
        top = self._path(table.name)
        if not self.is_local:
            return [self.url_of(e.path) for e in self.list_detailed(table)]
        if not os.path.isdir(top):
            return []
        dirs = [e.path for e in os.scandir(top) if e.is_dir()] if table.partition else [top]
        return sorted(e.path for d in dirs for e in os.scandir(d)
                      if e.name.startswith("part-") and e.name.endswith(".parquet"))

    def url_of(self, fs_path: str) -> str:
        """A path the filesystem listed, as the URL DuckDB reads."""
        if self.is_local:
            return fs_path
        protocol = self.root.split("://", 1)[0]
        return f"{protocol}://{fs_path}"

    def list_parts(self, table: Table, partition_value: str | None = None) -> list[str]:
        d = self.table_dir(table, partition_value)
        if self.is_local:
            if not os.path.isdir(d):
                return []
            return sorted(e.path for e in os.scandir(d)
                          if e.name.startswith("part-") and e.name.endswith(".parquet"))
        return sorted(p for p in self._find(d) if _is_part(p[len(d) + 1:], None))

    def list_detailed(self, table: Table, partitions: list[str] | None = None
                      ) -> list[Entry]:
        """Every part file of a table (of these partitions only, if given): a directory scan
        locally; on object stores one paginated recursive listing of the table, or one per
        partition asked for, concurrently. Never a glob, which lists each directory."""
        top = self._path(table.name)
        if not self.is_local:
            if partitions is not None and table.partition:
                dirs = [self.table_dir(table, v) for v in partitions]
                with ThreadPoolExecutor(LISTERS) as pool:
                    found = [(d, i) for d, listing in zip(dirs, pool.map(self._find, dirs),
                                                          strict=True) for i in listing.items()]
                return sorted(_entry(p, i) for d, (p, i) in found
                              if _is_part(p[len(d) + 1:], None))
            return sorted(_entry(p, i) for p, i in self._find(top).items()
                          if _is_part(p[len(top) + 1:], table.partition))
        if not os.path.isdir(top):
            return []
        if partitions is not None and table.partition:
            dirs = [d for d in (self.table_dir(table, v) for v in partitions)
                    if os.path.isdir(d)]
        else:
            dirs = [e.path for e in os.scandir(top) if e.is_dir()] if table.partition else [top]
        out = []
        for d in dirs:
            with os.scandir(d) as it:
                for e in it:
                    if e.name.startswith("part-") and e.name.endswith(".parquet"):
                        try:
                            st = e.stat()
                        except FileNotFoundError:  # removed since the scan began
                            continue
                        out.append(Entry(e.path, st.st_size, st.st_mtime, str(st.st_mtime_ns)))
        return sorted(out)

    def list_prefixed(self, table: Table, prefixes: list[str]) -> list[Entry]:
        """The part files of a partitioned table whose partition value starts with one of
        ``prefixes`` (``2026-12-``: a month's days): one listing per prefix where the
        filesystem lists by key prefix (S3, GCS), else the table's whole listing."""
        top = self._path(table.name)
        if self.is_local:
            if not os.path.isdir(top):
                return []
            values = [e.name.split("=", 1)[1] for e in os.scandir(top)
                      if e.is_dir() and "=" in e.name]
            return self.list_detailed(table, [v for v in values if v.startswith(tuple(prefixes))])
        if "prefix" not in inspect.signature(self.fs.find).parameters:
            return [e for e in self.list_detailed(table)
                    if e.path[len(top) + 1:].split("=", 1)[-1].startswith(tuple(prefixes))]

        def listed(prefix: str) -> dict[str, dict]:
            return self.fs.find(top, prefix=f"{table.partition}={prefix}", detail=True)

        with ThreadPoolExecutor(LISTERS) as pool:
            found = {p: i for listing in pool.map(listed, prefixes) for p, i in listing.items()}
        return sorted(_entry(p, i) for p, i in found.items()
                      if _is_part(p[len(top) + 1:], table.partition))

    def _find(self, directory: str) -> dict[str, dict]:
        """Every object under ``directory``, with its details (one paginated listing)."""
        try:
            return self.fs.find(directory, detail=True)
        except FileNotFoundError:
            return {}

    def read_tails(self, files: list[tuple[str, int]], n: int) -> list[bytes | Exception]:
        """The last ``n`` bytes of each (path, size): where Parquet keeps its footer. Object
        stores fetch them concurrently (one ranged GET each)."""
        if not files:
            return []
        if not self.is_local:
            return self.fs.cat_ranges([p for p, _ in files], [max(0, s - n) for _, s in files],
                                      [s for _, s in files], on_error="return")
        out: list[bytes | Exception] = []
        for path, size in files:
            try:
                with open(path, "rb") as f:
                    f.seek(max(0, size - n))
                    out.append(f.read(n))
            except OSError as e:
                out.append(e)
        return out

    def write_part(self, table: Table, data: pa.Table, partition_value: str | None = None,
                   write_id: str | None = None, metadata: dict[str, str] | None = None,
                   row_group_size: int | None = None, stamp: str | None = None) -> str:
        """Write one new part file atomically; returns its path. Offline files carry their
        run's ``write_id`` in the name, so readers pick committed files without opening any.
        ``metadata`` goes into the Parquet footer (compaction records what a file replaces).
        Names start with the writer's UTC clock to the microsecond (or ``stamp``: a merged
        file takes its newest original's), so their order is the writes' order: where a key
        repeats across files, the newest file's row wins (`keys`)."""
        d = self.table_dir(table, partition_value)
        stamp = stamp or new_stamp()
        name = f"part-{stamp}-{write_id or uuid.uuid4().hex[:12]}.parquet"
        final = f"{d}/{name}"
        data = data.cast(table.schema) if data.schema != table.schema else data
        if metadata:
            data = data.replace_schema_metadata({**(data.schema.metadata or {}), **metadata})
        options = {"compression": "zstd", "use_dictionary": _dictionary_columns(table),
                   "write_statistics": [f.name for f in table.schema
                                        if f.name not in _NO_STATISTICS],
                   "row_group_size": row_group_size}
        if not self.is_local:
            with self.fs.open(final, "wb") as f:
                pq.write_table(data, f, **options)
            return final
        os.makedirs(d, exist_ok=True)
        tmp = f"{d}/{TMP_PREFIX}{uuid.uuid4().hex}.parquet{TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                pq.write_table(data, f, **options)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return final

    def remove(self, paths: list[str]) -> None:
        for p in paths:
            if self.is_local:
                if os.path.exists(p):
                    os.remove(p)
            elif self.fs.exists(p):
                self.fs.rm(p)

    def walk_files(self) -> list[str]:
        """Every file under the root (for `evallib check`)."""
        if self.is_local:
            if not os.path.isdir(self.base):
                return []
            return sorted(str(p) for p in Path(self.base).rglob("*") if p.is_file())
        return sorted(self.fs.find(self.base))


# Text that no query filters by range: min/max statistics of it cost writes (a fifth of a
# 2M-score write) and would never skip a row group.
_NO_STATISTICS = {"case_id", "input", "output", "expected", "rationale", "error", "comment",
                  "strata_json", "scorer_version"}


def _dictionary_columns(table: Table) -> list[str]:
    """Text columns repeat (ids, metric names, versions); numbers mostly do not."""
    return [f.name for f in table.schema if not pa.types.is_floating(f.type)
            and not pa.types.is_integer(f.type) and not pa.types.is_timestamp(f.type)]


def _remote_mtime(info: dict) -> float:
    m = info.get("mtime") or info.get("LastModified") or info.get("created") or 0.0
    return m.timestamp() if hasattr(m, "timestamp") else float(m)


def _entry(path: str, info: dict) -> Entry:
    mtime = _remote_mtime(info)
    version = next((str(info[k]).strip('"') for k in ("ETag", "etag", "md5Hash", "generation")
                    if info.get(k)), repr(mtime))
    return Entry(path, int(info.get("size") or 0), mtime, version)


def _is_part(relative: str, partition: str | None) -> bool:
    """A part file's path below its table (``partition=value/part-….parquet``) or directory."""
    *dirs, name = relative.split("/")
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return False
    if partition is None:
        return not dirs
    return len(dirs) == 1 and dirs[0].startswith(f"{partition}=")


def _has_part(directory: str) -> bool:
    with os.scandir(directory) as it:
        return any(e.name.startswith("part-") and e.name.endswith(".parquet") for e in it)
