"""RFC 9457 problem details: the one error shape of the public API.

Route code raises `Problem`; one exception handler renders it. Every slug is listed in docs/errors.md and
clients branch on `type`, never on `detail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from nadzu_common.logging import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:nadzu:problem:"


class Problem(Exception):
    """An error the client caused or must know about, rendered as problem details."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


# Max characters of a client-sent value that a problem's `detail` quotes. A valid UUID has 36.
MAX_QUOTED_CHARACTERS = 40


def quote_input(value: str) -> str:
    """Quote a client-sent value for a `detail`, cut to `MAX_QUOTED_CHARACTERS` so no detail grows with it."""
    if len(value) <= MAX_QUOTED_CHARACTERS:
        return repr(value)
    return repr(value[:MAX_QUOTED_CHARACTERS]) + f"... ({len(value)} characters)"


def dependency_unavailable(name: str, detail: str, retry_after: int = 5) -> Problem:
    """A 503 for a dependency that is down; `Retry-After` tells clients when to try again."""
    return Problem(
        503,
        "service-unavailable",
        "Service unavailable",
        detail=f"{name} is unavailable: {detail}",
        headers={"Retry-After": str(retry_after)},
    )


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    # NOTE: `instance` repeats the whole request path, and only the HTTP server bounds its length
    # (uvicorn 0.55 with httptools accepted a 60,000-character path). Details use `quote_input` instead.
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail or problem.title,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_CONTENT_TYPE
    )


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    unparsable = _unparsable_body(exc)
    if unparsable is not None:
        return problem_response(request, unparsable)
    slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    problem = Problem(exc.status_code, slug, title, detail=detail, headers=dict(exc.headers or {}))
    return problem_response(request, problem)


def _unparsable_body(exc: StarletteHTTPException) -> Problem | None:
    """Return the `malformed-json` problem for a JSON body that FastAPI could not decode, else None.

    FastAPI 0.165 turns `json.JSONDecodeError` into a validation error. Any other exception from reading the
    body becomes a 400 "There was an error parsing the body", raised `from` that exception.
    """
    if exc.status_code != 400:
        return None
    if isinstance(exc.__cause__, UnicodeDecodeError):
        detail = "The request body is not valid UTF-8 JSON."
    elif isinstance(exc.__cause__, RecursionError):
        detail = "The request body is JSON nested too deeply to parse."
    else:
        return None
    return Problem(400, "malformed-json", "Malformed JSON", detail=detail)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = exc.errors()
    if any(item.get("type") == "json_invalid" for item in items):
        problem = Problem(
            400, "malformed-json", "Malformed JSON", detail="The request body is not valid JSON."
        )
        return problem_response(request, problem)

    body_missing = any(_is_missing_body(item) for item in items)
    errors: list[dict[str, Any]] = []
    for item in items:
        if _is_missing_body(item):
            # FastAPI reports a missing body as one error without a field, so name each required field.
            errors += [
                {"field": name, "code": "missing", "message": "Field required"}
                for name in _required_body_fields(request)
            ]
            continue
        errors.append(_field_error(item))

    problem = Problem(
        422,
        "validation-failed",
        "Validation failed",
        detail=_validation_detail(errors, body_missing, exc.body),
        errors=errors,
    )
    return problem_response(request, problem)


# Locations that FastAPI puts first in an error's `loc`. The public `field` leaves them out.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def _field_error(item: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one FastAPI validation error to an `errors[]` entry, with `field` named as the client sent it.

    `field` is the body field or query parameter name. Nested body fields and list items are joined with
    dots (`scopes.0`). An error about the body as a whole has no `field`.
    """
    location = [str(part) for part in item.get("loc", ())]
    if location and location[0] in _LOCATIONS:
        location = location[1:]
    error: dict[str, Any] = {"code": item.get("type"), "message": item.get("msg")}
    if location:
        error = {"field": ".".join(location), **error}
    return error


def _is_missing_body(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "missing" and tuple(item.get("loc", ())) == ("body",)


def _required_body_fields(request: Request) -> list[str]:
    """Return the names of the required fields of the matched route's body model."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    if not isinstance(model, type) or not issubclass(model, BaseModel):
        return []
    return [field.alias or name for name, field in model.model_fields.items() if field.is_required()]


def _validation_detail(errors: list[dict[str, Any]], body_missing: bool, body: Any) -> str:
    missing = [f"`{error['field']}`" for error in errors if error["code"] == "missing" and "field" in error]
    needed = f". Send a JSON object with {', '.join(missing)}." if missing else "."
    if body_missing:
        return "The request body is empty" + needed
    if body == {}:
        return "The request body is an empty JSON object" + needed
    if any("field" not in error for error in errors):
        return "The request body must be a JSON object."
    if missing and len(missing) == len(errors):
        return f"Required fields are missing: {', '.join(missing)}."
    return "The request does not match the schema. `errors` lists each invalid field."


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("http.unhandled_error", path=request.url.path)
    problem = Problem(500, "internal-error", "Internal error", detail="An unexpected error occurred.")
    return problem_response(request, problem)
