"""Auth endpoints: who am I, captcha sessions, and API key management (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import Response

from nadzu_common.auth import (
    DEFAULT_SCOPES,
    DEFAULT_TIER,
    ApiKeyInfo,
    AuthError,
    AuthErrorCode,
    CreateKeyCommand,
    CreateSessionCommand,
    KeyName,
    ListKeysQuery,
    RevokeKeyCommand,
    Scope,
    TierName,
)
from nadzu_common.ids import parse_id
from nadzu_common.logging import get_logger

from ..access import require_authenticated, require_scope
from ..callers import Caller
from ..edge import Edge
from ..fastpath import describe_caller
from ..openapi import problems
from ..problems import Problem, quote_input
from ..schemas import CallerOut

log = get_logger(__name__)
audit = get_logger("nadzu_gateway.audit")

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
require_admin = require_scope(Scope.ADMIN)
AdminCaller = Annotated[Caller, Depends(require_admin)]

_TITLES = {
    AuthErrorCode.INVALID_KEY: "Invalid API key",
    AuthErrorCode.KEY_EXPIRED: "API key expired",
    AuthErrorCode.KEY_REVOKED: "API key revoked",
    AuthErrorCode.FORBIDDEN: "Forbidden",
    AuthErrorCode.KEY_NOT_FOUND: "Key not found",
    AuthErrorCode.INVALID_REQUEST: "Validation failed",
    AuthErrorCode.INVALID_CAPTCHA: "Invalid captcha",
    AuthErrorCode.CAPTCHA_NOT_CONFIGURED: "Captcha not configured",
    AuthErrorCode.CAPTCHA_UNAVAILABLE: "Captcha provider unavailable",
    AuthErrorCode.INTERNAL_ERROR: "Internal error",
}


def auth_problem(error: AuthError) -> Problem:
    """Turn an auth service error reply into the problem the client gets."""
    if error.code is AuthErrorCode.UNAVAILABLE:
        return Problem(
            503,
            "service-unavailable",
            "Service unavailable",
            detail=f"auth is unavailable: {error.message}",
            headers={"Retry-After": "5"},
        )

    headers = {"Retry-After": "5"} if error.http_status == 503 else {}
    errors = [{"code": reason, "message": error.message} for reason in error.reasons]
    return Problem(
        error.http_status,
        error.code.value,
        _TITLES.get(error.code, "Auth error"),
        detail=error.message,
        errors=errors,
        headers=headers,
    )


def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    assert edge.auth is not None
    return edge


class SessionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"captcha_token": "03AFcWeA..."}]}
    )

    captcha_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class SessionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"access_token": "nzs1.AbCdEf...", "token_type": "Bearer", "expires_in": 3600}]
        }
    )

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="seconds")


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ci",
                    "scopes": ["downloads"],
                    "tier": "default",
                    "expires_at": "2027-01-01T00:00:00Z",
                }
            ]
        },
    )

    name: KeyName
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)
    tier: TierName = DEFAULT_TIER
    expires_at: AwareDatetime | None = None


class KeyOut(BaseModel):
    id: uuid.UUID
    prefix: str | None
    name: str
    scopes: list[Scope]
    tier: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    created_by: uuid.UUID | None = None


EXAMPLE_KEY_CREATED: dict[str, Any] = {
    "id": "0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d",
    "prefix": "nadzu_Ab3dE9",
    "name": "ci",
    "scopes": ["downloads"],
    "tier": "default",
    "created_at": "2026-12-04T10:00:00Z",
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
    "created_by": None,
    "key": "nadzu_Ab3dE9fGhIjKlMnOpQrStUvWxYz0123456789abc",
}


class KeyCreated(KeyOut):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_KEY_CREATED]})

    key: str = Field(description="the key's secret, shown only in this response")


class KeyList(BaseModel):
    items: list[KeyOut]


def _key_to_public(info: ApiKeyInfo) -> dict[str, Any]:
    return info.model_dump(mode="json")


@router.get("/me", responses={200: {"model": CallerOut}})
async def me(request: Request) -> JSONResponse:
    """The calling key or session: kind, tier, scopes and limits (windows in seconds)."""
    # `FastPathMiddleware` serves this path before the router; this route documents it.
    caller = require_authenticated(request)
    return JSONResponse(describe_caller(request.app.state.edge, caller))


@router.post(
    "/session",
    response_model=SessionOut,
    openapi_extra=problems(
        "invalid-captcha", "invalid-request", "captcha-not-configured", "captcha-unavailable"
    ),
)
async def create_session(request: Request, body: SessionCreate) -> JSONResponse:
    edge = _edge(request)
    assert edge.auth is not None
    command = CreateSessionCommand(
        captcha_token=body.captcha_token,
        remote_ip=request.state.client_ip,
        request_id=request.state.request_id,
    )
    reply = await edge.auth.create_session(
        command, timeout_seconds=edge.settings.auth_session_timeout_seconds
    )
    if reply.error is not None:
        raise auth_problem(reply.error)
    log.info("auth.session_created", client=request.state.client_ip)
    return JSONResponse(
        {"access_token": reply.access_token, "token_type": reply.token_type, "expires_in": reply.expires_in},
        headers={"Cache-Control": "no-store"},
    )


def _check_tier(tier: str, allowed: list[str]) -> None:
    """Reject a tier with no limits configured, which would otherwise get the default limits unnoticed.

    The gateway checks this, not the auth service, because the tiers and their limits are gateway
    settings (RATE_LIMIT_TIERS).
    """
    if tier in allowed:
        return
    names = ", ".join(allowed)
    raise Problem(
        422,
        "validation-failed",
        "Validation failed",
        detail=f"Unknown tier {quote_input(tier)}. The allowed tiers are {names}.",
        errors=[
            {
                "field": "tier",
                "code": "unknown-tier",
                "message": f"Allowed tiers: {names}. A tier is added with RATE_LIMIT_TIERS.",
            }
        ],
    )


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    responses={
        201: {
            "description": "Key created. `key` is its secret, which no later response shows again",
            "headers": {"Location": {"description": "the key's URL", "schema": {"type": "string"}}},
            "content": {"application/json": {"example": EXAMPLE_KEY_CREATED}},
        }
    },
    openapi_extra=problems("invalid-request"),
)
async def create_key(request: Request, body: KeyCreate, caller: AdminCaller) -> JSONResponse:
    edge = _edge(request)
    assert edge.auth is not None and caller.key_hash is not None
    _check_tier(body.tier, edge.settings.key_tiers)
    command = CreateKeyCommand(
        actor_key_hash=caller.key_hash,
        request_id=request.state.request_id,
        name=body.name,
        scopes=body.scopes,
        tier=body.tier,
        expires_at=body.expires_at,
    )
    reply = await edge.auth.create_key(command)
    if reply.error is not None:
        raise auth_problem(reply.error)
    assert reply.info is not None and reply.key is not None

    audit.info(
        "audit.key_created",
        actor_key_id=str(caller.key_id),
        key_id=str(reply.info.id),
        name=reply.info.name,
        scopes=[scope.value for scope in reply.info.scopes],
        tier=reply.info.tier,
        client=request.state.client_ip,
    )
    public = {**_key_to_public(reply.info), "key": reply.key}
    return JSONResponse(
        public,
        status_code=201,
        headers={"Location": f"/api/v1/auth/keys/{reply.info.id}", "Cache-Control": "no-store"},
    )


@router.get("/keys", response_model=KeyList)
async def list_keys(request: Request, caller: AdminCaller) -> JSONResponse:
    edge = _edge(request)
    assert edge.auth is not None and caller.key_hash is not None
    reply = await edge.auth.list_keys(
        ListKeysQuery(actor_key_hash=caller.key_hash, request_id=request.state.request_id)
    )
    if reply.error is not None:
        raise auth_problem(reply.error)
    audit.info("audit.keys_listed", actor_key_id=str(caller.key_id), count=len(reply.items))
    return JSONResponse({"items": [_key_to_public(item) for item in reply.items]})


@router.delete(
    "/keys/{key_id}", status_code=204, response_class=Response, openapi_extra=problems("key-not-found")
)
async def revoke_key(request: Request, key_id: str, caller: AdminCaller) -> Response:
    edge = _edge(request)
    assert edge.auth is not None and caller.key_hash is not None
    parsed = parse_id(key_id)
    if parsed is None:
        raise Problem(
            404,
            "key-not-found",
            "Key not found",
            detail=f"{quote_input(key_id)} is not a valid key id. Key ids are UUIDs.",
        )

    reply = await edge.auth.revoke_key(
        RevokeKeyCommand(actor_key_hash=caller.key_hash, request_id=request.state.request_id, key_id=parsed)
    )
    if reply.error is not None:
        raise auth_problem(reply.error)

    # The revocation event evicts the key on every replica; this one need not wait for it.
    edge.keys.evict_key(parsed)
    audit.info(
        "audit.key_revoked",
        actor_key_id=str(caller.key_id),
        key_id=str(parsed),
        client=request.state.client_ip,
    )
    return Response(status_code=204)
