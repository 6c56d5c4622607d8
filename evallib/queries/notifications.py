"""What was notified: `evallib alerts --notify` and `evallib gate --notify` read it so a
notice already sent to a target in the same state is not sent again."""

from __future__ import annotations

import polars as pl

from ._sql import Connection, _frame

__all__ = ["notifications_sent"]


def notifications_sent(con: Connection) -> pl.DataFrame:
    """Every (subject, state, target) delivered at least once (status sent)."""
    return _frame(con, """
        SELECT DISTINCT subject, state, target FROM notifications WHERE status = 'sent'
        ORDER BY subject, state, target""")
