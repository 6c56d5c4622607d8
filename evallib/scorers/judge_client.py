"""The judge's transport: one model on any OpenAI-compatible server, with a concurrency
limit, retries (exponential backoff with jitter) and cost accounting.

The openai client's own retries are turned off (``max_retries=0``) so that the backoff, the
give-up point and the error text of an unscored sample are ours and tested.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from typing import Any

import openai

from ..errors import EvallibError

__all__ = ["Judge", "JudgeReply"]


@dataclass(frozen=True)
class JudgeReply:
    """The content of a judge's reply, or why there is none; its cost either way."""

    content: str | None
    cost_usd: float
    error: str | None
    attempts: int


class Judge:
    """One judge model on an OpenAI-compatible server, shared by the scorers that use it.

    Retries 429, 5xx, timeouts and dropped connections up to ``max_retries`` times, waiting
    ``backoff · 2^(attempt-1)`` seconds (with jitter: half fixed, half random; longer if the
    server's Retry-After says so; never more than ``backoff_max``) outside the concurrency
    slot; then the sample is unscored. Other errors (400, 401, 404 …) are not retried:
    asking again would not help. The concurrency slots are shared by every scorer using
    this judge.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 client: openai.AsyncOpenAI | None = None, max_concurrency: int = 4,
                 max_retries: int = 3, timeout: float = 60.0, backoff: float = 1.0,
                 backoff_max: float = 30.0, price_per_1m_input: float = 0.0,
                 price_per_1m_output: float = 0.0, temperature: float | None = 0.0,
                 seed: int | None = None, structured_output: bool = True) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise EvallibError("Judge: need max_concurrency ≥ 1, max_retries ≥ 0, timeout > 0 "
                               "and backoff ≥ 0")
        if client is None and not (api_key or os.environ.get("OPENAI_API_KEY")):
            raise EvallibError("Judge: no API key; pass api_key= or set OPENAI_API_KEY "
                               "(any string will do for a local server)")
        self.model, self.base_url, self._api_key = model, base_url, api_key
        self.max_concurrency, self.max_retries, self.timeout = max_concurrency, max_retries, timeout
        self.backoff, self.backoff_max = backoff, backoff_max
        self.price_per_1m_input, self.price_per_1m_output = price_per_1m_input, price_per_1m_output
        self.temperature, self.seed, self.structured_output = temperature, seed, structured_output
        self._given_client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = client
        self._slots: asyncio.Semaphore | None = None

    def _runtime(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        """The client and semaphore for the running event loop (both are bound to one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._client is None or self._slots is None:
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_concurrency)
            self._client = self._given_client or openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, max_retries=0,
                timeout=self.timeout)
        return self._client, self._slots

    def _delay(self, attempt: int) -> float:
        cap = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)

    def cost(self, usage: Any) -> float:
        """USD for one reply's ``usage`` at the configured per-million-token prices."""
        if usage is None:
            return 0.0
        return ((usage.prompt_tokens or 0) * self.price_per_1m_input
                + (usage.completion_tokens or 0) * self.price_per_1m_output) / 1e6

    async def complete(self, messages: list[dict[str, str]], schema_name: str,
                       schema: dict[str, Any]) -> JudgeReply:
        """One verdict request, retried on transient failures; never raises for them."""
        client, slots = self._runtime()
        extra: dict[str, Any] = {}
        if self.structured_output:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name, "strict": True, "schema": schema}}
        if self.temperature is not None:
            extra["temperature"] = self.temperature
        if self.seed is not None:
            extra["seed"] = self.seed
        failure, hint = "", 0.0
        for attempt in range(1, self.max_retries + 2):
            if attempt > 1:
                await asyncio.sleep(min(self.backoff_max, max(hint, self._delay(attempt - 1))))
            try:
                async with slots:
                    reply = await client.chat.completions.create(
                        model=self.model, messages=messages, timeout=self.timeout, **extra)
            except openai.APITimeoutError:
                failure = f"timed out after {self.timeout:g} s"
            except openai.APIConnectionError as exc:
                failure = f"connection failed ({exc})"
            except openai.APIStatusError as exc:
                failure = f"HTTP {exc.status_code} ({_short(exc.message)})"
                hint = _retry_after(exc.response.headers)
                if exc.status_code != 429 and exc.status_code < 500:
                    return JudgeReply(None, 0.0, f"judge request refused: {failure}", attempt)
            except openai.OpenAIError as exc:
                return JudgeReply(None, 0.0, f"judge request failed: {exc}", attempt)
            else:
                cost = self.cost(reply.usage)
                if not reply.choices:
                    return JudgeReply(None, cost, "judge reply has no choices", attempt)
                message = reply.choices[0].message
                if message.refusal:
                    return JudgeReply(None, cost, f"judge refused: {message.refusal}", attempt)
                return JudgeReply(message.content, cost, None, attempt)
        return JudgeReply(None, 0.0, f"judge unavailable: {failure}; gave up after "
                                     f"{self.max_retries + 1} attempts", self.max_retries + 1)

    async def aclose(self) -> None:
        """Close the client this judge made (not one passed in)."""
        if self._client is not None and self._given_client is None:
            await self._client.close()
            self._client = None


def _retry_after(headers: Any) -> float:
    """Seconds the server asks us to wait (Retry-After, in s or ms); 0 if it does not say."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers.get(name)) * scale)
        except (TypeError, ValueError):
            continue
    return 0.0


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
