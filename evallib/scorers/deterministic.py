"""Scorers that need no model: string match, regex, JSON Schema, classification, numbers,
tool-call arguments.

A wrong output is a grade (0, with a rationale saying what was wrong); only a case that
cannot be graded (no output, no expected answer) is unscored. Bad scorer arguments (an
invalid regex or JSON Schema) are refused when the scorer is built, with an EvallibError.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..errors import EvallibError
from .base import Sample, Score, Scorer, canonical_json

__all__ = [
    "classification", "contains", "exact_match", "json_schema", "normalize_text",
    "numeric_match", "regex_match", "tool_call_args",
]

NO_OUTPUT = "no output to score (the task returned None)"
NO_EXPECTED = "the case has no expected answer"


def normalize_text(text: str) -> str:
    """Compare meaning, not typography: NFKC, casefold, punctuation → space, one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def _text(value: Any, normalize: bool) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return normalize_text(text) if normalize else text


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExactMatch(Scorer):
    kind, family = "binary", "exact_match"

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        if sample.expected is None:
            return self.unscored(NO_EXPECTED)
        norm = self.args["normalize"]
        # A list of strings as the expected answer means "any of these".
        alternatives = (list(sample.expected) if isinstance(sample.expected, (list, tuple))
                        and all(isinstance(e, str) for e in sample.expected)
                        and isinstance(sample.output, str) else [sample.expected])
        got = _text(sample.output, norm)
        hit = any(_text(e, norm) == got for e in alternatives)
        why = "matches the expected answer" if hit else (
            f"{_short(sample.output)!r} ≠ expected {_short(sample.expected)!r}")
        return self.make(hit, rationale=why)


def exact_match(normalize: bool = True, *, name: str = "exact_match") -> Scorer:
    """1 when the output equals the expected answer (any of them, for a list of strings).

    ``normalize`` ignores case, punctuation and spacing (see `normalize_text`).
    """
    return ExactMatch(name, {"normalize": normalize})


class Contains(Scorer):
    kind, family = "binary", "contains"

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        needles = self.args["needles"] or sample.expected
        if needles is None or needles == []:
            return self.unscored(NO_EXPECTED)
        needles = [needles] if isinstance(needles, str) else list(needles)
        norm = self.args["normalize"]
        hay = _text(sample.output, norm)
        found = [n for n in needles if _text(n, norm) in hay]
        hit = len(found) == len(needles) if self.args["require"] == "all" else bool(found)
        missing = [n for n in needles if n not in found]
        why = "contains " + ", ".join(map(repr, found)) if hit else (
            "missing " + ", ".join(map(repr, missing)))
        return self.make(hit, rationale=why)


def contains(*needles: str, require: Literal["all", "any"] = "all", normalize: bool = True,
             name: str = "contains") -> Scorer:
    """1 when the output contains the given strings (default: the expected answer, a string
    or a list of strings); ``require`` says whether all of them or any one must appear."""
    if require not in ("all", "any"):
        raise EvallibError(f"contains(): require must be 'all' or 'any', not {require!r}")
    return Contains(name, {"needles": list(needles), "require": require, "normalize": normalize})


class RegexMatch(Scorer):
    kind, family = "binary", "regex"

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        super().__init__(name, args)
        flags = re.IGNORECASE if args["ignore_case"] else 0
        try:
            self._pattern = re.compile(args["pattern"], flags | re.DOTALL)
        except re.error as exc:
            raise EvallibError(f"regex_match(): invalid pattern {args['pattern']!r}: {exc}"
                               ) from None

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        text = _text(sample.output, normalize=False)
        find = self._pattern.fullmatch if self.args["fullmatch"] else self._pattern.search
        m = find(text)
        why = f"matched {_short(m.group(0))!r}" if m else f"no match for /{self._pattern.pattern}/"
        return self.make(m is not None, rationale=why)


def regex_match(pattern: str, *, fullmatch: bool = False, ignore_case: bool = False,
                name: str = "regex") -> Scorer:
    """1 when the pattern is found in the output (the whole output, with ``fullmatch``)."""
    return RegexMatch(name, {"pattern": pattern, "fullmatch": fullmatch,
                             "ignore_case": ignore_case})


def _validator(schema: Any, where: str) -> Any:
    """A jsonschema validator for the schema's own draft; a bad schema is a usage error."""
    import jsonschema  # lazy: only scorers that validate JSON pay for the import

    if not isinstance(schema, Mapping):
        raise EvallibError(f"{where}: the JSON Schema must be an object, not {schema!r}")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise EvallibError(f"{where}: invalid JSON Schema: {exc.message}") from None
    return cls(schema)


def _plain(schema: Any) -> Any:
    """A copy as plain dicts (recorded and hashed as the scorer's arguments)."""
    return json.loads(canonical_json(schema)) if isinstance(schema, Mapping) else schema


def _schema_errors(validator: Any, instance: Any, most: int = 3) -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"at {e.json_path}: {e.message}" for e in errors[:most]]


def _parse_json(value: Any) -> tuple[Any, str | None]:
    """A str output is parsed as JSON; anything else is taken as already-parsed JSON."""
    if not isinstance(value, str):
        return value, None
    try:
        return json.loads(value), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


class JsonSchema(Scorer):
    kind, family = "binary", "json_schema"

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        super().__init__(name, args)
        self._validator = _validator(args["schema"], "json_schema()")

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        data, problem = _parse_json(sample.output)
        if problem:
            return self.make(False, rationale=f"output is {problem}")
        errors = _schema_errors(self._validator, data)
        return self.make(not errors, rationale="; ".join(errors) or "conforms to the schema")


def json_schema(schema: Mapping[str, Any], *, name: str = "json_schema") -> Scorer:
    """1 when the output (a JSON string or a JSON-able value) conforms to the schema."""
    return JsonSchema(name, {"schema": _plain(schema)})


class Classification(Scorer):
    kind, family = "binary", "classification"

    def _label(self, value: Any) -> str:
        return _text(value, self.args["normalize"])

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        if sample.expected is None:
            return self.unscored(NO_EXPECTED)
        got, want = self._label(sample.output), self._label(sample.expected)
        labels = [self._label(x) for x in self.args["labels"]]
        note = (f" (not one of the labels {self.args['labels']})"
                if labels and got not in labels else "")
        return self.make(got == want, rationale=f"predicted {got!r}{note}, expected {want!r}")

    def summarize(self, scores: Sequence[Score], samples: Sequence[Sample]) -> dict[str, float]:
        """Per-class precision, recall and F1, their macro means (over the classes where they
        are defined) and accuracy. Precision of a class never predicted and recall of a class
        never expected are NaN: undefined, not 0."""
        pairs = [(self._label(s.expected), self._label(s.output)) for s in samples
                 if s.output is not None and s.expected is not None]
        if not pairs:
            return {}
        tp = Counter(want for want, got in pairs if want == got)
        n_expected = Counter(want for want, _ in pairs)
        n_predicted = Counter(got for _, got in pairs)
        labels = [self._label(x) for x in self.args["labels"]] or sorted(n_expected | n_predicted)
        out: dict[str, float] = {"accuracy": sum(tp.values()) / len(pairs)}
        per: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
        for label in labels:
            fp, fn = n_predicted[label] - tp[label], n_expected[label] - tp[label]
            p = tp[label] / n_predicted[label] if n_predicted[label] else math.nan
            r = tp[label] / n_expected[label] if n_expected[label] else math.nan
            denom = 2 * tp[label] + fp + fn  # F1 = 2TP / (2TP + FP + FN): 0 if never right
            f1 = 2 * tp[label] / denom if denom else math.nan
            for key, value in (("precision", p), ("recall", r), ("f1", f1)):
                out[f"{key}[{label}]"] = value
                per[key].append(value)
        for key, values in per.items():
            defined = [v for v in values if not math.isnan(v)]
            out[f"macro_{key}"] = sum(defined) / len(defined) if defined else math.nan
        return out


def classification(labels: Sequence[str] = (), *, normalize: bool = True,
                   name: str = "classification") -> Scorer:
    """1 when the predicted label is the expected one; `summarize` gives per-class precision,
    recall and F1 for the run. ``labels`` fixes the classes reported (default: all seen)."""
    return Classification(name, {"labels": list(labels), "normalize": normalize})


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _THOUSANDS.fullmatch(text):
            text = text.replace(",", "")
        try:
            return float(text)
        except ValueError:
            return None
    return None


class NumericMatch(Scorer):
    kind, family = "binary", "numeric"

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        if sample.expected is None:
            return self.unscored(NO_EXPECTED)
        want = _number(sample.expected)
        if want is None:
            return self.unscored(f"expected answer {_short(sample.expected)!r} is not a number")
        got = _number(sample.output)
        if got is None:
            return self.make(False, rationale=f"output {_short(sample.output)!r} is not a number")
        ok = math.isclose(got, want, rel_tol=self.args["rel_tol"], abs_tol=self.args["abs_tol"])
        return self.make(ok, rationale=f"{got:g} vs expected {want:g} (off by {got - want:g})")


def numeric_match(*, abs_tol: float = 0.0, rel_tol: float = 1e-9,
                  name: str = "numeric") -> Scorer:
    """1 when the output is a number within ``abs_tol`` or ``rel_tol`` of the expected one
    (`math.isclose`). "1,234.5" is read as 1234.5; other text is a wrong answer."""
    if abs_tol < 0 or rel_tol < 0:
        raise EvallibError("numeric_match(): tolerances must be ≥ 0")
    return NumericMatch(name, {"abs_tol": abs_tol, "rel_tol": rel_tol})


def _tool_calls(output: Any) -> list[tuple[str | None, Any]] | None:
    """(name, arguments) of each call in an OpenAI message, a call, or a list of calls."""
    data, problem = _parse_json(output)
    if problem:
        return None
    if isinstance(data, Mapping) and "tool_calls" in data:
        data = data["tool_calls"] or []
    calls = data if isinstance(data, list) else [data]
    out: list[tuple[str | None, Any]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            return None
        fn = call.get("function", call)
        if not isinstance(fn, Mapping):
            return None
        out.append((fn.get("name"), fn.get("arguments", fn.get("args"))))
    return out


class ToolCallArgs(Scorer):
    kind, family = "binary", "tool_call_args"

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        super().__init__(name, args)
        self._validators = {tool: _validator(schema, f"tool_call_args(): tool {tool!r}")
                            for tool, schema in args["schemas"].items()}

    def _score(self, sample: Sample) -> Score:
        if sample.output is None:
            return self.unscored(NO_OUTPUT)
        calls = _tool_calls(sample.output)
        if calls is None:
            return self.make(False, rationale="output is not a tool call or a list of them")
        if not calls:
            return self.make(False, rationale="no tool call")
        problems: list[str] = []
        for i, (tool, arguments) in enumerate(calls):
            validator = self._validators.get(tool) if isinstance(tool, str) else None
            if validator is None:
                problems.append(f"call {i}: unknown tool {tool!r}")
                continue
            parsed, problem = _parse_json(arguments if arguments is not None else {})
            if problem:
                problems.append(f"call {i} ({tool}): arguments are {problem}")
                continue
            problems += [f"call {i} ({tool}) {e}" for e in _schema_errors(validator, parsed)]
        why = "; ".join(problems) or f"{len(calls)} call(s) with valid arguments"
        return self.make(not problems, rationale=why)


def tool_call_args(schemas: Mapping[str, Mapping[str, Any]], *,
                   name: str = "tool_call_args") -> Scorer:
    """1 when the output makes at least one tool call and every call names a known tool whose
    arguments (a JSON string or object) conform to that tool's parameter schema."""
    if not schemas:
        raise EvallibError("tool_call_args(): give at least one tool's parameter schema")
    return ToolCallArgs(name, {"schemas": {k: _plain(v) for k, v in schemas.items()}})
