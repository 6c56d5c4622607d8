"""The Datasets page: each golden set's versions, which cases each holds, how two versions
differ, a version's strata mix, and which runs used which version.

A version's cases are its ``dataset_cases`` rows when it is stored (`Dataset.store`,
`evallib evaluate`, `evallib promote`, the demo), else the cases of the first run that used
it (imported runs): either way one row per case_id, with input and expected as text (a
stored JSON string is unquoted, so both sources compare equal).
"""

from __future__ import annotations

import polars as pl

from ._sql import Connection, _frame

__all__ = [
    "dataset_membership",
    "dataset_versions",
    "version_diff",
    "version_runs",
    "version_strata_mix",
]


def _text(c: str) -> str:
    """Column ``c`` as text: a stored JSON string unquoted."""
    return (f"CASE WHEN {c} = 'null' THEN NULL WHEN left({c}, 1) = '\"' "
            f"THEN json_extract_string({c}, '$') ELSE {c} END")


def _strata(c: str) -> str:
    """No strata (tags, documents: `_list`): empty, whether stored as empty or as null."""
    return f"coalesce({c}, MAP {{}}::MAP(VARCHAR, VARCHAR))"


def _list(c: str) -> str:
    return f"coalesce({c}, []::VARCHAR[])"


# Every version's cases (see the module docstring), restricted to $dataset unless null.
_VERSION_CASES = f"""
    stored AS (SELECT dataset_version, any_value(dataset) AS dataset FROM dataset_cases
               GROUP BY dataset_version),
    first_run AS (SELECT dataset_version, any_value(dataset) AS dataset,
                         arg_min(run_id, started_at) AS run_id FROM runs
                  WHERE dataset_version IS NOT NULL
                    AND dataset_version NOT IN (SELECT dataset_version FROM stored)
                  GROUP BY dataset_version),
    vc AS (
        SELECT d.dataset_version, s.dataset, d.case_id, {_strata("d.strata")} AS strata,
               {_list("d.tags")} AS tags, {_text("d.input")} AS input,
               {_text("d.expected")} AS expected,
               {_list("d.relevant_docs")} AS relevant_docs, d.metadata,
               true AS stored
        FROM dataset_cases d JOIN stored s USING (dataset_version)
        WHERE $dataset IS NULL OR s.dataset = $dataset
        QUALIFY row_number() OVER (PARTITION BY d.dataset_version, d.case_id) = 1
        UNION ALL
        SELECT f.dataset_version, f.dataset, c.case_id, {_strata("c.strata")},
               {_list("c.tags")}, c.input, c.expected, []::VARCHAR[], NULL::VARCHAR,
               false
        FROM first_run f JOIN cases c ON c.run_id = f.run_id
        WHERE $dataset IS NULL OR f.dataset = $dataset)"""


def dataset_versions(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Every version of every golden set (or of ``dataset``) that is stored or that a run
    used: dataset, dataset_version, n_cases, n_promoted (cases tagged ``promoted``),
    stored (its cases are in the warehouse), first_run, last_run (started_at) and n_runs;
    oldest first (never-run versions last)."""
    return _frame(con, f"""
        WITH {_VERSION_CASES},
        counts AS (SELECT dataset_version, any_value(dataset) AS dataset,
                          count(*) AS n_cases,
                          count_if(list_contains(tags, 'promoted'))::BIGINT AS n_promoted,
                          bool_or(stored) AS stored
                   FROM vc GROUP BY dataset_version),
        used AS (SELECT dataset_version, min(started_at) AS first_run,
                        max(started_at) AS last_run, count(*) AS n_runs
                 FROM runs WHERE dataset_version IS NOT NULL GROUP BY dataset_version)
        SELECT c.dataset, c.dataset_version, c.n_cases, c.n_promoted, c.stored, u.first_run,
               u.last_run, coalesce(u.n_runs, 0) AS n_runs
        FROM counts c LEFT JOIN used u USING (dataset_version)
        ORDER BY c.dataset, u.first_run NULLS LAST, c.dataset_version""", dataset=dataset)


def dataset_membership(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Which cases each version holds: dataset_version, case_id, promoted (tagged so),
    content (a hash of input, expected, strata, tags, relevant_docs and metadata, the
    last two known for stored versions only: equal hashes, equal case)."""
    return _frame(con, f"""
        WITH {_VERSION_CASES}
        SELECT dataset_version, case_id, coalesce(list_contains(tags, 'promoted'), false)
               AS promoted,
               md5(concat_ws(chr(31), input, expected, strata::VARCHAR, tags::VARCHAR,
                             CASE WHEN len(relevant_docs) > 0 THEN relevant_docs::VARCHAR END,
                             metadata)) AS content
        FROM vc ORDER BY dataset_version, case_id""", dataset=dataset)


def version_diff(con: Connection, old: str, new: str) -> pl.DataFrame:
    """Cases added, removed and changed from version ``old`` to ``new``: case_id, change
    (added | removed | changed), fields (the changed ones: input, expected, strata, tags,
    relevant_docs, metadata), input, expected (the new version's; the old's if removed),
    old_expected."""
    return _frame(con, f"""
        WITH {_VERSION_CASES},
        a AS (SELECT * FROM vc WHERE dataset_version = $old),
        b AS (SELECT * FROM vc WHERE dataset_version = $new)
        SELECT coalesce(b.case_id, a.case_id) AS case_id,
               CASE WHEN a.case_id IS NULL THEN 'added' WHEN b.case_id IS NULL THEN 'removed'
                    ELSE 'changed' END AS change,
               list_filter(['input', 'expected', 'strata', 'tags', 'relevant_docs',
                            'metadata'],
                           lambda f, i: a.case_id IS NOT NULL AND b.case_id IS NOT NULL AND
                               [a.input IS DISTINCT FROM b.input,
                                a.expected IS DISTINCT FROM b.expected,
                                a.strata::VARCHAR IS DISTINCT FROM b.strata::VARCHAR,
                                a.tags IS DISTINCT FROM b.tags,
                                (a.stored AND b.stored
                                 AND a.relevant_docs IS DISTINCT FROM b.relevant_docs),
                                (a.stored AND b.stored
                                 AND a.metadata IS DISTINCT FROM b.metadata)][i]) AS fields,
               coalesce(b.input, a.input) AS input,
               coalesce(b.expected, a.expected) AS expected, a.expected AS old_expected
        FROM a FULL OUTER JOIN b ON a.case_id = b.case_id
        WHERE a.case_id IS NULL OR b.case_id IS NULL OR len(fields) > 0
        ORDER BY CASE change WHEN 'added' THEN 0 WHEN 'changed' THEN 1 ELSE 2 END, case_id""",
                  dataset=None, old=old, new=new)


def version_strata_mix(con: Connection, version: str, key: str, key2: str | None = None
                       ) -> pl.DataFrame:
    """How many cases of a version fall in each value of ``key`` (``stratum``) × ``key2``
    (``stratum2``), as `strata_mix` gives for a run."""
    return _frame(con, f"""
        WITH {_VERSION_CASES}
        SELECT strata[$key] AS stratum, strata[$key2] AS stratum2, count(*) AS n
        FROM vc WHERE dataset_version = $version
        GROUP BY ALL ORDER BY stratum NULLS LAST, stratum2 NULLS LAST""",
                  dataset=None, version=version, key=key, key2=key2)


def version_runs(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Which runs used which version: dataset, dataset_version, run_id, name, model,
    started_at, approved; newest first."""
    return _frame(con, """
        SELECT dataset, dataset_version, run_id, name, model, started_at, approved FROM runs
        WHERE $dataset IS NULL OR dataset = $dataset
        ORDER BY started_at DESC, run_id""", dataset=dataset)
