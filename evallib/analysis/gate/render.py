"""What a gate run says: a terminal table, Markdown for the pull request, JUnit XML for CI.

All three lead with the verdict (pass, fail, or inconclusive), carry compare's warnings,
and name the slices and cases behind a failure; none recomputes anything
(`evallib.analysis.gate.verdict` decides). An icon never stands alone: the status word goes
next to it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from ...vocabulary import slice_label
from .policy import Rule
from .verdict import GateResult, Outcome, fmt, rule_status

__all__ = ["junit", "markdown", "terminal"]

ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "waived": "⚠️", "skipped": "⏭️"}
FEW_CASES = 5
WORST_SLICES = 5
_ORDER = {"fail": 0, "inconclusive": 1, "waived": 2, "pass": 3, "skipped": 4}


def _badge(status: str) -> str:
    """``❌ fail``: the icon with its word (a bare glyph may render as an empty box)."""
    return f"{ICONS[status]} {status}"


def _badness(o: Outcome) -> tuple:
    """Sort key, worst first: failures, then the value furthest past the threshold."""
    lower_is_worse = o.rule.check in ("min_pass_rate", "judge_calibrated")
    value = -math.inf if math.isnan(o.observed) else o.observed
    return (_ORDER[o.status], value if lower_is_worse else -value)


def _worst(outcomes: list[Outcome]) -> Outcome | None:
    return min(outcomes, key=_badness) if outcomes else None


def _observed(o: Outcome) -> str:
    if o.status == "skipped":
        return "-"
    if o.rule.check == "max_drop":
        interval = (f" [{o.low:.3f}, {o.high:.3f}]" if math.isfinite(o.low)
                    and math.isfinite(o.high) else "")
        return f"drop {o.observed:.3f}{interval}"
    if o.rule.check == "max_increase_pct":
        return f"{o.observed:+.1f}%"
    if o.rule.check == "min_pass_rate":
        return f"pass rate {fmt(o.observed)}"
    if o.rule.check == "judge_calibrated":
        return f"alpha low {fmt(o.observed)}"
    return f"{o.rule.stat} {fmt(o.observed)}"


def _threshold(rule: Rule) -> str:
    return {"min_pass_rate": "≥ {}", "max_drop": "≤ {}", "max_increase_pct": "≤ {}%",
            "max": "≤ {}", "judge_calibrated": "alpha ≥ {}"}[rule.check].format(
        f"{rule.threshold:g}" if rule.check == "max_increase_pct" else fmt(rule.threshold))


def _headline(result: GateResult) -> str:
    base = ("latest approved run of " + result.baseline.dataset if result.baseline_how
            == "approved" else "given")
    return (f"{result.candidate.name} ({result.candidate.run_id}) vs baseline "
            f"{result.baseline.name} ({result.baseline.run_id}, {base})")


def _rules_summary(result: GateResult) -> str:
    """``5 pass, 1 fail``: rules by status."""
    statuses = [rule_status(os) for _, os in result.by_rule()]
    return ", ".join(f"{statuses.count(s)} {s}" for s in _ORDER if statuses.count(s))


def _power(rule: Rule, outcomes: list[Outcome]) -> str | None:
    """For an inconclusive max_drop, how many cases would decide it; for a `by` rule, how
    many slices are inconclusive and the smallest one's line."""
    weak = [o for o in outcomes if o.power and o.inconclusive]
    if not weak:
        return None
    if not rule.by:
        return weak[0].power
    smallest = min(weak, key=lambda o: o.n)
    return (f"{len(weak)} of {len(outcomes)} slices are inconclusive, e.g. "
            f"{slice_label(smallest.slice)}: {smallest.power}")


def _notes(result: GateResult) -> list[str]:
    notes = [f"{rule.name}: {line}" for rule, os in result.by_rule()
             if (line := _power(rule, os))]
    inconclusive = [o for o in result.outcomes if o.inconclusive]
    if inconclusive:
        counted = {s: sum(o.status == s for o in inconclusive) for s in ("fail", "pass")}
        how = [f"{counted[s]} counted as {s} (on_inconclusive = \"{s}\")" for s in counted
               if counted[s]]
        warned = sum(o.status == "inconclusive" for o in inconclusive)
        if warned:
            how.append(f"{warned} reported only (on_inconclusive = \"warn\", exit 0)")
        notes.append(f"{len(inconclusive)} max_drop test(s) inconclusive: the drop's 95% "
                     "interval holds the threshold, so these cases can neither pass nor fail "
                     f"it; {', '.join(how)}")
    return [*result.notes, *notes]


# --- terminal -----------------------------------------------------------------------------


def terminal(result: GateResult) -> str:
    """The table `evallib gate` prints: one line per rule, then every failed, waived or
    inconclusive slice with its numbers and a few cases."""
    lines = [f"GATE {result.verdict.upper()}: {_headline(result)}",
             f"policy {result.policy.path} (sha {result.policy.sha}), "
             f"{len(result.policy.rules)} rules: {_rules_summary(result)}", ""]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.warnings:
        lines.append("")
    rows = []
    for rule, outcomes in result.by_rule():
        worst = _worst(outcomes)
        where = (f"{_slice_counts(outcomes)}; worst {slice_label(worst.slice)}"
                 if rule.by and worst else "")
        rows.append([rule_status(outcomes).upper(), rule.name,
                     _observed(worst) if worst else "-", _threshold(rule), where])
        for o in sorted(outcomes, key=_badness):
            if o.status in ("fail", "waived", "inconclusive") or o.inconclusive:
                rows.append(["", f"  {slice_label(o.slice)}", _observed(o), "",
                             o.message + _cases_text(o)])
    lines += _table(["status", "rule", "observed", "threshold", "detail"], rows)
    notes = _notes(result)
    if notes:
        lines += ["", *(f"note: {n}" for n in notes)]
    return "\n".join(lines)


def _slice_counts(outcomes: list[Outcome]) -> str:
    """``1 of 15 slices fail`` (``, 2 inconclusive, 1 waived``)."""
    extra = "".join(f", {n} {s}" for s in ("inconclusive", "waived")
                    if (n := sum(o.status == s for o in outcomes)))
    return (f"{sum(o.status == 'fail' for o in outcomes)} of {len(outcomes)} slices fail"
            + extra)


def _cases_text(o: Outcome) -> str:
    if not o.cases:
        return ""
    more = f" (+{len(o.cases) - FEW_CASES} more)" if len(o.cases) > FEW_CASES else ""
    return f"; cases {', '.join(o.cases[:FEW_CASES])}{more}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    widths[-1] = 0  # the last column is free text

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), *(line(r) for r in rows)]


# --- Markdown -----------------------------------------------------------------------------


def markdown(result: GateResult) -> str:
    """A pull-request comment: verdict first, each rule with its numbers, the worst slices,
    a few regressed cases, then warnings and notes."""
    icon = ICONS[result.verdict]
    out = [f"## {icon} Release gate: {result.verdict.upper()}", "",
           f"**{_md(result.candidate.name)}** (`{result.candidate.run_id}`) vs baseline "
           f"**{_md(result.baseline.name)}** (`{result.baseline.run_id}`"
           + (f", latest approved run of {_md(result.baseline.dataset)}"
              if result.baseline_how == "approved" else "")
           + f") · policy `{result.policy.path}` (`{result.policy.sha}`) · "
           f"{len(result.policy.rules)} rules: {_rules_summary(result)}", ""]
    if result.warnings:
        out += ["> [!WARNING]", "> The runs may not be comparable:",
                *(f"> - {_md(w)}" for w in result.warnings), ""]
    out += ["| | rule | check | observed | threshold | n | detail |",
            "|---|---|---|---|---|---|---|"]
    for rule, outcomes in result.by_rule():
        worst = _worst(outcomes)
        if worst is None:
            continue
        detail = worst.message
        if rule.by:
            detail = (f"{_slice_counts(outcomes)}; worst {slice_label(worst.slice)}: "
                      f"{worst.message}")
        out.append(f"| {_badge(rule_status(outcomes))} | {_md(rule.name)} | "
                   f"{_md(rule.describe())} | {_observed(worst)} | {_threshold(rule)} | "
                   f"{worst.n:,} | {_md(detail)} |")
    sliced = sorted((o for o in result.outcomes if o.rule.by and o.status != "skipped"),
                    key=_badness)[:WORST_SLICES]
    if sliced:
        out += ["", "### Worst slices", "",
                "| | slice | rule | baseline | candidate | observed | p (BH) | n |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {_badge(o.status)} | {_md(slice_label(o.slice))} | {_md(o.rule.name)} | "
                f"{fmt(o.baseline)} | {fmt(o.candidate)} | {_observed(o)} | "
                f"{fmt(o.p_adjusted)} | {o.n:,} |" for o in sliced]
    flagged = [o for o in sorted(result.outcomes, key=_badness)
               if o.status in ("fail", "waived", "inconclusive") and o.cases]
    if flagged:
        out += ["", "### Regressed and failing cases", ""]
        out += [f"- {_badge(o.status)} {_md(o.rule.name)} · {_md(slice_label(o.slice))}: "
                + ", ".join(f"`{c}`" for c in o.cases[:FEW_CASES])
                + (f" and {len(o.cases) - FEW_CASES} more" if len(o.cases) > FEW_CASES
                   else "") for o in flagged]
    notes = _notes(result)
    waived = [o for o in result.outcomes if o.status == "waived"]
    if notes or waived:
        out += ["", "### Notes", ""]
        out += [f"- waived by **{_md(o.owner or '')}**: {_md(o.rule.name)} · "
                f"{_md(slice_label(o.slice))}" for o in waived]
        out += [f"- {_md(n)}" for n in notes]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# --- JUnit XML ----------------------------------------------------------------------------


def junit(result: GateResult) -> str:
    """One test case per rule, per slice for `by` rules; failures as <failure>, waived,
    inconclusive (on_inconclusive = "warn") and skipped ones as <skipped> whose message
    starts with what they are (waived with the owner)."""
    counts = {s: sum(o.status == s for o in result.outcomes) for s in _ORDER}
    attrs = {"tests": str(len(result.outcomes)), "failures": str(counts["fail"]),
             "errors": "0", "skipped": str(counts["waived"] + counts["skipped"]
                                           + counts["inconclusive"])}
    root = ET.Element("testsuites", {"name": "evallib gate", **attrs})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"release gate: {result.candidate.name} vs {result.baseline.name}",
        **attrs, "timestamp": result.created_at.isoformat()})
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", result.verdict),
                        ("inconclusive", str(sum(o.inconclusive for o in result.outcomes))),
                        ("candidate", result.candidate.run_id),
                        ("baseline", result.baseline.run_id),
                        ("policy", result.policy.path), ("policy_sha", result.policy.sha),
                        ("gate_id", result.gate_id)):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", {
            "classname": o.rule.name,
            "name": slice_label(o.slice) if o.rule.by else o.rule.describe()})
        detail = o.message + _cases_text(o)
        if o.status == "fail":
            what = " (inconclusive, counted as fail)" if o.inconclusive else ""
            ET.SubElement(case, "failure", {"message": f"{_observed(o)}, threshold "
                                            f"{_threshold(o.rule)}{what}",
                                            "type": o.rule.check}).text = detail
        elif o.status == "inconclusive":
            ET.SubElement(case, "skipped", {"message": f"inconclusive: {detail}"})
        elif o.status == "waived":
            ET.SubElement(case, "skipped", {"message": f"waived by {o.owner}: {detail}"})
        elif o.status == "skipped":
            ET.SubElement(case, "skipped", {"message": f"not evaluated: {detail}"})
        else:
            ET.SubElement(case, "system-out").text = detail
    text = [*(f"warning: {w}" for w in result.warnings), *(f"note: {n}" for n in
                                                             _notes(result))]
    if text:
        ET.SubElement(suite, "system-out").text = "\n".join(text)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
