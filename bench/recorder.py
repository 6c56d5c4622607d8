"""What `BufferedRecorder.record()` costs a request, in microseconds per trace.

    .venv/bin/python bench/recorder.py [--n 200000]

Measures the request path (the only part a service waits for): the sampling decision for a
trace that is not kept, and decision + enqueue for one that is; then the background cost per
trace (redaction, validation, Parquet write), which runs in the recorder's thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evallib.online import BufferedRecorder, Sampler

QUESTION = "Hi, I'm jane.doe@example.com, why was my card charged twice this month?"
ANSWER = "I'm sorry about that. A duplicate charge is refunded within 5 days [kb-17]."


class _Noop:
    """Same call, no work: what building the arguments costs the caller anyway."""

    def record(self, trace_id: str, **fields: object) -> bool:
        return False

    def flush(self, timeout: float) -> None:
        pass


def per_call_us(rec: BufferedRecorder | _Noop, ids: list[str], repeats: int = 5) -> float:
    """Median over repeats of the mean wall time of one record() call."""
    times = []
    for r in range(repeats):
        start = time.perf_counter_ns()
        for t in ids:
            rec.record(f"{t}-{r}", input=QUESTION, output=ANSWER, latency_ms=840.0,
                       strata={"segment": "smb"}, retrieved=["kb-17", "kb-3"])
        times.append((time.perf_counter_ns() - start) / len(ids) / 1000)
        rec.flush(timeout=600)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="record() calls per repeat")
    args = parser.parse_args()
    n = args.n
    ids = [f"trace-{i:09d}" for i in range(n)]
    idle = {"max_queue": 5 * n + 1, "max_batch": 10 * n, "flush_interval": 3600}
    baseline = per_call_us(_Noop(), ids)
    with tempfile.TemporaryDirectory() as root:
        with BufferedRecorder(root, sampler=Sampler(0.0), **idle) as rec:
            skipped = per_call_us(rec, ids)
        with BufferedRecorder(root, sampler=Sampler(1.0), **idle) as rec:
            kept = per_call_us(rec, ids)  # the writer idle while timing: the call alone
        busy = {**idle, "max_batch": 1000}
        with BufferedRecorder(root, sampler=Sampler(1.0), **busy) as rec:
            contended = per_call_us(rec, ids)  # the writer working in the same process
        rec = BufferedRecorder(root, **idle)
        for t in ids:
            rec.record(f"{t}-bg", input=QUESTION, output=ANSWER, latency_ms=840.0,
                       strata={"segment": "smb"}, retrieved=["kb-17", "kb-3"])
        start = time.perf_counter()
        rec.close(timeout=600)
        background = (time.perf_counter() - start) / n * 1e6
    print(f"a no-op with the same arguments:    {baseline:6.2f} µs (the caller's own cost)")
    print(f"record(), trace not sampled:        {skipped:6.2f} µs (blake2b decision)")
    print(f"record(), trace sampled:            {kept:6.2f} µs (decision + enqueue)")
    print(f"record(), sampled, writer busy:     {contended:6.2f} µs (sharing the GIL with "
          "the writer thread)")
    print(f"background, per trace:              {background:6.2f} µs (redact, validate, "
          "write Parquet; in the recorder's thread)")


if __name__ == "__main__":
    main()
