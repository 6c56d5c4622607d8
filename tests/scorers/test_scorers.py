"""Deterministic scorers against tables of positive and negative examples, their provenance
(name + version + argument hash on every score) and the classification summary."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from evallib.errors import EvallibError
from evallib.scorers import (
    Sample,
    Score,
    Scorer,
    classification,
    contains,
    exact_match,
    json_schema,
    numeric_match,
    regex_match,
    tool_call_args,
)


def _score(scorer: Scorer, output: Any, expected: Any = None, **fields: Any) -> Score:
    scores = asyncio.run(scorer.score(Sample("c1", "q", output, expected, **fields)))
    assert len(scores) == 1
    return scores[0]


def assert_scores(scorer: Scorer, output: Any, expected: Any, want: bool) -> None:
    s = _score(scorer, output, expected)
    assert (s.value, s.passed, s.error) == (float(want), want, None), s
    assert s.kind == "binary" and s.rationale


EXACT = [
    # output, expected, normalize, matches
    ("Paris", "Paris", True, True),
    ("  paris. ", "Paris", True, True),
    ("PARIS!!", "paris", True, True),
    ("New   York", "new york", True, True),
    ("ﬁne", "fine", True, True),  # NFKC folds the ligature
    ("Paris", ["Lyon", "paris"], True, True),  # any of several answers
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True, True),  # JSON compared canonically
    ("  paris. ", "Paris", False, False),
    ("Paris", "paris", False, False),
    ("Paris", "Paris", False, True),
    ("Paris, France", "Paris", True, False),
    ("Lyon", ["Nice", "Paris"], True, False),
    ({"a": 1}, {"a": 2}, True, False),
]


@pytest.mark.parametrize(("output", "expected", "normalize", "want"), EXACT)
def test_exact_match(output: Any, expected: Any, normalize: bool, want: bool) -> None:
    assert_scores(exact_match(normalize=normalize), output, expected, want)


CONTAINS = [
    # needles, require, output, expected, matches
    ((), "all", "The refund takes 5 days.", "5 days", True),
    ((), "all", "The refund takes 5 DAYS.", "5 days", True),
    ((), "all", "The refund takes five days.", "5 days", False),
    (("refund", "days"), "all", "Refund: 5 days", None, True),
    (("refund", "weeks"), "all", "Refund: 5 days", None, False),
    (("refund", "weeks"), "any", "Refund: 5 days", None, True),
    (("credit", "weeks"), "any", "Refund: 5 days", None, False),
    ((), "all", "order 42 shipped", ["order 42", "shipped"], True),
    ((), "all", "order 42 pending", ["order 42", "shipped"], False),
]


@pytest.mark.parametrize(("needles", "require", "output", "expected", "want"), CONTAINS)
def test_contains(needles: tuple[str, ...], require: str, output: str, expected: Any,
                  want: bool) -> None:
    assert_scores(contains(*needles, require=require), output, expected, want)


REGEX = [
    # pattern, options, output, matches
    (r"\bINV-\d{4}\b", {}, "see invoice INV-2041 for details", True),
    (r"\bINV-\d{4}\b", {}, "see invoice INV-20411", False),
    (r"\bINV-\d{4}\b", {}, "see invoice inv-2041", False),
    (r"\bINV-\d{4}\b", {"ignore_case": True}, "see invoice inv-2041", True),
    (r"(yes|no)", {"fullmatch": True}, "yes", True),
    (r"(yes|no)", {"fullmatch": True}, "yes, of course", False),
    (r"start.*end", {}, "start\nmiddle\nend", True),  # DOTALL: outputs span lines
]


@pytest.mark.parametrize(("pattern", "options", "output", "want"), REGEX)
def test_regex_match(pattern: str, options: dict[str, bool], output: str, want: bool) -> None:
    assert_scores(regex_match(pattern, **options), output, None, want)


PERSON = {"type": "object", "required": ["name", "age"], "additionalProperties": False,
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}

SCHEMA = [
    ('{"name": "Ada", "age": 36}', True),
    ({"name": "Ada", "age": 36}, True),  # already-parsed JSON
    ('{"name": "Ada"}', False),  # missing age
    ('{"name": "Ada", "age": -1}', False),
    ('{"name": "Ada", "age": 36, "x": 1}', False),
    ('{"name": "Ada", "age": "36"}', False),
    ("Sure! Here is the JSON: {", False),  # not JSON at all
    ("[]", False),
]


@pytest.mark.parametrize(("output", "want"), SCHEMA)
def test_json_schema(output: Any, want: bool) -> None:
    assert_scores(json_schema(PERSON), output, None, want)


def test_json_schema_rationale_names_the_failing_field() -> None:
    s = _score(json_schema(PERSON), '{"name": "Ada", "age": -1}')
    assert s.value == 0 and "$.age" in s.rationale and "minimum" in s.rationale
    s = _score(json_schema(PERSON), "not json")
    assert s.value == 0 and s.rationale.startswith("output is not valid JSON")


NUMERIC = [
    # output, expected, options, matches
    ("42", 42, {}, True),
    (" 42.0 ", "42", {}, True),
    ("1,234.5", 1234.5, {}, True),
    (3.14159, 3.14, {"abs_tol": 0.01}, True),
    (3.16, 3.14, {"abs_tol": 0.01}, False),
    (105, 100, {"rel_tol": 0.05}, True),
    (106, 100, {"rel_tol": 0.05}, False),
    ("41", 42, {}, False),
    ("about 42", 42, {}, False),  # text is a wrong answer, not a guess at a number
    (True, 1, {}, False),  # a bool is not a number
    ("nan", 1, {}, False),
]


@pytest.mark.parametrize(("output", "expected", "options", "want"), NUMERIC)
def test_numeric_match(output: Any, expected: Any, options: dict[str, float], want: bool
                       ) -> None:
    assert_scores(numeric_match(**options), output, expected, want)


WEATHER = {"type": "object", "required": ["city"], "additionalProperties": False,
           "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
TOOLS = {"get_weather": WEATHER, "noop": {"type": "object"}}


def _openai_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_CALLS = [
    # an OpenAI assistant message with a JSON-string arguments field
    ({"role": "assistant", "tool_calls": [_openai_call("get_weather", '{"city": "Oslo"}')]},
     True),
    ({"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}, True),
    ([{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "noop"}], True),
    (json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}}), True),
    ({"tool_calls": [_openai_call("get_weather", '{"town": "Oslo"}')]}, False),
    ({"tool_calls": [_openai_call("get_weather", '{"city": "Oslo", "days": "3"}')]}, False),
    ({"tool_calls": [_openai_call("get_weather", '{"city": ')]}, False),  # truncated JSON
    ({"tool_calls": [_openai_call("delete_all", "{}")]}, False),  # unknown tool
    ([{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "rm"}], False),
    ({"role": "assistant", "content": "It is sunny", "tool_calls": []}, False),  # no call
    ("It is sunny in Oslo", False),
]


@pytest.mark.parametrize(("output", "want"), TOOL_CALLS)
def test_tool_call_args(output: Any, want: bool) -> None:
    assert_scores(tool_call_args(TOOLS), output, None, want)


def test_tool_call_rationale_says_which_call_and_field() -> None:
    out = {"tool_calls": [_openai_call("get_weather", '{"city": "Oslo", "days": "3"}')]}
    s = _score(tool_call_args(TOOLS), out)
    assert s.value == 0 and "call 0 (get_weather)" in s.rationale and "$.days" in s.rationale


CLASSES = [
    ("billing", "billing", True),
    ("Billing.", "billing", True),
    ("refund", "billing", False),
]


@pytest.mark.parametrize(("output", "expected", "want"), CLASSES)
def test_classification(output: str, expected: str, want: bool) -> None:
    assert_scores(classification(["billing", "refund", "other"]), output, expected, want)


def test_classification_summary_per_class_precision_recall_f1() -> None:
    scorer = classification()
    pairs = [("billing", "billing"), ("billing", "billing"), ("refund", "billing"),
             ("refund", "refund"), ("billing", "refund"), ("other", "other")]
    samples = [Sample(f"c{i}", "q", got, want) for i, (got, want) in enumerate(pairs)]
    scores = [asyncio.run(scorer.score(s))[0] for s in samples]
    got = scorer.summarize(scores, samples)
    # billing: predicted 3 times, 2 right → P = 2/3; expected 3 times, 2 found → R = 2/3;
    #   F1 = 2·2 / (2·2 + 1 FP + 1 FN) = 4/6
    # refund: predicted 2, 1 right → P = 1/2; expected 2, 1 found → R = 1/2; F1 = 2/4
    # other: P = R = F1 = 1; accuracy 4/6
    want = {"accuracy": 4 / 6, "precision[billing]": 2 / 3, "recall[billing]": 2 / 3,
            "f1[billing]": 4 / 6, "precision[refund]": 0.5, "recall[refund]": 0.5,
            "f1[refund]": 0.5, "precision[other]": 1.0, "recall[other]": 1.0, "f1[other]": 1.0,
            "macro_precision": (2 / 3 + 0.5 + 1) / 3, "macro_recall": (2 / 3 + 0.5 + 1) / 3,
            "macro_f1": (4 / 6 + 0.5 + 1) / 3}
    assert got == pytest.approx(want)


def test_classification_summary_undefined_is_nan_not_zero() -> None:
    scorer = classification(["yes", "no", "maybe"])
    samples = [Sample("a", "q", "yes", "yes"), Sample("b", "q", "yes", "no")]
    got = scorer.summarize([], samples)
    # "no" never predicted: precision undefined; expected once, never found: recall 0, F1 0.
    assert math.isnan(got["precision[no]"]) and got["recall[no]"] == 0 and got["f1[no]"] == 0
    # "maybe" never predicted nor expected: nothing is defined.
    assert all(math.isnan(got[f"{k}[maybe]"]) for k in ("precision", "recall", "f1"))
    assert got["macro_precision"] == pytest.approx(0.5)  # only "yes" (1/2) is defined
    assert classification().summarize([], []) == {}


@pytest.mark.parametrize("scorer", [
    exact_match(), contains(), regex_match("x"), json_schema(PERSON), classification(),
    numeric_match(), tool_call_args(TOOLS)], ids=lambda s: s.family)
def test_no_output_is_unscored_never_a_grade(scorer: Scorer) -> None:
    s = _score(scorer, None, "x")
    assert (s.value, s.passed) == (None, None) and "no output" in s.error


@pytest.mark.parametrize("scorer", [exact_match(), contains(), classification(),
                                    numeric_match()], ids=lambda s: s.family)
def test_missing_expected_answer_is_unscored(scorer: Scorer) -> None:
    s = _score(scorer, "an answer", None)
    assert s.value is None and "expected" in s.error


def test_non_numeric_expected_answer_is_unscored() -> None:
    s = _score(numeric_match(), "4", "four")
    assert s.value is None and "not a number" in s.error


def test_every_score_records_scorer_name_version_and_argument_hash() -> None:
    s = _score(exact_match(), "a", "a")
    assert (s.metric, s.scorer) == ("exact_match", "exact_match")
    name, rest = s.scorer_version.split("@")
    version, digest = rest.split("#")
    assert (name, version, len(digest)) == ("exact_match", "1", 8)
    # Same arguments → same version; different arguments → a different one.
    assert exact_match().scorer_version == s.scorer_version
    assert exact_match(normalize=False).scorer_version != s.scorer_version
    assert regex_match("a").scorer_version != regex_match("b").scorer_version
    assert json_schema({"type": "object"}).args == {"schema": {"type": "object"}}
    renamed = _score(exact_match(name="correctness"), "a", "a")
    assert renamed.metric == "correctness" and renamed.scorer == "exact_match"


def test_a_scorer_that_raises_gives_an_unscored_row() -> None:
    class Broken(Scorer):
        kind, family = "binary", "broken"

        def _score(self, sample: Sample) -> Score:
            raise KeyError("surprise")

    s = _score(Broken("broken"), "x")
    assert s.value is None and s.error == "KeyError: 'surprise'"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: regex_match("(unclosed"), "invalid pattern"),
    (lambda: json_schema({"type": "nonsense"}), "invalid JSON Schema"),
    (lambda: json_schema(["not", "a", "schema"]), "must be an object"),
    (lambda: tool_call_args({"t": {"type": 5}}), "tool 't': invalid JSON Schema"),
    (lambda: tool_call_args({}), "at least one"),
    (lambda: contains("x", require="most"), "require"),
    (lambda: numeric_match(abs_tol=-1), "≥ 0"),
])
def test_bad_scorer_arguments_are_refused_when_built(build: Any, message: str) -> None:
    with pytest.raises(EvallibError, match=message):
        build()
