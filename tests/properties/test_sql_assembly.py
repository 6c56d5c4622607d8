"""SQL is assembled one way (the rule atop `evallib.queries._sql`): named fragments, composed
with f-strings. No ``.format``, ``%`` or ``.replace`` templating of SQL text, and no
concatenation of literal SQL with other text. Ruff's UP031/UP032 see only literals, not a
template held in a module constant, so this reads the source."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "evallib"
# SQL text: a keyword (upper case, as the code writes them), a bound parameter ($name) or
# a call of a function only SQL has.
SQL = re.compile(
    r"\b(SELECT|FROM|WHERE|JOIN|GROUP BY|ORDER BY|CASE WHEN|CAST|UNION|QUALIFY|AS)\b"
    r"|\$[a-z_]\w*|\b(json_extract_string|coalesce|count|sum|avg|round|ln|exp|floor"
    r"|quantile_cont|percentile|date_trunc|list_filter|unnest|md5|concat_ws)\(")


class _Texts:
    """The string text an expression may hold: its literals, and the values of the names it
    reads (assigned anywhere in the module, or any evallib module for ``mod.NAME``; a
    parameter by what its module's calls pass)."""

    def __init__(self, tree: ast.Module, everywhere: dict[str, list[ast.expr]]) -> None:
        self.assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.value is not None:
                self.assigned.setdefault(node.target.id, []).append(node.value)
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)
                         and isinstance(n.func, ast.Name) and n.func.id == fn.name):
                for name, arg in zip(params, call.args, strict=False):
                    self.assigned.setdefault(name, []).append(arg)
                for kw in call.keywords:
                    if kw.arg:
                        self.assigned.setdefault(kw.arg, []).append(kw.value)
        self.everywhere = everywhere

    def of(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> str:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else ""
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in seen:
                return ""
            values = self.assigned.get(name) if isinstance(node, ast.Name) \
                else self.everywhere.get(name)
            return " ".join(self.of(v, seen | {name}) for v in values or ())
        if isinstance(node, ast.Call):  # "...".join(...), or a call on a template
            return self.of(node.func, seen) if isinstance(node.func, ast.Attribute) else ""
        return " ".join(self.of(child, seen) for child in ast.iter_child_nodes(node))


@cache
def _module_constants() -> dict[str, list[ast.expr]]:
    out: dict[str, list[ast.expr]] = {}
    for path in ROOT.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.isupper():
                        out.setdefault(target.id, []).append(node.value)
    return out


def _literal(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str))


def violations(source: str, everywhere: dict[str, list[ast.expr]]) -> list[str]:
    """Where ``source`` templates SQL: line and what it does."""
    tree = ast.parse(source)
    texts = _Texts(tree, everywhere)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("format", "replace") \
                and SQL.search(texts.of(node.func.value)):
            found.append(f"{node.lineno}: .{node.func.attr}() on SQL text")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) \
                and SQL.search(texts.of(node.left)):
            found.append(f"{node.lineno}: % on SQL text")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and any(
                _literal(side) and SQL.search(texts.of(side))
                for side in (node.left, node.right)):
            found.append(f"{node.lineno}: literal SQL concatenated")
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py") if "demo" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_sql_is_composed_from_named_fragments_with_f_strings(path: Path) -> None:
    assert violations(path.read_text(), _module_constants()) == []


@pytest.mark.parametrize("snippet", [
    '_BUCKET = "CASE WHEN $hourly THEN {a}.timestamp END"\nx = _BUCKET.format(a="t")',
    '_STRATUM = "json_extract_string(g.strata_json, $key)"\nx = _STRATUM.replace("$key", "$k2")',
    '_Q = "count(latency_ms) AS n"\n_L = "SELECT %(q)s FROM t"\nx = _L % {"q": _Q}',
    'def f(t):\n    return t.format(src="x")\ny = f("SELECT * FROM {src}")',
    'x = "SELECT * FROM (" + inner + ")"',
])
def test_each_templating_pattern_is_caught(snippet: str) -> None:
    assert violations(snippet, {}) != []


@pytest.mark.parametrize("snippet", [
    '_A = "SELECT 1"\n_B = "UNION ALL SELECT 2"\nx = f"{_A} {_B}"',
    'x = _A + _B',
    'def q(s):\n    return "\'" + s.replace("\'", "\'\'") + "\'"',
    'x = "{value!r} is not one of ".format(value=1)',
])
def test_f_strings_names_and_plain_text_pass(snippet: str) -> None:
    assert violations(snippet, {}) == []
