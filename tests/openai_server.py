"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted replies, recorded
requests, measured concurrency.

    with OpenAIServer(Reply.json({"reason": "ok", "correct": True})) as server:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="test")
        ...
        assert server.count == 1 and server.requests[0]["model"] == "judge-1"

What to reply is decided per request: first from `queue(...)` (in order), then by the
``responder`` (a fixed `Reply`, or a function of the request body returning one). A reply can
be content, an HTTP error (429, 500 …), or slow (``delay`` beyond the client's timeout).
`pause()` holds every request unanswered until `resume()`, so a concurrency test can count
how many requests a client lets through at once.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["OpenAIServer", "Reply", "openai_server"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer to a chat completion request."""

    content: str | None = "{}"
    status: int = 200
    delay: float = 0.0  # seconds before answering
    usage: tuple[int, int] = (100, 20)  # prompt, completion tokens
    error: str = "scripted error"
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers (e.g. retry-after)

    @classmethod
    def json(cls, value: Any, **options: Any) -> Reply:
        return cls(content=json.dumps(value), **options)

    @classmethod
    def fail(cls, status: int, error: str = "scripted error", **headers: str) -> Reply:
        """An HTTP error; keyword headers use _ for - (``retry_after_ms="5"``)."""
        return cls(content=None, status=status, error=error,
                   headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()))

    @classmethod
    def slow(cls, seconds: float, content: str = "{}") -> Reply:
        return cls(content=content, delay=seconds)


Responder = Callable[[dict[str, Any]], Reply]


class OpenAIServer:
    """`POST /v1/chat/completions` on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, responder: Reply | Responder = Reply()) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []  # request bodies, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._paused = False
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def url(self) -> str:
        """The base_url for the openai client."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def queue(self, *replies: Reply) -> None:
        """Replies for the next requests, in order, before the responder is asked."""
        with self._lock:
            self._queue.extend(replies)

    def pause(self) -> None:
        """Hold every request (recorded, counted in flight, unanswered) until `resume`."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until n requests have arrived; False if they did not within ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= n, timeout)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # --- called by the handler threads ----------------------------------------------------

    def _arrive(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._lock.notify_all()
            reply = self._queue.popleft() if self._queue else None
            self._lock.wait_for(lambda: not self._paused or self._stopping.is_set())
        if reply is None:
            reply = self.responder if isinstance(self.responder, Reply) else self.responder(body)
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply

    def _leave(self) -> None:
        # Called before the answer is written: once a client has its answer, the request no
        # longer counts as in flight, so a client reusing its slot is never double counted.
        with self._lock:
            self.in_flight -= 1

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage
        return {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "judge"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": reply.content,
                                     "refusal": None}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }


def _handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            try:
                reply = server._arrive(body)
            finally:
                server._leave()
            if reply.status != 200:
                self._send(reply.status, {"error": {"message": reply.error, "type": "scripted",
                                                    "code": str(reply.status)}}, reply.headers)
            else:
                self._send(200, server._completion(body, reply))

        def _send(self, status: int, payload: dict[str, Any],
                  headers: tuple[tuple[str, str], ...] = ()) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A fresh server per test; set ``.responder`` or ``.queue(...)`` to script it."""
    with OpenAIServer() as server:
        yield server
