"""evallib: record LLM eval results into an open Parquet warehouse and read them with DuckDB."""

from .db import connect
from .errors import DataError, EvallibError, RunExistsError
from .store import resolve_root
from .warehouse import Warehouse

__all__ = ["DataError", "EvallibError", "RunExistsError", "Warehouse", "connect", "resolve_root"]
