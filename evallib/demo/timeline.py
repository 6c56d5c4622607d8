"""When things happen: releases, the runs that gate them, nightly CI, the last candidate, the
judge-drift month and the incident day."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np

from .params import _US_PER_DAY, BASELINE_SKILL, FIRST_SKILL, MODELS, _Model


@dataclass(frozen=True)
class _Release:
    index: int
    name: str
    day: int
    model: _Model
    prompt_version: str
    retriever: int
    compressed: bool  # context compression: fewer tokens in, lower latency
    skill: float


@dataclass(frozen=True)
class _RunPlan:
    name: str
    kind: str  # nightly | rc | candidate
    day: int
    started_us: int
    config: _Release
    skill: float
    approved: bool
    qualifies: str | None  # release name when approved
    golden_n: int
    tags: tuple[str, ...]
    run_id: str = ""
    git_sha: str = ""


def _releases(rng: np.random.Generator, days: int) -> list[_Release]:
    release_days = [0]
    while (nxt := release_days[-1] + int(rng.integers(21, 29))) <= days - 8:
        release_days.append(nxt)
    n = len(release_days)
    out: list[_Release] = []
    major, minor, prev_model = 1, -1, None
    for k, day in enumerate(release_days):
        model = 0 if k < round(0.35 * n) else 1 if k < round(0.7 * n) else 2
        if prev_model is not None and model != prev_model:
            major, minor = major + 1, 0
        else:
            minor += 1
        prev_model = model
        progress = k / (n - 1) if n > 1 else 1.0
        skill = FIRST_SKILL + (BASELINE_SKILL - FIRST_SKILL) * progress ** 0.8
        if k < n - 1:
            skill += float(rng.normal(0.0, 0.04))
        out.append(_Release(k, f"v{major}.{minor}", day, MODELS[model],
                            f"support-prompt@{k + 7}", int(k >= n // 2),
                            n >= 4 and k == n - 1, skill))
    return out


def _plan(rng: np.random.Generator, days: int, day0: dt.date, day0_us: int, cases: int
          ) -> tuple[list[_Release], list[_RunPlan], int]:
    """Releases every 3-4 weeks, nightly CI every 1-3 days, release-candidate runs the day
    before each release, and the candidate of the next release on the last day; the golden
    set grows monthly (`_growth`). Returns how many cases were added over the window."""
    releases = _releases(rng, days)
    n_rel = len(releases)
    growth = _growth(day0, releases[-1].day - 1, cases)  # day → cases added that day
    n_added = sum(growth.values())

    def golden_n(day: int) -> int:
        return cases - sum(k for d, k in growth.items() if d > day)

    def run(name: str, kind: str, day: int, hour: float, config: _Release, skill: float,
            approved: bool = False, tags: tuple[str, ...] = ("release-candidate",),
            n: int | None = None) -> _RunPlan:
        return _RunPlan(name, kind, day, day0_us + day * _US_PER_DAY + int(hour * 3.6e9),
                        config, skill, approved, config.name if approved else None,
                        golden_n(day) if n is None else n, tags)

    first = releases[0]
    plans = [run(f"rc-{first.name}", "rc", 0, 0.5 + rng.random() * 0.5, first, first.skill,
                 approved=True)]
    for rel in releases[1:]:
        day = rel.day - 1
        name = f"rc-{rel.name}"
        if rng.random() < 0.5:  # a first candidate that failed its gate
            plans.append(run(f"{name}-1", "rc", day, 12 + rng.random() * 2, rel,
                             rel.skill - 0.3))
            name = f"{name}-2"
        plans.append(run(name, "rc", day, 16 + rng.random() * 2, rel, rel.skill,
                         approved=True))
    day = 0
    while (day := day + int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))) < days:
        k = max(r.index for r in releases if r.day <= day)
        rel, skill = releases[k], releases[k].skill
        if k + 1 < n_rel:  # main moves toward the next release
            nxt = releases[k + 1]
            skill += (nxt.skill - rel.skill) * 0.6 * (day - rel.day) / (nxt.day - rel.day)
        plans.append(run(f"nightly-{day0 + dt.timedelta(days=day):%Y-%m-%d}", "nightly", day,
                         2 + rng.random() * 0.7, rel, skill + float(rng.normal(0.0, 0.05)),
                         tags=("nightly",)))
    last = releases[-1]
    name = _next_release_name(last.name)
    candidate = _Release(n_rel, name, days, last.model, f"support-prompt@{n_rel + 7}",
                         last.retriever, last.compressed, last.skill)
    plans.append(run(f"rc-{name}-candidate", "candidate", days - 1, 15 + rng.random(),
                     candidate, last.skill, n=cases,
                     tags=("release-candidate", f"pr-{int(rng.integers(2000, 3000))}")))
    plans.sort(key=lambda p: p.started_us)
    out = []
    for p in plans:
        when = dt.datetime.fromtimestamp(p.started_us / 1e6, tz=dt.UTC)
        out.append(dataclasses.replace(
            p, run_id=f"{p.name}-{when:%Y%m%d-%H%M%S}-{rng.bytes(3).hex()}",
            git_sha=rng.bytes(20).hex()))
    return releases, out, n_added


def _growth(day0: dt.date, last_day: int, cases: int) -> dict[int, int]:
    """The golden set grows on the first of each month up to the last release candidate
    (the approved baseline has every case): 10-20 cases a month, at most a quarter of
    the set in all. Drawn apart from the timeline's random stream."""
    firsts = [d for d in range(1, last_day + 1) if (day0 + dt.timedelta(days=d)).day == 1]
    if not firsts:  # a short window: once, at the last release candidate
        firsts = [last_day] if last_day > 0 else []
    base = min(17, max(13, cases // 25))
    sizes = base + np.random.default_rng([cases, max(last_day, 0), 11]).integers(-3, 4, len(firsts))
    room = cases // 4 - np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sizes = np.clip(sizes, 0, np.maximum(room, 0))
    return {d: int(k) for d, k in zip(firsts, sizes, strict=True) if k > 0}


def _next_release_name(name: str) -> str:
    major, minor = name[1:].split(".")
    return f"v{major}.{int(minor) + 1}"


def _drift_month(day0: dt.date, today: dt.date) -> tuple[int, int]:
    """The calendar month two before today's, if the window covers all of it; else the
    latest month the window covers fully (else the one holding the window's middle)."""
    def shift(y: int, m: int, k: int) -> tuple[int, int]:
        i = y * 12 + (m - 1) + k
        return i // 12, i % 12 + 1

    def covered(y: int, m: int) -> bool:
        first = dt.date(y, m, 1)
        ny, nm = shift(y, m, 1)
        return first >= day0 and dt.date(ny, nm, 1) <= today

    want = shift(today.year, today.month, -2)
    if covered(*want):
        return want
    for k in range(-1, -14, -1):
        if covered(*(ym := shift(today.year, today.month, k))):
            return ym
    mid = day0 + (today - day0) / 2
    return mid.year, mid.month


def _incident_day(story_days: int, day0: dt.date, drift: tuple[int, int],
                  last_release_day: int) -> int | None:
    """A Tuesday to Thursday after the first 45% of the window, outside the canary week and
    (if the window allows) outside the drift month, so the stories do not blur."""
    for avoid_drift in (True, False):
        for day in range(int(story_days * 0.45), story_days):
            date = day0 + dt.timedelta(days=day)
            if date.weekday() in (1, 2, 3) \
                    and not (avoid_drift and (date.year, date.month) == drift) \
                    and not last_release_day <= day < last_release_day + 7:
                return day
    return None
