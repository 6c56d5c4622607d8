"""`BufferedRecorder` queues traces in memory (bounded; a full queue drops and counts) and a
background thread writes them in batches, by size or age. Nothing it does raises into, or
blocks, the request path; a killed process loses at most what was not yet flushed, and
every file it wrote is whole (part files are atomic)."""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import DataError, EvallibError
from .feedback import feedback_rows
from .redaction import DEFAULT_REDACTOR, Redactor
from .sampling import Sampler

__all__ = ["BufferedRecorder", "RecorderStats", "score_rows"]

log = logging.getLogger("evallib.online")


_STOP = object()


@dataclass
class RecorderStats:
    sampled: int = 0  # traces queued
    skipped: int = 0  # traces the sampler left out
    dropped: int = 0  # traces or feedback refused because the queue was full or closed
    written: int = 0  # traces in part files
    feedback: int = 0  # feedback rows in part files
    rejected: int = 0  # items the warehouse refused (bad data), logged
    lost: int = 0  # items in batches that could not be written (I/O errors), logged
    batches: int = 0


class BufferedRecorder:
    """Record sampled production traces from a service; see the module docstring.

    >>> rec = BufferedRecorder("s3://bucket/evals", sampler=Sampler(0.05))
    >>> rec.record(trace_id, input=question, output=answer, strata={"segment": "smb"})
    >>> rec.feedback(trace_id, thumbs=False)
    >>> rec.close()  # at shutdown (also registered with atexit): flushes what is queued
    """

    def __init__(self, warehouse: Any = None, *, sampler: Sampler | None = None,
                 redactor: Redactor | None = DEFAULT_REDACTOR, max_batch: int = 1000,
                 flush_interval: float = 5.0, max_queue: int = 10_000,
                 on_flush: Callable[[RecorderStats], None] | None = None) -> None:
        from ..warehouse import Warehouse

        if max_batch < 1 or max_queue < 1 or not flush_interval > 0:
            raise EvallibError("max_batch and max_queue must be >= 1, flush_interval > 0")
        self.warehouse = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
        self.sampler, self.redactor = sampler, redactor
        self.max_batch, self.flush_interval = max_batch, flush_interval
        self.on_flush = on_flush
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._lock = threading.Lock()
        self._stats = RecorderStats()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="evallib-recorder", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # The request path: a hash, a tuple, a non-blocking put. Never raises.

    def record(self, trace_id: str, input: Any = None, output: Any = None, **fields: Any
               ) -> bool:
        """Queue one trace if sampled. ``fields``: timestamp, strata, release, variant,
        latency_ms, tokens_in, tokens_out, cost_usd, error, refusal, tool_error, retrieved
        (doc ids, rank order), cited, relevant (doc ids), scores (Score objects or dicts).
        Returns whether it was queued."""
        try:
            if self.sampler is not None and not self.sampler(trace_id, fields.get("strata")):
                with self._lock:
                    self._stats.skipped += 1
                return False
            fields.setdefault("timestamp", time.time())
            return self._put(("trace", trace_id, input, output, fields), "sampled")
        except Exception:  # the service must not notice us
            log.exception("evallib recorder: could not queue trace %r", trace_id)
            return False

    def feedback(self, trace_id: str, **feedback: Any) -> bool:
        """Queue feedback for a trace (every trace's, sampled or not): thumbs, rating, edit,
        comment, user_id, timestamp, event_id as in `feedback_rows`."""
        try:
            feedback.setdefault("timestamp", time.time())
            return self._put(("feedback", trace_id, None, None, feedback), None)
        except Exception:
            log.exception("evallib recorder: could not queue feedback for %r", trace_id)
            return False

    def _put(self, item: tuple, counter: str | None) -> bool:
        try:
            if self._closed:
                raise queue.Full
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self._stats.dropped += 1
            return False
        if counter:
            with self._lock:
                setattr(self._stats, counter, getattr(self._stats, counter) + 1)
        return True

    @property
    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(**asdict(self._stats))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write what is queued now; True when it was written within ``timeout``."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush and stop the background thread. Later records are dropped (and counted)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("evallib recorder: queue still full at close; unflushed items are lost")
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def __enter__(self) -> BufferedRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The background thread.

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            batch, events = [], []
            deadline = time.monotonic() + self.flush_interval
            item = first
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    batch.append(item)
                if stop or events or len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for e in events:
                e.set()

    def _write(self, batch: list[tuple]) -> None:
        rows = _batch_rows(batch, self.redactor)
        with self._lock:
            self._stats.rejected += rows.rejected
        for _ in range(len(batch) + 1):  # drop one bad item per refusal, then retry
            try:
                counts = self.warehouse.record_online(**rows.tables)
            except DataError as e:
                bad = rows.owner(e)
                log.error("evallib recorder: refused %s", e)
                if bad is None:
                    break
                with self._lock:
                    self._stats.rejected += 1
                rows = _batch_rows([it for i, it in enumerate(rows.items) if i != bad],
                                   self.redactor)
                continue
            except Exception:
                log.exception("evallib recorder: a batch of %d items was not written",
                              len(rows.items))
                break
            with self._lock:
                self._stats.written += counts["online_traces"]
                self._stats.feedback += counts["feedback"]
                self._stats.batches += 1
            if self.on_flush is not None:
                try:
                    self.on_flush(self.stats)
                except Exception:
                    log.exception("evallib recorder: on_flush failed")
            return
        with self._lock:
            self._stats.lost += len(rows.items)


@dataclass
class _BatchRows:
    items: list[tuple]
    tables: dict[str, list[dict[str, Any]]]
    index: dict[str, list[int]]  # table → item index of each row
    rejected: int = 0  # items refused while building the rows

    def owner(self, e: DataError) -> int | None:
        rows = self.index.get(e.source)
        return rows[e.row] if rows is not None and e.row is not None and e.row < len(rows) \
            else None


_TRACE_FIELDS = {"timestamp", "strata", "release", "variant", "latency_ms", "tokens_in",
                 "tokens_out", "cost_usd", "error", "refusal", "tool_error"}


def _batch_rows(items: list[tuple], redactor: Redactor | None) -> _BatchRows:
    """Redacted warehouse rows for a batch (here, off the request path)."""
    clean: Callable[[Any], Any] = redactor.value if redactor else (lambda v: v)
    names = ("traces", "scores", "retrievals", "feedback")
    tables: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    index: dict[str, list[int]] = {f"online_{n}" if n != "feedback" else n: [] for n in names}

    kept: list[tuple] = []
    for item in items:
        try:
            rows = _item_rows(item, clean, redactor)
        except Exception as e:  # a bad item costs only itself
            log.error("evallib recorder: refused %s for trace %r: %s", item[0], item[1], e)
            continue
        kept.append(item)
        for name, row in rows:
            tables[name].append(row)
            index[f"online_{name}" if name != "feedback" else name].append(len(kept) - 1)
    return _BatchRows(kept, tables, index, rejected=len(items) - len(kept))


def _item_rows(item: tuple, clean: Callable[[Any], Any], redactor: Redactor | None
               ) -> list[tuple[str, dict[str, Any]]]:
    kind, trace_id, input_, output, fields = item
    ts = _timestamp(fields.get("timestamp"))
    if kind == "feedback":
        return [("feedback", row) for row in feedback_rows(
            trace_id, redactor=redactor, **{**fields, "timestamp": ts})]
    if not isinstance(trace_id, str) or not trace_id:
        raise EvallibError("a trace needs a non-empty trace_id")
    unknown = set(fields) - _TRACE_FIELDS - {"retrieved", "cited", "relevant", "scores"}
    if unknown:
        raise EvallibError(f"unknown trace fields: {', '.join(sorted(unknown))}")
    row = {k: v for k, v in fields.items() if k in _TRACE_FIELDS}
    row.update(trace_id=trace_id, timestamp=ts, input=_text(clean(input_)),
               output=_text(clean(output)),
               error=None if row.get("error") is None else clean(str(row["error"])))
    out = [("traces", row)]
    relevant = set(fields.get("relevant") or ())
    cited = fields.get("cited")
    for rank, doc in enumerate(fields.get("retrieved") or (), start=1):
        out.append(("retrievals", {"trace_id": trace_id, "timestamp": ts, "doc_id": str(doc),
                                   "rank": rank,
                                   "relevant": (doc in relevant) if relevant else None,
                                   "cited": None if cited is None else doc in cited}))
    out += [("scores", {"trace_id": trace_id, "timestamp": ts, **_score_row(s)})
            for s in fields.get("scores") or ()]
    return out


def _timestamp(value: Any) -> Any:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value or datetime.now(UTC)


def _text(value: Any) -> str | None:
    from ..authoring.datasets import as_text

    return as_text(value)


def _score_row(score: Any) -> dict[str, Any]:
    """A Score (from evallib.scorers) or a mapping, as an ``online_scores`` row."""
    if isinstance(score, Mapping):
        return dict(score)
    row = asdict(score)
    error = row.pop("error", None)
    row.pop("cost_usd", None)
    if row.get("value") is None and error:
        row["rationale"] = f"unscored: {error}"
    return {k: (v or None) if k in ("scorer", "scorer_version") else v for k, v in row.items()}


def score_rows(trace: Mapping[str, Any], scores: Iterable[Any]) -> list[dict[str, Any]]:
    """``online_scores`` rows for one trace (its trace_id and timestamp) from Scores."""
    return [{"trace_id": trace["trace_id"], "timestamp": trace["timestamp"], **_score_row(s)}
            for s in scores]
