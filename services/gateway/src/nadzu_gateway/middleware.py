"""Pure ASGI middleware: request ids and request body limits.

Written against ASGI directly rather than `BaseHTTPMiddleware`, which would buffer streamed responses
such as SSE and add a task per request.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nadzu_common.logging import bound_context
from nadzu_common.tracing import current_traceresponse

from .problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX

# A client-sent request id is echoed only when it is short and plain, so it cannot inject into logs.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    request_id: str,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> None:
    """Send a problem response from middleware; `RequestIdMiddleware` adds the `X-Request-Id` header."""
    problem: dict[str, Any] = {
        "type": TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path,
        "request_id": request_id,
    }
    if errors:
        problem["errors"] = errors
    body = json.dumps(problem).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Echo a sane `X-Request-Id` or generate one; bind it to the logging context of the request.

    With tracing on, the response also carries `traceresponse` (W3C Trace Context level 2) with the id of
    the request's trace, so a client can look the request up in the tracing dashboard.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        sent = _header(scope, b"x-request-id")
        text = sent.decode("latin-1") if sent else ""
        request_id = text if _SANE_REQUEST_ID.match(text) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        added = [(b"x-request-id", request_id.encode())]
        traceresponse = current_traceresponse()
        if traceresponse is not None:
            added.append((b"traceresponse", traceresponse.encode()))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        with bound_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Reject bodies over the limit (413) and non-JSON bodies on API writes (415)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return

        request_id = scope.get("state", {}).get("request_id", "")
        path = scope["path"]
        length_header = _header(scope, b"content-length")
        if length_header is not None:
            try:
                declared = int(length_header)
            except ValueError:
                declared = -1
            if declared > self.max_body_bytes:
                await send_problem(
                    send,
                    413,
                    "payload-too-large",
                    "Request body too large",
                    f"The body is {declared} bytes; the limit is {self.max_body_bytes}.",
                    request_id,
                    path,
                )
                return

        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        has_body = length_header not in (None, b"0") or _header(scope, b"transfer-encoding") is not None
        is_json = content_type == b"application/json" or content_type.endswith(b"+json")
        if has_body and not is_json:
            shown = content_type.decode("latin-1") or "none"
            await send_problem(
                send,
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"Send the body as application/json (got {shown}).",
                request_id,
                path,
            )
            return

        if length_header is not None:
            await self.app(scope, receive, send)
            return

        # A body without Content-Length (chunked) is read here, up to the limit, and replayed: an error
        # raised from inside the application's own read would reach the client as a 400, not a 413.
        chunks: list[bytes] = []
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await send_problem(
                    send,
                    413,
                    "payload-too-large",
                    "Request body too large",
                    f"The body exceeds the limit of {self.max_body_bytes} bytes.",
                    request_id,
                    path,
                )
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)

        body = b"".join(chunks)
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay_receive, send)
