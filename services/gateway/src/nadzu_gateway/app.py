"""The gateway's FastAPI application: wiring of settings, bus, Redis, middleware and routes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from nats.errors import Error as NatsError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nadzu_common.auth import AuthClient, TokenSigner
from nadzu_common.bus import connect, ensure_streams
from nadzu_common.logging import get_logger
from nadzu_common.tracing import is_active as tracing_active

from . import __version__
from .cors import CorsMiddleware
from .edge import Edge, EdgeMiddleware
from .fastpath import FastPathMiddleware
from .jobs import JobDirectory
from .keycache import RevocationFollower
from .metrics import MetricsMiddleware
from .metrics import router as metrics_router
from .middleware import BodyLimitMiddleware, RequestIdMiddleware
from .openapi import install_openapi
from .problems import (
    Problem,
    handle_http_exception,
    handle_problem,
    handle_unexpected,
    handle_validation_error,
)
from .ratelimit import RateLimiter
from .redisproto import PipelinedRedis
from .routes import auth, contributions, downloads, service
from .settings import GatewaySettings
from .streams import StreamSlots

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

    # The limiter has its own clients with short timeouts: a slow Redis must not stall every request.
    limiter_redis = PipelinedRedis(settings.redis_url, settings.rate_limit_redis_timeout_seconds)
    slots_redis = redis.from_url(
        settings.redis_url,
        socket_timeout=settings.rate_limit_redis_timeout_seconds,
        socket_connect_timeout=settings.rate_limit_redis_timeout_seconds,
    )
    edge: Edge = app.state.edge
    edge.limiter = RateLimiter(limiter_redis, settings.rate_limit_key_prefix)
    edge.auth = AuthClient(nc, settings.auth_rpc_timeout_seconds)
    revocations = RevocationFollower(nc, js, edge.keys)
    await revocations.start()
    stream_slots = StreamSlots(slots_redis, settings.rate_limit_key_prefix, settings.max_streams_per_caller)
    stream_slots.start()
    app.state.stream_slots = stream_slots

    directory = JobDirectory(js)
    await directory.start()
    app.state.jobs = directory
    sites_task = asyncio.create_task(service.prefetch_sites(app))
    log.info("gateway.started", url=settings.public_base_url)
    try:
        yield
    finally:
        sites_task.cancel()
        # Open SSE streams watch this event and close, so uvicorn's shutdown is not held up by them.
        app.state.shutting_down.set()
        await directory.stop()
        await stream_slots.stop()
        await revocations.stop()
        await limiter_redis.close()
        await slots_redis.aclose()
        await app.state.redis.aclose()
        try:
            await nc.drain()
        except NatsError as error:
            # NATS went away first (a whole stack stopping at once): nothing is left to flush.
            log.warning("gateway.nats_drain_failed", error=repr(error))
            await nc.close()
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
    app.state.edge = Edge(settings, _token_signer(settings))

    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)

    app.include_router(service.router)
    app.include_router(auth.router)
    app.include_router(downloads.router)
    app.include_router(contributions.router)
    # Last, so the problem examples that operations share keep the API paths as their `instance`.
    app.include_router(metrics_router)
    install_openapi(app)
    service.register_core_checks(app)
    contributions.register_checks(app)

    # The last one added runs first. Order from the outside: request id (so every response, errors from
    # the middleware below included, has one), metrics (so every response is counted and `/metrics` needs
    # no API key), CORS (so browsers can read 401 and 429 responses too),
    # authentication and rate limits, the body limit, then the two endpoints served before the router.
    app.add_middleware(FastPathMiddleware, edge=app.state.edge)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_request_body_bytes)
    app.add_middleware(EdgeMiddleware, edge=app.state.edge)
    app.add_middleware(CorsMiddleware, allow_origins=settings.cors_allow_origins)
    app.add_middleware(MetricsMiddleware, token=_metrics_token(settings))
    app.add_middleware(RequestIdMiddleware)
    if tracing_active():
        _instrument(app)
    return app


def _metrics_token(settings: GatewaySettings) -> str | None:
    return settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None


def _instrument(app: FastAPI) -> None:
    """Open one server span per request, named by route template, around every middleware above.

    An SSE stream sends a chunk per event; without `send` and `receive` excluded, each chunk would be a
    span of its own. Health probes and scrapes are left out: they would bury the requests that matter.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        exclude_spans=["receive", "send"],
        excluded_urls=r"/health$,/health/ready$,/metrics$",
    )


def _token_signer(settings: GatewaySettings) -> TokenSigner:
    if settings.session_secret is not None:
        return TokenSigner(settings.session_secret.get_secret_value())
    # `nadzu-gateway` refuses to start without SESSION_SECRET; an application built in-process (tests)
    # gets a random one, so its links work on this process only and no session token verifies.
    log.warning("gateway.session_secret_missing", effect="random per-process secret")
    return TokenSigner(secrets.token_bytes(32))
