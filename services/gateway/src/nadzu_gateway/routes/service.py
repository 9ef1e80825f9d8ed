"""Service endpoints: identity, liveness, readiness and the supported-sites list."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from nadzu_common.auth import AuthSubjects
from nadzu_common.bus import Subjects
from nadzu_common.messages import HealthQuery, HealthReply, SupportedSitesQuery, SupportedSitesReply

from .. import __version__
from ..openapi import problems
from ..problems import Problem
from ..rpc import request as rpc_request
from ..schemas import Liveness, Readiness, ServiceInfo, SupportedSites

router = APIRouter()

# The extractor list changes only when the downloader's yt-dlp is upgraded.
SITES_CACHE_SECONDS = 600.0
READINESS_TIMEOUT_SECONDS = 2.0


@router.get("/", tags=["service"], response_model=None, responses={200: {"model": ServiceInfo}})
async def root(request: Request) -> dict[str, Any]:
    sites: SupportedSitesReply | None = getattr(request.app.state, "sites", None)
    return {
        "name": "nadzu",
        "version": __version__,
        "api": "/api/v1",
        "docs": "/docs",
        "yt_dlp_version": sites.yt_dlp_version if sites else None,
    }


@router.get("/health", tags=["service"], response_model=None, responses={200: {"model": Liveness}})
async def health() -> dict[str, str]:
    """Liveness: 200 while the process serves requests. It calls no dependency."""
    # `FastPathMiddleware` serves this path before the router; this route documents it.
    return {"status": "ok"}


@router.get(
    "/health/ready",
    tags=["service"],
    responses={
        200: {"model": Readiness, "description": "Every check passed"},
        503: {"model": Readiness, "description": "At least one check failed; `checks` says which"},
    },
)
async def ready(request: Request) -> JSONResponse:
    """Readiness: NATS, Redis, the job event stream and each backend service the gateway uses."""
    checks: dict[str, Any] = request.app.state.readiness_checks
    names = list(checks)

    async def run(name: str) -> str | None:
        try:
            return await asyncio.wait_for(checks[name](request.app), READINESS_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {READINESS_TIMEOUT_SECONDS:g} s"
        except Exception as error:
            return f"check failed: {type(error).__name__}"

    outcomes = await asyncio.gather(*(run(name) for name in names))
    results: dict[str, Any] = {}
    for name, reason in zip(names, outcomes, strict=True):
        results[name] = {"status": "ok"} if reason is None else {"status": "unavailable", "detail": reason}

    healthy = all(reason is None for reason in outcomes)
    body = {"status": "ok" if healthy else "unavailable", "checks": results}
    return JSONResponse(body, status_code=200 if healthy else 503)


async def _check_nats(app: FastAPI) -> str | None:
    return None if app.state.nats.is_connected else "not connected"


async def _check_redis(app: FastAPI) -> str | None:
    await app.state.redis.ping()
    return None


async def _check_jobs(app: FastAPI) -> str | None:
    return None if app.state.jobs.caught_up.is_set() else "still reading the job event stream"


async def _check_auth(app: FastAPI) -> str | None:
    try:
        reply = await rpc_request(
            app.state.nats,
            AuthSubjects.HEALTH,
            HealthQuery(),
            HealthReply,
            "auth",
            timeout=READINESS_TIMEOUT_SECONDS,
        )
    except Problem as problem:
        return problem.detail
    return None if reply.status == "ok" else reply.detail or "unavailable"


async def _downloader_health(app: FastAPI) -> HealthReply:
    return await rpc_request(
        app.state.nats,
        Subjects.DOWNLOAD_HEALTH,
        HealthQuery(),
        HealthReply,
        "downloader",
        timeout=READINESS_TIMEOUT_SECONDS,
    )


async def _check_downloader(app: FastAPI) -> str | None:
    try:
        reply = await _downloader_health(app)
    except Problem as problem:
        return problem.detail
    return None if reply.status == "ok" else reply.detail or "unavailable"


async def _check_proxy(app: FastAPI) -> str | None:
    """Check the downloaders' egress proxy through a downloader replica (ok when none is configured)."""
    try:
        reply = await _downloader_health(app)
    except Problem as problem:
        return f"unknown: {problem.detail}"
    state = reply.checks.get("proxy", "ok")
    return None if state == "ok" else state


def register_core_checks(app: FastAPI) -> None:
    app.state.readiness_checks.update(
        nats=_check_nats,
        redis=_check_redis,
        jobs=_check_jobs,
        auth=_check_auth,
        downloader=_check_downloader,
        proxy=_check_proxy,
    )


async def _load_sites(app: FastAPI, request_id: str | None) -> None:
    state = app.state
    state.sites = await rpc_request(
        state.nats,
        Subjects.DOWNLOAD_SITES,
        SupportedSitesQuery(),
        SupportedSitesReply,
        "downloader",
        timeout=max(state.settings.rpc_timeout_seconds, 5.0),
        request_id=request_id,
    )
    state.sites_fetched_at = time.monotonic()


async def prefetch_sites(app: FastAPI) -> None:
    """Load the supported sites as soon as a downloader replies, so `GET /` shows its yt-dlp version."""
    while getattr(app.state, "sites", None) is None:
        try:
            await _load_sites(app, None)
        except Problem:
            await asyncio.sleep(5)


@router.get(
    "/api/v1/supported-sites",
    tags=["downloads"],
    response_model=None,
    responses={200: {"model": SupportedSites}},
    openapi_extra=problems("bad-gateway"),
)
async def supported_sites(
    request: Request,
    q: str | None = Query(default=None, max_length=100, description="case-insensitive text to look for"),
) -> dict[str, Any]:
    state = request.app.state
    fetched_at: float = getattr(state, "sites_fetched_at", 0.0)
    if getattr(state, "sites", None) is None or time.monotonic() - fetched_at > SITES_CACHE_SECONDS:
        await _load_sites(request.app, request.state.request_id)

    sites: SupportedSitesReply = state.sites
    needle = (q or "").strip().lower()
    items = [
        site.model_dump()
        for site in sites.items
        if not needle or needle in site.name.lower() or needle in (site.description or "").lower()
    ]
    return {"count": len(items), "items": items}
