"""evallib: record LLM eval results into an open Parquet warehouse and read them with DuckDB."""

# evaluate is the function (bound eagerly; its module is evallib.authoring.evaluation, so
# nothing shadows it). Cheap: the judge's openai stays lazy.
from .authoring.datasets import Case, Dataset, load_dataset
from .authoring.evaluation import EvalResult, TaskResult, evaluate
from .errors import DataError, EvallibError, RunExistsError
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
