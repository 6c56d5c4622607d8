"""A webhook receiver on 127.0.0.1 for the notification tests: it records every POST (path,
headers, JSON body) and answers from a script of statuses, then 200 "ok" as Slack does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """The running receiver. ``script``: (status, headers, body) answered in turn."""

    port: int
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    echo_path: bool = False  # error bodies repeat the request path (a leaky server)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]


@contextmanager
def webhook() -> Iterator[Webhook]:
    state = Webhook(0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.requests.append(Received(self.path, dict(self.headers),
                                               json.loads(raw)))
                status, headers, text = (state.script.pop(0) if state.script
                                         else (200, {}, "ok"))
            if state.echo_path and status >= 400:
                text = f"{text} for {self.path}"
            data = text.encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
