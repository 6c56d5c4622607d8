"""`evallib import otel FILE`: OTLP/JSON traces (one export per line, as the SDK's and the
Collector's file exporters write them, or a single export document) → online traces.

Each trace whose root span is in the file becomes one online trace; attributes are read in
both the OpenTelemetry GenAI conventions (``gen_ai.*``) and OpenInference's. Retrieval spans
give retrieval rows, ``gen_ai.evaluation.result`` events give scores, ``user_feedback``
events (evallib's own: no convention defines feedback) give feedback. A trace already in
the warehouse is skipped with everything attached to it, so importing a file again adds
nothing. Spans of one trace may sit on different lines (children are often exported
before their root).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..warehouse import Warehouse
from ..warehouse.schema import FEEDBACK_KINDS
from .common import Rows, kind_of, number, strata_from

WHAT = "OTLP/JSON traces"
ERROR = 2  # STATUS_CODE_ERROR
EVALUATION_EVENT = "gen_ai.evaluation.result"
FEEDBACK_EVENTS = ("user_feedback", "feedback")
PASS_LABELS = {"pass", "passed", "correct", "relevant", "true", "yes", "good", "faithful"}
FAIL_LABELS = {"fail", "failed", "incorrect", "not_relevant", "irrelevant", "false", "no",
               "bad", "unfaithful"}


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    status: int = 0
    message: str = ""
    where: str = ""

    @property
    def kind(self) -> str:
        """llm | retrieval | tool | other, in either convention."""
        op = self.attrs.get("gen_ai.operation.name")
        oi = str(self.attrs.get("openinference.span.kind", "")).upper()
        if op in ("chat", "text_completion", "generate_content") or oi == "LLM":
            return "llm"
        if op == "retrieval" or oi == "RETRIEVER":
            return "retrieval"
        if op == "execute_tool" or oi == "TOOL":
            return "tool"
        return "other"


def import_otel(path: str | os.PathLike[str], warehouse: Warehouse) -> dict[str, Any]:
    """Import one file. Returns, per table, the rows new, replaced and already present
    (`Warehouse.merge_online`: a second import writes nothing), and ``without_root``: the
    traces whose root span is not in the file (skipped)."""
    src = os.fspath(path)
    traces = _traces(_spans(src))
    complete = {t: spans for t, spans in traces.items() if _root(spans)}
    rows = Rows()
    for spans in complete.values():
        _trace_rows(spans, rows, src)
    _score_kinds(rows)
    try:
        counts = warehouse.merge_online(
            traces=rows.get("online_traces"), scores=rows.get("online_scores"),
            feedback=rows.get("feedback"), retrievals=rows.get("online_retrievals"))
    except DataError as e:
        raise rows.locate(e, src) from None
    return {**counts, "without_root": len(traces) - len(complete)}


# --- reading OTLP/JSON --------------------------------------------------------------------

def _exports(src: str) -> list[tuple[int, dict]]:
    try:
        text = Path(src).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=src) from None
    try:  # one export document (possibly pretty-printed) …
        doc = json.loads(text)
        if isinstance(doc, dict):
            return [(1, doc)]
    except json.JSONDecodeError:
        pass
    out = []  # … or JSON Lines, one export per line
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not {WHAT}: invalid JSON ({e.msg})", source=f"{src}:{n}") \
                from None
        if not isinstance(doc, dict):
            raise DataError(f"not {WHAT}: expected an export object", source=f"{src}:{n}")
        out.append((n, doc))
    if not out:
        raise DataError("no exports (the file is empty)", source=src)
    return out


def _spans(src: str) -> list[Span]:
    spans = []
    for n, doc in _exports(src):
        at = f"{src}:{n}"
        if "resourceSpans" not in doc:
            other = next((k for k in ("resourceLogs", "resourceMetrics") if k in doc), None)
            why = f"this is OTLP {other[8:].lower()}, not traces" if other else \
                "no 'resourceSpans' (expected an OTLP/JSON trace export)"
            raise DataError(why, source=at, field="resourceSpans")
        for i, rs in enumerate(_list(doc, "resourceSpans", at, "resourceSpans")):
            resource = _attrs((rs.get("resource") or {}).get("attributes"), at,
                              f"resourceSpans[{i}].resource.attributes")
            for j, ss in enumerate(_list(rs, "scopeSpans", at, f"resourceSpans[{i}].scopeSpans")):
                for k, s in enumerate(_list(ss, "spans", at,
                                            f"resourceSpans[{i}].scopeSpans[{j}].spans")):
                    spans.append(_span(s, resource, at,
                                       f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"))
    return spans


def _list(obj: Any, key: str, at: str, name: str) -> list[dict]:
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise DataError("must be a list of objects", source=at, field=name)
    return v


def _span(s: dict, resource: dict, at: str, name: str) -> Span:
    status = s.get("status") or {}
    code = status.get("code", 0)
    if isinstance(code, str):  # the proto enum by name
        code = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
    events = [(str(e.get("name", "")), _nanos(e.get("timeUnixNano"), at, f"{name}.events[{i}]"),
               _attrs(e.get("attributes"), at, f"{name}.events[{i}].attributes"))
              for i, e in enumerate(_list(s, "events", at, f"{name}.events"))]
    return Span(trace_id=_hex_id(s.get("traceId"), 16, at, f"{name}.traceId"),
                span_id=_hex_id(s.get("spanId"), 8, at, f"{name}.spanId"),
                parent_id=_hex_id(s.get("parentSpanId"), 8, at, f"{name}.parentSpanId",
                                  optional=True),
                name=str(s.get("name", "")),
                start_ns=_nanos(s.get("startTimeUnixNano"), at, f"{name}.startTimeUnixNano"),
                end_ns=_nanos(s.get("endTimeUnixNano"), at, f"{name}.endTimeUnixNano"),
                attrs=_attrs(s.get("attributes"), at, f"{name}.attributes"),
                resource=resource, events=events, status=code,
                message=str(status.get("message") or ""), where=f"{at}, {name}")


def _hex_id(v: Any, size: int, at: str, name: str, optional: bool = False) -> str:
    """OTLP/JSON ids are hex; protobuf's own JSON mapping writes base64: take both."""
    if v in (None, "") and optional:
        return ""
    if isinstance(v, str):
        if len(v) == 2 * size:
            try:
                bytes.fromhex(v)
                return v.lower()
            except ValueError:
                pass
        try:
            raw = base64.b64decode(v, validate=True)
            if len(raw) == size:
                return raw.hex()
        except (binascii.Error, ValueError):
            pass
    raise DataError(f"{v!r} is not a {size}-byte id (hex)", source=at, field=name)


def _nanos(v: Any, at: str, name: str) -> int:
    try:
        n = int(v)
        if n > 0:
            return n
    except (TypeError, ValueError):
        pass
    raise DataError(f"{v!r} is not a time in nanoseconds since 1970", source=at, field=name)


def _attrs(items: Any, at: str, name: str) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise DataError("must be a list of {key, value}", source=at, field=name)
    out = {}
    for i, kv in enumerate(items):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise DataError("must be {key, value}", source=at, field=f"{name}[{i}]")
        out[kv["key"]] = _value(kv.get("value"))
    return out


def _value(v: Any) -> Any:
    """An OTLP AnyValue as plain Python (int64s arrive as JSON strings)."""
    if not isinstance(v, dict) or not v:
        return None
    kind, x = next(iter(v.items()))
    if kind == "intValue":
        return int(x)
    if kind == "doubleValue":
        return float(x)
    if kind == "arrayValue":
        return [_value(e) for e in (x or {}).get("values", [])]
    if kind == "kvlistValue":
        return {kv.get("key"): _value(kv.get("value")) for kv in (x or {}).get("values", [])}
    return x


# --- traces → rows ------------------------------------------------------------------------

def _traces(spans: list[Span]) -> dict[str, list[Span]]:
    by_trace: dict[str, dict[str, Span]] = defaultdict(dict)
    for s in spans:
        by_trace[s.trace_id].setdefault(s.span_id, s)  # a span exported twice counts once
    return {t: sorted(d.values(), key=lambda s: s.start_ns) for t, d in by_trace.items()}


def _root(spans: list[Span]) -> Span | None:
    return next((s for s in spans if not s.parent_id), None)


def _time(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def _trace_rows(spans: list[Span], rows: Rows, src: str) -> None:
    root = _root(spans)
    assert root is not None  # only complete traces (those with a root span) get here
    trace_id, ts = root.trace_id, _time(root.start_ns)
    where = f"trace {trace_id} ({root.where.removeprefix(src + ':')})"
    llms = [s for s in spans if s.kind == "llm"]
    tokens_in = _sum(_first(s.attrs, "gen_ai.usage.input_tokens", "llm.token_count.prompt",
                            "gen_ai.usage.prompt_tokens") for s in spans)
    tokens_out = _sum(_first(s.attrs, "gen_ai.usage.output_tokens",
                             "llm.token_count.completion", "gen_ai.usage.completion_tokens")
                      for s in spans)
    reasons = [r for s in llms for r in _as_list(s.attrs.get("gen_ai.response.finish_reasons"))]
    rows.add("online_traces", {
        "trace_id": trace_id, "timestamp": ts, "release": root.resource.get("service.version"),
        "strata": _strata(root, llms) or None,
        "input": _pick(_text(root.attrs.get("input.value")), _llm_input(root),
                       *(_llm_input(s) for s in llms)),
        "output": _pick(_text(root.attrs.get("output.value")), _llm_output(root),
                        *(_llm_output(s) for s in reversed(llms))),
        "latency_ms": (root.end_ns - root.start_ns) / 1e6,
        "tokens_in": int(tokens_in) if tokens_in is not None else None,
        "tokens_out": int(tokens_out) if tokens_out is not None else None,
        "cost_usd": _sum(number(s.attrs.get("llm.cost.total")) for s in spans),
        "error": _error(spans, root),
        "refusal": "content_filter" in reasons if llms else None,
        "tool_error": any(s.status == ERROR for s in spans if s.kind == "tool"),
    }, where)
    rank = 0
    for s in spans:
        if s.kind != "retrieval":
            continue
        for doc_id in _documents(s):
            rank += 1
            rows.add("online_retrievals", {"trace_id": trace_id, "timestamp": ts,
                                           "doc_id": doc_id, "rank": rank}, s.where)
    latest: dict[str, tuple[int, dict, str]] = {}  # a metric judged twice: the last verdict
    for s in spans:
        for i, (name, t_ns, attrs) in enumerate(s.events):
            at = f"{s.where}.events[{i}]"
            if name == EVALUATION_EVENT:
                score = _score(attrs, trace_id, ts, at)
                if score["metric"] not in latest or t_ns >= latest[score["metric"]][0]:
                    latest[score["metric"]] = (t_ns, score, at)
            elif name in FEEDBACK_EVENTS:
                rows.add("feedback", _feedback(attrs, trace_id, _time(t_ns), at), at)
    for _, score, at in latest.values():
        rows.add("online_scores", score, at)


def _pick(*candidates: str | None) -> str | None:
    """The first text that is there ("" counts: an empty answer is an answer)."""
    return next((c for c in candidates if c is not None), None)


def _first(attrs: dict, *keys: str) -> float | None:
    return next((number(attrs[k]) for k in keys if number(attrs.get(k)) is not None), None)


def _sum(values: Any) -> float | None:
    given = [v for v in values if v is not None]
    return sum(given) if given else None


def _as_list(v: Any) -> list:
    if isinstance(v, list):
        return v
    return [] if v is None else [v]


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _strata(root: Span, llms: list[Span]) -> dict[str, str]:
    """Service, environment, provider and model, plus the root's OpenInference metadata."""
    first = llms[0].attrs if llms else {}
    out = strata_from({
        "service": root.resource.get("service.name"),
        "environment": root.resource.get("deployment.environment.name")
        or root.resource.get("deployment.environment"),
        "provider": first.get("gen_ai.provider.name") or first.get("gen_ai.system")
        or first.get("llm.provider"),
        "model": first.get("gen_ai.response.model") or first.get("gen_ai.request.model")
        or first.get("llm.model_name"),
    })
    meta = root.attrs.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    out.update(strata_from(meta))
    return out


def _messages_text(raw: Any, roles: tuple[str, ...], last: bool) -> str | None:
    """Text of a GenAI ``gen_ai.input.messages`` / ``output.messages`` value (JSON)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return raw or None
    if not isinstance(raw, list):
        return None
    picked = [m for m in raw if isinstance(m, dict) and m.get("role") in roles]
    if not picked:
        return None
    m = picked[-1] if last else picked[0]
    parts = m.get("parts")
    if isinstance(parts, list):
        texts = [str(p.get("content", "")) for p in parts
                 if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(texts) if texts else json.dumps(parts, ensure_ascii=False)
    content = m.get("content")
    return content if isinstance(content, str) else _text(content)


def _flat_messages(attrs: dict, prefix: str, roles: tuple[str, ...], last: bool) -> str | None:
    """OpenInference's flattened ``llm.input_messages.{i}.message.content``."""
    found = []
    i = 0
    while f"{prefix}.{i}.message.content" in attrs or f"{prefix}.{i}.message.role" in attrs:
        if attrs.get(f"{prefix}.{i}.message.role", roles[0]) in roles:
            found.append(attrs.get(f"{prefix}.{i}.message.content"))
        i += 1
    found = [f for f in found if f is not None]
    if not found:
        return None
    return _text(found[-1] if last else found[0])


def _llm_input(s: Span) -> str | None:
    return (_messages_text(s.attrs.get("gen_ai.input.messages"), ("user",), last=True)
            or _flat_messages(s.attrs, "llm.input_messages", ("user",), last=True)
            or _text(s.attrs.get("gen_ai.prompt")))


def _llm_output(s: Span) -> str | None:
    if "gen_ai.output.messages" in s.attrs:
        return _messages_text(s.attrs["gen_ai.output.messages"], ("assistant",), last=False)
    found = _flat_messages(s.attrs, "llm.output_messages", ("assistant",), last=False)
    return found if found is not None else _text(s.attrs.get("gen_ai.completion"))


def _error(spans: list[Span], root: Span) -> str | None:
    """The root's error, else the first failed span that is not a tool call (tool failures
    are ``tool_error``)."""
    failed = [root] if root.status == ERROR else \
        [s for s in spans if s.status == ERROR and s.kind != "tool"]
    if not failed:
        return None
    s = failed[0]
    why = s.message or next((str(a.get("exception.message")) for n, _, a in s.events
                             if n == "exception" and a.get("exception.message")), "error")
    return why if s is root else f"{s.name}: {why}"


def _documents(s: Span) -> list[str]:
    """Document ids in rank order: GenAI ``gen_ai.retrieval.documents`` (JSON or structured)
    or OpenInference ``retrieval.documents.{i}.document.id``."""
    docs = s.attrs.get("gen_ai.retrieval.documents")
    if isinstance(docs, str):
        try:
            docs = json.loads(docs)
        except json.JSONDecodeError:
            raise DataError("is not JSON", source=s.where,
                            field="gen_ai.retrieval.documents") from None
    if docs is not None:
        if not isinstance(docs, list):
            raise DataError("must be a list of documents", source=s.where,
                            field="gen_ai.retrieval.documents")
        ids = []
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or d.get("id") in (None, ""):
                raise DataError("a document needs an 'id'", source=s.where,
                                field=f"gen_ai.retrieval.documents[{i}].id")
            ids.append(str(d["id"]))
        return ids
    ids, i = [], 0
    while any(k.startswith(f"retrieval.documents.{i}.") for k in s.attrs):
        doc_id = s.attrs.get(f"retrieval.documents.{i}.document.id")
        if doc_id in (None, ""):
            raise DataError("a document needs an id", source=s.where,
                            field=f"retrieval.documents.{i}.document.id")
        ids.append(str(doc_id))
        i += 1
    return ids


def _score(attrs: dict, trace_id: str, ts: datetime, at: str) -> dict[str, Any]:
    name = attrs.get("gen_ai.evaluation.name")
    if not isinstance(name, str) or not name:
        raise DataError("is required on a gen_ai.evaluation.result event", source=at,
                        field="gen_ai.evaluation.name")
    label = attrs.get("gen_ai.evaluation.score.label")
    label_key = str(label).strip().lower() if label is not None else ""
    passed = True if label_key in PASS_LABELS else False if label_key in FAIL_LABELS else None
    value = number(attrs.get("gen_ai.evaluation.score.value"))
    if value is None and passed is not None:
        value = float(passed)
    why = attrs.get("gen_ai.evaluation.explanation")
    rationale = " — ".join(str(x) for x in (label, why) if x not in (None, "")) or None
    return {"trace_id": trace_id, "timestamp": ts, "metric": name, "value": value,
            "passed": passed, "rationale": rationale, "scorer": EVALUATION_EVENT}


def _score_kinds(rows: Rows) -> None:
    """One kind per metric over the whole file."""
    scores = rows.get("online_scores")
    values: dict[str, list[float | None]] = defaultdict(list)
    for r in scores:
        values[r["metric"]].append(r["value"])
    for r in scores:
        r["kind"] = kind_of(values[r["metric"]])


def _feedback(attrs: dict, trace_id: str, ts: datetime, at: str) -> dict[str, Any]:
    kind = attrs.get("feedback.kind")
    if kind not in FEEDBACK_KINDS:
        raise DataError(f"{kind!r} is not one of {', '.join(FEEDBACK_KINDS)}", source=at,
                        field="feedback.kind")
    value = attrs.get("feedback.value")
    if value is not None and number(value) is None:
        raise DataError(f"{value!r} is not a number or a bool", source=at,
                        field="feedback.value")
    return {"trace_id": trace_id, "timestamp": ts, "kind": kind, "value": number(value),
            "comment": attrs.get("feedback.comment"), "user_id": attrs.get("user.id")}
