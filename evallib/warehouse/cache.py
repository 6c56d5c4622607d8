"""A local disk cache of a remote warehouse's part files, so DuckDB reads local files.

An object store answers in 20-50 ms a request, and DuckDB reads a remote file in several
requests: a dashboard reading S3 directly waits seconds per page. Part files are never
rewritten (compaction and a replaced run write new names), so a copy cannot go stale. A copy
is keyed by the object's URL, size and ETag: a file replaced under the same name gets a new
key, and a removed one is no longer listed, so neither is ever served as current.

- Where: ``EVALLIB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/evallib``, else
  ``~/.cache/evallib``), shared by every process and kept across restarts. The tree mirrors
  the bucket, because DuckDB reads hive partitions from directory names:
  ``parts/s3/bucket/prefix/online_traces/date=…/part-….<key>.parquet``.
- How much: ``EVALLIB_CACHE_SIZE`` (default ``10GB``; ``0`` keeps nothing). The least
  recently used copies go first, but never one used in the last ``grace`` seconds (a
  connection may be reading it): a file that does not fit is read through, not kept.
- Whole or not at all: a copy is written under a temporary name, checked (its size; its MD5
  against the ETag of a single-part upload), stamped with a fixed mtime, then renamed. A copy
  whose size or mtime differs later was truncated or modified: it is deleted and fetched
  again. Its access time is when a reader last used it (the LRU order).
- What each file's footer says (as `evallib.warehouse.catalog` parsed it) is kept in one
  small index per warehouse (``footers/<hash of the root>.json``), so a new process checks
  the warehouse without fetching or parsing a footer again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import fsspec

from ..errors import EvallibError

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("evallib.cache")

DEFAULT_SIZE = "10GB"
GRACE = 900.0  # seconds a used copy is safe from eviction (a dashboard renews every 30 s)
STAMP = 946_684_800  # 2000-01-01: every whole copy's mtime; any other means it was modified
CHUNK = 4 * 1024 * 1024  # a large file comes in ranged GETs of this size, concurrently
ROUND = 64 * 1024 * 1024  # at most this much fetched into memory per round
_STALE_TMP = 3600.0  # a temporary file this old belongs to a fetch that died
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3,
          "GB": 1000**3, "T": 1000**4, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2,
          "GIB": 1024**3, "TIB": 1024**4}


class Remote(Protocol):
    """A listed part file (`evallib.warehouse.catalog.Part`)."""

    path: str  # as the filesystem names it
    url: str
    size: int
    mtime: float
    version: str  # the ETag


@dataclass(frozen=True)
class Settings:
    directory: Path
    max_bytes: int
    grace: float = GRACE


def settings() -> Settings:
    """``EVALLIB_CACHE_DIR`` and ``EVALLIB_CACHE_SIZE``, or their defaults."""
    directory = os.environ.get("EVALLIB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "evallib")
    size = os.environ.get("EVALLIB_CACHE_SIZE") or DEFAULT_SIZE
    return Settings(Path(directory).expanduser().resolve(), parse_size(size, "EVALLIB_CACHE_SIZE"))


def parse_size(text: str, what: str = "size") -> int:
    """``10GB``, ``500MB``, ``1.5GiB``, ``0`` → bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m and m.group(2).upper()
    if not m or unit not in _UNITS:
        raise EvallibError(f"{what}: {text!r} is not a size (e.g. 10GB, 500MB, 0)")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass
class Status:
    directory: str
    max_bytes: int
    files: int = 0  # whole copies
    bytes: int = 0  # of the copies


class PartCache:
    """Copies of part files under ``settings.directory``; one instance per directory and
    process (shared by every store of it), safe to use from many threads."""

    _instances: dict[Settings, PartCache] = {}
    _instances_lock = threading.Lock()

    def __init__(self, config: Settings) -> None:
        self.settings = config
        self.root = config.directory / "parts"
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes held (last scan + added) and reserved
        self._pending = 0  # bytes reserved for fetches in flight
        self._inflight: dict[str, threading.Event] = {}
        self.corrupt = 0  # copies found damaged and deleted (then fetched again)

    @classmethod
    def get(cls, config: Settings) -> PartCache:
        with cls._instances_lock:
            if config not in cls._instances:
                cls._instances[config] = cls(config)
            return cls._instances[config]

    # --- where a copy lives ---------------------------------------------------------------

    def path(self, f: Remote) -> str:
        """The copy's path: the URL's directories mirrored, the key in the name."""
        protocol, _, rest = f.url.partition("://")
        parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
        key = hashlib.blake2b(f"{f.size}:{f.version}".encode(), digest_size=6).hexdigest()
        name = parts[-1].removesuffix(".parquet")
        return str(self.root.joinpath(protocol, *parts[:-1], f"{name}.{key}.parquet"))

    # --- reading what is held -------------------------------------------------------------

    def lookup(self, files: Iterable[Remote], touch: bool = True) -> dict[Any, str]:
        """The verified copies of these files (each marked used, with ``touch``); a damaged
        copy is deleted, so the caller fetches it again."""
        out, now = {}, time.time()
        for f in files:
            p = self.path(f)
            try:
                st = os.stat(p)
            except OSError:  # not held (or no cache directory to hold it)
                continue
            if st.st_size == f.size and int(st.st_mtime) == STAMP:
                if touch and now - st.st_atime > 60:
                    _touch(p, now)
                out[f] = p
                continue
            log.warning("evallib cache: %s was modified or truncated since it was fetched "
                        "(%d bytes, expected %d); fetching it again", p, st.st_size, f.size)
            self.corrupt += 1
            _unlink(p)
        return out

    def tail(self, f: Remote, n: int) -> bytes | None:
        """The last ``n`` bytes of the file from its copy, else None."""
        copy = self.lookup([f]).get(f)
        if copy is None:
            return None
        try:
            with open(copy, "rb") as h:
                h.seek(max(0, f.size - n))
                return h.read(n)
        except OSError:
            return None

    def footers(self, root: str) -> dict[str, Any]:
        """The footer index of a warehouse: key → what `catalog` parsed."""
        try:
            with open(self._index(root), encoding="utf-8") as h:
                return json.load(h)
        except (OSError, ValueError):
            return {}

    def add_footers(self, root: str, new: dict[str, Any]) -> None:
        """Add to the index (merged with what other processes added meanwhile)."""
        if new:
            old = self.footers(root)
            index = {**(old if len(old) < 200_000 else {}), **new}  # forget the long gone
            with contextlib.suppress(OSError):  # not kept: parsed again next time
                _write_atomic(self._index(root), json.dumps(index).encode(), stamp=False)

    def _index(self, root: str) -> str:
        name = hashlib.blake2b(root.encode(), digest_size=8).hexdigest()
        return str(self.settings.directory / "footers" / f"{name}.json")

    # --- fetching ---------------------------------------------------------------------------

    def fetch(self, fs: fsspec.AbstractFileSystem, files: list[Remote]) -> dict[Any, str]:
        """Copies of these files, fetching the missing ones concurrently (a large file in
        ranged GETs of ``CHUNK``). Files that fail or do not fit are left out."""
        return self._fetch(fs, files)[0]

    def open(self, fs: fsspec.AbstractFileSystem, f: Remote) -> BinaryIO:
        """The file for reading: its copy (fetched now if missing), or, when it cannot be
        kept, its bytes read through."""
        copies, unkept = self._fetch(fs, [f])
        if f in copies:
            with open(copies[f], "rb") as h:
                return SharedReader(os.dup(h.fileno()), f.size)
        data = unkept.get(f) or _download(fs, [f])[0]
        if isinstance(data, BaseException):
            raise data
        return SharedReader(data, f.size)

    def _fetch(self, fs: fsspec.AbstractFileSystem, files: list[Remote]
               ) -> tuple[dict[Any, str], dict[Any, bytes]]:
        """`fetch`, and the bytes of files fetched but not kept (the disk refused them)."""
        have, unkept = self.lookup(files), {}
        mine, theirs = self._claim([f for f in files if f not in have])
        try:
            for group in _rounds(mine):
                kept = [f for f in group if self._reserve(f.size)]
                for f, data in zip(kept, _download(fs, kept), strict=True):
                    good = isinstance(data, bytes) and self._valid(f, data)
                    if good:
                        try:
                            have[f] = _write_atomic(self.path(f), data, stamp=True)
                        except OSError as e:  # a full or read-only disk: read through
                            log.warning("evallib cache: cannot keep %s: %s", f.url, e)
                            unkept[f], good = data, False
                    self._settle(f.size, good)
        finally:
            self._release(mine)
        for f in theirs:  # another thread was fetching them
            self._inflight_wait(f)
        have.update(self.lookup(theirs))
        return have, unkept

    def _valid(self, f: Remote, data: bytes) -> bool:
        if len(data) != f.size:
            log.warning("evallib cache: %s has %d bytes, listed %d (changed since listed?)",
                        f.url, len(data), f.size)
            return False
        if re.fullmatch(r"[0-9a-f]{32}", f.version) and \
                hashlib.md5(data, usedforsecurity=False).hexdigest() != f.version:
            log.warning("evallib cache: %s does not match its ETag; not kept", f.url)
            return False
        return True

    def _claim(self, files: list[Remote]) -> tuple[list[Remote], list[Remote]]:
        mine, theirs = [], []
        with self._lock:
            for f in files:
                p = self.path(f)
                if p in self._inflight:
                    theirs.append(f)
                else:
                    self._inflight[p] = threading.Event()
                    mine.append(f)
        return mine, theirs

    def _release(self, files: list[Remote]) -> None:
        with self._lock:
            for f in files:
                self._inflight.pop(self.path(f)).set()

    def _inflight_wait(self, f: Remote) -> None:
        with self._lock:
            event = self._inflight.get(self.path(f))
        if event is not None:
            event.wait()

    # --- the size bound ---------------------------------------------------------------------

    def _reserve(self, n: int) -> bool:
        """Room for ``n`` more bytes, evicting the least recently used copies not used
        within the grace period; False when there is none."""
        limit = self.settings.max_bytes
        with self._lock:
            if n > limit:
                return False
            if self._total is None or self._total + n > limit:
                self._total = self._evict(limit - n - self._pending) + self._pending
            if self._total + n > limit:
                return False
            self._total += n
            self._pending += n
            return True

    def _settle(self, n: int, written: bool) -> None:
        """A reserved fetch is over: on disk now, or not at all."""
        with self._lock:
            self._pending -= n
            if not written and self._total is not None:
                self._total -= n

    def _evict(self, target: int) -> int:
        """Delete the least recently used entries until at most ``target`` bytes are held
        (never one used within the grace period); returns the bytes held."""
        entries, now = _scan(self.root), time.time()
        total = sum(size for _, size, _ in entries)
        for path, size, used in sorted(entries, key=lambda e: e[2]):
            if total <= target:
                break
            if now - used < self.settings.grace:
                break  # everything after it was used more recently still
            _unlink(path)
            total -= size
        return total

    # --- evallib cache status | clear -----------------------------------------------------

    def status(self) -> Status:
        out = Status(str(self.settings.directory), self.settings.max_bytes)
        for _, size, _ in _scan(self.root):
            out.bytes += size
            out.files += 1
        return out

    def clear(self) -> Status:
        """Delete every copy; returns what was held."""
        held = self.status()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.settings.directory / "footers", ignore_errors=True)
        with self._lock:
            self._total = 0
        return held


def held(store: Store, cache: PartCache) -> dict[str, int]:
    """How much of a remote warehouse's current part files the cache holds (one listing
    per table; nothing fetched, nothing marked used)."""
    from concurrent.futures import ThreadPoolExecutor

    from .catalog import Part
    from .schema import ROLLUPS, TABLES
    from .store import LISTERS

    tables = [*TABLES.values(), *ROLLUPS.values()]
    with ThreadPoolExecutor(LISTERS) as pool:
        entries = [e for es in pool.map(store.list_detailed, tables) for e in es]
    files = [Part(e.path, store.url_of(e.path), e.size, e.mtime, None, e.version)
             for e in entries]
    copies = cache.lookup(files, touch=False)
    return {"files": len(files), "bytes": sum(f.size for f in files), "cached": len(copies),
            "cached_bytes": sum(f.size for f in copies)}


class ReadThrough(fsspec.AbstractFileSystem):
    """How DuckDB reads the part files of a snapshot that the cache does not hold yet:
    opening one fetches it into the cache (or reads it through when it does not fit). The
    next snapshot reads the copy directly."""

    protocol = "evallib-cache"
    cachable = False  # one per connection, over its own files

    def __init__(self) -> None:  # no arguments: fsspec hashes them for every instance
        super().__init__()
        self.cache: PartCache | None = None
        self.remote: fsspec.AbstractFileSystem | None = None
        self.files: dict[str, Remote] = {}

    @classmethod
    def over(cls, cache: PartCache, fs: fsspec.AbstractFileSystem, files: Iterable[Remote]
             ) -> ReadThrough:
        """Reads of these files, through this cache, from ``fs``."""
        out = cls()
        out.cache, out.remote = cache, fs
        out.files = {f.path: f for f in files}
        return out

    def _file(self, path: str) -> Remote:
        key = path.split("://", 1)[-1]
        if key not in self.files:
            raise FileNotFoundError(path)
        return self.files[key]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        f = self._file(path)
        return {"name": path, "size": f.size, "type": "file"}

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self._file(path).mtime, UTC)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> BinaryIO:
        if mode != "rb":
            raise PermissionError(f"{path} is read-only")
        assert self.cache is not None and self.remote is not None
        return self.cache.open(self.remote, self._file(path))


class SharedReader(io.RawIOBase):
    """A file several DuckDB threads read at once. DuckDB reads a Python file by seeking
    and then reading, two calls another thread can come between, so each thread keeps its
    own position here and reads at it (``os.pread``; or a slice of bytes in memory)."""

    def __init__(self, source: int | bytes, size: int) -> None:
        super().__init__()
        self._source, self._size = source, size
        self._at = threading.local()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return getattr(self._at, "pos", 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._size}[whence]
        self._at.pos = base + offset
        return self._at.pos

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        n = self._size - pos if n is None or n < 0 else min(n, max(0, self._size - pos))
        if isinstance(self._source, bytes):
            data = self._source[pos:pos + n]
        else:
            data = os.pread(self._source, n, pos)
        self._at.pos = pos + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and isinstance(self._source, int):
            os.close(self._source)
        super().close()


def _download(fs: fsspec.AbstractFileSystem, files: list[Remote]
              ) -> list[bytes | BaseException]:
    """Each file whole, all of them concurrently: one GET per ``CHUNK``."""
    paths, starts, ends, owner = [], [], [], []
    for i, f in enumerate(files):
        for start in range(0, max(f.size, 1), CHUNK):
            paths.append(f.path)
            starts.append(start)
            ends.append(min(f.size, start + CHUNK))
            owner.append(i)
    if not paths:
        return []
    chunks = fs.cat_ranges(paths, starts, ends, on_error="return")
    pieces: list[list[bytes | BaseException]] = [[] for _ in files]
    for i, c in zip(owner, chunks, strict=True):
        pieces[i].append(c)
    out: list[bytes | BaseException] = []
    for ps in pieces:
        error = next((p for p in ps if isinstance(p, BaseException)), None)
        out.append(error if error is not None else b"".join(ps))
    return out


def _rounds(files: list[Remote]) -> Iterable[list[Remote]]:
    group: list[Remote] = []
    size = 0
    for f in files:
        if group and size + f.size > ROUND:
            yield group
            group, size = [], 0
        group.append(f)
        size += f.size
    if group:
        yield group


def _write_atomic(path: str, data: bytes, stamp: bool) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as h:
            h.write(data)
        if stamp:
            os.utime(tmp, (time.time(), STAMP))
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    return path


def _touch(path: str, now: float) -> None:
    """Mark a copy used (its access time), keeping the stamp that says it is unmodified."""
    with contextlib.suppress(OSError):
        os.utime(path, (now, STAMP))


def _scan(root: Path) -> list[tuple[str, int, float]]:
    """(path, size, last use) of every entry; temporary files of dead fetches removed."""
    out, now = [], time.time()
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if name.endswith(".tmp"):
                if now - st.st_mtime > _STALE_TMP:
                    _unlink(path)
                continue
            out.append((path, st.st_size, st.st_atime))
    return out


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
