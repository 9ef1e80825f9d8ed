"""The gateway's FastAPI application: wiring of settings, bus, Redis, middleware and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nadzu_common.bus import connect, ensure_streams
from nadzu_common.logging import get_logger

from . import __version__
from .jobs import JobDirectory
from .middleware import BodyLimitMiddleware, RequestIdMiddleware
from .problems import (
    Problem,
    handle_http_exception,
    handle_problem,
    handle_unexpected,
    handle_validation_error,
)
from .routes import contributions, downloads, service
from .settings import GatewaySettings

log = get_logger(__name__)

# A readiness check returns None when healthy, or a short reason when not.
ReadinessCheck = Callable[[FastAPI], Awaitable[str | None]]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings

    nc = await connect(settings.nats_servers, name="nadzu-gateway")
    js = nc.jetstream()
    await ensure_streams(js, settings.nats_stream_replicas)
    app.state.nats = nc
    app.state.js = js
    app.state.redis = redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=30)
    app.state.shutting_down = asyncio.Event()

    directory = JobDirectory(js)
    await directory.start()
    app.state.jobs = directory
    log.info("gateway.started", url=settings.public_base_url)
    try:
        yield
    finally:
        # Open SSE streams watch this event and close, so uvicorn's shutdown is not held up by them.
        app.state.shutting_down.set()
        await directory.stop()
        await app.state.redis.aclose()
        await nc.drain()
        log.info("gateway.stopped")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = FastAPI(
        title="Nadzu API",
        version=__version__,
        description="Self-hosted API platform: media downloads, GitHub contribution calendars.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.readiness_checks = {}

    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)

    app.include_router(service.router)
    app.include_router(downloads.router)
    app.include_router(contributions.router)
    service.register_core_checks(app)
    contributions.register_checks(app)

    # Added last so it runs first: every response, errors from the body limit included, has a request id.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
