"""One HTTP POST per notice and target, retried with backoff on 429, 5xx and network
errors, then given up with a reason. The reason never holds the URL (a secret): every
text that could echo it (an exception, a response body) is scrubbed first.

urllib, not a client library: one POST of a small JSON body is all this needs, and
redirects are refused rather than followed (a redirected POST would carry the message to
another host, or silently become a GET).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from .config import Settings, Target

__all__ = ["Delivery", "post"]

USER_AGENT = "evallib-notify/1"
RETRIED = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Delivery:
    """How one POST ended: sent (2xx) or failed, after how many attempts, and why."""

    sent: bool
    attempts: int
    http_status: int | None
    reason: str | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx response is then raised as an HTTPError, and not retried


_OPENER = urllib.request.build_opener(_NoRedirect)


def scrub(text: str, url: str) -> str:
    """``text`` without the URL or any of its secret-bearing parts (path, query, user
    info, and each path segment of 8 characters or more), also URL-decoded."""
    parts = urlsplit(url)
    secrets = {url, parts.path, parts.query, parts.netloc.rpartition("@")[0],
               *(s for s in parts.path.split("/") if len(s) >= 8)}
    secrets |= {unquote(s) for s in secrets}
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[webhook]")
    return text


def _wait(attempt: int, settings: Settings, retry_after: str | None) -> float:
    """Seconds before the next attempt: Retry-After when the server gives one, else
    backoff · 2^(attempt-1) with up to 25% jitter; never over max_backoff_seconds."""
    if retry_after:
        try:
            seconds = float(retry_after)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = settings.backoff_seconds
        return min(max(seconds, 0.0), settings.max_backoff_seconds)
    base = settings.backoff_seconds * 2 ** (attempt - 1)
    return min(base * (1 + random.random() / 4), settings.max_backoff_seconds)


def post(target: Target, body: dict[str, Any], settings: Settings,
         sleep: Callable[[float], None] | None = None) -> Delivery:
    """POST ``body`` as JSON to the target, up to ``settings.attempts`` times (``sleep``
    between them: `time.sleep` unless given)."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    status: int | None = None
    reason = "not attempted"
    for attempt in range(1, settings.attempts + 1):
        request = urllib.request.Request(
            target.url, data=data, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        retry_after = None
        try:
            with _OPENER.open(request, timeout=settings.timeout_seconds) as response:
                return Delivery(True, attempt, response.status, None)
        except urllib.error.HTTPError as e:
            status, retry_after = e.code, e.headers.get("Retry-After")
            detail = _body(e)
            reason = f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
            if e.code not in RETRIED:
                return Delivery(False, attempt, status, scrub(reason, target.url))
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            status = None
            cause = getattr(e, "reason", e)
            reason = f"no response: {type(cause).__name__}: {cause}"
        except Exception as e:  # a notice must never take the command down
            return Delivery(False, attempt, status,
                            scrub(f"{type(e).__name__}: {e}", target.url))
        if attempt < settings.attempts:
            (sleep or time.sleep)(_wait(attempt, settings, retry_after))
    return Delivery(False, settings.attempts, status,
                    scrub(f"{reason} (gave up after {settings.attempts} attempts)",
                          target.url))


def _body(error: urllib.error.HTTPError) -> str:
    """The first 200 characters of an error response (Slack says why: no_service …)."""
    try:
        return error.read(200).decode("utf-8", "replace").strip().replace("\n", " ")
    except Exception:
        return ""
