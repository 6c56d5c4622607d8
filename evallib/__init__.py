"""evallib: record LLM eval results into an open Parquet warehouse and read them with DuckDB."""

# evaluate is bound eagerly, not lazily: importing the submodule evallib.evaluate would
# otherwise shadow the function of the same name (cheap: the judge's openai stays lazy).
from .datasets import Case, Dataset, load_dataset
from .errors import DataError, EvallibError, RunExistsError
from .evaluate import EvalResult, TaskResult, evaluate
from .warehouse import Warehouse, connect, resolve_root

__all__ = ["BufferedRecorder", "Case", "DataError", "Dataset", "EvalResult", "EvallibError",
           "Redactor", "RunExistsError", "Sampler", "TaskResult", "Warehouse", "connect",
           "evaluate", "load_dataset", "record_feedback", "redact", "resolve_root"]

# Loaded on first use: the online machinery (recorder thread, rapidfuzz) only for services.
_LAZY = {"BufferedRecorder": "online", "Redactor": "online", "Sampler": "online",
         "record_feedback": "online", "redact": "online"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
