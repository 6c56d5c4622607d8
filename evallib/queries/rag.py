"""Where a RAG failure came from: retrieval metrics, failure attribution and generation
by evidence, for one run (offline) or a window of days (online)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from ..vocabulary import MISSING, TRACE_DAYS_BACK
from ..warehouse import schema as S
from ._sql import _POOLED, _STRATUM, Connection, _frame

__all__ = [
    "attribution_details",
    "attribution_items",
    "generation_by_evidence",
    "online_attribution_counts",
    "online_attribution_details",
    "online_failure_days",
    "online_failures",
    "online_generation_by_evidence",
    "online_retrieval_metrics",
    "retrieval_metrics",
]


# The RAG queries read one run (offline) or, for retrieval metrics and the listed items'
# details, a window of UTC days (online) with the same SQL: only the fragments that pick the
# rows differ, so each query below is a constant string built once at import from fixed
# fragments (no user input ever reaches the text). Online aggregates read daily rollups.
#
# A retrievals row is one retrieved document (or passage) at its rank, 1 = top, so a
# document id listed at two ranks counts at both (evallib.scorers.retrieval would keep its
# best rank only; collapsing them costs 3× the time on a 90-day window). ``relevant`` null
# means not judged: an item whose rows are all unjudged has no gold document; one judged
# with nothing relevant retrieved is a miss.

_RAG_SOURCES = {
    "offline": {
        "docs": "SELECT case_id AS item, doc_id, rank, relevant, cited FROM retrievals "
                "WHERE run_id = $run",
        # the golden set's relevant documents, when the run's dataset version is stored:
        # they count in recall even when no retrieval found them
        "gold": "SELECT case_id AS item, len(relevant_docs) AS n_gold FROM dataset_cases "
                "WHERE dataset_version = (SELECT dataset_version FROM runs WHERE run_id = $run)",
        "scores": "SELECT case_id AS item, metric, kind, value, passed, rationale, strata_json, "
                  "NULL::DATE AS date FROM scores WHERE run_id = $run",
        "subjects": "SELECT case_id AS item, error, NULL::BOOLEAN AS refusal FROM cases "
                    "WHERE run_id = $run",
        "id": "case_id",
    },
    "online": {
        "docs": "SELECT trace_id AS item, doc_id, rank, relevant, cited FROM online_retrievals "
                "WHERE date BETWEEN $start AND $end",
        "scores": "SELECT trace_id AS item, metric, kind, value, passed, rationale, "
                  "strata_json, date FROM online_scores WHERE date BETWEEN $start AND $end",
        "id": "trace_id",
    },
}

# Items with the same relevant positions (within max_k), number of relevant documents and
# citations score the same at every k, so the metrics are computed once per such pattern (a
# few hundred) and weighted by how many items share it (``w``). Offline the patterns come
# from the run's documents; online from the daily rollup `online_rag_items` (what each
# trace's retrievals of a day found). Definitions as evallib.scorers.retrieval.
def _retrieval_patterns(src: str) -> str:
    if src == "online":
        return """patterns AS (
        SELECT list_filter(found, lambda r: r <= $max_k) AS found, n_rel, n_cited,
               n_cited_rel, sum(n) AS w
        FROM online_rag_items WHERE judged AND date BETWEEN $start AND $end
        GROUP BY ALL)"""
    s = _RAG_SOURCES[src]
    return f"""docs AS ({s["docs"]}), gold AS ({s["gold"]}),
    items AS (
        SELECT d.item,
               coalesce(list(d.rank ORDER BY d.rank)
                        FILTER (WHERE d.relevant AND d.rank <= $max_k), []) AS found,
               greatest(count_if(d.relevant), coalesce(any_value(g.n_gold), 0), 1) AS n_rel,
               count_if(d.cited) AS n_cited, count_if(d.cited AND d.relevant) AS n_cited_rel
        FROM docs d LEFT JOIN gold g USING (item)
        GROUP BY d.item HAVING count(d.relevant) > 0),
    patterns AS (SELECT found, n_rel, n_cited, n_cited_rel, count(*) AS w FROM items
                 GROUP BY ALL)"""


def _retrieval_metrics(src: str) -> str:
    return f"""WITH {_retrieval_patterns(src)},
    ks AS (SELECT k FROM range(1, $max_k + 1) t(k)),
    ideal AS (SELECT k AS m, sum(1.0 / log2(k + 1)) OVER (ORDER BY k) AS idcg FROM ks),
    per AS (SELECT p.w, ks.k, p.n_rel, list_filter(p.found, lambda r: r <= ks.k) AS hit
            FROM (SELECT found, n_rel, sum(w) AS w FROM patterns GROUP BY found, n_rel) p
            CROSS JOIN ks),
    vals AS (SELECT per.w, per.k, unnest([
        {{'metric': 'recall', 'v': len(hit) / n_rel}},
        {{'metric': 'precision', 'v': len(hit) / per.k}},
        {{'metric': 'ndcg', 'v': coalesce(list_sum(list_transform(
            hit, lambda r: 1.0 / log2(r + 1))), 0) / i.idcg}},
        {{'metric': 'hit_rate', 'v': (len(hit) > 0)::DOUBLE}},
        {{'metric': 'mrr', 'v': coalesce(1.0 / list_min(hit), 0)}},
        {{'metric': 'context_precision', 'v': coalesce(list_sum(list_transform(
            hit, lambda r, j: j / r)) / len(hit), 0)}}]) AS m
        FROM per JOIN ideal i ON i.m = least(per.k, per.n_rel)),
    cited AS (SELECT NULL::BIGINT AS k, {{'metric': 'citation_hit_rate',
                                          'v': n_cited_rel / n_cited}} AS m, w
              FROM patterns WHERE n_cited > 0)
SELECT k, m.metric AS metric,
       CASE WHEN m.metric = 'hit_rate' THEN 'binary' ELSE 'continuous' END AS kind,
       coalesce(sum(w), 0)::BIGINT AS n, sum(w * m.v) / sum(w) AS mean,
       CASE WHEN sum(w) > 1 THEN sqrt(greatest(sum(w * m.v * m.v)
            - sum(w * m.v) * sum(w * m.v) / sum(w), 0) / (sum(w) - 1)) END AS sd
FROM (SELECT k, m, w FROM vals UNION ALL SELECT k, m, w FROM cited) GROUP BY k, m.metric
UNION ALL
SELECT NULL, 'citation_hit_rate', 'continuous', 0, NULL, NULL
WHERE NOT EXISTS (SELECT 1 FROM patterns WHERE n_cited > 0)
ORDER BY k NULLS LAST, metric"""


# What the generator had, per item: documents retrieved, how many judged (0: no gold
# document), a relevant one in the top k, the first relevant rank, a relevant one cited.
_EVIDENCE = """SELECT item, count(*) AS n_docs, count(relevant) AS n_judged,
               coalesce(bool_or(relevant AND rank <= $k), false) AS relevant_in_k,
               min(rank) FILTER (WHERE relevant) AS first_relevant,
               coalesce(bool_or(relevant AND cited), false) AS cited_relevant
        FROM docs"""


def _attribution_items(src: str) -> str:
    s = _RAG_SOURCES[src]
    return f"""WITH s AS (
        SELECT item, metric, kind, value, passed, strata_json, date FROM ({s["scores"]})
        WHERE metric = $answer OR metric = $faithfulness),
    answer AS (SELECT item, date, value, strata_json,
                      coalesce(NOT passed, kind = 'binary' AND value = 0) AS failed
               FROM s WHERE metric = $answer),
    subjects AS (SELECT * FROM ({s["subjects"]}) WHERE item IN (SELECT item FROM answer)),
    chosen AS (SELECT a.*, s.error, s.refusal FROM answer a JOIN subjects s USING (item)
               WHERE NOT $failing_only OR (a.failed AND s.error IS NULL)),
    faith AS (SELECT item, CASE WHEN passed IS NOT NULL THEN passed
                                WHEN kind = 'binary' THEN value = 1 END AS faithful,
                     value AS faithfulness
              FROM s WHERE metric = $faithfulness),
    docs AS ({s["docs"]}),
    evidence AS ({_EVIDENCE} WHERE item IN (SELECT item FROM chosen) GROUP BY item)
SELECT c.item AS {s["id"]}, c.date, c.strata_json, c.value AS answer, c.failed,
       c.error IS NOT NULL AS errored, f.faithful, f.faithfulness,
       coalesce(e.n_docs, 0) AS n_docs, coalesce(e.n_judged, 0) AS n_judged,
       coalesce(e.relevant_in_k, false) AS relevant_in_k, e.first_relevant,
       coalesce(e.cited_relevant, false) AS cited_relevant, c.refusal, c.error
FROM chosen c LEFT JOIN faith f USING (item) LEFT JOIN evidence e USING (item)
ORDER BY c.item"""


# A run's metrics, each split by the evidence the generator had (a rollup row: evidence
# null), plus ``cites_relevant`` (binary, of the items citing something: a cited document is
# relevant). Online: `_ONLINE_GENERATION`.
def _generation(src: str) -> str:
    s = _RAG_SOURCES[src]
    return f"""WITH docs AS ({s["docs"]}),
    evidence AS (
        SELECT item, CASE WHEN count(relevant) = 0 THEN 'no gold document'
                          WHEN bool_or(relevant AND rank <= $k) THEN 'relevant in top k'
                          ELSE 'no relevant in top k' END AS evidence
        FROM docs GROUP BY item),
    s AS (SELECT item, metric, kind, value FROM ({s["scores"]})
          UNION ALL
          SELECT item, 'cites_relevant', 'binary', bool_or(relevant AND cited)::DOUBLE
          FROM docs GROUP BY item HAVING count(relevant) > 0 AND bool_or(cited))
SELECT e.evidence, s.metric, any_value(s.kind) AS kind, count(s.value) AS n,
       avg(s.value) AS mean, stddev_samp(s.value) AS sd
FROM s JOIN evidence e USING (item)
GROUP BY GROUPING SETS ((e.evidence, s.metric), (s.metric))
ORDER BY s.metric, e.evidence NULLS LAST"""


# Online, from the daily rollups: scores of the window's days by the evidence their trace
# had (its retrievals of the week up to the score), and each trace with retrievals of the
# window's days for refusal and cites_relevant. first_relevant is capped past RAG_MAX_K.
_ONLINE_GENERATION = f"""WITH m AS (
        SELECT judged, first_relevant, metric, kind, n, sx, sxx FROM online_rag_scores
        WHERE date BETWEEN $start AND $end
        UNION ALL
        SELECT judged, first_relevant, 'refusal', 'binary', sum(n),
               sum(CASE WHEN refusal THEN n ELSE 0 END), sum(CASE WHEN refusal THEN n ELSE 0 END)
        FROM online_rag_items
        WHERE date BETWEEN $start AND $end AND refusal IS NOT NULL
        GROUP BY judged, first_relevant
        UNION ALL
        SELECT judged, first_relevant, 'cites_relevant', 'binary', sum(n),
               sum(CASE WHEN n_cited_rel > 0 THEN n ELSE 0 END),
               sum(CASE WHEN n_cited_rel > 0 THEN n ELSE 0 END)
        FROM online_rag_items
        WHERE date BETWEEN $start AND $end AND judged AND n_cited > 0
        GROUP BY judged, first_relevant),
    e AS (SELECT CASE WHEN NOT judged THEN 'no gold document'
                      WHEN first_relevant <= $k THEN 'relevant in top k'
                      ELSE 'no relevant in top k' END AS evidence, * FROM m)
SELECT evidence, metric, {_POOLED}
FROM e g GROUP BY GROUPING SETS ((evidence, metric), (metric))
ORDER BY metric, evidence NULLS LAST"""

# Online failure attribution: what `evallib.analysis.rag.classify` decides, from the columns of the
# rollup `online_rag_failures` (and of `_ONLINE_FAILURES` below, which lists them).
_FAILURE_OUTCOME = """CASE WHEN NOT has_docs THEN 'not attributed'
        WHEN NOT judged THEN 'other' WHEN first_relevant <= $k THEN 'generation'
        WHEN faithful = false THEN 'both' ELSE 'retrieval' END"""
# The rollup's rows of the answer metric × the faithfulness metric ($faith; on a day without
# it, those of '' = none: faithful unknown, as in `_ONLINE_FAILURES`)
_FAILURE_ROWS = """WITH r AS (
        SELECT * FROM online_rag_failures
        WHERE date BETWEEN $start AND $end AND metric = $answer AND faith IN ($faith, '')),
    has AS (SELECT DISTINCT date FROM r WHERE faith = $faith AND $faith <> ''),
    g AS (SELECT * FROM r WHERE faith = $faith
                                OR (faith = '' AND date NOT IN (SELECT date FROM has)))"""
_IN_STRATUM = f"($key IS NULL OR coalesce({_STRATUM}, '{MISSING}') = $stratum)"
# The same failing answers one by one, as the rollup counts them: the trace, its error and
# retrievals of the week up to the score's day, the faithfulness verdict of that day.
_ONLINE_FAILURES = f"""WITH a AS (
        SELECT date, trace_id, value, strata_json FROM online_scores
        WHERE date BETWEEN $start AND $end AND metric = $answer
          AND coalesce(NOT passed, kind = 'binary' AND value = 0)),
    ak AS (SELECT DISTINCT date, trace_id FROM a),
    t AS (SELECT ak.date, ak.trace_id, bool_or(t.error IS NOT NULL) AS errored,
                 bool_or(t.refusal) AS refusal
          FROM ak JOIN online_traces t ON t.trace_id = ak.trace_id
               AND t.date BETWEEN ak.date - {TRACE_DAYS_BACK} AND ak.date
          WHERE t.date BETWEEN $start - {TRACE_DAYS_BACK} AND $end
          GROUP BY ak.date, ak.trace_id),
    e AS (SELECT ak.date, ak.trace_id, count(*) AS n_docs, count(d.relevant) AS n_judged,
                 min(d.rank) FILTER (WHERE d.relevant) AS first_relevant,
                 coalesce(bool_or(d.relevant AND d.cited), false) AS cited_relevant
          FROM ak JOIN online_retrievals d ON d.trace_id = ak.trace_id
               AND d.date BETWEEN ak.date - {TRACE_DAYS_BACK} AND ak.date
          WHERE d.date BETWEEN $start - {TRACE_DAYS_BACK} AND $end
          GROUP BY ak.date, ak.trace_id),
    f AS (SELECT date, trace_id,
                 bool_or(CASE WHEN passed IS NOT NULL THEN passed
                              WHEN kind = 'binary' THEN value = 1 END) AS faithful,
                 avg(value) AS faithfulness
          FROM online_scores WHERE date BETWEEN $start AND $end AND metric = $faith
          GROUP BY date, trace_id),
    g AS (SELECT a.trace_id, a.date, a.strata_json, a.value AS answer, f.faithful,
                 f.faithfulness, coalesce(e.n_docs, 0) AS n_docs,
                 coalesce(e.n_judged, 0) AS n_judged, e.first_relevant,
                 coalesce(e.cited_relevant, false) AS cited_relevant, t.refusal,
                 e.trace_id IS NOT NULL AS has_docs, coalesce(e.n_judged, 0) > 0 AS judged
          FROM a JOIN t USING (date, trace_id) LEFT JOIN e USING (date, trace_id)
               LEFT JOIN f USING (date, trace_id)
          WHERE NOT t.errored)
SELECT trace_id, date, strata_json, answer, true AS failed, false AS errored, faithful,
       faithfulness, n_docs, n_judged, coalesce(first_relevant <= $k, false) AS relevant_in_k,
       first_relevant, cited_relevant, refusal, NULL::VARCHAR AS error,
       {_FAILURE_OUTCOME} AS outcome
FROM g WHERE list_contains($classes, {_FAILURE_OUTCOME}) AND {_IN_STRATUM}
ORDER BY date DESC, trace_id DESC LIMIT $limit"""

# The texts behind listed items, the judge's reason for the answer metric and the top k
# documents each generator read (✓ relevant).
_TEXTS = {
    "offline": "SELECT case_id AS item, input, output, expected FROM cases WHERE run_id = $run",
    "online": "SELECT trace_id AS item, input, output, NULL::VARCHAR AS expected "
              "FROM online_traces WHERE date BETWEEN $start AND $end",
}


def _details(src: str) -> str:
    s = _RAG_SOURCES[src]
    return f"""WITH ids AS (SELECT unnest($ids) AS item),
    docs AS ({s["docs"]}),
    top AS (SELECT item, string_agg(doc_id || CASE WHEN relevant THEN ' ✓' ELSE '' END
                                    || CASE WHEN cited THEN ' (cited)' ELSE '' END, ', '
                                    ORDER BY rank) AS top_k
            FROM docs WHERE rank <= $k AND item IN (SELECT item FROM ids) GROUP BY item),
    why AS (SELECT item, any_value(rationale) AS rationale FROM ({s["scores"]})
            WHERE metric = $answer AND item IN (SELECT item FROM ids) GROUP BY item)
SELECT t.item AS {s["id"]}, t.input, t.output, t.expected, top.top_k, why.rationale
FROM ({_TEXTS[src]}) t LEFT JOIN top USING (item) LEFT JOIN why USING (item)
WHERE t.item IN (SELECT item FROM ids) ORDER BY t.item"""


_RETRIEVAL_SQL = {src: _retrieval_metrics(src) for src in _RAG_SOURCES}
_ATTRIBUTION_SQL = _attribution_items("offline")  # online: `_ONLINE_FAILURES`
_GENERATION_SQL = _generation("offline")  # online: `_ONLINE_GENERATION`
_DETAILS_SQL = {src: _details(src) for src in _RAG_SOURCES}


def retrieval_metrics(con: Connection, run_id: str, max_k: int = 10) -> pl.DataFrame:
    """The run's retrieval quality per cut k = 1…max_k (column ``k``) and metric: recall,
    precision, ndcg, hit_rate (binary), mrr, context_precision, plus citation_hit_rate (k
    null); kind, n, mean, sd over the cases with judged documents. A case whose retrieved
    documents were all judged not relevant scores 0; one whose relevance is null (no gold
    document exists) is left out. Definitions as in `evallib.scorers.retrieval`."""
    return _frame(con, _RETRIEVAL_SQL["offline"], run=run_id, max_k=max_k)


def online_retrieval_metrics(con: Connection, start: date, end: date, max_k: int = 10
                             ) -> pl.DataFrame:
    """`retrieval_metrics` over the production traces of UTC days [start, end] that logged
    their retrievals (a trace's retrievals of one day are one item; from the daily rollup
    ``online_rag_items``, so ``max_k`` ≤ RAG_MAX_K)."""
    _check_k(max_k)
    return _frame(con, _RETRIEVAL_SQL["online"], start=start, end=end, max_k=max_k)


def _check_k(k: int) -> None:
    if not 1 <= k <= S.RAG_MAX_K:
        raise ValueError(f"online RAG views cut at k = 1…{S.RAG_MAX_K}, got {k}")


def attribution_items(con: Connection, run_id: str, k: int, answer: str,
                      faithfulness: str, failing_only: bool = False) -> pl.DataFrame:
    """One row per case of the run scored on ``answer`` (or only the failing ones: answer
    failed, no error), with what `evallib.analysis.rag.classify` needs: failed, errored, faithful
    (pass flag of ``faithfulness``; null if unscored), n_docs (retrieved), n_judged (with a
    relevance label), relevant_in_k, first_relevant, cited_relevant; and the case's
    strata_json, the answer's value, error. Texts and reasons: `attribution_details`."""
    return _frame(con, _ATTRIBUTION_SQL, run=run_id, k=k, answer=answer,
                  faithfulness=faithfulness, failing_only=failing_only)


def online_attribution_counts(con: Connection, start: date, end: date, k: int, answer: str,
                              faithfulness: str) -> pl.DataFrame:
    """Production's failing answers of UTC days [start, end] (``answer`` did not pass, the
    trace did not error), counted per ``strata_json`` × ``outcome``
    (`evallib.analysis.rag.CLASSES` or not attributed) in column ``w``: what
    `evallib.analysis.rag.attribution_table` takes. From the daily rollup: a score's trace,
    error and retrievals are those of the week up to its day;
    its ``faithfulness`` ('' = none) verdict is the one scored the same day. k ≤ RAG_MAX_K."""
    _check_k(k)
    return _frame(con, f"""{_FAILURE_ROWS}
        SELECT strata_json, {_FAILURE_OUTCOME} AS outcome, sum(n)::BIGINT AS w FROM g
        GROUP BY ALL ORDER BY strata_json, outcome""",
                  start=start, end=end, k=k, answer=answer, faith=faithfulness)


def online_failure_days(con: Connection, start: date, end: date, k: int, answer: str,
                        faithfulness: str, classes: Sequence[str], key: str | None = None,
                        stratum: str | None = None) -> pl.DataFrame:
    """Per UTC day of [start, end], how many failing answers (as `online_attribution_counts`)
    fall in ``classes`` (and, with ``key``, whose stratum value is ``stratum``; "(missing)" =
    without the key): ``date``, ``n``, newest first. Tells `online_failures` which days hold
    the newest of them."""
    _check_k(k)
    return _frame(con, f"""{_FAILURE_ROWS},
        picked AS (SELECT strata_json FROM (SELECT DISTINCT strata_json FROM g) g
                   WHERE {_IN_STRATUM})
        SELECT date, sum(n)::BIGINT AS n FROM g
        WHERE list_contains($classes, {_FAILURE_OUTCOME})
          AND ($key IS NULL OR strata_json IN (SELECT strata_json FROM picked))
        GROUP BY date ORDER BY date DESC""", start=start, end=end, k=k, answer=answer,
                  faith=faithfulness, classes=list(classes), key=key, stratum=stratum)


def online_failures(con: Connection, start: date, end: date, k: int, answer: str,
                    faithfulness: str, classes: Sequence[str], key: str | None = None,
                    stratum: str | None = None, limit: int = 2000) -> pl.DataFrame:
    """The newest ``limit`` failing answers of [start, end] counted by `online_failure_days`
    (pass the days that hold them: every day of [start, end] is read), one row each with what
    `evallib.analysis.rag.classify` reads (``outcome`` set) and ``trace_id``, ``date``, ``refusal``;
    newest first."""
    _check_k(k)
    return _frame(con, _ONLINE_FAILURES, start=start, end=end, k=k, answer=answer,
                  faith=faithfulness, classes=list(classes), key=key, stratum=stratum,
                  limit=limit)


def attribution_details(con: Connection, run_id: str, k: int, answer: str,
                        case_ids: Sequence[str]) -> pl.DataFrame:
    """The listed cases of the run: case_id, input, output, expected, ``top_k`` (the top k
    documents in rank order, ✓ = relevant, (cited) = the answer cites it) and the
    ``rationale`` of the ``answer`` metric's score."""
    return _frame(con, _DETAILS_SQL["offline"], run=run_id, k=k, answer=answer,
                  ids=list(case_ids))


def online_attribution_details(con: Connection, first_day: date, last_day: date, k: int,
                               answer: str, trace_ids: Sequence[str]) -> pl.DataFrame:
    """`attribution_details` for traces of UTC days [first_day, last_day] (only those days
    are read: pass the listed traces' first and last day)."""
    return _frame(con, _DETAILS_SQL["online"], start=first_day, end=last_day, k=k,
                  answer=answer, ids=list(trace_ids))


def generation_by_evidence(con: Connection, run_id: str, k: int) -> pl.DataFrame:
    """Per metric of the run × the evidence its generator had (``evidence``: relevant in top
    k / no relevant in top k / no gold document; null = all cases with retrievals): kind, n,
    mean, sd; with ``cites_relevant`` (of the answers citing a document, those citing a
    relevant one). Cases without retrieval rows are left out."""
    return _frame(con, _GENERATION_SQL, run=run_id, k=k)


def online_generation_by_evidence(con: Connection, start: date, end: date, k: int
                                  ) -> pl.DataFrame:
    """`generation_by_evidence` for traces of UTC days [start, end] with logged retrievals,
    plus ``refusal`` (binary: the trace declined to answer). Read from the daily rollups: a
    score counts by its own day and the evidence its trace's retrievals (of the week up to
    it) had; refusal and cites_relevant by the day of the retrievals. ``k`` ≤ RAG_MAX_K."""
    _check_k(k)
    return _frame(con, _ONLINE_GENERATION, start=start, end=end, k=k)
