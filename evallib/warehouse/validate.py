"""Turn what a caller hands us (rows, a pyarrow table or a polars frame) into an Arrow table
of a declared schema, refusing the first bad row with its index and field.

Checks are vectorised (pyarrow.compute) so large batches validate at writer speed; only
the error path walks rows one by one, to name the offending one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from .keys import fill_event_ids
from .schema import FEEDBACK_KINDS, KINDS, Table

Rows: TypeAlias = Iterable[Mapping[str, Any]] | pa.Table | Any  # Any: a polars DataFrame


def to_arrow(table: Table, data: Rows, *, source: str, fill: Mapping[str, Any] | None = None
             ) -> pa.Table:
    """Validated Arrow table with exactly ``table``'s columns (partition column included)."""
    fill = dict(fill or {})
    if data is None:
        data = []
    if hasattr(data, "to_arrow") and not isinstance(data, pa.Table):
        data = data.to_arrow()  # polars
    if isinstance(data, pa.Table):
        out = _from_arrow(table, data, source, fill)
    else:
        out = _from_rows(table, list(data), source, fill)
    if table.name == "feedback":  # before the key check: the key is the event id
        out = fill_event_ids(out)
    check(table, out, source)
    return out


def _unknown(table: Table, names: Iterable[str], source: str, row: int | None) -> None:
    known = set(table.column_names)
    for name in names:
        if name not in known:
            raise DataError(
                f"unknown field; expected some of: {', '.join(table.column_names)}",
                source=source, row=row, field=name,
            )


def _from_rows(table: Table, rows: list[Mapping[str, Any]], source: str,
               fill: Mapping[str, Any]) -> pa.Table:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"expected an object, got {type(row).__name__}", source=source, row=i)
        _unknown(table, row.keys(), source, i)
    arrays = []
    for col in table.columns:
        if col.name in fill:
            values = [fill[col.name]] * len(rows)
        else:
            values = [_clean(row.get(col.name)) for row in rows]
        arrays.append(_array(col.name, values, col.type, source))
    if not rows:
        return _empty(table)
    return pa.Table.from_arrays(arrays, schema=pa.schema([c.field() for c in table.columns]))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping) and value and not all(isinstance(k, str) for k in value):
        return {str(k): v for k, v in value.items()}
    return value


def as_utc(value: Any) -> Any:
    """ISO 8601 text → datetime; naive timestamps are taken as UTC. Anything else is
    returned as is, for the caller to refuse with its row."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value  # refused below, with its row
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _array(name: str, values: list[Any], type_: pa.DataType, source: str) -> pa.Array:
    if pa.types.is_timestamp(type_):
        values = [as_utc(v) for v in values]
    if pa.types.is_integer(type_):
        for i, v in enumerate(values):
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise DataError(f"{v!r} is not a valid integer", source=source, row=i,
                                field=name)
    if pa.types.is_map(type_):
        values = [None if v is None else
                  ([(str(k), None if x is None else str(x)) for k, x in v.items()]
                   if isinstance(v, Mapping) else v) for v in values]
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    for i, v in enumerate(values):  # error path: find the row
        try:
            pa.array([v], type=type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            raise DataError(f"{v!r} is not a valid {_type_name(type_)}",
                            source=source, row=i, field=name) from None
    raise DataError(f"values are not valid {_type_name(type_)}", source=source, field=name)


def _type_name(type_: pa.DataType) -> str:
    if pa.types.is_map(type_):
        return "object of string values"
    if pa.types.is_list(type_):
        return "list of strings"
    if pa.types.is_timestamp(type_):
        return "ISO 8601 timestamp"
    return {"string": "string", "double": "number", "int64": "integer", "bool": "boolean",
            "date32[day]": "date"}.get(str(type_), str(type_))


def _empty(table: Table) -> pa.Table:
    return pa.schema([c.field() for c in table.columns]).empty_table()


def _from_arrow(table: Table, data: pa.Table, source: str, fill: Mapping[str, Any]) -> pa.Table:
    _unknown(table, data.column_names, source, None)
    n = data.num_rows
    arrays = []
    for col in table.columns:
        if col.name in fill:
            arrays.append(pa.repeat(pa.scalar(fill[col.name], col.type), n))
            continue
        if col.name not in data.column_names:
            arrays.append(pa.nulls(n, type=col.type))
            continue
        arr = data.column(col.name)
        if arr.type != col.type:
            try:
                arr = arr.cast(col.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                arrays.append(_array(col.name, arr.to_pylist(), col.type, source))
                continue
        if pa.types.is_floating(col.type):
            nan = pc.is_nan(arr)
            if pc.any(nan).as_py():  # NaN means "no value": store null
                arr = pc.if_else(nan, pa.scalar(None, col.type), arr)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema([c.field() for c in table.columns]))


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    """Index of the first true in mask, or -1."""
    mask = pc.fill_null(mask, False)
    return pc.index(mask, True).as_py()


def _refuse(mask, message, table: pa.Table, column: str, source: str) -> None:
    i = _first(mask)
    if i >= 0:
        value = table.column(column)[i].as_py()
        raise DataError(message.format(value=value), source=source, row=i, field=column)


def check(table: Table, data: pa.Table, source: str) -> None:
    """The rules a schema alone cannot state."""
    names = set(data.column_names)
    for col in table.columns:
        if col.required and col.name in names and data.column(col.name).null_count:
            _refuse(pc.is_null(data.column(col.name)), "is required", data, col.name, source)
    if "kind" in names and table.name in ("scores", "online_scores"):
        _refuse(pc.invert(pc.is_in(data["kind"], pa.array(KINDS))),
                "{value!r} is not one of " + ", ".join(KINDS), data, "kind", source)
        binary = pc.equal(data["kind"], "binary")
        bad = pc.and_(binary, pc.invert(pc.is_in(data["value"], pa.array([0.0, 1.0]))))
        _refuse(pc.and_(bad, pc.is_valid(data["value"])),
                "a binary score must be 0 or 1 (or true/false), got {value!r}",
                data, "value", source)
        _refuse(pc.is_inf(data["value"]), "{value!r} is not a finite number",
                data, "value", source)
    if table.name == "feedback":
        _refuse(pc.invert(pc.is_in(data["kind"], pa.array(FEEDBACK_KINDS))),
                "{value!r} is not one of " + ", ".join(FEEDBACK_KINDS), data, "kind", source)
    for name in ("latency_ms", "tokens_in", "tokens_out", "cost_usd"):
        if name in names:
            _refuse(pc.less(data[name], 0), "{value!r} must not be negative", data, name, source)
            if pa.types.is_floating(data.schema.field(name).type):
                _refuse(pc.is_inf(data[name]), "{value!r} is not a finite number",
                        data, name, source)
    if "strata" in names and data.num_rows:
        _check_strata(data, source)
    if "rank" in names:
        _refuse(pc.less(data["rank"], 1), "rank starts at 1, got {value!r}", data, "rank", source)
    for name in ("case_id", "trace_id", "run_id", "doc_id"):
        if name in names and table.column(name).required:
            _refuse(pc.equal(data[name], ""), "must not be empty", data, name, source)
    if table.key and data.num_rows:
        _unique(table, data, source)


def _check_strata(data: pa.Table, source: str) -> None:
    """Keys and values are labels: no ASCII separator characters (the writer uses them)."""
    for chunk_start, chunk in _chunks(data["strata"]):
        for part in (chunk.keys, chunk.items):
            bad = pc.match_substring_regex(part, "[\x1e\x1f]")
            i = _first(bad)
            if i >= 0:
                offsets = chunk.offsets.to_numpy()
                row = chunk_start + int((offsets <= i).sum()) - 1
                raise DataError(f"{part[i].as_py()!r}: control characters \\x1e and \\x1f "
                                "are not allowed in strata", source=source, row=row,
                                field="strata")


def _chunks(col: pa.ChunkedArray):
    start = 0
    for chunk in col.chunks:
        yield start, chunk
        start += len(chunk)


def _unique(table: Table, data: pa.Table, source: str) -> None:
    key = list(table.key)
    if _distinct_keys(data, key):
        return
    dup = pl.from_arrow(data.select(key)).is_duplicated()  # error path: which rows
    rows = dup.arg_true().to_list()
    first = data.slice(rows[0], 1).select(key).to_pylist()[0]
    same = [i for i in rows if data.slice(i, 1).select(key).to_pylist()[0] == first]
    what = ", ".join(f"{k}={first[k]!r}" for k in key)
    raise DataError(f"duplicate {what}", source=source, row=same[1], field=key[-1],
                    first_row=same[0])


def _distinct_keys(data: pa.Table, key: list[str]) -> bool:
    """Whether no two rows share a key. Each key column becomes its dictionary codes, the
    codes one integer (mixed radix), and a count per integer finds repeats: a third of the
    time of hashing the rows (2M scores: case_id × metric)."""
    codes, size = np.zeros(data.num_rows, dtype=np.int64), 1
    for name in key:
        encoded = pc.dictionary_encode(data[name]).combine_chunks()
        n = len(encoded.dictionary) + 1  # + 1: null is a value of its own
        if size * n >= 2**62:
            return not pl.from_arrow(data.select(key)).is_duplicated().any()
        idx = encoded.indices.to_numpy(zero_copy_only=False)
        idx = np.where(np.isnan(idx), n - 1, idx).astype(np.int64) if encoded.null_count \
            else idx.astype(np.int64)
        codes, size = codes * n + idx, size * n
    if size <= 8 * max(len(codes), 1):
        return len(codes) == 0 or int(np.bincount(codes, minlength=size).max()) <= 1
    return len(np.unique(codes)) == len(codes)
