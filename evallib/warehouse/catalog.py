"""What a reader sees: one listing of a table's part files, and which of them to read.

`connect()` lists every table once and builds its views over exactly those files, so every
query on a connection sees the same warehouse (a live glob would let two queries of one page
disagree while writers add files). Of the files listed, a reader skips:

- files that `evallib compact` replaced: the merged file names them in its Parquet footer,
  so it and its list appear in a listing at the same instant, and a listing that holds the
  merged file hides the originals (no row counted twice; no row lost either, because the
  originals are deleted only after a grace period, once no open snapshot can still read them);
- files that are not readable Parquet of the table (truncated copy, garbage, wrong columns):
  DuckDB would fail every query over them. They are reported, and `evallib check`
  quarantines them.

Footers are read once per file and process, keyed by (path, size, version): part files are
never rewritten in place, so a known file needs no read per connection. On object stores the
tables are listed concurrently (one paginated listing each) and the footers fetched in one
concurrent batch, through the local cache (`evallib.warehouse.cache`): small files come
whole, and what each footer says is kept in the cache's index, so a later process fetches
and parses none of them again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ROLLUPS, Table
from .store import LISTERS, Store

REPLACES = "evallib.replaces"  # footer key: JSON list of the file names (same directory)
COVERS = "evallib.covers"  # footer key: "<files>:<xor hex>" of the original files merged
SOURCE = "evallib.source"  # footer key of a rollup: the fingerprint of what it summarises
_TAIL = 64 * 1024  # one read gets the footer of any part file we write
_REMOTE_TAIL = 16 * 1024  # … of most of them: a request costs the same, the bytes do not
WHOLE = 256 * 1024  # an object store's files up to this size are fetched whole at once
# … and these tables' files whatever their size: read by every connection (runs, approvals)
# or by most pages (the rollups, one file each)
WARM = {"runs", "approvals", *ROLLUPS}
_MAGIC = b"PAR1"


@dataclass(frozen=True, eq=False)  # identity: one object per listed file, hashed fast
class Part:
    path: str  # as the filesystem names it
    url: str  # the object (DuckDB reads a remote one from its copy in the cache)
    size: int
    mtime: float
    partition: str | None  # the hive partition value; None for unpartitioned tables
    version: str = ""  # changes whenever the file does (ETag on object stores)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def directory(self) -> str:
        return self.path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class Footer:
    error: str | None = None
    num_rows: int = 0
    replaces: tuple[str, ...] = ()
    covers: tuple[int, int] | None = None  # (original files, xor of their name hashes)
    source: str | None = None  # a rollup's source fingerprint


@dataclass
class Listing:
    """One table as a reader sees it."""

    table: Table
    parts: list[Part] = field(default_factory=list)  # readable and current
    unreadable: list[tuple[Part, str]] = field(default_factory=list)
    replaced: list[tuple[Part, Part]] = field(default_factory=list)  # (old, its replacement)
    footers: dict[Part, Footer] = field(default_factory=dict)

    def fingerprints(self) -> dict[str | None, str]:
        """Per partition, which original files its current parts hold: ``<n>-<xor>``.
        Adding a file changes it; compacting does not (the merged file carries the count
        and hash of what it merged), so a rollup stays fresh across a compaction."""
        acc: dict[str | None, tuple[int, int]] = {}
        for p in self.parts:
            n, x = self.footers[p].covers or (1, leaf_hash(p.name))
            n0, x0 = acc.get(p.partition, (0, 0))
            acc[p.partition] = (n0 + n, x0 ^ x)
        return {k: f"{n}-{x:016x}" for k, (n, x) in acc.items()}


def leaf_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def list_table(store: Store, table: Table, partitions: list[str] | None = None) -> Listing:
    """The table's current parts (of these partitions only, if given), its unreadable files
    and the files compaction replaced."""
    return list_tables(store, [table], None if partitions is None else
                       {table.name: partitions})[table.name]


def list_tables(store: Store, tables: Iterable[Table],
                partitions: dict[str, list[str]] | None = None,
                prefixes: dict[str, list[str]] | None = None) -> dict[str, Listing]:
    """`list_table` of each table (of the partitions named for it, or those whose value
    starts with one of its ``prefixes``, if any), listed concurrently on object stores,
    with every footer read in one batch."""
    tables = list(tables)
    wanted, starts = partitions or {}, prefixes or {}

    def entries(t: Table) -> list:
        if t.name in starts:
            return store.list_prefixed(t, starts[t.name])
        return store.list_detailed(t, wanted.get(t.name))

    if store.is_local:
        listed = [entries(t) for t in tables]
    else:
        with ThreadPoolExecutor(LISTERS) as pool:
            listed = list(pool.map(entries, tables))
    parts = {t.name: [Part(e.path, store.url_of(e.path), e.size, e.mtime,
                           _partition_value(e.path, t), e.version) for e in es]
             for t, es in zip(tables, listed, strict=True)}
    footers = read_footers(store, [(t, p) for t in tables for p in parts[t.name]])
    return {t.name: assemble(t, parts[t.name], footers) for t in tables}


def assemble(table: Table, parts: list[Part], footers: dict[Part, Footer]) -> Listing:
    """Sort listed parts into current, unreadable and replaced by their footers."""
    listing = Listing(table, footers={p: footers[p] for p in parts})
    by_dir: dict[str, dict[str, Part]] = {}
    for p in parts:
        by_dir.setdefault(p.directory, {})[p.name] = p
    replaced_by: dict[Part, Part] = {}
    for p in parts:
        for name in footers[p].replaces:
            old = by_dir[p.directory].get(name)
            if old is not None:
                replaced_by[old] = p
    for p in parts:
        if footers[p].error:
            listing.unreadable.append((p, footers[p].error))
        elif p in replaced_by:
            listing.replaced.append((p, replaced_by[p]))
        else:
            listing.parts.append(p)
    return listing


_CACHE: dict[tuple[str, int, str, str], Footer] = {}
_LOCK = threading.Lock()


def read_footers(store: Store, parts: list[tuple[Table, Part]]) -> dict[Part, Footer]:
    """Each part's footer, checked against its table's columns (cached, see the module
    doc)."""
    key = {p: (p.url, p.size, p.version, t.name) for t, p in parts}
    table = {p: t for t, p in parts}
    with _LOCK:
        known = {p: _CACHE[k] for p, k in key.items() if k in _CACHE}
    new = [p for _, p in parts if p not in known]
    index = {} if store.is_local or not new else store.cache.footers(store.root)
    for p in new:
        held = index.get(_index_key(table[p], p))
        if held is not None:
            known[p] = Footer(None, held["num_rows"], tuple(held["replaces"]),
                              tuple(held["covers"]) if held["covers"] else None,
                              held["source"])
    new = [p for p in new if p not in known]
    if store.is_local:
        tails = dict(zip(new, store.read_tails([(p.path, p.size) for p in new], _TAIL),
                         strict=True))
    else:
        tails = _remote_tails(store, new, {p for p in new if table[p].name in WARM})
    parsed = {p: _parse(tails[p], p.size, table[p]) for p in new}
    longer = [p for p in new if isinstance(parsed[p], int)]  # footers larger than the tail
    for p, tail in zip(longer, store.read_tails([(p.path, p.size) for p in longer],
                                                max(map(parsed.get, longer), default=0)),
                       strict=True):
        parsed[p] = _parse(tail, p.size, table[p])
    for p in new:
        footer = parsed[p]
        known[p] = footer if isinstance(footer, Footer) else Footer("footer unreadable")
    if not store.is_local:
        store.cache.add_footers(store.root, {_index_key(table[p], p): asdict(known[p])
                                             for p in new if not known[p].error})
    with _LOCK:
        if len(_CACHE) > 1_000_000:
            _CACHE.clear()
        _CACHE.update({key[p]: known[p] for p in new})
    return known


def _index_key(table: Table, p: Part) -> str:
    """A footer's key in the cache's index: the file, and the table's columns it was
    checked against (another evallib version may expect others)."""
    return f"{p.url}|{p.size}|{p.version}|{table.name}:{_columns_hash(table)}"


@functools.cache
def _columns_hash(table: Table) -> str:
    return hashlib.blake2b(str(table.schema).encode(), digest_size=6).hexdigest()


def _remote_tails(store: Store, parts: list[Part], whole: set[Part]
                  ) -> dict[Part, bytes | Exception]:
    """Last bytes of each remote part: from its copy, else fetched concurrently: small
    files and those in ``whole`` into the cache, the tails of the others."""
    cache = store.cache
    out: dict[Part, bytes | Exception] = {}
    for p in parts:
        held = cache.tail(p, _TAIL)  # a copy is local: read enough for any footer
        if held is not None:
            out[p] = held
    wanted = [p for p in parts if p not in out and (p.size <= WHOLE or p in whole)]
    for p, copy in cache.fetch(store.fs, wanted).items():
        with open(copy, "rb") as h:
            h.seek(max(0, p.size - _TAIL))
            out[p] = h.read()
    rest = [p for p in parts if p not in out]
    out.update(zip(rest, store.read_tails([(p.path, p.size) for p in rest], _REMOTE_TAIL),
                   strict=True))
    return out


def _parse(tail: bytes | Exception, size: int, table: Table) -> Footer | int:
    """A footer from a file's last bytes, or how many bytes are needed to parse it."""
    if isinstance(tail, BaseException):
        return Footer(f"unreadable ({type(tail).__name__}: {tail})")
    if size < 12 or len(tail) < 8 or tail[-4:] != _MAGIC:
        return Footer(f"unreadable Parquet: no footer at the end of its {size} bytes "
                      "(truncated, or not Parquet)")
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 12 > size:
        return Footer(f"unreadable Parquet: a footer of {length} bytes in a file of {size}")
    if length + 8 > len(tail):
        return length + 8
    try:
        meta = pq.read_metadata(pa.BufferReader(_MAGIC + tail[-(length + 8):]))
        schema = meta.schema.to_arrow_schema()
    except Exception as e:  # any reason a reader would fail on it: report and skip the file
        return Footer(f"unreadable Parquet footer ({type(e).__name__}: {e})")
    problem = schema_problem(schema, table)
    if problem:
        return Footer(problem)
    kv = meta.metadata or {}
    replaces = tuple(json.loads(kv[REPLACES.encode()])) if REPLACES.encode() in kv else ()
    covers = None
    if COVERS.encode() in kv:
        n, x = kv[COVERS.encode()].decode().split(":")
        covers = (int(n), int(x, 16))
    source = kv[SOURCE.encode()].decode() if SOURCE.encode() in kv else None
    return Footer(None, meta.num_rows, replaces, covers, source)


def schema_problem(schema: pa.Schema, table: Table) -> str | None:
    """Why a file of this schema cannot be read as ``table`` (None: it can)."""
    expected = table.schema
    missing = [f.name for f in expected if f.name not in schema.names]
    if [m for m in missing if m not in table.added]:  # older files may lack added columns
        return f"missing columns {', '.join(missing)}"
    wrong = [f.name for f in expected if f.name not in missing
             and not schema.field(f.name).type.equals(f.type)]
    if wrong:
        return f"wrong column types for {', '.join(wrong)}"
    return None


def _partition_value(path: str, table: Table) -> str | None:
    if not table.partition:
        return None
    directory = path.rsplit("/", 2)[-2]
    prefix = f"{table.partition}="
    return directory[len(prefix):] if directory.startswith(prefix) else None


# --- rollups: which rollup file is current, and which of its entries still hold ----------
# The moments of one group of score rows; the views in `evallib.warehouse.db` use the same text.
MOMENTS = ("any_value(kind) AS kind, count(*) AS n_rows, count(value) AS n, "
           "sum(value) AS sx, sum(value * value) AS sxx, count_if(passed) AS n_passed")
MOMENT_COLUMNS = ["metric", "strata_json", "kind", "n_rows", "n", "sx", "sxx", "n_passed"]


@dataclass
class Current:
    """The current rollup file of a table, its footer's map, and which entries still hold."""

    part: Part | None = None
    source: dict[str, str] = field(default_factory=dict)  # day or run → fingerprint / write
    fresh: set[str] = field(default_factory=set)

    @property
    def stale(self) -> set[str]:
        return set(self.source) - self.fresh


def write_id(part: Part) -> str:
    """``part-<stamp>-<write_id>.parquet`` → write_id."""
    return part.name.rsplit("-", 1)[-1].removesuffix(".parquet")


def current(listing: Listing, sources: dict[str, str]) -> Current:
    """The newest readable rollup file; an entry is fresh while ``sources`` (today's
    fingerprint of each day, committed write of each run) still says the same."""
    if not listing.parts:
        return Current()
    part = max(listing.parts, key=lambda p: (p.mtime, p.name))
    source = json.loads(listing.footers[part].source or "{}")
    return Current(part, source, {k for k, v in source.items() if sources.get(k) == v})
