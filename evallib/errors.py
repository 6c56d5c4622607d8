"""Errors a user can act on. The CLI prints them on stderr and exits 2, with no traceback."""

from __future__ import annotations


class EvallibError(Exception):
    """Bad usage or bad data: the message says what to fix."""


class DataError(EvallibError):
    """A row refused on write, named by where it came from, its row and its field."""

    def __init__(self, message: str, *, source: str = "", row: int | None = None,
                 field: str | None = None, first_row: int | None = None) -> None:
        self.source, self.row, self.field, self.reason = source, row, field, message
        self.first_row = first_row  # for duplicates: where the value was seen first
        if first_row is not None:
            message = f"{message} (first at row {first_row})"
        where = ", ".join(
            p for p in (source, f"row {row}" if row is not None else "",
                        f"field '{field}'" if field else "") if p
        )
        super().__init__(f"{where}: {message}" if where else message)


class RunExistsError(EvallibError):
    """Recording a run_id that is already in the warehouse, without replace=True."""
