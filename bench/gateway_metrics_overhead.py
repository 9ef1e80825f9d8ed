"""Measure what the gateway's metrics middleware adds to a request, in-process and without a server.

Builds the gateway application twice, with and without `MetricsMiddleware`, and calls each directly with
`GET /health`, which the fast path serves from memory, so no NATS, Redis or lifespan is needed. Prints
microseconds per request for both. Not a test: nothing here asserts a time. Run:

    .venv/bin/python bench/gateway_metrics_overhead.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import warnings
from typing import Any

from starlette.types import ASGIApp, Message

from nadzu_gateway import app as gateway_app
from nadzu_gateway.settings import GatewaySettings


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(app: ASGIApp) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/health",
        "raw_path": b"/health",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "app": app,
    }


async def per_request_microseconds(app: ASGIApp, requests: int) -> float:
    for _ in range(500):
        await app(_scope(app), _receive, _send)
    started = time.perf_counter()
    for _ in range(requests):
        await app(_scope(app), _receive, _send)
    return (time.perf_counter() - started) / requests * 1e6


def build(with_metrics: bool) -> ASGIApp:
    settings = GatewaySettings(metrics_token="b" * 43, session_secret="s" * 48)
    if with_metrics:
        return gateway_app.create_app(settings)
    original = gateway_app.MetricsMiddleware
    # A pass-through class in its place leaves every other middleware as it is.
    gateway_app.MetricsMiddleware = _PassThrough  # type: ignore[misc, assignment]
    try:
        return gateway_app.create_app(settings)
    finally:
        gateway_app.MetricsMiddleware = original  # type: ignore[misc]


class _PassThrough:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")  # FastAPI's OpenAPI warnings, printed once per application

    for label, with_metrics in (
        ("without metrics", False),
        ("with metrics", True),
        ("without metrics", False),
    ):
        app = build(with_metrics)
        microseconds = asyncio.run(per_request_microseconds(app, arguments.requests))
        print(f"{label}: {microseconds:.1f} µs per GET /health")


if __name__ == "__main__":
    main()
