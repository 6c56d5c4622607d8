"""Golden sets: load them from JSONL, CSV or Parquet, version them by content, store every
version in the warehouse (so a run's ``dataset_version`` names its exact cases), and take
stratified subsets for smoke runs on pull requests.

A case has ``case_id``, ``input``, ``expected``, ``strata`` (an object of labels; in CSV,
``strata.<key>`` columns), ``tags`` (``critical``, ``safety`` …), ``relevant_docs`` (ground-
truth doc ids for retrieval metrics) and ``metadata`` (an object).

The version is a content hash that does not depend on row order: it is
`evallib.warehouse.writer.dataset_version` of the cases (``case_id``, input, expected, strata,
tags), the same hash `record_run` gives an imported run of the same cases, extended with
``relevant_docs`` and ``metadata`` when a dataset has any (they change what a run measures).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, EvallibError
from ..warehouse import schema as S
from ..warehouse.validate import to_arrow

if TYPE_CHECKING:
    pass

__all__ = ["FIELDS", "Case", "Dataset", "load_dataset", "load_version", "stored_versions",
           "unquote_cell"]

FIELDS = ("case_id", "input", "expected", "strata", "tags", "relevant_docs", "metadata")
FORMATS = (".jsonl", ".csv", ".parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what evallib.analysis.export.safe_cell guards
_JSON_COLUMNS = b"evallib.json_columns"  # Parquet written by `save`: these hold JSON text


@dataclass(frozen=True)
class Case:
    """One golden case, as a task and its scorers see it."""

    case_id: str
    input: Any
    expected: Any = None
    strata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    relevant_docs: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The case as one JSONL object (empty fields left out)."""
        out: dict[str, Any] = {"case_id": self.case_id, "input": self.input}
        if self.expected is not None:
            out["expected"] = self.expected
        for name in ("strata", "tags", "relevant_docs", "metadata"):
            value = getattr(self, name)
            if value:
                out[name] = dict(value) if isinstance(value, Mapping) else list(value)
        return out


class Dataset:
    """A named, immutable golden set. ``Dataset("support", rows)`` takes cases or mappings."""

    def __init__(self, name: str, cases: Iterable[Case | Mapping[str, Any]], *,
                 source: str | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise EvallibError("a dataset needs a non-empty name")
        self.name = name
        self.source = source or name
        built: list[Case] = []
        first: dict[str, int] = {}
        for i, c in enumerate(cases):
            case = c if isinstance(c, Case) else parse_case(c, source=self.source, row=i)
            if case.case_id in first:
                raise DataError(f"duplicate case_id {case.case_id!r}", source=self.source,
                                row=i, field="case_id", first_row=first[case.case_id])
            first[case.case_id] = i
            built.append(case)
        if not built:
            raise DataError("a dataset needs at least one case", source=self.source)
        self.cases: tuple[Case, ...] = tuple(built)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r} version {self.version}, {len(self)} cases>"

    @cached_property
    def version(self) -> str:
        """Content hash, independent of row order (see the module docstring)."""
        from ..warehouse.writer import dataset_version

        rows = [{"case_id": c.case_id, "input": as_text(c.input),
                 "expected": as_text(c.expected), "strata": dict(c.strata) or None,
                 "tags": list(c.tags) or None} for c in self.cases]
        base = dataset_version(to_arrow(S.CASES, rows, source=self.source,
                                        fill={"run_id": "-", "write_id": "-"}))
        extra = sorted([c.case_id, list(c.relevant_docs), _canonical(c.metadata)]
                       for c in self.cases if c.relevant_docs or c.metadata)
        if not extra:
            return base
        return hashlib.sha256((base + _canonical(extra)).encode()).hexdigest()[:12]

    def subset(self, n: int, by: Sequence[str] | None = None, seed: int = 0) -> Dataset:
        """``n`` cases drawn with a seed, in file order; with ``by``, every stratum (value
        combination of those keys) is represented in proportion, at least once while n
        allows. A subset is a dataset of its own, with its own version."""
        if n < 1:
            raise EvallibError("a subset needs n >= 1")
        if n >= len(self.cases):
            return self
        rng = np.random.default_rng(seed)
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(self.cases):
            groups.setdefault(tuple(c.strata.get(k) for k in by or ()), []).append(i)
        chosen = [int(i) for g, k in zip(groups.values(), _allocate(groups, n, rng),
                                         strict=True)
                  for i in rng.choice(g, size=k, replace=False)]
        return Dataset(self.name, [self.cases[i] for i in sorted(chosen)], source=self.source)

    def to_arrow(self) -> pa.Table:
        """The ``dataset_cases`` rows of this version (input/expected as JSON)."""
        rows = [{"dataset_version": self.version, "dataset": self.name, "case_id": c.case_id,
                 "strata": dict(c.strata), "tags": list(c.tags),
                 "input": json.dumps(c.input, ensure_ascii=False),
                 "expected": json.dumps(c.expected, ensure_ascii=False),
                 "relevant_docs": list(c.relevant_docs),
                 "metadata": _canonical(c.metadata) if c.metadata else None}
                for c in self.cases]
        return to_arrow(S.DATASET_CASES, rows, source=f"dataset {self.name}")

    def store(self, warehouse: Any = None) -> str:
        """Store this version's cases in the warehouse (once per version); returns it."""
        from ..warehouse import Warehouse

        wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
        if not wh.store.list_parts(S.DATASET_CASES, self.version):
            wh.store.write_part(S.DATASET_CASES, self.to_arrow().drop(["dataset_version"]),
                                self.version)
        return self.version

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the dataset as JSONL, CSV or Parquet (by extension), atomically."""
        target = Path(path)
        fmt = _format(target)
        if fmt == ".csv":
            import polars as pl

            from ..analysis.export import to_csv

            data = to_csv(pl.DataFrame(_csv_rows(self.cases), infer_schema_length=None))
        elif fmt == ".jsonl":
            data = "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n"
                           for c in self.cases).encode()
        else:
            buf = io.BytesIO()
            table = self.to_arrow().drop(["dataset_version", "dataset"])
            table = table.replace_schema_metadata({_JSON_COLUMNS: b"input,expected,metadata"})
            pq.write_table(table, buf, compression="zstd")
            data = buf.getvalue()
        write_atomic(target, data)


def load_dataset(path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """A golden set from ``.jsonl``, ``.csv`` or ``.parquet``; named after the file unless
    ``name`` is given. A bad row raises `DataError` naming the file, line (or row) and field."""
    p = Path(path)
    fmt = _format(p)
    if not p.is_file():
        raise EvallibError(f"{p}: no such dataset file")
    reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}[fmt]
    cases: list[Case] = []
    first: dict[str, str] = {}
    for where, row, label, obj in reader(p):
        case = parse_case(obj, source=where, row=row)
        if case.case_id in first:
            raise DataError(f"duplicate case_id {case.case_id!r} (first on {first[case.case_id]})",
                            source=where, row=row, field="case_id")
        first[case.case_id] = label
        cases.append(case)
    if not cases:
        raise DataError("no cases (the file is empty)", source=str(p))
    return Dataset(name or p.stem, cases, source=str(p))


def stored_versions(warehouse: Any = None) -> list[str]:
    """Dataset versions stored in the warehouse."""
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    top = wh.store.table_dir(S.DATASET_CASES)
    prefix = f"{S.DATASET_CASES.partition}="
    if wh.store.is_local:
        names = os.listdir(top) if os.path.isdir(top) else []
    else:
        names = [p.rsplit("/", 1)[-1] for p in wh.store.fs.glob(f"{top}/{prefix}*")]
    return sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix)
                  and wh.store.list_parts(S.DATASET_CASES, n.removeprefix(prefix)))


def load_version(version: str, warehouse: Any = None) -> Dataset:
    """The exact cases of a stored version (what a run with this dataset_version used)."""
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    parts = wh.store.list_parts(S.DATASET_CASES, version)
    if not parts:
        raise EvallibError(f"dataset version {version!r} is not stored in {wh.root}")
    # Writers racing on one version write identical files: the first is the version.
    t = pq.read_table(parts[0], filesystem=None if wh.store.is_local else wh.store.fs)
    cases = [Case(case_id=r["case_id"], input=json.loads(r["input"]),
                  expected=json.loads(r["expected"]), strata=dict(r["strata"] or []),
                  tags=tuple(r["tags"] or ()), relevant_docs=tuple(r["relevant_docs"] or ()),
                  metadata=json.loads(r["metadata"]) if r["metadata"] else {})
             for r in t.to_pylist()]
    return Dataset(t["dataset"][0].as_py(), cases, source=f"dataset version {version}")


# --- one case --------------------------------------------------------------------------------


def parse_case(obj: Mapping[str, Any], *, source: str, row: int | None = None) -> Case:
    """Validate one case object; errors name ``source`` (and ``row``) and the field."""

    def bad(message: str, name: str) -> DataError:
        return DataError(message, source=source, row=row, field=name)

    if not isinstance(obj, Mapping):
        raise DataError(f"expected an object, got {type(obj).__name__}", source=source, row=row)
    for key in obj:
        if key not in FIELDS:
            raise bad(f"unknown field; expected some of: {', '.join(FIELDS)}", key)
    case_id = obj.get("case_id")
    if isinstance(case_id, int) and not isinstance(case_id, bool):
        case_id = str(case_id)
    if not isinstance(case_id, str) or not case_id.strip():
        raise bad("is missing (every case needs a non-empty case_id)", "case_id")
    if obj.get("input") is None:
        raise bad("is missing", "input")
    strata = obj.get("strata") or {}
    if not isinstance(strata, Mapping):
        raise bad(f"must be an object of labels, got {type(strata).__name__}", "strata")
    labels = {}
    for k, v in strata.items():
        if isinstance(v, Mapping | list) or v is None:
            raise bad(f"{v!r} is not a label (text or number)", f"strata.{k}")
        labels[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise bad(f"must be an object, got {type(metadata).__name__}", "metadata")
    return Case(case_id=case_id, input=obj["input"], expected=obj.get("expected"),
                strata=labels, tags=_strings(obj.get("tags"), bad, "tags"),
                relevant_docs=_strings(obj.get("relevant_docs"), bad, "relevant_docs"),
                metadata=dict(metadata))


def _strings(value: Any, bad, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # CSV: a JSON list, or comma-separated
        try:
            value = json.loads(value) if value.lstrip().startswith("[") else \
                [v.strip() for v in value.split(",") if v.strip()]
        except json.JSONDecodeError:
            raise bad("is not a JSON list", name) from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise bad("must be a list of strings", name)
    return tuple(value)


def as_text(value: Any) -> str | None:
    """How the ``cases`` table stores input/output/expected: text as is, else JSON text
    (as `evallib import jsonl` does, so both give one dataset_version)."""
    return value if value is None or isinstance(value, str) else \
        json.dumps(value, ensure_ascii=False, default=str)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


# --- files -----------------------------------------------------------------------------------


def _format(p: Path) -> str:
    fmt = p.suffix.lower()
    if fmt not in FORMATS:
        raise EvallibError(f"{p}: a dataset is .jsonl, .csv or .parquet, not {fmt or 'no suffix'}")
    return fmt


Located = Iterator[tuple[str, int | None, str, Any]]  # source, row, "line 3", the object


def _read_jsonl(p: Path) -> Located:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=str(p)) from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e})", source=f"{p}:{n}") from None
        yield f"{p}:{n}", None, f"line {n}", obj


def _read_csv(p: Path) -> Located:
    """UTF-8 (a BOM is fine). ``strata.<key>`` columns make strata; an empty cell is no value;
    a leading ``'`` that neutralised a formula character is taken off again."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=str(p)) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    line = 1
    for record in reader:
        where, label = f"{p}:{line + 1}", f"line {line + 1}"
        line = reader.line_num
        if None in record:
            raise DataError("more cells than header columns", source=where)
        row: dict[str, Any] = {}
        strata: dict[str, str] = {}
        for key, cell in record.items():
            key = unquote_cell(key or "")
            value = unquote_cell(cell) if cell else None
            if value is None:
                continue
            if key.startswith("strata."):
                strata[key.removeprefix("strata.")] = value
            elif key in ("strata", "metadata"):
                try:
                    row[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise DataError("must be a JSON object", source=where, field=key) from None
            else:
                row[key] = value
        if strata:
            row["strata"] = {**(row.get("strata") or {}), **strata}
        yield where, None, label, row


def unquote_cell(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


def _read_parquet(p: Path) -> Located:
    try:
        table = pq.read_table(p)
    except Exception as e:  # any reason pyarrow cannot read it: say so, with the file
        raise DataError(f"cannot read Parquet ({type(e).__name__}: {e})", source=str(p)) \
            from None
    meta = table.schema.metadata or {}
    json_columns = meta.get(_JSON_COLUMNS, b"").decode().split(",")
    for i, raw in enumerate(table.to_pylist()):
        row: dict[str, Any] = {}
        for key, value in raw.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if key.startswith("strata."):
                row.setdefault("strata", {})[key.removeprefix("strata.")] = value
            elif key == "strata" and isinstance(value, list):  # a MAP column
                row["strata"] = dict(value)
            elif key in json_columns or (key == "metadata" and isinstance(value, str)):
                try:
                    row[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise DataError("is not valid JSON", source=str(p), row=i,
                                    field=key) from None
            else:
                row[key] = value
        yield str(p), i, f"row {i}", row


def _csv_rows(cases: Sequence[Case]) -> list[dict[str, Any]]:
    keys = sorted({k for c in cases for k in c.strata})
    rows = []
    for c in cases:
        row: dict[str, Any] = {"case_id": c.case_id, "input": as_text(c.input),
                               "expected": as_text(c.expected)}
        row.update({f"strata.{k}": c.strata.get(k) for k in keys})
        for name in ("tags", "relevant_docs"):
            values = list(getattr(c, name))
            row[name] = json.dumps(values) if any("," in v for v in values) \
                else ",".join(values) or None
        row["metadata"] = _canonical(c.metadata) if c.metadata else None
        rows.append(row)
    return rows


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` whole: a reader never sees half a file."""
    tmp = target.with_name(f".{target.name}.inprogress")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise EvallibError(f"cannot write {target}: {e.strerror or e}") from None


def _allocate(groups: Mapping[tuple, list[int]], n: int, rng: np.random.Generator) -> list[int]:
    """How many to draw from each group: proportional to its size (largest remainder), and
    at least one each while ``n`` covers them all; otherwise ``n`` groups drawn at random."""
    sizes = np.array([len(g) for g in groups.values()])
    if n < len(sizes):
        out = np.zeros(len(sizes), dtype=int)
        out[rng.choice(len(sizes), size=n, replace=False)] = 1
        return out.tolist()
    share = n * sizes / sizes.sum()
    out = np.floor(share).astype(int)
    for i in np.argsort(-(share - out), kind="stable")[: n - int(out.sum())]:
        out[i] += 1
    for i in np.flatnonzero(out == 0):  # a small stratum still gets one, from the largest
        out[int(np.argmax(out))] -= 1
        out[i] = 1
    return out.tolist()
