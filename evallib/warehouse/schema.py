"""The warehouse tables, declared once: the writer validates against them and `connect()`
builds its views from them.

Layout (chosen by measuring the dashboard's queries, see warehouse/README.md):
- offline tables are hive-partitioned by ``run_id``: one run or a pair of runs reads only
  its own directories, and a run is replaced by swapping its files;
- online tables are hive-partitioned by ``date`` (UTC day of the trace): a date window reads
  only its days;
- ``runs`` and ``human_labels`` are small and unpartitioned.

Every offline row carries ``write_id``. The ``runs`` row is written last and is the commit:
the views show cases, scores and retrievals only for the ``write_id`` of a committed run,
so a run whose writer died half way is never visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

KINDS = ("binary", "ordinal", "continuous")
FEEDBACK_KINDS = ("thumbs", "rating", "edit", "comment")

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRATA = pa.map_(pa.string(), pa.string())
TAGS = pa.list_(pa.string())


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool = False
    doc: str = ""

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=not self.required)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    partition: str | None  # hive partition column, stored in the path not in the file
    key: tuple[str, ...]  # unique within one write
    doc: str = ""
    lead: tuple[str, ...] = ()  # a rollup's columns sorted before its day: what queries pick

    @property
    def schema(self) -> pa.Schema:
        """Schema of the Parquet files (the partition column lives in the path)."""
        return pa.schema([c.field() for c in self.columns if c.name != self.partition])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, type_: pa.DataType, required: bool = False, doc: str = "") -> Column:
    return Column(name, type_, required, doc)


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()

_SCORE_COLUMNS = (
    _c("metric", _S, True, "metric name, e.g. correctness"),
    _c("value", _F, False, "the score; null = could not score"),
    _c("kind", _S, True, "binary | ordinal | continuous"),
    _c("passed", _B, False, "pass flag; null when the metric has no threshold or is unscored"),
    _c("scorer", _S, False, "scorer name"),
    _c("scorer_version", _S, False, "scorer name + version + arguments hash"),
    _c("rationale", _S, False, "judge's reason"),
    _c("strata_json", _S, False, "the case's or trace's strata as canonical JSON, copied on "
       "write so slices group without a join (filled by the writer)"),
)

RUNS = Table(
    "runs",
    (
        _c("run_id", _S, True),
        _c("write_id", _S, True, "which write of this run is current"),
        _c("committed_at", TIMESTAMP, True),
        _c("name", _S, True),
        _c("dataset", _S, True),
        _c("dataset_version", _S, False, "content hash of the cases used"),
        _c("model", _S),
        _c("prompt_version", _S),
        _c("judge_version", _S),
        _c("git_sha", _S),
        _c("release", _S, False, "release this run qualified, if any"),
        _c("started_at", TIMESTAMP, True),
        _c("tags", TAGS),
        _c("source", _S, False, "who wrote it: evaluate, import:jsonl, demo …"),
        _c("approved", _B, True, "a release baseline"),
    ),
    partition=None,
    key=("run_id",),
)

CASES = Table(
    "cases",
    (
        _c("run_id", _S, True),
        _c("write_id", _S, True),
        _c("case_id", _S, True),
        _c("strata", STRATA, False, "any keys: query_type, difficulty, edge_case, segment …"),
        _c("tags", TAGS, False, "critical, safety …"),
        _c("input", _S),
        _c("output", _S),
        _c("expected", _S),
        _c("latency_ms", _F),
        _c("tokens_in", _I),
        _c("tokens_out", _I),
        _c("cost_usd", _F),
        _c("error", _S),
    ),
    partition="run_id",
    key=("case_id",),
)

SCORES = Table(
    "scores",
    (_c("run_id", _S, True), _c("write_id", _S, True), _c("case_id", _S, True), *_SCORE_COLUMNS),
    partition="run_id",
    key=("case_id", "metric"),
)

RETRIEVALS = Table(
    "retrievals",
    (
        _c("run_id", _S, True),
        _c("write_id", _S, True),
        _c("case_id", _S, True),
        _c("doc_id", _S, True),
        _c("rank", _I, True, "1 = top"),
        _c("relevant", _B),
        _c("cited", _B),
    ),
    partition="run_id",
    key=("case_id", "rank"),
)

ONLINE_TRACES = Table(
    "online_traces",
    (
        _c("trace_id", _S, True),
        _c("timestamp", TIMESTAMP, True),
        _c("date", pa.date32(), True),
        _c("release", _S),
        _c("variant", _S, False, "control, canary …"),
        _c("strata", STRATA),
        _c("input", _S),
        _c("output", _S),
        _c("latency_ms", _F),
        _c("tokens_in", _I),
        _c("tokens_out", _I),
        _c("cost_usd", _F),
        _c("error", _S),
        _c("refusal", _B),
        _c("tool_error", _B),
    ),
    partition="date",
    key=("trace_id",),
)

ONLINE_SCORES = Table(
    "online_scores",
    (
        _c("trace_id", _S, True),
        _c("timestamp", TIMESTAMP, True),
        _c("date", pa.date32(), True),
        *_SCORE_COLUMNS,
    ),
    partition="date",
    key=("trace_id", "metric"),
)

ONLINE_RETRIEVALS = Table(
    "online_retrievals",
    (
        _c("trace_id", _S, True),
        _c("timestamp", TIMESTAMP, True),
        _c("date", pa.date32(), True),
        _c("doc_id", _S, True),
        _c("rank", _I, True),
        _c("relevant", _B),
        _c("cited", _B),
    ),
    partition="date",
    key=("trace_id", "rank"),
)

FEEDBACK = Table(
    "feedback",
    (
        _c("trace_id", _S, True),
        _c("timestamp", TIMESTAMP, True),
        _c("date", pa.date32(), True),
        _c("kind", _S, True, "thumbs | rating | edit | comment"),
        _c("value", _F, False, "thumbs: 1 up / 0 down; rating: 1–5"),
        _c("comment", _S),
        _c("user_id", _S),
    ),
    partition="date",
    key=(),
)

HUMAN_LABELS = Table(
    "human_labels",
    (
        _c("trace_id", _S, False, "an online trace, or"),
        _c("run_id", _S, False, "an offline run …"),
        _c("case_id", _S, False, "… and case"),
        _c("metric", _S, True),
        _c("value", _F, True),
        _c("labeler", _S, True),
        _c("labeled_at", TIMESTAMP, True),
        _c("note", _S),
    ),
    partition=None,
    key=(),
)

APPROVALS = Table(
    "approvals",
    (
        _c("run_id", _S, True, "the run approved as a release baseline"),
        _c("approved_by", _S, True),
        _c("approved_at", TIMESTAMP, True),
        _c("note", _S),
    ),
    partition=None,
    key=(),
    doc="append-only: a run is approved when runs.approved is set or it has a row here",
)

GATE_RESULTS = Table(
    "gate_results",
    (
        _c("gate_id", _S, True, "one `evallib gate` invocation"),
        _c("run_id", _S, True, "the candidate"),
        _c("baseline_id", _S, True),
        _c("policy_hash", _S, True, "sha256 of the policy file, first 12 hex digits"),
        _c("position", _I, True, "order of the row in the report"),
        _c("rule", _S, True, "the rule's name"),
        _c("metric", _S, True),
        _c("check_type", _S, True, "min_pass_rate | max_drop | max_increase_pct | max"),
        _c("slice", _S, False, "the slice as canonical JSON; null = all the rule's cases"),
        _c("status", _S, True, "pass | fail | waived | skipped"),
        _c("observed", _F, False, "pass rate, drop, increase in % or statistic"),
        _c("threshold", _F, False),
        _c("baseline_value", _F, False, "the baseline's mean, for checks against it"),
        _c("n", _I, False, "cases behind the observed value"),
        _c("p_adjusted", _F, False, "max_drop: BH-adjusted p over the gate's tests"),
        _c("message", _S),
        _c("owner", _S, False, "who accepted the risk, for a waived row"),
        _c("created_at", TIMESTAMP, True),
    ),
    partition=None,
    key=(),
    doc="one row per rule (per slice for `by` rules) per gate run, written after the verdict",
)

DATASET_CASES = Table(
    "dataset_cases",
    (
        _c("dataset_version", _S, True, "content hash of the golden set (evallib.datasets)"),
        _c("dataset", _S, True, "the name it was first stored under"),
        _c("case_id", _S, True),
        _c("strata", STRATA),
        _c("tags", TAGS),
        _c("input", _S, False, "JSON (a text input is a JSON string): round-trips exactly"),
        _c("expected", _S, False, "JSON, like input"),
        _c("relevant_docs", TAGS, False, "ground-truth relevant doc ids"),
        _c("metadata", _S, False, "JSON object"),
    ),
    partition="dataset_version",  # a version's cases are written once: one file per version
    key=("case_id",),
    doc="every golden-set version a run used, so a run's dataset_version names exact cases",
)

ALERTS = Table(
    "alerts",
    (
        _c("alert_id", _S, True, "signal + first day: one id per episode"),
        _c("signal", _S, True, "error_rate, latency, cost, quality:<metric> …"),
        _c("direction", _S, True, "up | down: the way that is bad"),
        _c("first_day", pa.date32(), True, "first UTC day flagged"),
        _c("last_day", pa.date32(), True, "last UTC day flagged so far"),
        _c("status", _S, True, "open (flagged on the newest day with traffic) | closed"),
        _c("observed", _F, False, "the statistic on last_day"),
        _c("baseline", _F, False, "the same statistic over the trailing baseline days"),
        _c("p_value", _F, False, "one-sided, of last_day against the baseline"),
        _c("alpha", _F, False, "the per-test level the detector used"),
        _c("n", _I, False, "traces (or scores) behind observed"),
        _c("release", _S, False, "release(s) serving on first_day"),
        _c("message", _S),
        _c("detected_at", TIMESTAMP, True),
    ),
    partition=None,
    key=(),
    doc="append-only: a row per new or changed alert; the latest row of an alert_id is its "
        "state (`evallib alerts` writes them, see evallib.monitor)",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        RUNS,
        CASES,
        SCORES,
        RETRIEVALS,
        ONLINE_TRACES,
        ONLINE_SCORES,
        ONLINE_RETRIEVALS,
        FEEDBACK,
        HUMAN_LABELS,
        APPROVALS,
        GATE_RESULTS,
        DATASET_CASES,
        ALERTS,
    )
}
OFFLINE_DATA = ("cases", "scores", "retrievals")  # visible only once their run is committed

# Rollups (`evallib rollup`): the mergeable moments of scores per day or run × metric ×
# strata, so the dashboard's aggregates read thousands of rows instead of millions. Derived
# data, one current file per table: a day's or run's rows are read only while they are
# fresh (see evallib/warehouse/rollup.py).
_MOMENT_COLUMNS = (
    _c("metric", _S, True),
    _c("strata_json", _S, False, "the scores' strata as canonical JSON, as in the scores"),
    _c("kind", _S, True),
    _c("n_rows", _I, True, "score rows, scored or not"),
    _c("n", _I, True, "scored rows (value not null)"),
    _c("sx", _F, False, "sum of the values (null when n = 0)"),
    _c("sxx", _F, False, "sum of their squares"),
    _c("n_passed", _I, False, "rows with passed = true (null: no row has a pass flag)"),
)
ONLINE_DAILY_ROLLUP = Table(
    "online_daily_rollup", (_c("date", pa.date32(), True), *_MOMENT_COLUMNS),
    partition=None, key=(),
    doc="online_scores per day × metric × strata; a day is fresh while its part files are "
        "those the rollup summarised (its footer maps each day to their fingerprint)",
)
RUN_METRIC_ROLLUP = Table(
    "run_metric_rollup", (_c("run_id", _S, True), *_MOMENT_COLUMNS),
    partition=None, key=(),
    doc="scores per run × metric × strata; a run is fresh while its committed write is the "
        "one summarised (its footer maps each run to its write_id)",
)
# Production traffic per day × release × variant × strata (the trace's, as JSON), so the
# Online page's health, quality and feedback over months read rollups
# (evallib.warehouse.online_rollups).
_TRAFFIC_GROUP = (
    _c("date", pa.date32(), True),
    _c("release", _S),
    _c("variant", _S),
    _c("strata_json", _S, False, "the trace's strata as JSON"),
)
ONLINE_TRACE_ROLLUP = Table(
    "online_trace_rollup",
    (*_TRAFFIC_GROUP,
     _c("n", _I, True, "traces"),
     _c("n_error", _I, True), _c("n_refusal", _I, True), _c("n_tool_error", _I, True),
     _c("n_latency", _I, True, "traces with latency_ms > 0"),
     _c("s_log_latency", _F, False, "sum of ln(latency_ms)"),
     _c("ss_log_latency", _F, False, "sum of its squares"),
     _c("n_cost", _I, True), _c("s_cost", _F), _c("ss_cost", _F),
     _c("n_tokens_in", _I, True), _c("s_tokens_in", _I),
     _c("n_tokens_out", _I, True), _c("s_tokens_out", _I)),
    partition=None, key=(),
    doc="online_traces per day × release × variant × strata: counts and moments",
)
ONLINE_LATENCY_ROLLUP = Table(
    "online_latency_rollup",
    (_c("date", pa.date32(), True),
     _c("dim", _S, True, "all, release, variant or strata.<key>: what grp is a value of"),
     _c("grp", _S),
     _c("n", _I, True, "traces with a latency"),
     _c("latency_p50", _F), _c("latency_p95", _F), _c("latency_p99", _F)),
    partition=None, key=(),
    doc="latency quantiles per day: overall, per release, per variant and per value of "
        "each stratum (quantiles do not pool, so each split the Online page offers is kept)",
)
ONLINE_QUALITY_ROLLUP = Table(
    "online_quality_rollup",
    (*_TRAFFIC_GROUP[:3],
     _c("metric", _S, True),
     _c("strata_json", _S, False, "the scores' strata, as in online_scores"),
     _c("kind", _S, True),
     _c("n", _I, True, "scored rows"), _c("sx", _F), _c("sxx", _F),
     _c("n_passed", _I, True), _c("n_pass_known", _I, True, "rows with a pass flag")),
    partition=None, key=(),
    doc="online_scores per day (of the score) × its trace's release and variant × metric × "
        "strata",
)
ONLINE_FEEDBACK_ROLLUP = Table(
    "online_feedback_rollup",
    (*_TRAFFIC_GROUP,
     _c("n_thumbs", _I, True), _c("n_thumbs_up", _I, True),
     _c("n_rating", _I, True), _c("s_rating", _F), _c("ss_rating", _F),
     _c("n_edit", _I, True), _c("n_comment", _I, True)),
    partition=None, key=(),
    doc="feedback per day (of the event) × its trace's release, variant and strata",
)
_DRIFT_COLUMNS = (
    _c("date", pa.date32(), True),
    _c("feature", _S, True, "input length (characters), output length (tokens), "
                            "stratum <key> or score <metric>"),
    _c("kind", _S, True, "continuous or categorical"),
    _c("value", _S, False, "a categorical feature's value"),
    _c("x", _F, False, "a continuous feature's bin (its lower edge, or the value to 0.01)"),
    _c("n", _I, True),
)
ONLINE_TRACE_DRIFT_ROLLUP = Table(
    "online_trace_drift_rollup", _DRIFT_COLUMNS, partition=None, key=(),
    doc="per day: traces per bin of input and output length and per stratum value",
)
ONLINE_SCORE_DRIFT_ROLLUP = Table(
    "online_score_drift_rollup", _DRIFT_COLUMNS, partition=None, key=(),
    doc="per day: online scores per metric × value (continuous ones to 0.01)",
)
# RAG online (the RAG page over months): what each trace's retrievals found, and the scores
# by the evidence their trace's generator had. Ranks past RAG_MAX_K are not kept.
RAG_MAX_K = 10
_EVIDENCE_COLUMNS = (
    _c("judged", _B, True, "a retrieved document carries a relevance label"),
    _c("first_relevant", _I, True, f"rank of the first relevant document ({RAG_MAX_K + 1}: "
                                   f"none in the top {RAG_MAX_K})"),
)
ONLINE_RAG_ITEM_ROLLUP = Table(
    "online_rag_item_rollup",
    (_c("date", pa.date32(), True, "of the retrievals"),
     _c("found", pa.list_(_I), True, f"ranks (≤ {RAG_MAX_K}) of the relevant documents"),
     _c("n_rel", _I, True, "relevant documents retrieved (at least 1)"),
     _c("n_cited", _I, True, "cited documents"),
     _c("n_cited_rel", _I, True, "cited relevant documents"),
     *_EVIDENCE_COLUMNS,
     _c("refusal", _B, False, "the trace declined (null: trace not found)"),
     _c("n", _I, True, "traces")),
    partition=None, key=(),
    doc="traces with retrievals per day × what their retrievals found (recall, precision, "
        "nDCG, MRR at every k ≤ 10; citations) × their refusal",
)
ONLINE_RAG_SCORE_ROLLUP = Table(
    "online_rag_score_rollup",
    (_c("date", pa.date32(), True, "of the score"), *_EVIDENCE_COLUMNS,
     _c("metric", _S, True), _c("kind", _S, True),
     _c("n", _I, True, "scored rows"), _c("sx", _F), _c("sxx", _F)),
    partition=None, key=(),
    doc="online_scores of traces with retrievals (of the week up to the score) per day × the "
        "evidence the trace had × metric: moments",
)
ONLINE_RAG_FAILURE_ROLLUP = Table(
    "online_rag_failure_rollup",
    (_c("date", pa.date32(), True, "of the answer's score"),
     _c("metric", _S, True, "the answer metric (the score failed: not passed, or binary 0)"),
     _c("faith", _S, True, "the faithfulness metric ('' = none)"),
     _c("strata_json", _S, False, "the score's strata"),
     _c("has_docs", _B, True, "the trace logged retrievals (the week up to the score)"),
     *_EVIDENCE_COLUMNS,
     _c("faithful", _B, False, "the faith metric's verdict, scored the same day (null: none)"),
     _c("n", _I, True, "failing scores")),
    partition=None, key=(), lead=("metric", "faith"),
    doc="failing online answers of traces that did not error, per day × answer metric × "
        "faithfulness metric × strata × what `evallib.rag` attributes them by",
)
ONLINE_SCORE_FEEDBACK_ROLLUP = Table(
    "online_score_feedback_rollup",
    (_c("date", pa.date32(), True, "of the score"), _c("metric", _S, True),
     _c("kind", _S, True), _c("score", _F, True, "the value (continuous ones to 0.01)"),
     _c("feedback", _S, True, "thumbs or rating: the trace's latest, a week either side"),
     _c("feedback_value", _F, True), _c("n", _I, True, "traces")),
    partition=None, key=(),
    doc="online scores against their trace's latest thumbs and rating, per day × metric × "
        "score × feedback value: the Correlation page's contingency tables",
)
ONLINE_SCORE_LABEL_ROLLUP = Table(
    "online_score_label_rollup",
    (_c("date", pa.date32(), True, "of the score"), _c("metric", _S, True),
     _c("kind", _S, True), _c("judge", _F, True, "the online score"),
     _c("human", _F, True, "a human label of the same trace and metric"),
     _c("n", _I, True)),
    partition=None, key=(),
    doc="online scores against human labels of the same trace and metric, per day × metric "
        "× pair of values (every day goes stale when labels are imported)",
)
TRAFFIC_ROLLUPS = (ONLINE_TRACE_ROLLUP, ONLINE_LATENCY_ROLLUP, ONLINE_QUALITY_ROLLUP,
                   ONLINE_FEEDBACK_ROLLUP, ONLINE_TRACE_DRIFT_ROLLUP, ONLINE_SCORE_DRIFT_ROLLUP,
                   ONLINE_RAG_ITEM_ROLLUP, ONLINE_RAG_SCORE_ROLLUP, ONLINE_RAG_FAILURE_ROLLUP,
                   ONLINE_SCORE_FEEDBACK_ROLLUP, ONLINE_SCORE_LABEL_ROLLUP)
ROLLUPS: dict[str, Table] = {t.name: t for t in (ONLINE_DAILY_ROLLUP, RUN_METRIC_ROLLUP,
                                                 *TRAFFIC_ROLLUPS)}
