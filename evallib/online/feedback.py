"""User feedback by trace id: thumbs, ratings, edits (normalised Levenshtein distance),
comments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..errors import EvallibError
from .redaction import DEFAULT_REDACTOR, Redactor

__all__ = ["feedback_rows", "record_feedback"]


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
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    return wh.record_online(feedback=feedback_rows(trace_id, **feedback))["feedback"]
