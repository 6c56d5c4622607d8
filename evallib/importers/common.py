"""What the Inspect, promptfoo and OpenTelemetry importers share: reading a file, turning
another tool's metadata into strata, choosing a score kind, and naming the place in the
source file when the writer refuses a row."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

_SEPARATORS = re.compile("[\x1e\x1f]")


@dataclass
class Rows:
    """Rows per table, each with where it came from in the source file."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    where: dict[str, list[str]] = field(default_factory=dict)

    def add(self, table: str, row: dict[str, Any], where: str) -> None:
        self.rows.setdefault(table, []).append(row)
        self.where.setdefault(table, []).append(where)

    def get(self, table: str) -> list[dict[str, Any]]:
        return self.rows.get(table, [])

    def locate(self, e: DataError, src: str) -> DataError:
        """Re-aim a writer error (table, row, field) at the source file and record."""
        places = self.where.get(e.source)
        if places is not None and e.row is not None and e.row < len(places):
            reason = e.reason
            if e.first_row is not None:
                reason += f" (first at {places[e.first_row]})"
            return DataError(reason, source=f"{src}: {places[e.row]}", field=e.field)
        return DataError(e.reason, source=f"{src} ({e.source})" if e.source else src,
                         row=e.row, field=e.field)


def read_json(path: str, what: str) -> Any:
    """The parsed JSON document, or a DataError naming the file (and line) and ``what``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"not {what}: invalid JSON ({e.msg})", source=f"{path}:{e.lineno}") \
            from None


def strata_from(values: Any, keys: set[str] | None = None) -> dict[str, str]:
    """Scalar values become strata (text); nested values, nulls and empty text are left out:
    a slice is a small set of plain values. ``keys`` keeps only those keys."""
    if not isinstance(values, dict):
        return {}
    out = {}
    for k, v in values.items():
        if keys is not None and k not in keys:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int | float) and not (isinstance(v, float) and not math.isfinite(v)):
            v = str(v)
        if isinstance(v, str) and v.strip():
            out[str(k)] = _SEPARATORS.sub(" ", v)
    return out


def kind_of(values: list[float | None]) -> str:
    """binary when every value is 0 or 1, ordinal when every value is a whole number,
    else continuous (all of a metric's values decide, so one run gets one kind)."""
    given = [v for v in values if v is not None]
    if given and all(v in (0, 1) for v in given):
        return "binary"
    if given and all(float(v).is_integer() for v in given):
        return "ordinal"
    return "continuous"


def number(v: Any) -> float | None:
    """A finite number, or None (bools count as 0/1)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def short_hash(*parts: Any, n: int = 8) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def slug(text: str, n: int = 40) -> str:
    """Letters, digits, '.', '_' and '-' only: safe inside a run id."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-._")[:n] or "x"


def as_text(v: Any) -> str | None:
    """Structured inputs and outputs are stored as JSON text."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)
