"""Tell the team where it works: alerts and release-gate verdicts posted to webhooks.

`notify_alerts` (what ``evallib alerts --notify`` calls) sends each open alert once per
target, and its resolution to the targets that were told it opened; `notify_gate`
(``evallib gate --notify``) sends a failed verdict, or a pass that holds only by waivers.
Every delivery is recorded in the warehouse's ``notifications`` table, and a notice a
target already received in the same state is not sent again: a cron job or a retried CI
step can run as often as it likes. A failed delivery is recorded too and retried on the
next run; it never changes the command's exit code and never touches the alert.

Targets and settings: `evallib.notify.config`; messages and wire formats:
`evallib.notify.messages`; HTTP, retries and secret hygiene: `evallib.notify.send`.
Progress and failures are logged on the ``evallib.notify`` logger, never with a URL.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from .. import queries
from ..analysis.monitor import Alert
from .config import Settings, Target, load_settings, resolve_targets
from .messages import Notice, alert_notice, gate_notice, json_body, slack_body
from .send import Delivery, post

__all__ = ["Delivery", "Notice", "Outcome", "Settings", "Target", "alert_notices", "deliver",
           "load_settings", "notify_alerts", "notify_gate", "resolve_targets"]

log = logging.getLogger("evallib.notify")


@dataclass(frozen=True)
class Outcome:
    """One notice at one target: sent, failed, or skipped (already sent in this state, or
    a resolution the target was never told the start of)."""

    notice: Notice
    target: Target
    status: str  # sent | failed | skipped
    delivery: Delivery | None = None


def alert_notices(alerts: Sequence[Alert], recorded: Sequence[Alert], dashboard: str | None,
                  first_traffic: Any = None) -> list[Notice]:
    """A notice per alert in its current state: ``alerts`` as just detected, then the
    recorded ones (latest state) they no longer include. Open first, newest first."""
    current = {a.alert_id: a for a in alerts}
    for a in recorded:
        current.setdefault(a.alert_id, a)
    ordered = sorted(current.values(), key=lambda a: (a.status != "open",
                                                      -a.last_day.toordinal(), a.signal))
    return [alert_notice(a, dashboard, first_traffic) for a in ordered]


def deliver(root: Any, notices: Sequence[Notice], targets: Sequence[Target],
            settings: Settings, sent: set[tuple[str, str, str]],
            post_fn: Callable[[Target, dict[str, Any], Settings], Delivery] = post
            ) -> list[Outcome]:
    """Send each notice to each target that has not had it in this state (``sent``: the
    (subject, state, target) already delivered), then record every attempt in the
    warehouse at ``root``. A recording failure is logged: the sends stand."""
    outcomes, rows = [], []
    for notice in notices:
        for target in targets:
            if (notice.subject, notice.state, target.name) in sent or (
                    notice.requires is not None
                    and (notice.subject, notice.requires, target.name) not in sent):
                outcomes.append(Outcome(notice, target, "skipped"))
                continue
            body = slack_body(notice) if target.format == "slack" else json_body(notice)
            d = post_fn(target, body, settings)
            outcomes.append(Outcome(notice, target, "sent" if d.sent else "failed", d))
            if d.sent:
                log.info("sent to %s: %s", target.name, notice.title)
            else:
                log.warning("not sent to %s: %s: %s; recorded as failed, retried on the next "
                            "run", target.name, notice.title, d.reason)
            rows.append(_row(notice, target, d))
    if rows:
        try:
            from ..warehouse import Warehouse

            Warehouse(root).record_notifications(rows)
        except Exception as e:  # the messages went out; say it was not kept
            log.error("the %d deliveries were not recorded in the warehouse (%s: %s): the "
                      "next run may send them again", len(rows), type(e).__name__, e)
    return outcomes


def _row(notice: Notice, target: Target, d: Delivery) -> dict[str, Any]:
    return {"notification_id": uuid.uuid4().hex, "kind": notice.kind,
            "subject": notice.subject, "state": notice.state, "target": target.name,
            "format": target.format, "status": "sent" if d.sent else "failed",
            "attempts": d.attempts, "http_status": d.http_status, "reason": d.reason,
            "title": notice.title, "text": notice.text, "link": notice.link,
            "sent_at": datetime.now(UTC)}


def _log_state(root: Any) -> tuple[set[tuple[str, str, str]], list[Alert], Any]:
    """What was already sent, the recorded alerts (latest state) and the first day with
    traffic, in one connection."""
    from ..warehouse.db import connect

    with connect(root) as con:
        sent = {tuple(r) for r in queries.notifications_sent(con).iter_rows()}
        names = [f.name for f in fields(Alert)]
        recorded = [Alert(**{k: r[k] for k in names})
                    for r in queries.alerts(con).iter_rows(named=True)]
        first = queries.online_date_range(con)["first_day"][0]
    return sent, recorded, first


def notify_alerts(root: str | os.PathLike[str] | None, alerts: Sequence[Alert],
                  targets: Sequence[Target], settings: Settings | None = None
                  ) -> list[Outcome]:
    """What ``evallib alerts --notify`` does after detecting (and recording) ``alerts``."""
    settings = settings or load_settings()
    sent, recorded, first = _log_state(root)
    notices = alert_notices(alerts, recorded, settings.dashboard_url, first)
    return deliver(root, notices, targets, settings, sent)


def notify_gate(root: str | os.PathLike[str] | None, result: Any,
                targets: Sequence[Target], settings: Settings | None = None
                ) -> list[Outcome]:
    """What ``evallib gate --notify`` does with a `evallib.analysis.gate.GateResult`:
    nothing for a clean pass."""
    settings = settings or load_settings()
    notice = gate_notice(result, settings.dashboard_url)
    if notice is None:
        return []
    sent, _, _ = _log_state(root)
    return deliver(root, [notice], targets, settings, sent)
