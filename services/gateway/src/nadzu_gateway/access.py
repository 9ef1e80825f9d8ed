"""Route-level access rules: which caller may use an endpoint, and signed job links.

`EdgeMiddleware` has already authenticated the caller and stored it in `request.state.caller`. These
dependencies turn a missing credential into 401 with `WWW-Authenticate`, and a missing scope into 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from nadzu_common.auth import Scope, TokenError, TokenExpired, TokenSigner

from .callers import Caller
from .problems import Problem

CHALLENGE = 'Bearer realm="nadzu"'


def current_caller(request: Request) -> Caller:
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        # Only `/health*` skips the middleware, and those routes never ask for a caller.
        raise RuntimeError("no caller on the request: EdgeMiddleware did not run")
    return caller


def authentication_required() -> Problem:
    return Problem(
        401,
        "authentication-required",
        "Authentication required",
        detail="Send an API key (`X-API-Key` or `Authorization: Bearer`) or a session token.",
        headers={"WWW-Authenticate": CHALLENGE},
    )


def missing_scope(scope: Scope) -> Problem:
    return Problem(
        403,
        "forbidden",
        "Forbidden",
        detail=f"This endpoint needs the `{scope.value}` scope, which the caller does not have.",
        headers={"WWW-Authenticate": f'{CHALLENGE}, error="insufficient_scope", scope="{scope.value}"'},
    )


def require_authenticated(request: Request) -> Caller:
    caller = current_caller(request)
    if not caller.authenticated:
        raise authentication_required()
    return caller


def require_scope(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    """Build a dependency that returns the caller when it is authenticated and has `scope`.

    The dependency is a coroutine function although it never awaits, because FastAPI runs a plain
    function in its thread pool: a thread hop on every request for a check that never blocks.
    """

    async def dependency(request: Request) -> Caller:
        caller = require_authenticated(request)
        if not caller.has_scope(scope):
            raise missing_scope(scope)
        return caller

    return dependency


def job_link_grants(request: Request, signer: TokenSigner, job_id: str) -> bool:
    """Tell whether the request carries a valid `exp`/`sig` link signature for this job.

    A link that is present but forged or expired is a 401, so the client learns why it failed.
    """
    expires = request.query_params.get("exp")
    signature = request.query_params.get("sig")
    if expires is None and signature is None:
        return False
    try:
        signer.verify_job_link(job_id, expires, signature)
    except TokenExpired:
        raise Problem(
            401,
            "link-expired",
            "Link expired",
            detail="The signed link has expired; read the job again for fresh links.",
            headers={"WWW-Authenticate": CHALLENGE},
        ) from None
    except TokenError:
        raise Problem(
            401,
            "invalid-link",
            "Invalid link",
            detail="The link signature is not valid for this job.",
            headers={"WWW-Authenticate": CHALLENGE},
        ) from None
    return True
