"""Production traffic, one day at a time: traces, online judge scores, logged retrievals,
user feedback and human labels."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..warehouse import Warehouse
from ..warehouse import schema as S
from .outcomes import _BOTH_GIVEN_MISS, _answer
from .params import (
    _US_PER_DAY,
    ADVERSARIAL,
    DRIFT_JUDGE_MODEL,
    FAITHFUL,
    JUDGE_MODEL,
    JUDGE_NOISE,
    JUDGED_SHARE,
    LABEL_NOISE,
    LABELERS,
    LABELS_PER_MONTH,
    RATING_SHARE,
    RETRIEVAL_LOG_SHARE,
    RETRIEVERS,
    SECOND_RATER_SHARE,
    THUMBS_SHARE,
)
from .population import _ids, _inputs, _outputs, _population, _strata, _timestamps
from .retrieval import _cite, _retrieval_table, _retrieve
from .scores import _judge_rationale, _ordinal, _scores_table, _sigmoid
from .text import _COMMENTS, _EDIT_NOTE, _text
from .timeline import _Release

_HOUR_WEIGHT = 0.15 + np.exp(-0.5 * ((np.arange(24) - 10) / 2.5) ** 2) \
    + 1.2 * np.exp(-0.5 * ((np.arange(24) - 16.5) / 3.0) ** 2)  # EU morning, US afternoon
_HOUR_WEIGHT_WEEKEND = 0.5 + 0.5 * _HOUR_WEIGHT


@dataclass
class _Story:
    seed: int
    days: int
    day0: dt.date
    day0_us: int
    online_per_day: int
    releases: list[_Release]
    drift: tuple[int, int]  # (year, month)
    incident_day: int | None
    end_us: int


@dataclass
class _OnlineAcc:
    rows: dict[str, int] = field(default_factory=dict)
    carry: pa.Table | None = None  # feedback that arrived after midnight
    labels: list[pa.Table] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)  # (drift, judge_c, thumbs) rows


def _live(story: _Story, day: int, rng: np.random.Generator, n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Release index and canary flag per trace: the last release rolls out through a 10%
    canary during its first week; earlier releases switch over at midnight."""
    k = max(r.index for r in story.releases if r.day <= day)
    rel = np.full(n, k)
    canary = np.zeros(n, bool)
    last = story.releases[-1]
    if last.index > 0 and last.day <= day < last.day + 7:
        canary = rng.random(n) < 0.10
        rel = np.where(canary, last.index, last.index - 1)
    return rel, canary


def _online_day(wh: Warehouse, story: _Story, day: int, acc: _OnlineAcc) -> None:
    rng = np.random.default_rng([story.seed, 2, day])
    date = story.day0 + dt.timedelta(days=day)
    weekend = date.weekday() >= 5
    growth = 0.9 + 0.2 * day / max(story.days - 1, 1)
    expected = story.online_per_day * growth * (0.6 if weekend else 1.0) * 7 / 6.2
    n = int(rng.poisson(expected))
    if n == 0:
        return
    t = _text()
    day_us = story.day0_us + day * _US_PER_DAY
    hw = _HOUR_WEIGHT_WEEKEND if weekend else _HOUR_WEIGHT
    hour = rng.choice(24, n, p=hw / hw.sum())
    ts = np.sort(day_us + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n))
    hour = (ts - day_us) // 3_600_000_000
    pop = _population(rng, n, golden=False)
    rel, canary = _live(story, day, rng, n)
    skill = np.array([r.skill for r in story.releases])[rel]
    reach = np.array([RETRIEVERS[r.retriever][1] for r in story.releases])[rel]
    ret = _retrieve(rng, pop, reach)
    in_window = (day == story.incident_day) & (hour >= 13) & (hour < 17)
    # The canary ships a broken tool schema: its tool calls fail three times as often.
    tool_error = rng.random(n) < np.where(in_window & (pop.qt <= 2), 0.35,
                                          np.where(canary, 0.045, 0.015))
    error = rng.random(n) < np.where(in_window, 0.15, 0.004)
    z = _answer(rng, pop, ret.hit, skill) - 1.5 * tool_error
    correct = z > 0
    zc = np.clip(z, -2.0, 2.0)

    models = [r.model for r in story.releases]
    med = np.array([m.latency_ms * (0.82 if r.compressed else 1.0)
                    for m, r in zip(models, story.releases, strict=True)])[rel]
    compress = np.array([0.7 if r.compressed else 1.0 for r in story.releases])[rel]
    tokens_in = np.rint((900 + 5 * 260 + rng.normal(0, 150, n)) * compress).astype(np.int64)
    tokens_out = np.maximum(20, np.rint(100 + 60 * pop.diff + rng.normal(0, 40, n))
                            ).astype(np.int64)
    latency = med * np.exp(rng.normal(0, 0.35, n)) * (tokens_out / 200) ** 0.3 \
        * np.where(in_window, 2.2, 1.0) * np.where(canary, 1.08, 1.0)
    latency = np.where(error, 30_000.0, latency)
    tokens_out[error] = 0
    price_in = np.array([m.price_in for m in models])[rel]
    price_out = np.array([m.price_out for m in models])[rel]
    refusal_p = np.select([pop.oos, pop.edge == ADVERSARIAL],
                          [np.where(correct, 0.85, 0.1), np.where(correct, 0.9, 0.05)],
                          0.01 + 0.04 * ~correct)
    trace_id = _ids(f"tr-{date:%Y%m%d}-", np.arange(n), 6)
    ts_arr = _timestamps(ts)
    rel_names = pa.array([r.name for r in story.releases])
    traces = pa.table({
        "trace_id": trace_id,
        "timestamp": ts_arr,
        "release": rel_names.take(pa.array(rel)),
        "variant": pc.if_else(pa.array(canary), "canary", "control"),
        "strata": _strata(pop),
        "input": _inputs(pop),
        "output": _outputs(rng, pop, correct, error),
        "latency_ms": np.round(latency, 1),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": np.round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6),
        "error": t.errors.take(pa.array(np.where(in_window, 2, rng.integers(0, 2, n)),
                                        mask=~error)),
        "refusal": rng.random(n) < refusal_p,
        "tool_error": tool_error,
    })

    # The online judge: tracks the true margin, except in the drift month (a cheaper,
    # lenient, noisy judge model).
    drifted = (date.year, date.month) == story.drift
    judged = rng.random(n) < JUDGED_SHARE
    jn = int(judged.sum())
    jz, jc = z[judged], correct[judged]
    if drifted:
        judge_c = (0.25 * jz + 0.9 + rng.normal(0, 1.4, jn)) > 0
        faith = _ordinal(4.1 + 0.15 * np.clip(jz, -2, 2) + rng.normal(0, 0.9, jn))
    else:
        judge_c = (jz + rng.normal(0, JUDGE_NOISE, jn)) > 0
        faith = _ordinal(2.6 + 2.2 * jc + 0.3 * zc[judged] + 0.3 * ret.hit[judged]
                         + rng.normal(0, 0.45, jn))
        # A wrong answer to a retrieval miss is mostly faithful to the wrong documents it
        # got; some make unsupported claims (as offline, see params.FAILURE_CAUSES).
        own = np.random.default_rng([story.seed, 6, day]).random((2, jn))
        miss = ~pop.oos[judged] & ~ret.hit[judged] & ~jc
        faith = np.where(miss & (own[0] >= _BOTH_GIVEN_MISS), FAITHFUL,
                         np.where(miss, np.minimum(faith, FAITHFUL - 1), faith))
    values = {
        "correctness": judge_c.astype(float),
        "faithfulness": faith,
        "answer_relevance": np.round(_sigmoid(0.6 + 1.3 * jc + 0.5 * zc[judged]
                                              + rng.normal(0, 0.3, jn)), 4),
    }
    for v in values.values():
        v[error[judged]] = np.nan
    rationale = {m: _judge_rationale(rng, m, values[m]) for m in ("correctness", "faithfulness")}
    jidx = pa.array(np.flatnonzero(judged))
    scores = _scores_table("trace_id", trace_id.take(jidx), values, rationale,
                           DRIFT_JUDGE_MODEL if drifted else JUDGE_MODEL,
                           extra={"timestamp": ts_arr.take(jidx)})

    logged = judged & (rng.random(n) < RETRIEVAL_LOG_SHARE)
    lidx = np.flatnonzero(logged)
    lpop, lret = pop.take(lidx), ret.take(lidx)
    retrievals = _retrieval_table("trace_id", trace_id.take(pa.array(lidx)), lpop, lret,
                                  _cite(rng, lret, correct[lidx]),
                                  extra={"timestamp": ts_arr.take(pa.array(lidx))})

    feedback = _feedback(rng, ts, trace_id, correct, z, error, pop.qt)
    if acc.carry is not None:
        feedback = pa.concat_tables([acc.carry, feedback])
    next_day = pa.scalar(day_us + _US_PER_DAY, S.TIMESTAMP)
    later = pc.greater_equal(feedback["timestamp"], next_day)
    acc.carry = feedback.filter(later)
    feedback = feedback.filter(pc.invert(later))
    if day == story.days - 1:
        acc.carry = None  # after the window: not yet arrived

    wh.record_online(traces, scores, feedback, retrievals)
    for name, table in (("online_traces", traces), ("online_scores", scores),
                        ("online_retrievals", retrievals), ("feedback", feedback)):
        acc.rows[name] = acc.rows.get(name, 0) + table.num_rows

    # Correlation bookkeeping (judge vs thumbs) and human-label candidates.
    thumbs = feedback.filter(pc.equal(feedback["kind"], "thumbs"))
    jt = pa.table({"trace_id": trace_id.take(jidx), "j": values["correctness"]})
    joined = jt.join(thumbs.select(["trace_id", "value"]), "trace_id", join_type="inner")
    pair = np.stack([np.full(joined.num_rows, float(drifted)), joined["j"].to_numpy(),
                     joined["value"].to_numpy()], 1)
    acc.pairs.append(pair[~np.isnan(pair[:, 1])])
    month_days = calendar.monthrange(date.year, date.month)[1]
    ok = np.flatnonzero(~np.isnan(values["correctness"]))
    k = min(len(ok), int(rng.poisson(LABELS_PER_MONTH / month_days)))
    pick = np.sort(rng.choice(ok, k, replace=False))
    if k:
        acc.labels.append(_labels(rng, trace_id.take(jidx).take(pa.array(pick)), jc[pick],
                                  ts[judged][pick], story.end_us))


def _labels(rng: np.random.Generator, trace_id: pa.Array, correct: np.ndarray,
            ts: np.ndarray, end_us: int) -> pa.Table:
    """Correctness labels by one rater each, a few days after the trace; a second rater
    labels a share of them too (so raters can be compared with each other)."""
    k = len(correct)
    truth = correct ^ (rng.random(k) < LABEL_NOISE)
    labeled = np.minimum(ts + rng.integers(1, 6, k) * _US_PER_DAY
                         + rng.integers(0, _US_PER_DAY // 3, k), end_us - 1)
    rater = rng.integers(0, len(LABELERS), k)
    note = pa.array(["borderline: partially correct"] * k, type=pa.string(),
                    mask=rng.random(k) >= 0.08)
    first = pa.table({
        "trace_id": trace_id,
        "metric": pa.repeat(pa.scalar("correctness"), k),
        "value": truth.astype(float),
        "labeler": pa.array(LABELERS).take(pa.array(rater)),
        "labeled_at": _timestamps(labeled),
        "note": note,
    })
    again = np.flatnonzero(rng.random(k) < SECOND_RATER_SHARE)
    m = len(again)
    second_truth = correct[again] ^ (rng.random(m) < LABEL_NOISE)
    other = (rater[again] + rng.integers(1, len(LABELERS), m)) % len(LABELERS)
    second = pa.table({
        "trace_id": trace_id.take(pa.array(again, pa.int64())),
        "metric": pa.repeat(pa.scalar("correctness"), m),
        "value": second_truth.astype(float),
        "labeler": pa.array(LABELERS).take(pa.array(other)),
        "labeled_at": _timestamps(np.minimum(labeled[again] + _US_PER_DAY, end_us - 1)),
        "note": pa.nulls(m, pa.string()),
    })
    return pa.concat_tables([first, second])


def _feedback(rng: np.random.Generator, ts: np.ndarray, trace_id: pa.Array,
              correct: np.ndarray, z: np.ndarray, error: np.ndarray, qt: np.ndarray
              ) -> pa.Table:
    """Thumbs and ratings follow the true quality of the answer (not the judge), and users
    whose answer was wrong leave them more often. Ratings are J-shaped as in real products:
    a right answer gets a 4 or a 5 (5 when it is clearly right), a wrong one 1 to 3."""
    n = len(ts)
    user = rng.integers(0, 250_000, n)
    ok = correct & ~error
    thumbs = np.flatnonzero(rng.random(n) < np.where(ok, THUMBS_SHARE["correct"],
                                                     THUMBS_SHARE["wrong"]))
    p_up = np.where(error, 0.02, np.where(correct, 0.97, 0.03))
    up = rng.random(len(thumbs)) < p_up[thumbs]
    ratings = np.flatnonzero(rng.random(n) < np.where(ok, RATING_SHARE["correct"],
                                                      RATING_SHARE["wrong"]))
    zr = np.clip(z[ratings], -2, 2)
    rating = np.where(error[ratings], 1, _ordinal(np.where(
        correct[ratings], 4.2 + 0.4 * zr, 2.0 + 0.3 * zr)
        + rng.normal(0, 0.4, len(ratings))))
    rating = np.where(correct[ratings] & ~error[ratings], np.maximum(rating, 4),
                      np.minimum(rating, 3))
    downs = thumbs[~up]
    comments = downs[rng.random(len(downs)) < 0.3]
    edits = np.flatnonzero(rng.random(n) < 0.002 + 0.02 * ~correct)
    idx = np.concatenate([thumbs, ratings, comments, edits])
    kind = np.repeat(np.arange(4), [len(thumbs), len(ratings), len(comments), len(edits)])
    value = np.concatenate([up.astype(float), rating, np.full(len(comments) + len(edits),
                                                              np.nan)])
    delay = np.rint(5e6 + rng.exponential(120e6, len(idx))).astype(np.int64)
    comment_ix = np.concatenate([np.zeros(len(thumbs) + len(ratings), np.int64),
                                 1 + qt[comments] % len(_COMMENTS), np.zeros(len(edits),
                                                                             np.int64)])
    comment_pool = pa.array([_EDIT_NOTE, *_COMMENTS])
    order = np.argsort(ts[idx] + delay, kind="stable")
    idx, kind, value, delay, comment_ix = (a[order] for a in (idx, kind, value, delay,
                                                              comment_ix))
    has_comment = kind >= 2
    return pa.table({
        "trace_id": trace_id.take(pa.array(idx)),
        "timestamp": _timestamps(ts[idx] + delay),
        "kind": pa.array(["thumbs", "rating", "comment", "edit"]).take(pa.array(kind)),
        "value": pa.array(value, from_pandas=True),
        "comment": comment_pool.take(pa.array(comment_ix, mask=~has_comment)),
        "user_id": _ids("u-", user[idx], 6),
    })
