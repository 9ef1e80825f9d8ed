"""Contributions endpoints, forwarded to the contributions service as `contributions.rpc.get` queries."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from nadzu_common.bus import encode, message_headers
from nadzu_common.contributions import (
    CONTRIBUTIONS_GET,
    CONTRIBUTIONS_HEALTH,
    ContributionCalendar,
    ContributionsQuery,
    ContributionsReply,
    SvgTheme,
)
from nadzu_common.logging import get_logger
from nadzu_common.messages import HealthQuery, HealthReply
from nadzu_common.tracing import client_span

from ..openapi import problems
from ..problems import Problem, dependency_unavailable

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["contributions"])

SVG_MEDIA_TYPE = "image/svg+xml"
# Seconds to wait for the service. A cold query of a 20-year span makes up to 20 GitHub calls, five at a
# time, so this is longer than the gateway's default query timeout.
# TODO: read it from a gateway setting (CONTRIBUTIONS_RPC_TIMEOUT_SECONDS) once GatewaySettings has one.
DEFAULT_RPC_TIMEOUT_SECONDS = 15.0
HEALTH_TIMEOUT_SECONDS = 1.5
SERVICE_NAME = "contributions service"
UNAVAILABLE_RETRY_AFTER = 5

# Problems both endpoints share. Each endpoint adds the one about how it names the user.
_SERVICE_PROBLEMS = (
    "invalid-date-range",
    "user-not-found",
    "github-token-missing",
    "github-token-rejected",
    "github-rate-limited",
    "github-unavailable",
    "bad-gateway",
)
_CALENDAR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The calendar as JSON, or as an SVG heatmap for `format=svg` or "
        "`Accept: image/svg+xml`",
        "content": {SVG_MEDIA_TYPE: {"schema": {"type": "string"}}},
        "headers": {
            "Cache-Control": {
                "description": "`public, max-age=<seconds still fresh>`",
                "schema": {"type": "string"},
            },
            "ETag": {"description": "SVG responses only", "schema": {"type": "string"}},
        },
    },
    304: {"description": "SVG only: `If-None-Match` matched the heatmap's `ETag`"},
}


def _rpc_timeout(request: Request) -> float:
    settings = request.app.state.settings
    return float(getattr(settings, "contributions_rpc_timeout_seconds", DEFAULT_RPC_TIMEOUT_SECONDS))


def _wants_svg(request: Request, format_: str | None) -> bool:
    if format_ is not None:
        return format_ == "svg"
    accept = request.headers.get("accept", "")
    media_types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return SVG_MEDIA_TYPE in media_types


async def _ask_service(request: Request, query: ContributionsQuery) -> ContributionsReply:
    timeout = _rpc_timeout(request)
    try:
        with client_span(CONTRIBUTIONS_GET):
            message = await request.app.state.nats.request(
                CONTRIBUTIONS_GET,
                encode(query),
                timeout=timeout,
                headers=message_headers(request_id=query.request_id),
            )
    except NoRespondersError:
        detail = "no instance is running"
        raise dependency_unavailable(SERVICE_NAME, detail, UNAVAILABLE_RETRY_AFTER) from None
    except NatsTimeoutError:
        raise dependency_unavailable(
            SERVICE_NAME, f"no reply within {timeout:g} s", UNAVAILABLE_RETRY_AFTER
        ) from None

    try:
        return ContributionsReply.model_validate_json(message.data)
    except ValidationError as error:
        log.error("contributions.bad_reply", error=str(error)[:300])
        raise Problem(
            502, "bad-gateway", "Bad gateway", detail=f"The {SERVICE_NAME} sent a reply that cannot be read."
        ) from None


def _raise_problem(reply: ContributionsReply) -> None:
    problem = reply.problem
    if problem is None:
        return
    headers = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    raise Problem(
        problem.status,
        problem.slug,
        problem.title,
        detail=problem.detail,
        errors=[error.model_dump(exclude_none=True) for error in problem.errors],
        headers=headers,
    )


def _svg_response(request: Request, svg: str, max_age: int) -> Response:
    body = svg.encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}", "Vary": "Accept"}
    if_none_match = request.headers.get("if-none-match", "")
    if etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")] or if_none_match == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=SVG_MEDIA_TYPE, headers=headers)


async def _contributions(
    request: Request,
    username: str | None,
    year: str | None,
    from_date: str | None,
    to_date: str | None,
    format_: Literal["json", "svg"] | None,
    theme: SvgTheme,
) -> Response:
    svg = _wants_svg(request, format_)
    query = ContributionsQuery(
        username=username,
        year=year,
        from_date=from_date,
        to_date=to_date,
        format="svg" if svg else "json",
        theme=theme,
        request_id=getattr(request.state, "request_id", None),
    )
    reply = await _ask_service(request, query)
    _raise_problem(reply)

    if svg and reply.svg is not None:
        return _svg_response(request, reply.svg, reply.max_age)
    if reply.calendar is None:
        log.error("contributions.empty_reply")
        raise Problem(502, "bad-gateway", "Bad gateway", detail=f"The {SERVICE_NAME} sent an empty reply.")
    return JSONResponse(
        reply.calendar.model_dump(mode="json"),
        headers={"Cache-Control": f"public, max-age={reply.max_age}", "Vary": "Accept"},
    )


YearParam = Annotated[str | None, Query(description="Calendar year, YYYY; not with from/to")]
FromParam = Annotated[str | None, Query(alias="from", description="First day, YYYY-MM-DD; needs `to`")]
ToParam = Annotated[str | None, Query(alias="to", description="Last day, YYYY-MM-DD; span up to 20 years")]
FormatParam = Annotated[
    Literal["json", "svg"] | None,
    Query(alias="format", description="`svg` for a heatmap; without it, SVG for `Accept: image/svg+xml`"),
]
ThemeParam = Annotated[SvgTheme, Query(description="SVG colours; `auto` follows the viewer's colour scheme")]


@router.get(
    "/contributions",
    response_model=ContributionCalendar,
    responses=_CALENDAR_RESPONSES,
    summary="Contribution calendar of the default user (GITHUB_DEFAULT_USER)",
    openapi_extra=problems("default-user-not-configured", *_SERVICE_PROBLEMS),
)
async def default_user_contributions(
    request: Request,
    year: YearParam = None,
    from_date: FromParam = None,
    to_date: ToParam = None,
    format_: FormatParam = None,
    theme: ThemeParam = "light",
) -> Response:
    return await _contributions(request, None, year, from_date, to_date, format_, theme)


@router.get(
    "/contributions/{username}",
    response_model=ContributionCalendar,
    responses=_CALENDAR_RESPONSES,
    summary="Contribution calendar of a GitHub user",
    openapi_extra=problems("invalid-username", *_SERVICE_PROBLEMS),
)
async def user_contributions(
    request: Request,
    username: str,
    year: YearParam = None,
    from_date: FromParam = None,
    to_date: ToParam = None,
    format_: FormatParam = None,
    theme: ThemeParam = "light",
) -> Response:
    return await _contributions(request, username, year, from_date, to_date, format_, theme)


async def _check_service(app: FastAPI) -> str | None:
    try:
        message = await app.state.nats.request(
            CONTRIBUTIONS_HEALTH, encode(HealthQuery()), timeout=HEALTH_TIMEOUT_SECONDS
        )
    except NoRespondersError:
        return "no instance is running"
    except NatsTimeoutError:
        return f"no reply within {HEALTH_TIMEOUT_SECONDS:g} s"
    try:
        reply = HealthReply.model_validate_json(message.data)
    except ValidationError:
        return "unreadable health reply"
    return None if reply.status == "ok" else (reply.detail or "unavailable")


def register_checks(app: FastAPI) -> None:
    """Add the contributions service to `/health/ready`."""
    app.state.readiness_checks["contributions"] = _check_service
