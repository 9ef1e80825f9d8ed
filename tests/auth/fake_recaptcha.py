"""A local stand-in for reCAPTCHA siteverify.

It behaves like the real endpoint where our code depends on it. Requests are form POSTs with `secret`,
`response` and `remoteip`. Responses are HTTP 200 with `success` and `error-codes`, plus `hostname` and
`challenge_ts` on success and `score` and `action` for v3 tokens. Every token is valid once and for two
minutes, after which it is `timeout-or-duplicate`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN_LIFETIME_SECONDS = 120


@dataclass
class IssuedToken:
    hostname: str
    issued_at: float
    score: float | None = None
    action: str | None = None
    used: bool = False


@dataclass
class FakeRecaptcha:
    secret: str
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    # Seconds added to the clock, to expire tokens without waiting.
    clock_offset: float = 0.0
    # When set, requests get this HTTP status and a non-JSON body, like a provider outage.
    failure_status: int | None = None
    # When set, requests wait for this event (at most 5 seconds) before the server responds.
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def issue_v2(self, hostname: str = "app.example.com") -> str:
        return self._issue(IssuedToken(hostname=hostname, issued_at=self.now()))

    def issue_v3(self, score: float = 0.9, action: str = "login", hostname: str = "app.example.com") -> str:
        return self._issue(IssuedToken(hostname=hostname, issued_at=self.now(), score=score, action=action))

    def _issue(self, token: IssuedToken) -> str:
        value = "03A" + secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[value] = token
        return value

    def answer(self, form: dict[str, str]) -> dict[str, object]:
        with self.lock:
            self.requests.append(form)
            secret = form.get("secret")
            response = form.get("response")
            if not secret:
                return {"success": False, "error-codes": ["missing-input-secret"]}
            if secret != self.secret:
                return {"success": False, "error-codes": ["invalid-input-secret"]}
            if not response:
                return {"success": False, "error-codes": ["missing-input-response"]}

            token = self.tokens.get(response)
            if token is None:
                return {"success": False, "error-codes": ["invalid-input-response"]}
            if token.used or self.now() - token.issued_at > TOKEN_LIFETIME_SECONDS:
                return {"success": False, "error-codes": ["timeout-or-duplicate"]}
            token.used = True

        challenge_ts = datetime.fromtimestamp(token.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: dict[str, object] = {"success": True, "challenge_ts": challenge_ts, "hostname": token.hostname}
        if token.score is not None:
            body["score"] = token.score
            body["action"] = token.action
        return body


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRecaptcha

    def do_POST(self) -> None:
        if self.fake.hold is not None:
            self.fake.hold.wait(timeout=5)

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if self.fake.failure_status is not None:
            self._send(self.fake.failure_status, b"<html>upstream error</html>", "text/html")
            return

        if self.path != "/recaptcha/api/siteverify":
            self._send(404, b"not found", "text/plain")
            return

        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        self._send(200, json.dumps(self.fake.answer(form)).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FakeRecaptchaServer:
    """Serves a `FakeRecaptcha` on 127.0.0.1 on a free port, in a thread."""

    def __init__(self, fake: FakeRecaptcha) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def verify_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/recaptcha/api/siteverify"

    def __enter__(self) -> FakeRecaptchaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
