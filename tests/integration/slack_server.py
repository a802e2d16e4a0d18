"""A real HTTP server on 127.0.0.1 standing in for Slack: incoming webhooks and the Web API methods
(chat.postMessage, chat.update, chat.postEphemeral, views.open, usergroups.users.list). Tests script its
answers (status, Retry-After, delay, or a fixed answer per method) and read what it received."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Scripted:
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeSlack:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()
        self.answers: dict[str, dict[str, Any]] = {}  # fixed answers by path (usergroups.users.list...)
        self._ts = 1700000000.000100
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    payload = json.loads(raw) if raw else {}
                else:
                    payload = {k: v[0] for k, v in parse_qs(raw).items()}
                with fake._lock:
                    fake.requests.append(
                        {"path": self.path, "payload": payload, "auth": self.headers.get("Authorization")}
                    )
                    answer = fake.script.popleft() if fake.script else Scripted()
                    fake._ts += 1
                    ts = f"{fake._ts:.6f}"
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body
                if body is None and self.path in fake.answers:
                    body = json.dumps(fake.answers[self.path])
                if body is None:
                    if self.path.startswith("/api/"):
                        body = json.dumps(
                            {
                                "ok": True,
                                "channel": payload.get("channel", "C0123"),
                                "ts": payload.get("ts") or ts,
                            }
                        )
                    else:
                        body = "ok"
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header(
                        "Content-Type", "application/json" if body.startswith("{") else "text/plain"
                    )
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]
