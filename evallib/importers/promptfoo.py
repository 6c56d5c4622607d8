"""`evallib import promptfoo results.json`: promptfoo's ``--output`` JSON (results version
3), one run per provider × prompt.

A test case is a case: its vars become strata (scalars only; ``strata=`` keeps some keys),
its id is a hash of its vars and description, so the same test pairs up across evals
(the i-th repeat of a test gets ``~i``). The rendered prompt is the input, the response
the output, the test's assertions the expected. Each assertion is a score named by its
``metric`` (else its type), plus ``pass``: the test's own verdict. The run id comes from
the eval id, the provider and the prompt, so importing the file again adds nothing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from ..errors import DataError
from ..warehouse import Warehouse
from ..warehouse import schema as S
from ..warehouse.validate import to_arrow
from .common import Rows, as_text, kind_of, number, read_json, short_hash, slug, strata_from

WHAT = "a promptfoo --output JSON file"
_ERROR = 2  # promptfoo's ResultFailureReason.ERROR: the provider failed, nothing was graded


def import_promptfoo(path: str | os.PathLike[str], warehouse: Warehouse, *,
                     replace: bool = False, strata_keys: set[str] | None = None
                     ) -> list[dict[str, Any]]:
    """Import every provider × prompt run of one file. Returns one dict per run: run_id,
    provider, prompt, cases, ``skipped`` (already imported)."""
    src = os.fspath(path)
    doc = read_json(src, WHAT)
    results, eval_id, started_at, dataset = _header(doc, src)
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    for i, r in enumerate(results):
        where = f"results.results[{i}]"
        if not isinstance(r, dict):
            raise DataError(f"not {WHAT}: expected an object", source=src, field=where)
        groups[(_provider(r, src, where), _prompt(r, src, where))].append((i, r))
    kinds = _kinds(results)
    runs = []
    for (provider, prompt), rs in groups.items():
        run_id = (f"promptfoo-{slug(eval_id, 48)}-{slug(provider, 24)}-{slug(prompt, 16)}-"
                  f"{short_hash(eval_id, provider, prompt, n=6)}")
        info = {"run_id": run_id, "provider": provider, "prompt": prompt, "cases": len(rs),
                "skipped": not replace and warehouse.run_exists(run_id)}
        rows = None if info["skipped"] else _rows(rs, kinds, strata_keys, src)
        if rows is not None:
            _validate(rows, src)  # every run of the file before any is written
        runs.append((info, rows))
    version = _suite_version(results)
    for info, rows in runs:
        if rows is None:
            info["cases"] = 0
            continue
        run = {"run_id": info["run_id"], "name": dataset, "dataset": dataset,
               "model": info["provider"], "prompt_version": info["prompt"],
               "started_at": started_at, "dataset_version": version,
               "source": "import:promptfoo"}
        try:
            warehouse.record_run(run, rows.get("cases"), rows.get("scores"), replace=replace,
                                 sources={"run": src})
        except DataError as e:
            raise rows.locate(e, src) from None
    return [info for info, _ in runs]


def _validate(rows: Rows, src: str) -> None:
    fill = {"run_id": "check", "write_id": "check"}
    try:
        for name in ("cases", "scores"):
            to_arrow(S.TABLES[name], rows.get(name), source=name, fill=fill)
    except DataError as e:
        raise rows.locate(e, src) from None


def _header(doc: Any, src: str) -> tuple[list, str, str | None, str]:
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise DataError(f"not {WHAT}: no 'results' object (write it with promptfoo eval "
                        "--output results.json)", source=src, field="results")
    version = results.get("version")
    if version is None:
        raise DataError(f"not {WHAT}: no 'results.version'", source=src, field="results.version")
    if version != 3:
        raise DataError(f"results version {version!r} is not supported (promptfoo writes 3 "
                        "since 2024; re-run with a current promptfoo)", source=src,
                        field="results.version")
    rows = results.get("results")
    if not isinstance(rows, list) or not rows:
        raise DataError(f"not {WHAT}: 'results.results' must be a non-empty list", source=src,
                        field="results.results")
    eval_id = doc.get("evalId") or short_hash(results.get("timestamp"), len(rows), n=12)
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    dataset = config.get("description") or os.path.splitext(os.path.basename(src))[0]
    return rows, str(eval_id), results.get("timestamp"), str(dataset)


def _provider(r: dict, src: str, where: str) -> str:
    p = r.get("provider")
    if isinstance(p, dict) and (p.get("label") or p.get("id")):
        return str(p.get("label") or p.get("id"))
    if isinstance(p, str) and p:
        return p
    raise DataError("is required (an object with 'id' or 'label')", source=src,
                    field=f"{where}.provider")


def _prompt(r: dict, src: str, where: str) -> str:
    p = r.get("prompt")
    if isinstance(p, dict) and (p.get("label") or r.get("promptId")):
        return str(p.get("label") or r.get("promptId"))[:200]
    raise DataError("is required (an object with 'label' or 'raw')", source=src,
                    field=f"{where}.prompt")


def _assertions(r: dict) -> list[tuple[str, dict]]:
    """(metric name, component result) per assertion; a name used twice gets ``#2``."""
    grading = r.get("gradingResult") or {}
    out: list[tuple[str, dict]] = []
    seen: defaultdict[str, int] = defaultdict(int)
    for c in grading.get("componentResults") or []:
        if not isinstance(c, dict):
            continue
        a = c.get("assertion") or {}
        name = str(a.get("metric") or a.get("type") or "assertion")
        seen[name] += 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", c))
    return out


def _planned(r: dict) -> list[str]:
    """Metric names of the test's assertions, for a result that was never graded."""
    test = r.get("testCase") or {}
    seen: defaultdict[str, int] = defaultdict(int)
    out: list[str] = []
    for a in test.get("assert") or []:
        if isinstance(a, dict):
            name = str(a.get("metric") or a.get("type") or "assertion")
            seen[name] += 1
            out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _kinds(results: list[dict]) -> dict[str, str]:
    """One kind per metric over the whole file, so every run of it gets the same."""
    values: dict[str, list[float | None]] = defaultdict(list)
    for r in results:
        for name, c in _assertions(r):
            values[name].append(number(c.get("score")))
    return {m: kind_of(v) for m, v in values.items()}


def _suite_version(results: list[dict]) -> str:
    """The test suite's content hash: every run of the file shares it (the rendered prompts
    differ by design, so the cases' own hash would not)."""
    tests = sorted({short_hash(r.get("vars"), (r.get("testCase") or {}).get("assert"), n=16)
                    for r in results if isinstance(r, dict)})
    return short_hash(tests, n=12)


def _rows(rs: list[tuple[int, dict]], kinds: dict[str, str], strata_keys: set[str] | None,
          src: str) -> Rows:
    out = Rows()
    repeats: dict[str, int] = defaultdict(int)
    for i, r in sorted(rs, key=lambda x: (x[1].get("testIdx", x[0]), x[0])):
        where = f"results.results[{i}]"
        test = r.get("testCase") or {}
        vars_ = r.get("vars") or test.get("vars") or {}
        base = f"{slug(test.get('description') or 'test', 32)}-" \
               f"{short_hash(vars_, test.get('description'))}"
        repeats[base] += 1
        case_id = base if repeats[base] == 1 else f"{base}~{repeats[base]}"
        response = r.get("response") if isinstance(r.get("response"), dict) else {}
        usage = r.get("tokenUsage") or response.get("tokenUsage") or {}
        failed = r.get("failureReason") == _ERROR or (response.get("error") and
                                                      not r.get("gradingResult"))
        error = (r.get("error") or response.get("error") or "provider error") if failed else None
        strata = strata_from(vars_, strata_keys)
        strata.update({k: v for k, v in strata_from(test.get("metadata"), strata_keys).items()
                       if not k.startswith("_") and k not in strata})
        out.add("cases", {
            "case_id": case_id, "strata": strata or None,
            "input": as_text((r.get("prompt") or {}).get("raw")),
            "output": as_text(response.get("output")), "expected": _expected(r, test),
            "latency_ms": _num(r.get("latencyMs"), src, f"{where}.latencyMs"),
            "tokens_in": _int(usage.get("prompt"), src, f"{where}.tokenUsage.prompt"),
            "tokens_out": _int(usage.get("completion"), src, f"{where}.tokenUsage.completion"),
            "cost_usd": _num(r.get("cost"), src, f"{where}.cost"), "error": error}, where)
        grading = r.get("gradingResult") or {}
        if failed or not grading:
            why = f"unscored: {error or 'not graded'}"
            for name in ["pass", *_planned(r)]:
                out.add("scores", {"case_id": case_id, "metric": name, "value": None,
                                   "kind": "binary" if name == "pass" else
                                   kinds.get(name, "continuous"), "rationale": why,
                                   "scorer": "promptfoo"}, where)
            continue
        out.add("scores", {"case_id": case_id, "metric": "pass",
                           "value": float(bool(r.get("success"))), "kind": "binary",
                           "passed": bool(r.get("success")), "rationale": grading.get("reason"),
                           "scorer": "promptfoo"}, where)
        for k, (name, c) in enumerate(_assertions(r)):
            a = c.get("assertion") or {}
            passed = c.get("pass")
            version = short_hash(a.get("value"), a.get("threshold"))
            at = f"{where}.gradingResult.componentResults[{k}]"
            out.add("scores", {
                "case_id": case_id, "metric": name,
                "value": _num(c.get("score"), src, f"{at}.score"),
                "kind": kinds[name], "passed": passed if isinstance(passed, bool) else None,
                "rationale": c.get("reason"), "scorer": a.get("type"),
                "scorer_version": f"{a.get('type')}#{version}"}, at)
    return out


def _expected(r: dict, test: dict) -> str | None:
    """The test's assertions as JSON, with template values as promptfoo rendered them."""
    graded = []
    for _, c in _assertions(r):
        a = dict(c.get("assertion") or {})
        rendered = (c.get("metadata") or {}).get("renderedAssertionValue")
        if rendered is not None:
            a["value"] = rendered
        graded.append(a)
    return as_text(graded or test.get("assert"))


def _num(v: Any, src: str, name: str) -> float | None:
    """A number the file gives, None when absent; anything else is refused by name."""
    if v is None:
        return None
    if number(v) is None or isinstance(v, bool):
        raise DataError(f"{v!r} is not a number", source=src, field=name)
    return float(v)


def _int(v: Any, src: str, name: str) -> int | None:
    n = _num(v, src, name)
    return None if n is None else int(n)
