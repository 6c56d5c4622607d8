"""Production traffic: decide which traces to keep, redact them, record them from a service
without slowing it down, record user feedback, and judge sampled traces later.

- `Sampler` decides by a hash of the trace id (blake2b, not Python's per-process salted
  ``hash``), so every host and process keeps the same traces, and a trace kept at 5% is
  also kept at 20%.
- `Redactor` replaces emails, phone numbers and card numbers (Luhn-checked) with
  ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` before anything is written; extra patterns extend it.
- `BufferedRecorder` queues traces in memory (bounded; a full queue drops and counts) and a
  background thread writes them in batches, by size or age. Nothing it does raises into, or
  blocks, the request path; a killed process loses at most what was not yet flushed, and
  every file it wrote is whole (part files are atomic).
- `feedback_rows` / `record_feedback`: thumbs, ratings, edits (normalised Levenshtein
  distance), comments, by trace id.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import DataError, EvallibError

__all__ = ["DEFAULT_REDACTOR", "BufferedRecorder", "Redactor", "Sampler", "feedback_rows",
           "record_feedback", "redact"]

log = logging.getLogger("evallib.online")


# --- sampling --------------------------------------------------------------------------------


class Sampler:
    """``Sampler(rate=0.05, per_stratum={"segment": {"enterprise": 0.2}})``: keep a trace when
    the hash of its id falls under its rate. A trace matching several stratum rates gets the
    highest of them; ``salt`` draws a different (still shared) sample."""

    def __init__(self, rate: float = 0.05,
                 per_stratum: Mapping[str, Mapping[str, float]] | None = None,
                 salt: str = "") -> None:
        self.rate = _rate(rate, "rate")
        self.per_stratum = {str(k): {str(v): _rate(r, f"per_stratum[{k!r}][{v!r}]")
                                     for v, r in values.items()}
                            for k, values in (per_stratum or {}).items()}
        self.salt = salt.encode()

    def rate_for(self, strata: Mapping[str, Any] | None = None) -> float:
        rates = [self.rate]
        for key, values in self.per_stratum.items():
            value = (strata or {}).get(key)
            if value is not None and str(value) in values:
                rates.append(values[str(value)])
        return max(rates) if len(rates) > 1 else rates[0]

    def position(self, trace_id: str) -> float:
        """Where the trace id hashes in [0, 1): the same on every host and process."""
        digest = hashlib.blake2b(trace_id.encode(), digest_size=8, key=self.salt).digest()
        return int.from_bytes(digest, "big") / 2**64

    def __call__(self, trace_id: str, strata: Mapping[str, Any] | None = None) -> bool:
        rate = self.rate_for(strata) if self.per_stratum else self.rate  # the request path
        return self.position(trace_id) < rate

    should_sample = __call__


def _rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise EvallibError(f"sampling {what} must be a number between 0 and 1, got {value!r}")
    return float(value)


# --- redaction ------------------------------------------------------------------------------

_EMAIL = r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
# 13-19 digits in one run, in groups of four (16: 4-4-4-4, 19: 4-4-4-4-3) or Amex 4-6-5,
# separated by one space or dash; the Luhn check decides.
_CARD = (r"(?<![\w-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
         r"|\d{4}([ -])\d{6}\2\d{5})(?![\w]|[ -]\d)")
# A country code and/or an area code with a separator, then 3-4 + 3-4 digits; or +E.164.
# Bare digit runs are not phones (order numbers, ids); dates, versions and IPs do not fit.
_PHONE = (r"(?<![\w+.-])(?<!\d[ .])(?:(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{2,4}[ .-])"
          r"\d{3,4}[ .-]?\d{3,4}|\+\d{8,15})(?![\w-]|[ .]\d)")


def luhn_ok(digits: str) -> bool:
    """The card-number checksum (ISO/IEC 7812): cuts false positives on long numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Redactor:
    """Replaces personal data in text (and in strings inside JSON-like values).

    ``Redactor(extra={"EMPLOYEE_ID": r"\\bEMP-\\d{6}\\b"})`` adds a pattern replaced by
    ``[EMPLOYEE_ID]``; ``emails``/``phones``/``cards`` turn the built-ins off."""

    def __init__(self, extra: Mapping[str, str | re.Pattern[str]] | None = None, *,
                 emails: bool = True, phones: bool = True, cards: bool = True) -> None:
        rules: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = []
        if cards:  # before phones: a card number must not be half-taken as a phone
            rules.append(("CARD", re.compile(_CARD), lambda s: _card_digits_ok(s)))
        if emails:
            rules.append(("EMAIL", re.compile(_EMAIL), None))
        if phones:
            rules.append(("PHONE", re.compile(_PHONE), None))
        for label, pattern in (extra or {}).items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", label):
                raise EvallibError(f"redaction label {label!r}: use UPPER_SNAKE_CASE")
            try:
                rules.append((label, re.compile(pattern), None))
            except re.error as e:
                raise EvallibError(f"redaction pattern {label}: {e}") from None
        self.rules = rules

    def __call__(self, text: str) -> str:
        for label, pattern, accept in self.rules:
            def sub(m: re.Match[str], label: str = label,
                    accept: Callable[[str], bool] | None = accept) -> str:
                return f"[{label}]" if accept is None or accept(m.group(0)) else m.group(0)

            text = pattern.sub(sub, text)
        return text

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (dicts, lists, strings)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _card_digits_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


DEFAULT_REDACTOR = Redactor()


def redact(text: str) -> str:
    """`DEFAULT_REDACTOR` on one string."""
    return DEFAULT_REDACTOR(text)


# --- feedback --------------------------------------------------------------------------------


def feedback_rows(trace_id: str, *, thumbs: bool | None = None, rating: float | None = None,
                  edit: tuple[str, str] | None = None, comment: str | None = None,
                  user_id: str | None = None, timestamp: Any = None,
                  event_id: str | None = None,
                  redactor: Redactor | None = DEFAULT_REDACTOR) -> list[dict[str, Any]]:
    """``feedback`` rows for one trace: thumbs (1 up / 0 down), rating (1-5), edit
    (``(original, edited)`` → normalised Levenshtein distance, 0 = unchanged, 1 = rewritten;
    the edited text, redacted, is its comment) and comment (redacted). ``event_id``: the
    sender's id of this feedback (each row gets ``<event_id>/<kind>``), so a re-send is
    stored once; without it the id is derived from trace, kind, timestamp and user."""
    from rapidfuzz.distance import Levenshtein

    if not isinstance(trace_id, str) or not trace_id:
        raise EvallibError("feedback needs a trace_id")
    clean = redactor or (lambda s: s)
    base = {"trace_id": trace_id, "timestamp": timestamp or datetime.now(UTC),
            "user_id": user_id}
    rows = []
    if thumbs is not None:
        rows.append({**base, "kind": "thumbs", "value": 1.0 if thumbs else 0.0})
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float) \
                or not 1 <= rating <= 5:
            raise EvallibError(f"a rating is a number from 1 to 5, got {rating!r}")
        rows.append({**base, "kind": "rating", "value": float(rating)})
    if edit is not None:
        original, edited = edit
        rows.append({**base, "kind": "edit", "comment": clean(edited),
                     "value": Levenshtein.normalized_distance(original, edited)})
    if comment is not None:
        rows.append({**base, "kind": "comment", "comment": clean(comment)})
    if not rows:
        raise EvallibError("feedback needs thumbs, rating, edit or comment")
    if event_id is not None:
        rows = [{**r, "event_id": f"{event_id}/{r['kind']}"} for r in rows]
    return rows


def record_feedback(warehouse: Any, trace_id: str, **feedback: Any) -> int:
    """Write feedback for one trace now (for batch jobs; services use `BufferedRecorder`)."""
    from .warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    return wh.record_online(feedback=feedback_rows(trace_id, **feedback))["feedback"]


# --- the recorder ------------------------------------------------------------------------------

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
        from .warehouse import Warehouse

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
    from .authoring.datasets import as_text

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


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


# --- judging sampled traces later (`evallib score-online`) ---------------------------------------

# Constant SQL, bound parameters (as in evallib.queries).
_UNSCORED_TRACES = """
    SELECT t.trace_id, t.timestamp, t.input, t.output, t.strata, t.latency_ms
    FROM online_traces t
    WHERE t.date >= $since AND ($until IS NULL OR t.date <= $until)
      AND NOT EXISTS (SELECT 1 FROM online_scores s
                      WHERE s.trace_id = t.trace_id AND s.metric = $metric
                        AND s.date >= $since)
    ORDER BY t.timestamp, t.trace_id
    LIMIT $limit"""
_TRACE_DOCS = """
    SELECT trace_id, doc_id, rank, relevant, cited FROM online_retrievals
    WHERE date >= $since AND list_contains($ids, trace_id)
    ORDER BY trace_id, rank"""


def metrics_of(scorer: Any) -> list[str]:
    """The metric names a scorer writes (a rubric: one per criterion)."""
    return [c.name for c in getattr(scorer, "criteria", ())] or [scorer.name]


def resolve_scorers(spec: str, judge_model: str | None = None) -> list[Any]:
    """Scorers from ``--scorers``: names of `evallib.scorers` factories that need no
    arguments (an LLM judge factory gets ``Judge(judge_model)``), retrieval metrics
    (``recall@5``, ``mrr``, ``citation_hit_rate``), or ``module:attribute`` naming a
    configured scorer, a list of them, or a factory."""
    import importlib

    from . import scorers as lib
    from .scorers.retrieval import RETRIEVAL_METRICS, retrieval_metric

    out = []
    for name in (n.strip() for n in spec.split(",") if n.strip()):
        metric, _, k = name.partition("@")
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                obj = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise EvallibError(f"--scorers {name}: {e}") from None
        elif metric in RETRIEVAL_METRICS:
            if k and not k.isdigit():
                raise EvallibError(f"--scorers {name}: k must be a whole number")
            out.append(retrieval_metric(metric, int(k) if k else None))
            continue
        elif name in lib.__all__ and name[0].islower():
            obj = getattr(lib, name)
        else:
            raise EvallibError(f"unknown scorer {name!r}: use a factory of evallib.scorers, a "
                               "retrieval metric like recall@5, or module:attribute")
        out += _instantiate(obj, name, judge_model)
    if not out:
        raise EvallibError("--scorers names no scorer")
    return out


def _instantiate(obj: Any, name: str, judge_model: str | None) -> list[Any]:
    import inspect

    from .scorers.base import Scorer

    if isinstance(obj, Scorer):
        return [obj]
    if isinstance(obj, list | tuple) and obj and all(isinstance(s, Scorer) for s in obj):
        return list(obj)
    if not callable(obj):
        raise EvallibError(f"--scorers {name}: not a scorer, a list of scorers or a factory")
    kwargs = {}
    if "judge" in inspect.signature(obj).parameters:
        if not judge_model:
            raise EvallibError(f"--scorers {name} is an LLM judge: pass --judge-model MODEL")
        from .scorers import Judge

        kwargs["judge"] = Judge(judge_model)
    try:
        made = obj(**kwargs)
    except TypeError as e:
        raise EvallibError(f"--scorers {name} needs arguments ({e}); point --scorers at a "
                           "configured scorer instead: module:attribute") from None
    if callable(made) and not isinstance(made, Scorer):
        raise EvallibError(f"--scorers {name}: the factory did not return a scorer")
    return _instantiate(made, name, judge_model)


def score_online(warehouse: Any, scorers: Sequence[Any], since: Any, *, until: Any = None,
                 limit: int | None = None, concurrency: int = 8, batch: int = 200
                 ) -> dict[str, dict[str, int]]:
    """Score sampled traces since ``since`` that have no score yet for each scorer's metric;
    write the scores (in batches, so an interruption keeps what was done) at their trace's
    timestamp. Returns, per metric, how many rows were scored and unscored."""
    import asyncio

    from .scorers.base import Sample
    from .warehouse import Warehouse
    from .warehouse.db import connect

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    counts: dict[str, dict[str, int]] = {}
    for scorer in scorers:
        with connect(wh.store) as con:
            traces = con.sql(_UNSCORED_TRACES, params={
                "since": since, "until": until, "metric": metrics_of(scorer)[0],
                "limit": limit if limit is not None else 2**62}).pl().to_dicts()
            docs = con.sql(_TRACE_DOCS, params={
                "since": since, "ids": [t["trace_id"] for t in traces]}).pl().to_dicts()
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            by_trace.setdefault(d["trace_id"], []).append(d)
        samples = [Sample(
            case_id=t["trace_id"], input=t["input"], output=t["output"],
            strata=strata_dict(t["strata"]), latency_ms=t["latency_ms"],
            retrieved=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], [])),
            cited=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], []) if d["cited"]),
            relevant=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], [])
                           if d["relevant"])) for t in traces]
        for part in _chunks(list(zip(traces, samples, strict=True)), batch):
            scored = asyncio.run(_score_all(scorer, [s for _, s in part], concurrency))
            rows = [r for (t, _), got in zip(part, scored, strict=True)
                    for r in score_rows(t, got)]
            wh.record_online(scores=rows, sources={"online_scores": "score-online"})
            for r in rows:
                c = counts.setdefault(r["metric"], {"scored": 0, "unscored": 0})
                c["scored" if r["value"] is not None else "unscored"] += 1
    return counts


async def _score_all(scorer: Any, samples: list[Any], concurrency: int) -> list[list[Any]]:
    import asyncio

    from .authoring.evaluation import score_safely

    gate = asyncio.Semaphore(concurrency)

    async def one(sample: Any) -> list[Any]:
        async with gate:
            return await score_safely(scorer, sample)

    return await asyncio.gather(*(one(s) for s in samples))


def strata_dict(value: Any) -> dict[str, str]:
    """A MAP as polars returns it (a list of key/value structs), or a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    return {kv["key"]: kv["value"] for kv in value or []}
