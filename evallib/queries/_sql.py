"""What every query module shares: the one execute path, and the SQL fragments that pool
score moments and read a stratum's value.

How SQL is written in evallib: a fragment is a named module constant when it is fixed, or a
small named function of what varies (a table alias, a column, a source relation, an engine)
that returns text; a statement is an f-string over those names. No ``.format``, ``%``,
``.replace`` or ``+`` on SQL text (tests/properties/test_sql_assembly.py checks). Only text
the code owns (fragments, identifiers, its own constants) is interpolated: every value from
a user is a bound parameter (``$name``), so a user's choice never changes the SQL text.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ..warehouse import Connection

# Splitting by a stratum without a join: each score row carries its case's (or trace's)
# strata as canonical JSON text, which Parquet dictionary-encodes (a golden set has a few
# hundred distinct strata). Aggregate per distinct strata first, then pool those few groups
# per value of the chosen key: the key is read from a few hundred strings, not millions.
_MOMENTS = """any_value(s.kind) AS kind, count(s.value) AS n, sum(s.value) AS sx,
           sum(s.value * s.value) AS sxx"""


def _stratum_value(key: str, strata_json: str = "g.strata_json") -> str:
    """The value of the stratum key ``key`` (a bound parameter, or a lambda's variable) in
    canonical strata JSON: a JSON pointer (any key works: '~' and '/' escaped as RFC 6901
    says); ten times faster than casting each row to a MAP."""
    return (f"json_extract_string({strata_json}, "
            f"'/' || replace(replace({key}, '~', '~0'), '/', '~1'))")


_STRATUM = _stratum_value("$key")
_STRATUM2 = _stratum_value("$key2")  # null when there is no second key
_POOLED_MEAN_SD = """sum(g.sx) / sum(g.n) AS mean,
           CASE WHEN sum(g.n) > 1 THEN sqrt(greatest(sum(g.sxx) - sum(g.sx) * sum(g.sx)
                / sum(g.n), 0) / (sum(g.n) - 1)) END AS sd"""
_POOLED = f"""any_value(g.kind) AS kind, sum(g.n)::BIGINT AS n,
           {_POOLED_MEAN_SD}"""


def _frame(con: Connection, sql: str, **params: Any) -> pl.DataFrame:
    """The one execute path: constant SQL, named parameters."""
    return con.sql(sql, params=params or None).pl()
