"""What every query module shares: the one execute path, and the SQL fragments that pool
score moments and read a stratum's value."""

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
# The value of stratum key $key: a JSON pointer into the canonical JSON (any key works: '~'
# and '/' escaped as RFC 6901 says); ten times faster than casting each row to a MAP.
_STRATUM = ("json_extract_string(g.strata_json, "
            "'/' || replace(replace($key, '~', '~0'), '/', '~1'))")
_POOLED_MEAN_SD = """sum(g.sx) / sum(g.n) AS mean,
           CASE WHEN sum(g.n) > 1 THEN sqrt(greatest(sum(g.sxx) - sum(g.sx) * sum(g.sx)
                / sum(g.n), 0) / (sum(g.n) - 1)) END AS sd"""
_POOLED = f"""any_value(g.kind) AS kind, sum(g.n)::BIGINT AS n,
           {_POOLED_MEAN_SD}"""


def _frame(con: Connection, sql: str, **params: Any) -> pl.DataFrame:
    """The one execute path: constant SQL, named parameters."""
    return con.sql(sql, params=params or None).pl()


_STRATUM2 = _STRATUM.replace("$key", "$key2")  # null when there is no second key
