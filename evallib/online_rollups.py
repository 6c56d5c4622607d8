"""Daily rollups of production traffic (`schema.TRAFFIC_ROLLUPS`), so the Online page's
health, quality, feedback and drift over months read a few hundred rows per day instead of
tens of thousands of traces.

Each rollup is one aggregate, written once here as SQL that DuckDB and Spark both run
(`evallib rollup --engine duckdb|spark`), over ``{src}`` (one day's rows of its source
table or several) and, for scores and feedback, ``{traces}`` (the traces they belong to:
release, variant and strata are the trace's). `evallib.db` unites each rollup's fresh days
with the same aggregate over the raw rows of the other days, so a query answers the same
with rollups, without or with some days gone stale.

A day's rollup is fresh while its source files are those summarised; a score or feedback
event may belong to a trace of the week before, so for those the fingerprint also covers
the traces of the seven days up to the day.

Latency quantiles do not pool, so the latency rollup keeps each day's p50/p95/p99 overall,
per release, per variant and per value of each stratum: the splits the Online page offers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from . import schema as S
from .catalog import Listing, Part

TRACE_DAYS_BACK = 7  # a score or feedback event belongs to a trace of up to a week before


@dataclass(frozen=True)
class Spec:
    table: S.Table  # the rollup
    source: S.Table  # the rows it summarises, one day at a time
    view: str  # `evallib.db`'s view: fresh rollup rows + the raw days, aggregated alike
    duckdb: str  # the aggregate over {src} (and {traces})
    spark: str | None = None  # when Spark's dialect differs
    joined: S.Table = S.ONLINE_TRACES  # what {traces} reads: the week up to each day

    @property
    def joins_traces(self) -> bool:
        return "{traces}" in self.duckdb

    def sql(self, engine: str, src: str, traces: str) -> str:
        text = self.spark if engine == "spark" and self.spark else self.duckdb
        return text.format(src=src, traces=traces)


_TRACES = """SELECT date, release, variant, to_json(strata) AS strata_json, count(*) AS n,
       count(error) AS n_error,
       count(CASE WHEN refusal THEN 1 END) AS n_refusal,
       count(CASE WHEN tool_error THEN 1 END) AS n_tool_error,
       count(CASE WHEN latency_ms > 0 THEN 1 END) AS n_latency,
       sum(CASE WHEN latency_ms > 0 THEN ln(latency_ms) END) AS s_log_latency,
       sum(CASE WHEN latency_ms > 0 THEN ln(latency_ms) * ln(latency_ms) END)
           AS ss_log_latency,
       count(cost_usd) AS n_cost, sum(cost_usd) AS s_cost, sum(cost_usd * cost_usd) AS ss_cost,
       count(tokens_in) AS n_tokens_in, CAST(sum(tokens_in) AS BIGINT) AS s_tokens_in,
       count(tokens_out) AS n_tokens_out, CAST(sum(tokens_out) AS BIGINT) AS s_tokens_out
FROM {src} GROUP BY date, release, variant, to_json(strata)"""

# Quantiles do not pool: one row per day and per split the Online page offers. {explode}:
# each trace's strata as rows (skey, svalue), the one line the dialects differ on.
_Q = ("count(latency_ms) AS n, {q}(latency_ms, 0.5) AS latency_p50, "
      "{q}(latency_ms, 0.95) AS latency_p95, {q}(latency_ms, 0.99) AS latency_p99")
_LATENCY = """WITH t AS (SELECT date, release, variant, strata, latency_ms FROM {src}
           WHERE latency_ms IS NOT NULL)
SELECT date, 'all' AS dim, CAST(NULL AS STRING) AS grp, %(q)s FROM t GROUP BY date
UNION ALL
SELECT date, 'release' AS dim, release AS grp, %(q)s FROM t GROUP BY date, release
UNION ALL
SELECT date, 'variant' AS dim, variant AS grp, %(q)s FROM t GROUP BY date, variant
UNION ALL
SELECT date, concat('strata.', skey) AS dim, svalue AS grp, %(q)s
FROM ({explode}) e GROUP BY date, skey, svalue"""
_EXPLODE = {
    "duckdb": "SELECT date, latency_ms, unnest(map_keys(strata)) AS skey, "
              "unnest(map_values(strata)) AS svalue FROM t",
    "spark": "SELECT date, latency_ms, explode(strata) AS (skey, svalue) FROM t",
}
# the same interpolated quantile: DuckDB's quantile_cont is Spark's (exact) percentile
_QUANTILE = {"duckdb": "quantile_cont", "spark": "percentile"}


def _latency(engine: str) -> str:
    return (_LATENCY % {"q": _Q.format(q=_QUANTILE[engine])}).replace(
        "{explode}", _EXPLODE[engine])


_QUALITY = """SELECT s.date, t.release, t.variant, s.metric, s.strata_json,
       any_value(s.kind) AS kind, count(s.value) AS n, sum(s.value) AS sx,
       sum(s.value * s.value) AS sxx, count(CASE WHEN s.passed THEN 1 END) AS n_passed,
       count(s.passed) AS n_pass_known
FROM {src} s LEFT JOIN {traces} t ON s.trace_id = t.trace_id
GROUP BY s.date, t.release, t.variant, s.metric, s.strata_json"""

_FEEDBACK = """SELECT f.date, t.release, t.variant, to_json(t.strata) AS strata_json,
       count(CASE WHEN f.kind = 'thumbs' AND f.value IS NOT NULL THEN 1 END) AS n_thumbs,
       count(CASE WHEN f.kind = 'thumbs' AND f.value = 1 THEN 1 END) AS n_thumbs_up,
       count(CASE WHEN f.kind = 'rating' AND f.value IS NOT NULL THEN 1 END) AS n_rating,
       sum(CASE WHEN f.kind = 'rating' THEN f.value END) AS s_rating,
       sum(CASE WHEN f.kind = 'rating' THEN f.value * f.value END) AS ss_rating,
       count(CASE WHEN f.kind = 'edit' THEN 1 END) AS n_edit,
       count(CASE WHEN f.kind = 'comment' THEN 1 END) AS n_comment
FROM {src} f LEFT JOIN {traces} t ON f.trace_id = t.trace_id
GROUP BY f.date, t.release, t.variant, to_json(t.strata)"""

# Drift (`queries.online_drift_counts`): per day, how many traces fall in each 2%-wide log
# bin of input length (characters) and output length (tokens), and each stratum value; how
# many scores take each value (continuous ones to 0.01, floor(100 v + 0.5) so both engines
# bin alike). Reference and window are sums of days.
_LOG_BIN = "round(exp(floor(ln(1 + {v}) * 50) / 50) - 1, 1)"
_TRACE_DRIFT = """SELECT date, 'input length (characters)' AS feature, 'continuous' AS kind,
       CAST(NULL AS STRING) AS value, <input> AS x, count(*) AS n
FROM {src} WHERE input IS NOT NULL GROUP BY date, <input>
UNION ALL
SELECT date, 'output length (tokens)' AS feature, 'continuous' AS kind,
       CAST(NULL AS STRING) AS value, <output> AS x, count(*) AS n
FROM {src} WHERE tokens_out IS NOT NULL GROUP BY date, <output>
UNION ALL
SELECT date, concat('stratum ', skey) AS feature, 'categorical' AS kind, svalue AS value,
       CAST(NULL AS DOUBLE) AS x, count(*) AS n
FROM ({explode}) e GROUP BY date, skey, svalue""".replace(
    "<input>", _LOG_BIN.format(v="length(input)")).replace(
    "<output>", _LOG_BIN.format(v="tokens_out"))
_STRATA_ROWS = {
    "duckdb": "SELECT date, unnest(map_keys(strata)) AS skey, "
              "unnest(map_values(strata)) AS svalue FROM {src}",
    "spark": "SELECT date, explode(strata) AS (skey, svalue) FROM {src}",
}
_SCORE_DRIFT = """SELECT date, concat('score ', metric) AS feature,
       CASE WHEN kind = 'continuous' THEN 'continuous' ELSE 'categorical' END AS kind,
       CASE WHEN kind <> 'continuous' THEN CAST(value AS STRING) END AS value,
       CASE WHEN kind = 'continuous' THEN floor(value * 100 + 0.5) / 100 END AS x,
       count(*) AS n
FROM {src} WHERE value IS NOT NULL
GROUP BY date, metric, kind, CASE WHEN kind <> 'continuous' THEN CAST(value AS STRING) END,
         CASE WHEN kind = 'continuous' THEN floor(value * 100 + 0.5) / 100 END"""

# RAG (`queries.online_retrieval_metrics`, `online_generation_by_evidence`). Per trace, from
# its retrieved documents of one day: the ranks (≤ RAG_MAX_K) of the relevant ones, how many
# are relevant and cited, whether any is judged and the first relevant rank (capped past
# RAG_MAX_K: every k the page offers sees it as missed); then how many traces share each.
_CAP = S.RAG_MAX_K + 1
_FIRST = f"least(min(CASE WHEN relevant THEN rank END), {_CAP})"
_FOUND = {
    "duckdb": f"coalesce(list(rank ORDER BY rank) FILTER (WHERE relevant AND rank <= "
              f"{S.RAG_MAX_K}), [])",
    "spark": f"sort_array(collect_list(CASE WHEN relevant AND rank <= {S.RAG_MAX_K} "
             f"THEN rank END))",
}
_RAG_ITEMS = """WITH i AS (
    SELECT date, trace_id, <found> AS found,
           greatest(count(CASE WHEN relevant THEN 1 END), 1) AS n_rel,
           count(CASE WHEN cited THEN 1 END) AS n_cited,
           count(CASE WHEN cited AND relevant THEN 1 END) AS n_cited_rel,
           count(relevant) > 0 AS judged, <first> AS first_relevant
    FROM {src} GROUP BY date, trace_id),
  t AS (SELECT trace_id, max(refusal) AS refusal FROM {traces} GROUP BY trace_id)
SELECT i.date, i.found, i.n_rel, i.n_cited, i.n_cited_rel, i.judged, i.first_relevant,
       t.refusal, count(*) AS n
FROM i LEFT JOIN t ON i.trace_id = t.trace_id
GROUP BY i.date, i.found, i.n_rel, i.n_cited, i.n_cited_rel, i.judged, i.first_relevant,
         t.refusal""".replace("<first>", _FIRST)

# Scores by the evidence their trace's generator had (its retrievals of the week up to the
# score's day: {traces} is online_retrievals here).
_RAG_SCORES = """WITH e AS (
    SELECT trace_id, count(relevant) > 0 AS judged, <first> AS first_relevant
    FROM {traces} GROUP BY trace_id)
SELECT s.date, e.judged, e.first_relevant, s.metric, any_value(s.kind) AS kind,
       count(s.value) AS n, sum(s.value) AS sx, sum(s.value * s.value) AS sxx
FROM {src} s JOIN e ON s.trace_id = e.trace_id
GROUP BY s.date, e.judged, e.first_relevant, s.metric""".replace("<first>", _FIRST)

SPECS = (
    Spec(S.ONLINE_TRACE_ROLLUP, S.ONLINE_TRACES, "online_trace_moments", _TRACES),
    Spec(S.ONLINE_LATENCY_ROLLUP, S.ONLINE_TRACES, "online_latency_quantiles",
         _latency("duckdb"), _latency("spark")),
    Spec(S.ONLINE_QUALITY_ROLLUP, S.ONLINE_SCORES, "online_quality_moments", _QUALITY),
    Spec(S.ONLINE_FEEDBACK_ROLLUP, S.FEEDBACK, "online_feedback_moments", _FEEDBACK),
    Spec(S.ONLINE_TRACE_DRIFT_ROLLUP, S.ONLINE_TRACES, "online_trace_drift",
         _TRACE_DRIFT.replace("{explode}", _STRATA_ROWS["duckdb"]),
         _TRACE_DRIFT.replace("{explode}", _STRATA_ROWS["spark"])),
    Spec(S.ONLINE_SCORE_DRIFT_ROLLUP, S.ONLINE_SCORES, "online_score_drift", _SCORE_DRIFT),
    Spec(S.ONLINE_RAG_ITEM_ROLLUP, S.ONLINE_RETRIEVALS, "online_rag_items",
         _RAG_ITEMS.replace("<found>", _FOUND["duckdb"]),
         _RAG_ITEMS.replace("<found>", _FOUND["spark"])),
    Spec(S.ONLINE_RAG_SCORE_ROLLUP, S.ONLINE_SCORES, "online_rag_scores", _RAG_SCORES,
         joined=S.ONLINE_RETRIEVALS),
)


def fingerprints(spec: Spec, listings: dict[str, Listing]) -> dict[str, str]:
    """Per day of the source: what its rollup rows depend on (the source's files, and for
    scores and feedback the files of the traces of the week up to the day)."""
    own = listings[spec.source.name].fingerprints()
    if not spec.joins_traces:
        return {d: fp for d, fp in own.items() if d}
    traces = listings[spec.joined.name].fingerprints()
    out = {}
    for day, fp in own.items():
        if day:
            h = hashlib.blake2b(fp.encode(), digest_size=12)
            for d in sorted(trace_days([day])):  # a set: its order varies by process
                h.update(f"|{d}:{traces.get(d, '')}".encode())
            out[day] = h.hexdigest()
    return out


def trace_days(days: list[str] | set[str]) -> set[str]:
    """The days whose traces the scores or feedback of ``days`` may belong to."""
    out: set[str] = set()
    for day in days:
        try:
            d = date.fromisoformat(day)
        except ValueError:  # not a day (a stray directory): nothing belongs to it
            continue
        out |= {(d - timedelta(days=i)).isoformat() for i in range(TRACE_DAYS_BACK + 1)}
    return out


def trace_parts(listings: dict[str, Listing], days: list[str] | set[str],
                joined: S.Table = S.ONLINE_TRACES) -> list[Part]:
    """The part files of ``joined`` (traces, or retrievals) that ``days`` may join."""
    wanted = trace_days(days)
    return [p for p in listings[joined.name].parts if p.partition in wanted]
