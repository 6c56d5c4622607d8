"""`evallib import jsonl`: one JSON object per line, all or nothing per file.

Offline line: ``case_id``, ``input``, ``output``, ``expected``, ``strata`` (object), ``tags``,
``scores`` (metric → number | bool | {"value", "kind", "passed", "rationale", "scorer",
"scorer_version"}), ``latency_ms``, ``tokens_in``, ``tokens_out``, ``cost_usd``, ``error``,
``retrieved`` ([{doc_id, rank, relevant, cited}]).
Online line: ``trace_id`` and ``timestamp`` instead of ``case_id``; also ``release``,
``variant``, ``refusal``, ``tool_error`` and ``feedback`` (an object or a list of
{kind, value, comment, user_id, timestamp}; ``{"thumbs": true}`` and ``{"rating": 4}`` also do).

A bool score is binary; a number without kind is continuous.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..warehouse import Warehouse
from ..warehouse.schema import KINDS

_COMMON = {"input", "output", "expected", "strata", "scores", "latency_ms", "tokens_in",
           "tokens_out", "cost_usd", "error", "retrieved"}
OFFLINE_FIELDS = _COMMON | {"case_id", "tags"}
ONLINE_FIELDS = _COMMON | {"trace_id", "timestamp", "release", "variant", "refusal",
                           "tool_error", "feedback"}
_SCORE_KEYS = {"value", "kind", "passed", "rationale", "scorer", "scorer_version"}
_DOC_KEYS = {"doc_id", "rank", "relevant", "cited"}
_FEEDBACK_KEYS = {"kind", "value", "comment", "user_id", "timestamp", "event_id"}


@dataclass
class _Rows:
    """Rows per table, with the file line each row came from."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)
    fields: dict[str, list[str]] = field(default_factory=dict)  # how a field is named in the file

    def add(self, table: str, row: dict[str, Any], line: int, prefix: str = "") -> None:
        self.rows.setdefault(table, []).append(row)
        self.lines.setdefault(table, []).append(line)
        self.fields.setdefault(table, []).append(prefix)


def import_jsonl(path: str | os.PathLike[str], warehouse: Warehouse, *, kind: str = "offline",
                 run: dict[str, Any] | None = None, replace: bool = False) -> dict[str, Any]:
    """Import one file. Returns {"run_id": …} (offline) or, per online table, the rows new,
    replaced and already present (`Warehouse.merge_online`: a second import writes nothing)."""
    p = Path(path)
    src = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=src) from None
    out = _Rows()
    parse = _offline_line if kind == "offline" else _online_line
    seen = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as e:
            raise DataError(f"not valid JSON ({e})", source=f"{src}:{n}") from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}",
                            source=f"{src}:{n}")
        parse(obj, n, f"{src}:{n}", out)
        seen += 1
    if not seen:
        raise DataError("no records (the file is empty)", source=src)
    try:
        if kind == "offline":
            run_id = warehouse.record_run(
                run or {}, out.rows.get("cases", []), out.rows.get("scores", []),
                out.rows.get("retrievals", []), replace=replace,
                sources={"run": "run metadata"},
            )
            return {"run_id": run_id, "cases": len(out.rows.get("cases", []))}
        return warehouse.merge_online(
            traces=out.rows.get("online_traces"), scores=out.rows.get("online_scores"),
            feedback=out.rows.get("feedback"), retrievals=out.rows.get("online_retrievals"),
        )
    except DataError as e:
        raise _locate(e, out, src) from None


def _locate(e: DataError, out: _Rows, src: str) -> DataError:
    """Re-aim a writer error at the file line and the field as the file spells it."""
    table = e.source
    if table in out.lines and e.row is not None:
        line = out.lines[table][e.row]
        prefix = out.fields[table][e.row]
        name = e.field or ""
        if prefix and name not in ("case_id", "trace_id"):
            name = f"{prefix}.{name}"
        reason = e.reason
        if e.first_row is not None:
            reason += f" (first on line {out.lines[table][e.first_row]})"
        return DataError(reason, source=f"{src}:{line}", field=name or None)
    return DataError(e.reason, source=f"{src} ({e.source})" if e.source else src,
                     row=e.row, field=e.field)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _text(v: Any) -> Any:
    """input/output/expected may be structured: store them as JSON text."""
    return v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _unknown(obj: dict, allowed: set[str], where: str, prefix: str = "") -> None:
    for key in obj:
        if key not in allowed:
            raise DataError(f"unknown field; expected some of: {', '.join(sorted(allowed))}",
                            source=where, field=f"{prefix}{key}")


def _id(obj: dict, key: str, where: str) -> str:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, str | int) or v == "":
        raise DataError("is required (a string)", source=where, field=key)
    return str(v)


def _common(obj: dict) -> dict[str, Any]:
    row = {k: obj.get(k) for k in ("latency_ms", "tokens_in", "tokens_out", "cost_usd", "error",
                                   "strata")}
    for k in ("input", "output", "expected"):
        if k in obj:
            row[k] = _text(obj[k])
    return row


def _offline_line(obj: dict, n: int, where: str, out: _Rows) -> None:
    for key in ("trace_id", "feedback"):
        if key in obj:
            raise DataError("belongs to production traces: import them with --kind online",
                            source=where, field=key)
    _unknown(obj, OFFLINE_FIELDS, where)
    case_id = _id(obj, "case_id", where)
    row = _common(obj)
    row["expected"] = _text(obj.get("expected"))
    row.update(case_id=case_id, tags=obj.get("tags"))
    out.add("cases", row, n)
    for metric, score in _scores(obj, where):
        out.add("scores", {"case_id": case_id, "metric": metric, **score}, n, f"scores.{metric}")
    for i, doc in enumerate(_list(obj, "retrieved", where)):
        _unknown(doc, _DOC_KEYS, where, f"retrieved[{i}].")
        out.add("retrievals", {"case_id": case_id, **doc, "rank": doc.get("rank", i + 1)}, n,
                f"retrieved[{i}]")


def _online_line(obj: dict, n: int, where: str, out: _Rows) -> None:
    _unknown(obj, ONLINE_FIELDS, where)
    trace_id = _id(obj, "trace_id", where)
    ts = obj.get("timestamp")
    if not isinstance(ts, str) or not ts:
        raise DataError("is required (an ISO 8601 timestamp)", source=where, field="timestamp")
    row = _common(obj)
    row.update({k: obj.get(k) for k in ("release", "variant", "refusal", "tool_error")})
    row.update(trace_id=trace_id, timestamp=ts)
    out.add("online_traces", row, n)
    for metric, score in _scores(obj, where):
        out.add("online_scores", {"trace_id": trace_id, "timestamp": ts, "metric": metric,
                                  **score}, n, f"scores.{metric}")
    for i, doc in enumerate(_list(obj, "retrieved", where)):
        _unknown(doc, _DOC_KEYS, where, f"retrieved[{i}].")
        out.add("online_retrievals", {"trace_id": trace_id, "timestamp": ts, **doc,
                                      "rank": doc.get("rank", i + 1)}, n, f"retrieved[{i}]")
    for i, fb in enumerate(_feedback(obj.get("feedback"), where)):
        out.add("feedback", {"trace_id": trace_id, "timestamp": fb.pop("timestamp", None) or ts,
                             **fb}, n, f"feedback[{i}]")


def _list(obj: dict, key: str, where: str) -> list[dict]:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(d, dict) for d in v):
        raise DataError("must be a list of objects", source=where, field=key)
    return v


def _scores(obj: dict, where: str) -> list[tuple[str, dict[str, Any]]]:
    scores = obj.get("scores")
    if scores is None:
        return []
    if not isinstance(scores, dict):
        raise DataError("must be an object of metric → score", source=where, field="scores")
    return [(metric, _score(v, where, f"scores.{metric}")) for metric, v in scores.items()]


def _score(v: Any, where: str, name: str) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"value": float(v), "kind": "binary", "passed": v}
    if v is None or isinstance(v, int | float):
        return {"value": v, "kind": "continuous"}
    if not isinstance(v, dict):
        raise DataError(f"{v!r} is not a number, a bool or an object", source=where, field=name)
    _unknown(v, _SCORE_KEYS, where, f"{name}.")
    value, kind = v.get("value"), v.get("kind")
    if kind is None:
        kind = "binary" if isinstance(value, bool) else "continuous"
    if kind not in KINDS:
        raise DataError(f"{kind!r} is not one of {', '.join(KINDS)}", source=where,
                        field=f"{name}.kind")
    if isinstance(value, bool):
        value = float(value)
    elif value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
        raise DataError(f"{value!r} is not a number", source=where, field=f"{name}.value")
    passed = v.get("passed")
    if passed is None and kind == "binary" and value is not None:
        passed = value == 1
    return {**{k: v.get(k) for k in ("rationale", "scorer", "scorer_version")},
            "value": value, "kind": kind, "passed": passed}


def _feedback(v: Any, where: str) -> list[dict[str, Any]]:
    if v is None:
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError("must be an object or a list of objects", source=where,
                            field=f"feedback[{i}]")
        if "kind" not in item and len(item) == 1:  # {"thumbs": true} / {"rating": 4}
            ((k, val),) = item.items()
            item = {"kind": k, "value": float(val) if isinstance(val, bool) else val}
        _unknown(item, _FEEDBACK_KEYS, where, f"feedback[{i}].")
        out.append(dict(item))
    return out
