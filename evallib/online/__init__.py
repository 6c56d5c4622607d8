"""Production traffic: decide which traces to keep (`sampling`), redact them (`redaction`),
record them from a service without slowing it down (`recorder`), record user feedback
(`feedback`), and judge sampled traces later (`scoring`, `evallib score-online`)."""

from .feedback import feedback_rows, record_feedback
from .recorder import BufferedRecorder, RecorderStats, score_rows
from .redaction import DEFAULT_REDACTOR, Redactor, luhn_ok, redact
from .sampling import Sampler
from .scoring import metrics_of, resolve_scorers, score_online, strata_dict

__all__ = ["DEFAULT_REDACTOR", "BufferedRecorder", "RecorderStats", "Redactor", "Sampler",
           "feedback_rows", "luhn_ok", "metrics_of", "record_feedback", "redact",
           "resolve_scorers", "score_online", "score_rows", "strata_dict"]
