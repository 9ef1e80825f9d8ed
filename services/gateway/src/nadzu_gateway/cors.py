"""CORS for browsers, from CORS_ALLOW_ORIGINS, as pure ASGI middleware.

Only origins listed exactly are allowed, compared case-insensitively; the request's `Origin` is echoed
only when it is one of them, and `null` can never be listed. The API authenticates with headers, never
with cookies, so `Access-Control-Allow-Credentials` is never sent. With `*` configured, the response
says `*` and never echoes the origin. Every response carries `Vary: Origin` while CORS is configured, so
a shared cache never serves one origin's answer to another.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .middleware import send_problem

ALLOWED_METHODS = b"GET, HEAD, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = (
    b"Authorization, X-API-Key, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id, "
    b"If-None-Match, If-Modified-Since, If-Range, Range"
)
EXPOSED_HEADERS = (
    b"RateLimit, RateLimit-Policy, Retry-After, X-Request-Id, Location, Idempotent-Replayed, "
    b"WWW-Authenticate, Content-Disposition, Content-Length, Content-Range, ETag, Last-Modified, "
    b"Accept-Ranges"
)
PREFLIGHT_MAX_AGE = b"600"


class CorsMiddleware:
    def __init__(self, app: ASGIApp, allow_origins: list[str]) -> None:
        self.app = app
        self.any_origin = allow_origins == ["*"]
        self.origins = frozenset(origin.encode() for origin in allow_origins if origin != "*")
        self.enabled = bool(allow_origins)

    def _allowed_value(self, origin: bytes) -> bytes | None:
        if self.any_origin:
            return b"*"
        return origin if origin.lower() in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return

        origin: bytes | None = None
        preflight_method: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight_method = value

        allowed = self._allowed_value(origin) if origin is not None else None
        if scope["method"] == "OPTIONS" and origin is not None and preflight_method is not None:
            await self._preflight(scope, send, allowed)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                if allowed is not None:
                    headers.append((b"access-control-allow-origin", allowed))
                    headers.append((b"access-control-expose-headers", EXPOSED_HEADERS))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, allowed: bytes | None) -> None:
        if allowed is None:
            request_id = scope.get("state", {}).get("request_id", "")
            await send_problem(
                send,
                403,
                "cors-origin-not-allowed",
                "Origin not allowed",
                "This origin is not in the API's CORS allow list.",
                request_id,
                scope["path"],
                headers=[(b"vary", b"Origin")],
            )
            return

        headers = [
            (b"vary", b"Origin"),
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ALLOWED_HEADERS),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
