"""Which traces to keep: by a hash of the trace id (blake2b, not Python's per-process
salted ``hash``), so every host and process keeps the same traces, and a trace kept at 5%
is also kept at 20%."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..errors import EvallibError

__all__ = ["Sampler"]


class Sampler:
    """``Sampler(rate=0.05, per_stratum={"segment": {"enterprise": 0.2}})``: keep a trace when
    the hash of its id falls under its rate. A trace matching several stratum rates gets the
    highest of them; ``salt`` draws a different (still shared) sample."""

    def __init__(self, rate: float = 0.05,
                 per_stratum: Mapping[str, Mapping[str, float]] | None = None,
                 salt: str = "") -> None:
        self.rate = _rate(rate, "rate")
        self.per_stratum = {str(k): {str(v): _rate(r, f"per_stratum[{k!r}][{v!r}]")
                                     for v, r in values.items()}
                            for k, values in (per_stratum or {}).items()}
        self.salt = salt.encode()

    def rate_for(self, strata: Mapping[str, Any] | None = None) -> float:
        rates = [self.rate]
        for key, values in self.per_stratum.items():
            value = (strata or {}).get(key)
            if value is not None and str(value) in values:
                rates.append(values[str(value)])
        return max(rates) if len(rates) > 1 else rates[0]

    def position(self, trace_id: str) -> float:
        """Where the trace id hashes in [0, 1): the same on every host and process."""
        digest = hashlib.blake2b(trace_id.encode(), digest_size=8, key=self.salt).digest()
        return int.from_bytes(digest, "big") / 2**64

    def __call__(self, trace_id: str, strata: Mapping[str, Any] | None = None) -> bool:
        rate = self.rate_for(strata) if self.per_stratum else self.rate  # the request path
        return self.position(trace_id) < rate

    should_sample = __call__


def _rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise EvallibError(f"sampling {what} must be a number between 0 and 1, got {value!r}")
    return float(value)
