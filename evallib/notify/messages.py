"""What a notice says, and its two wire formats.

A `Notice` is one thing worth telling the team: an alert that opened or closed, a release
gate that failed or passed only with waivers. It says what moved, by how much, since when,
with what evidence (p, n), and links to the dashboard view that shows it (the dashboard's
URL plus that page's URL state). `slack_body` renders it for a Slack incoming webhook
(Block Kit, with a plain ``text`` fallback); `json_body` is the documented generic body:

    {"schema": "evallib.notification/1",
     "id": "<16 hex: the same for every delivery of this notice in this state>",
     "event": "alert.open" | "alert.closed" | "gate.fail" | "gate.waived",
     "subject": "alert:<alert_id>" | "gate:<run_id>:<baseline_id>:<policy_hash>",
     "state": "open" | "closed" | "fail:<digest>" | "waived:<digest>",
     "title": str, "text": str (plain text, lines separated by \\n), "link": str | null,
     "created_at": ISO 8601,
     "alert": {alert_id, signal, label, direction, status, first_day, last_day, days,
               observed, baseline, change, change_unit, p_value, alpha, n, release,
               message} | null,
     "gate": {gate_id, verdict, candidate: {run_id, name}, baseline: {run_id, name,
              started_at, how}, policy_hash, rows: [{status, rule, metric, check, slice,
              observed, threshold, baseline, candidate, n, p_value, p_adjusted, message,
              owner}]} | null}
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ..analysis.monitor import SIGNALS, Alert, format_value
from ..vocabulary import slice_label

__all__ = ["SCHEMA", "Notice", "alert_notice", "gate_notice", "json_body", "slack_body"]

SCHEMA = "evallib.notification/1"
MAX_GATE_ROWS = 8  # rows named in a message; the link and the JSON body carry all
BASELINE_DAYS = 14  # the detector's trailing window (evallib.analysis.monitor.Settings)


@dataclass(frozen=True)
class Notice:
    """One message, before it is rendered for a target."""

    kind: str  # alert | gate
    subject: str
    state: str
    title: str
    lines: tuple[str, ...]
    link: str | None
    data: dict[str, Any] = field(repr=False)
    requires: str | None = None  # a state of the same subject a target must have had first

    @property
    def event(self) -> str:
        return f"{self.kind}.{self.state.split(':')[0]}"

    @property
    def id(self) -> str:
        """The same for every delivery of this notice in this state (receivers dedupe)."""
        return hashlib.sha256(f"{self.subject}\n{self.state}".encode()).hexdigest()[:16]

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, *([f"Dashboard: {self.link}"] if self.link else [])])


def _link(base: str | None, page: str, params: list[tuple[str, str]]) -> str | None:
    return f"{base}/{page}?{urlencode(params)}" if base else None


# --- alerts --------------------------------------------------------------------------------


def _label(signal: str) -> str:
    return SIGNALS[signal][0] if signal in SIGNALS else f"{signal.removeprefix('quality:')} " \
        "(online score)"


def _change(signal: str, observed: float, baseline: float) -> tuple[float, str, str]:
    """How much it moved: relative for latency and cost, points for rates, else absolute."""
    if signal in ("latency", "cost"):
        c = observed / baseline - 1 if baseline else math.nan
        return c, "relative", f"{c:+.0%}"
    if signal.endswith("_rate"):
        c = observed - baseline
        return c, "points", f"{c * 100:+.1f} points"
    c = observed - baseline
    return c, "absolute", f"{c:+.3f}"


def alert_notice(alert: Alert, dashboard: str | None, first_traffic: date | None = None
                 ) -> Notice:
    """An alert that is open ("open") or has closed ("closed": sent only to targets that
    were told it opened). Links to the Online page over the alert's days and the baseline
    before them."""
    label, days = _label(alert.signal), (alert.last_day - alert.first_day).days + 1
    change, unit, change_text = _change(alert.signal, alert.observed, alert.baseline)
    verb = "rose" if alert.direction == "up" else "dropped"
    what = (f"{label} {verb}: {format_value(alert.signal, alert.observed)} on {alert.last_day} "
            f"against {format_value(alert.signal, alert.baseline)} over the {BASELINE_DAYS} days "
            f"before ({change_text})")
    evidence = (f"Evidence: one-sided p = {alert.p_value:.2g} (flagged below α = "
                f"{alert.alpha:g} per day and signal), n = {alert.n:,} on {alert.last_day}")
    since = f"Since {alert.first_day} ({days} day{'s' if days > 1 else ''} flagged)"
    lines = [what, since + (f"; release {alert.release} began serving that day"
                            if alert.release else ""), evidence]
    if alert.status == "open":
        title = f"Alert: {label} {verb} since {alert.first_day}"
    else:
        title = f"Resolved: {label} (alert since {alert.first_day})"
        lines.insert(0, f"No longer flagged: last flagged on {alert.last_day}.")
    start = alert.first_day - timedelta(days=BASELINE_DAYS)
    if first_traffic is not None:
        start = max(start, first_traffic)
    params = [("days", str(start)), ("days", str(alert.last_day))]
    if alert.signal.startswith("quality:"):
        params.append(("metric", alert.signal.removeprefix("quality:")))
    data = {"alert_id": alert.alert_id, "signal": alert.signal, "label": label,
            "direction": alert.direction, "status": alert.status,
            "first_day": str(alert.first_day), "last_day": str(alert.last_day), "days": days,
            "observed": _finite(alert.observed), "baseline": _finite(alert.baseline),
            "change": _finite(change), "change_unit": unit,
            "p_value": _finite(alert.p_value), "alpha": alert.alpha, "n": alert.n,
            "release": alert.release, "message": alert.message}
    return Notice("alert", f"alert:{alert.alert_id}", alert.status, title, tuple(lines),
                  _link(dashboard, "online", params), data,
                  requires="open" if alert.status == "closed" else None)


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


# --- release gate ----------------------------------------------------------------------------


def gate_notice(result: Any, dashboard: str | None) -> Notice | None:
    """A gate that failed ("fail:…") or passed only because failures were waived
    ("waived:…"); None for a clean pass. The digest after the colon changes when other
    rows fail or are waived, so a changed verdict is told again. ``result``: a
    `evallib.analysis.gate.GateResult`."""
    bad = [o for o in result.outcomes if o.status in ("fail", "waived")]
    if not bad:
        return None
    verdict = "fail" if any(o.status == "fail" for o in bad) else "waived"
    digest = hashlib.sha256(json.dumps(sorted(
        [o.status, o.rule.name, slice_label(o.slice)] for o in bad)).encode()).hexdigest()[:8]
    cand, base = result.candidate, result.baseline
    failed = sum(o.status == "fail" for o in bad)
    title = (f"Release gate failed: {cand.name} ({failed} rule row{'s' if failed > 1 else ''})"
             if verdict == "fail" else
             f"Release gate passed with {len(bad)} waived row{'s' if len(bad) > 1 else ''}: "
             f"{cand.name}")
    how = "the latest approved run" if result.baseline_how == "approved" else "given"
    lines = [f"{cand.name} ({cand.run_id}) against {base.name} ({base.run_id}, "
             f"{base.started_at:%Y-%m-%d}, {how}); policy {result.policy.sha}."]
    ordered = sorted(bad, key=lambda o: (o.status != "fail", o.p_adjusted
                                         if not math.isnan(o.p_adjusted) else 1.0))
    for o in ordered[:MAX_GATE_ROWS]:
        where = slice_label(o.slice)
        owner = f" (accepted by {o.owner})" if o.status == "waived" and o.owner else ""
        lines.append(f"{o.status.upper()} {o.rule.name}: {o.rule.metric}, {where}: "
                     f"{o.message}; n = {o.n:,}{owner}")
    if len(ordered) > MAX_GATE_ROWS:
        lines.append(f"… and {len(ordered) - MAX_GATE_ROWS} more rows.")
    params = [("dataset", cand.dataset), ("candidate", cand.run_id),
              ("baseline", base.run_id)]
    sliced = next((o for o in ordered if o.slice), None)
    if sliced is not None:
        params += [("by", k) for k in sliced.slice]
    data = {"gate_id": result.gate_id, "verdict": verdict,
            "candidate": {"run_id": cand.run_id, "name": cand.name},
            "baseline": {"run_id": base.run_id, "name": base.name,
                         "started_at": base.started_at.isoformat(),
                         "how": result.baseline_how},
            "policy_hash": result.policy.sha,
            "rows": [{"status": o.status, "rule": o.rule.name, "metric": o.rule.metric,
                      "check": o.rule.check, "slice": o.slice,
                      "observed": _finite(o.observed), "threshold": o.rule.threshold,
                      "baseline": _finite(o.baseline), "candidate": _finite(o.candidate),
                      "n": o.n, "p_value": _finite(o.p_value),
                      "p_adjusted": _finite(o.p_adjusted), "message": o.message,
                      "owner": o.owner} for o in ordered]}
    return Notice("gate", f"gate:{cand.run_id}:{base.run_id}:{result.policy.sha}",
                  f"{verdict}:{digest}", title, tuple(lines),
                  _link(dashboard, "compare", params), data)


# --- wire formats ----------------------------------------------------------------------------


def json_body(notice: Notice, now: datetime | None = None) -> dict[str, Any]:
    """The generic webhook body (schema in the module docstring)."""
    return {"schema": SCHEMA, "id": notice.id, "event": notice.event,
            "subject": notice.subject, "state": notice.state, "title": notice.title,
            "text": notice.text, "link": notice.link,
            "created_at": (now or datetime.now(UTC)).isoformat(),
            "alert": notice.data if notice.kind == "alert" else None,
            "gate": notice.data if notice.kind == "gate" else None}


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message: a header, the lines, a link to the dashboard;
    ``text`` is the notification's fallback."""
    body = "\n".join(_mrkdwn(line) for line in notice.lines)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
    ]
    if notice.link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn",
             "text": f"<{_mrkdwn(notice.link)}|Open in the dashboard> · evallib"}]})
    return {"text": f"{notice.title}: {notice.lines[0]}"[:3000], "blocks": blocks}
