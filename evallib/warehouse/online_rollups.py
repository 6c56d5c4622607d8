"""Daily rollups of production traffic (`schema.TRAFFIC_ROLLUPS`), so the Online and RAG
pages' health, quality, feedback, drift and attribution over months read a few hundred or
thousand rows per day instead of tens of thousands of traces.

Each rollup is one aggregate, written once here as a function that returns the SQL DuckDB
and Spark both run (`evallib rollup --engine duckdb|spark`; the few lines their dialects
differ on are chosen by the engine), over ``src`` (one day's rows of its source table or
several) and, where it needs them, ``traces`` (the traces scores and feedback belong to:
release, variant and strata are the trace's) or ``docs`` (the retrievals): relations, a
view's name or a parenthesised SELECT.
`evallib.warehouse.db` unites each rollup's fresh days with the same aggregate over the raw rows of
the other days, so a query answers the same with rollups, without or with some days gone
stale.

A day's rollup is fresh while its source files are those summarised; a score or feedback
event may belong to a trace of the week before, so the fingerprint of a rollup that joins
traces or retrievals also covers their files of the seven days up to the day.

Latency quantiles do not pool, so the latency rollup keeps each day's p50/p95/p99 overall,
per release, per variant and per value of each stratum: the splits the Online page offers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from ..vocabulary import TRACE_DAYS_BACK
from . import schema as S
from .catalog import Listing, Part


@dataclass(frozen=True)
class Spec:
    table: S.Table  # the rollup
    source: S.Table  # the rows it summarises, one day at a time
    view: str  # `evallib.warehouse.db`'s view: fresh rollup rows + the raw days, aggregated alike
    # (engine, src, **joined) → the aggregate over the relation src and, by name, those of
    # the `JOINABLE` tables in `reads`
    build: Callable[..., str]
    reads: tuple[str, ...] = ()

    @property
    def joins(self) -> dict[str, S.Table]:
        """The `JOINABLE` tables the SQL reads: their rows of the days in `WINDOWS` around
        each of its days."""
        return {name: t for name, t in JOINABLE.items() if name in self.reads}

    def sql(self, engine: str, src: str, joined: dict[str, str]) -> str:
        return self.build(engine, src, **joined)


JOINABLE = {"traces": S.ONLINE_TRACES, "docs": S.ONLINE_RETRIEVALS, "feedback": S.FEEDBACK,
            "labels": S.HUMAN_LABELS}
# days (back, ahead) of a joined table a day's rows may join: a score or feedback event
# belongs to a trace of up to a week before; feedback comes before or after the score.
# None: the whole table (human labels are not kept by day: an import makes every day stale)
WINDOWS: dict[str, tuple[int, int] | None] = {
    "traces": (TRACE_DAYS_BACK, 0), "docs": (TRACE_DAYS_BACK, 0),
    "feedback": (TRACE_DAYS_BACK, TRACE_DAYS_BACK), "labels": None}


def _traces(engine: str, src: str) -> str:
    return f"""SELECT date, release, variant, to_json(strata) AS strata_json, count(*) AS n,
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


def _strata_rows(engine: str, columns: str, rows: str) -> str:
    """``columns`` of ``rows`` with each row's strata as rows (skey, svalue): the one line
    the dialects differ on."""
    if engine == "spark":
        return f"SELECT {columns}, explode(strata) AS (skey, svalue) FROM {rows}"
    return (f"SELECT {columns}, unnest(map_keys(strata)) AS skey, "
            f"unnest(map_values(strata)) AS svalue FROM {rows}")


# the same interpolated quantile: DuckDB's quantile_cont is Spark's (exact) percentile
_QUANTILE = {"duckdb": "quantile_cont", "spark": "percentile"}


def _quantiles(engine: str) -> str:
    q = _QUANTILE[engine]
    return (f"count(latency_ms) AS n, {q}(latency_ms, 0.5) AS latency_p50, "
            f"{q}(latency_ms, 0.95) AS latency_p95, {q}(latency_ms, 0.99) AS latency_p99")


# Quantiles do not pool: one row per day and per split the Online page offers.
def _latency(engine: str, src: str) -> str:
    q = _quantiles(engine)
    return f"""WITH t AS (SELECT date, release, variant, strata, latency_ms FROM {src}
           WHERE latency_ms IS NOT NULL)
SELECT date, 'all' AS dim, CAST(NULL AS STRING) AS grp, {q} FROM t GROUP BY date
UNION ALL
SELECT date, 'release' AS dim, release AS grp, {q} FROM t GROUP BY date, release
UNION ALL
SELECT date, 'variant' AS dim, variant AS grp, {q} FROM t GROUP BY date, variant
UNION ALL
SELECT date, concat('strata.', skey) AS dim, svalue AS grp, {q}
FROM ({_strata_rows(engine, "date, latency_ms", "t")}) e GROUP BY date, skey, svalue"""


def _quality(engine: str, src: str, traces: str) -> str:
    return f"""SELECT s.date, t.release, t.variant, s.metric, s.strata_json,
       any_value(s.kind) AS kind, count(s.value) AS n, sum(s.value) AS sx,
       sum(s.value * s.value) AS sxx, count(CASE WHEN s.passed THEN 1 END) AS n_passed,
       count(s.passed) AS n_pass_known
FROM {src} s LEFT JOIN {traces} t ON s.trace_id = t.trace_id
GROUP BY s.date, t.release, t.variant, s.metric, s.strata_json"""


def _feedback(engine: str, src: str, traces: str) -> str:
    return f"""SELECT f.date, t.release, t.variant, to_json(t.strata) AS strata_json,
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
def _log_bin(v: str) -> str:
    return f"round(exp(floor(ln(1 + {v}) * 50) / 50) - 1, 1)"


_INPUT_BIN = _log_bin("length(input)")
_OUTPUT_BIN = _log_bin("tokens_out")


def _trace_drift(engine: str, src: str) -> str:
    return f"""SELECT date, 'input length (characters)' AS feature, 'continuous' AS kind,
       CAST(NULL AS STRING) AS value, {_INPUT_BIN} AS x, count(*) AS n
FROM {src} WHERE input IS NOT NULL GROUP BY date, {_INPUT_BIN}
UNION ALL
SELECT date, 'output length (tokens)' AS feature, 'continuous' AS kind,
       CAST(NULL AS STRING) AS value, {_OUTPUT_BIN} AS x, count(*) AS n
FROM {src} WHERE tokens_out IS NOT NULL GROUP BY date, {_OUTPUT_BIN}
UNION ALL
SELECT date, concat('stratum ', skey) AS feature, 'categorical' AS kind, svalue AS value,
       CAST(NULL AS DOUBLE) AS x, count(*) AS n
FROM ({_strata_rows(engine, "date", src)}) e GROUP BY date, skey, svalue"""


def _score_drift(engine: str, src: str) -> str:
    return f"""SELECT date, concat('score ', metric) AS feature,
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


def _rag_items(engine: str, src: str, traces: str) -> str:
    return f"""WITH i AS (
    SELECT date, trace_id, {_FOUND[engine]} AS found,
           greatest(count(CASE WHEN relevant THEN 1 END), 1) AS n_rel,
           count(CASE WHEN cited THEN 1 END) AS n_cited,
           count(CASE WHEN cited AND relevant THEN 1 END) AS n_cited_rel,
           count(relevant) > 0 AS judged, {_FIRST} AS first_relevant
    FROM {src} GROUP BY date, trace_id),
  t AS (SELECT trace_id, max(refusal) AS refusal FROM {traces} GROUP BY trace_id)
SELECT i.date, i.found, i.n_rel, i.n_cited, i.n_cited_rel, i.judged, i.first_relevant,
       t.refusal, count(*) AS n
FROM i LEFT JOIN t ON i.trace_id = t.trace_id
GROUP BY i.date, i.found, i.n_rel, i.n_cited, i.n_cited_rel, i.judged, i.first_relevant,
         t.refusal"""


# Scores by the evidence their trace's generator had (its retrievals of the week up to the
# score's day).
def _rag_scores(engine: str, src: str, docs: str) -> str:
    return f"""WITH e AS (
    SELECT trace_id, count(relevant) > 0 AS judged, {_FIRST} AS first_relevant
    FROM {docs} GROUP BY trace_id)
SELECT s.date, e.judged, e.first_relevant, s.metric, any_value(s.kind) AS kind,
       count(s.value) AS n, sum(s.value) AS sx, sum(s.value * s.value) AS sxx
FROM {src} s JOIN e ON s.trace_id = e.trace_id
GROUP BY s.date, e.judged, e.first_relevant, s.metric"""


# Failing answers (`queries.online_attribution_counts`), by what `evallib.rag` attributes
# them with, for each answer metric × each faithfulness metric of the day (or '' = none):
# the trace's retrievals of the week up to the score, its error, and the faithfulness verdict
# scored the same day. Errored traces and scores without their trace are left out.
_FAILED = "coalesce(NOT passed, kind = 'binary' AND value = 0)"


def _rag_failures(engine: str, src: str, docs: str, traces: str) -> str:
    return f"""WITH a AS (
    SELECT date, trace_id, metric, strata_json FROM {src} WHERE {_FAILED}),
  faiths AS (SELECT DISTINCT metric AS faith FROM {src} UNION ALL SELECT '' AS faith),
  f AS (SELECT trace_id, metric AS faith,
               bool_or(CASE WHEN passed IS NOT NULL THEN passed
                            WHEN kind = 'binary' THEN value = 1 END) AS faithful
        FROM {src} GROUP BY trace_id, metric),
  e AS (SELECT trace_id, count(relevant) > 0 AS judged, {_FIRST} AS first_relevant
        FROM {docs} GROUP BY trace_id),
  t AS (SELECT trace_id, bool_or(error IS NOT NULL) AS errored FROM {traces}
        GROUP BY trace_id)
SELECT a.date, a.metric, x.faith, a.strata_json, e.trace_id IS NOT NULL AS has_docs,
       coalesce(e.judged, false) AS judged, coalesce(e.first_relevant, {_CAP}) AS first_relevant,
       f.faithful, count(*) AS n
FROM a JOIN t ON a.trace_id = t.trace_id CROSS JOIN faiths x
     LEFT JOIN f ON f.trace_id = a.trace_id AND f.faith = x.faith
     LEFT JOIN e ON e.trace_id = a.trace_id
WHERE NOT t.errored
GROUP BY a.date, a.metric, x.faith, a.strata_json, e.trace_id IS NOT NULL,
         coalesce(e.judged, false), coalesce(e.first_relevant, {_CAP}), f.faithful"""


# Trace-level score × feedback pairs (`queries.score_feedback_counts`, the Correlation
# page): each score against its trace's latest thumbs and rating among the feedback of a
# week either side of its day (the greater value on a tie); continuous scores to 0.01.
_SCORE_BIN = ("CASE WHEN s.kind = 'continuous' THEN floor(s.value * 100 + 0.5) / 100 "
              "ELSE s.value END")


def _score_feedback(engine: str, src: str, feedback: str) -> str:
    return f"""WITH f AS (
    SELECT trace_id, kind, value, timestamp FROM {feedback}
    WHERE kind IN ('thumbs', 'rating') AND value IS NOT NULL),
  latest AS (SELECT trace_id, kind, max(timestamp) AS ts FROM f GROUP BY trace_id, kind),
  fb AS (SELECT f.trace_id, f.kind, max(f.value) AS value
         FROM f JOIN latest l
           ON f.trace_id = l.trace_id AND f.kind = l.kind AND f.timestamp = l.ts
         GROUP BY f.trace_id, f.kind)
SELECT s.date, s.metric, any_value(s.kind) AS kind, {_SCORE_BIN} AS score, fb.kind AS feedback,
       fb.value AS feedback_value, count(*) AS n
FROM {src} s JOIN fb ON s.trace_id = fb.trace_id
WHERE s.value IS NOT NULL
GROUP BY s.date, s.metric, {_SCORE_BIN}, fb.kind, fb.value"""


# The judge against human labels of the same trace and metric (`queries.judge_human_counts`).
def _score_labels(engine: str, src: str, labels: str) -> str:
    return f"""SELECT s.date, s.metric, any_value(s.kind) AS kind, s.value AS judge,
       h.value AS human, count(*) AS n
FROM {src} s JOIN {labels} h ON s.trace_id = h.trace_id AND s.metric = h.metric
WHERE h.trace_id IS NOT NULL AND s.value IS NOT NULL
GROUP BY s.date, s.metric, s.value, h.value"""

SPECS = (
    Spec(S.ONLINE_TRACE_ROLLUP, S.ONLINE_TRACES, "online_trace_moments", _traces),
    Spec(S.ONLINE_LATENCY_ROLLUP, S.ONLINE_TRACES, "online_latency_quantiles", _latency),
    Spec(S.ONLINE_QUALITY_ROLLUP, S.ONLINE_SCORES, "online_quality_moments", _quality,
         ("traces",)),
    Spec(S.ONLINE_FEEDBACK_ROLLUP, S.FEEDBACK, "online_feedback_moments", _feedback,
         ("traces",)),
    Spec(S.ONLINE_TRACE_DRIFT_ROLLUP, S.ONLINE_TRACES, "online_trace_drift", _trace_drift),
    Spec(S.ONLINE_SCORE_DRIFT_ROLLUP, S.ONLINE_SCORES, "online_score_drift", _score_drift),
    Spec(S.ONLINE_RAG_ITEM_ROLLUP, S.ONLINE_RETRIEVALS, "online_rag_items", _rag_items,
         ("traces",)),
    Spec(S.ONLINE_RAG_SCORE_ROLLUP, S.ONLINE_SCORES, "online_rag_scores", _rag_scores,
         ("docs",)),
    Spec(S.ONLINE_RAG_FAILURE_ROLLUP, S.ONLINE_SCORES, "online_rag_failures", _rag_failures,
         ("traces", "docs")),
    Spec(S.ONLINE_SCORE_FEEDBACK_ROLLUP, S.ONLINE_SCORES, "online_score_feedback",
         _score_feedback, ("feedback",)),
    Spec(S.ONLINE_SCORE_LABEL_ROLLUP, S.ONLINE_SCORES, "online_score_labels", _score_labels,
         ("labels",)),
)


def fingerprints(spec: Spec, listings: dict[str, Listing]) -> dict[str, str]:
    """Per day of the source: what its rollup rows depend on (the source's files, and the
    files of the days of each joined table it may join)."""
    own = listings[spec.source.name].fingerprints()
    if not spec.joins:
        return {d: fp for d, fp in own.items() if d}
    joined = [(name, listings[t.name].fingerprints()) for name, t in spec.joins.items()]
    out = {}
    for day, fp in own.items():
        if day:
            h = hashlib.blake2b(fp.encode(), digest_size=12)
            for name, fps in joined:
                if WINDOWS[name] is None:
                    h.update(f"|{name}:{fps.get(None, '')}".encode())
                for d in sorted(joined_days(name, [day])):  # a set: its order varies
                    h.update(f"|{d}:{fps.get(d, '')}".encode())
            out[day] = h.hexdigest()
    return out


def joined_days(name: str, days: list[str] | set[str]) -> set[str]:
    """The days of the joined table ``name`` (of `JOINABLE`) the rows of ``days`` may join:
    the traces (retrievals) of the week up to each day, the feedback of a week either side."""
    window = WINDOWS[name]
    if window is None:
        return set()
    back, ahead = window
    out: set[str] = set()
    for day in days:
        try:
            d = date.fromisoformat(day)
        except ValueError:  # not a day (a stray directory): nothing belongs to it
            continue
        out |= {(d + timedelta(days=i)).isoformat() for i in range(-back, ahead + 1)}
    return out


def joined_parts(spec: Spec, listings: dict[str, Listing], days: list[str] | set[str]
                 ) -> dict[str, list[Part]]:
    """Per table the spec joins, the part files the rows of ``days`` may join."""
    return {name: [p for p in listings[t.name].parts
                   if WINDOWS[name] is None or p.partition in joined_days(name, days)]
            for name, t in spec.joins.items()}
