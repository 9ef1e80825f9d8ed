"""The two hottest read-only endpoints, served in front of FastAPI's router.

`GET /health` (polled by every load balancer) and `GET /api/v1/auth/me` build their bodies from memory
alone. FastAPI's route matching and dependency solving cost more than the whole of either endpoint (about
60 µs a request here, measured by bench/edge_bench.py), so this middleware, the innermost one, serves
them directly. They still pass through every other middleware: request ids, CORS, authentication and the
rate limiter. The FastAPI routes of the same paths return the same bodies and describe them in OpenAPI.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .callers import Caller
from .edge import Edge, challenge
from .middleware import send_problem

HEALTH_PATH = "/health"
ME_PATH = "/api/v1/auth/me"
# Paths this middleware serves for GET. Their FastAPI routes exist only for the OpenAPI document.
FAST_PATHS = (HEALTH_PATH, ME_PATH)
HEALTH_BODY = b'{"status":"ok"}'


def limits_of(edge: Edge, caller: Caller) -> dict[str, Any]:
    """Return the caller's budgets: requests and enqueues per window (seconds), and its caps."""
    requests, enqueue = edge.policies.requests_and_enqueue(caller)
    limits: dict[str, Any] = {
        "requests": {"policy": requests.name, "quota": requests.quota, "window": requests.window_seconds},
        "max_active_jobs": edge.settings.max_active_jobs_per_caller,
        "max_streams": edge.settings.max_streams_per_caller,
    }
    if enqueue is not None:
        limits["enqueue"] = {"policy": enqueue.name, "quota": enqueue.quota, "window": enqueue.window_seconds}
    return limits


def describe_caller(edge: Edge, caller: Caller) -> dict[str, Any]:
    """Build the body of `GET /api/v1/auth/me`."""
    body: dict[str, Any] = {
        "kind": caller.kind.value,
        "tier": caller.tier,
        "scopes": sorted(scope.value for scope in caller.scopes),
        "limits": limits_of(edge, caller),
    }
    if caller.key_id is not None:
        body["key_id"] = str(caller.key_id)
        body["name"] = caller.key_name
    if caller.expires_at is not None:
        body["expires_at"] = int(caller.expires_at)
    return body


async def _send_json(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastPathMiddleware:
    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return

        path = scope["path"]
        if path == HEALTH_PATH:
            await _send_json(send, HEALTH_BODY)
        elif path == ME_PATH:
            await self._me(scope, send)
        else:
            await self.app(scope, receive, send)

    async def _me(self, scope: Scope, send: Send) -> None:
        state = scope.get("state", {})
        caller: Caller = state["caller"]
        if not caller.authenticated:
            await send_problem(
                send,
                401,
                "authentication-required",
                "Authentication required",
                "Send an API key (`X-API-Key` or `Authorization: Bearer`) or a session token.",
                state.get("request_id", ""),
                scope["path"],
                headers=[(b"www-authenticate", challenge())],
            )
            return
        body = json.dumps(describe_caller(self.edge, caller), separators=(",", ":")).encode()
        await _send_json(send, body)
