"""Golden sets over time (the Datasets page and `evallib datasets`): each version's size and
changes, growth per month (promoted vs hand-written), which runs used which version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from .. import queries
from ..errors import EvallibError
from ..warehouse import Connection

__all__ = ["datasets_overview", "datasets_report", "growth_by_month", "render_datasets",
           "version_history"]


def version_history(versions: pl.DataFrame, membership: pl.DataFrame) -> pl.DataFrame:
    """Each version of `queries.dataset_versions` against the version before it (of the same
    dataset, by first run): ``date`` (its first run; null if never run), ``added``,
    ``removed``, ``changed`` (same case_id, other content) and ``added_promoted`` (added
    cases tagged promoted), from `queries.dataset_membership`."""
    rows: list[dict[str, Any]] = []
    for _, group in versions.group_by("dataset", maintain_order=True):
        before: dict[str, str] = {}
        for v in group.iter_rows(named=True):
            now = membership.filter(pl.col("dataset_version") == v["dataset_version"])
            content = dict(zip(now["case_id"].to_list(), now["content"].to_list(), strict=True))
            promoted = set(now.filter(pl.col("promoted"))["case_id"].to_list())
            added = [c for c in content if c not in before]
            first = not rows or rows[-1]["dataset"] != v["dataset"]
            rows.append(v | {
                "date": v["first_run"],
                "added": 0 if first else len(added),
                "removed": 0 if first else sum(c not in content for c in before),
                "changed": sum(c in before and before[c] != h for c, h in content.items()),
                "added_promoted": 0 if first else sum(c in promoted for c in added)})
            before = content
    schema: dict[str, Any] = dict(versions.schema) | {
        "date": versions.schema["first_run"], "added": pl.Int64, "removed": pl.Int64,
        "changed": pl.Int64, "added_promoted": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def growth_by_month(history: pl.DataFrame, membership: pl.DataFrame) -> pl.DataFrame:
    """Cases that joined each golden set per month (of the first run of the first version
    holding them; "not run yet" for versions never run), split into ``promoted`` (tagged
    promoted: from production failures) and ``hand_written``; the first version's cases
    are the set's start, not growth: dataset, month, promoted, hand_written."""
    order = history.with_row_index("order").select(
        "order", "dataset", "dataset_version",
        pl.col("date").dt.strftime("%Y-%m").fill_null("not run yet").alias("month"),
        (pl.col("order") == pl.col("order").min().over("dataset")).alias("initial"))
    firsts = (membership.join(order, on="dataset_version")
              .sort("order").group_by("dataset", "case_id", maintain_order=True)
              .agg(pl.first("month"), pl.first("promoted"), pl.first("initial")))
    return (firsts.filter(~pl.col("initial"))
            .group_by("dataset", "month", maintain_order=True)
            .agg(pl.col("promoted").sum().cast(pl.Int64).alias("promoted"),
                 (~pl.col("promoted")).sum().cast(pl.Int64).alias("hand_written"))
            .sort("dataset", "month"))


def datasets_overview(con: Connection, dataset: str | None = None
                      ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Every golden set's (or ``dataset``'s) `version_history`, `growth_by_month` and
    `queries.version_runs`: the Datasets page's facts."""

    versions = queries.dataset_versions(con, dataset)
    membership = queries.dataset_membership(con, dataset)
    history = version_history(versions, membership)
    return history, growth_by_month(history, membership), queries.version_runs(con, dataset)


def datasets_report(con: Connection, dataset: str | None = None,
                    diff: Sequence[str] | None = None) -> dict[str, Any]:
    """What `evallib datasets` prints: per golden set its versions (oldest first, against
    the one before), growth per month and the runs of each version; with ``diff`` (old,
    new), the cases that differ between two versions."""

    history, growth, runs = datasets_overview(con, dataset)
    if dataset is not None and not history.height:
        raise EvallibError(f"no golden set {dataset!r} in the warehouse")
    out: dict[str, Any] = {"datasets": [{
        "dataset": name,
        "versions": history.filter(history["dataset"] == name).drop("dataset").to_dicts(),
        "growth": growth.filter(growth["dataset"] == name).drop("dataset").to_dicts(),
        "runs": runs.filter(runs["dataset"] == name).drop("dataset").to_dicts()}
        for name in dict.fromkeys(history["dataset"].to_list())]}
    if diff:
        known = set(queries.dataset_versions(con)["dataset_version"].to_list())
        for v in diff:
            if v not in known:
                raise EvallibError(f"no dataset version {v!r} (see: evallib datasets)")
        out["diff"] = {"old": diff[0], "new": diff[1],
                       "cases": queries.version_diff(con, diff[0], diff[1]).to_dicts()}
    return out


def render_datasets(report: dict[str, Any]) -> str:
    """`datasets_report` as text."""
    lines: list[str] = []
    for d in report["datasets"]:
        lines += [f"{d['dataset']}: {len(d['versions'])} versions, {len(d['runs'])} runs", "",
                  f"  {'version':<14}{'first run':<18}{'cases':>6}{'+added':>8}"
                  f"{'(promoted)':>11}{'-removed':>9}{'~changed':>9}{'runs':>6}  stored"]
        for v in d["versions"]:
            when = f"{v['date']:%Y-%m-%d %H:%M}" if v["date"] else "not run yet"
            lines.append(f"  {v['dataset_version']:<14}{when:<18}{v['n_cases']:>6}"
                         f"{v['added']:>8}{v['added_promoted']:>11}{v['removed']:>9}"
                         f"{v['changed']:>9}{v['n_runs']:>6}  "
                         f"{'yes' if v['stored'] else 'no (from its first run)'}")
        if d["growth"]:
            lines += ["", f"  {'month':<14}{'promoted':>9}{'hand-written':>14}"]
            lines += [f"  {g['month']:<14}{g['promoted']:>9}{g['hand_written']:>14}"
                      for g in d["growth"]]
        lines.append("")
    if "diff" in report:
        diff = report["diff"]
        lines.append(f"{diff['old']} -> {diff['new']}: {len(diff['cases'])} cases differ")
        lines += [f"  {c['change']:<8} {c['case_id']}"
                  + (f"  ({', '.join(c['fields'])})" if c["fields"] else "")
                  for c in diff["cases"]]
    if not report["datasets"]:
        lines.append("no golden sets (evallib demo, or record a run)")
    return "\n".join(lines).rstrip()
