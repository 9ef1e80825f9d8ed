"""The OpenAPI document: FastAPI's schema plus security, problem responses and shared headers.

FastAPI describes the routes, parameters and bodies. This module adds what it cannot see: the credentials
that `EdgeMiddleware` reads, the problem types each operation can return (declared on the route with
`problems(...)`, plus the ones every operation of a kind shares), and the `X-Request-Id` and RateLimit
headers that the middleware puts on responses. The result depends only on the code, so the checked-in
copy in docs/openapi.json stays byte-identical between runs.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .metrics import METRICS_PATH
from .problem_types import PROBLEM_TYPES, ProblemType
from .problems import PROBLEM_CONTENT_TYPE
from .schemas import EXAMPLE_JOB_ID, ProblemDetails

# The key under which `problems()` stores an operation's own problem slugs until the document is built.
PROBLEMS_KEY = "x-nadzu-problems"
# Security requirement alternatives; `{}` marks credentials as optional.
CREDENTIALS: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API key"},
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key, or a session token from `POST /api/v1/auth/session`",
    },
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the gateway's METRICS_TOKEN, for `GET /metrics` only",
    },
    "JobLink": {
        "type": "apiKey",
        "in": "query",
        "name": "sig",
        "description": "the signature of a job's `events_url` or `result.file_url`, sent with its `exp` "
        "query parameter; valid for one job until `exp`",
    },
}
# Paths whose operations need credentials. `POST /api/v1/auth/session` and the anonymous endpoints
# accept them optionally: a key there only changes the caller's rate-limit tier.
SECURED_PREFIXES = ("/api/v1/downloads", "/api/v1/auth/me", "/api/v1/auth/keys")
# Paths whose operations also need a scope (`downloads` or `admin`), so a valid caller may get 403.
SCOPED_PREFIXES = ("/api/v1/downloads", "/api/v1/auth/keys")
# Operations that also accept a signed job link instead of credentials.
LINK_PATHS = ("/api/v1/downloads/{job_id}/events", "/api/v1/downloads/{job_id}/file")
LINK_EXPIRY_PARAMETER = {
    "name": "exp",
    "in": "query",
    "required": False,
    "description": "expiry of a signed job link (Unix time), sent together with `sig`",
    "schema": {"type": "string"},
}
UNLIMITED_PATHS = ("/health", "/health/ready")
# The responses of `GET /metrics` other than 200, with what they mean there.
METRICS_PROBLEMS = {
    "authentication-required": "METRICS_TOKEN is set, and the request did not send it as "
    "`Authorization: Bearer <token>`",
    "not-found": "METRICS_TOKEN is unset, so the gateway serves no metrics",
}
METRICS_CHALLENGE = {
    "description": 'the RFC 6750 challenge `Bearer realm="nadzu-metrics"`',
    "schema": {"type": "string"},
}
BODY_METHODS = ("post", "put", "patch")
EXAMPLE_PATH_VALUES = {"job_id": EXAMPLE_JOB_ID, "key_id": EXAMPLE_JOB_ID, "username": "octocat"}

# Problems of the edge middleware on every rate-limited operation: rejected credentials (they are
# checked wherever they are sent), used-up budgets, and an auth service that cannot check a new key.
EDGE_PROBLEMS = (
    "invalid-credentials",
    "invalid-key",
    "key-expired",
    "key-revoked",
    "invalid-session",
    "session-expired",
    "rate-limited",
    "service-unavailable",
    "internal-error",
)
SECURED_PROBLEMS = ("authentication-required",)
SCOPED_PROBLEMS = ("forbidden",)
LINK_PROBLEMS = ("invalid-link", "link-expired")
BODY_PROBLEMS = ("malformed-json", "payload-too-large", "unsupported-media-type", "validation-failed")

HEADERS = {
    "X-Request-Id": {
        "description": "the request id: the client's own when it sent a plain one of up to 128 characters",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "remaining quota of each policy that applied (draft-ietf-httpapi-ratelimit-headers)",
        "schema": {"type": "string"},
        "example": '"default";r=599;t=60',
    },
    "RateLimit-Policy": {
        "description": "the policies that applied: quota `q` per window `w` seconds",
        "schema": {"type": "string"},
        "example": '"default";q=600;w=60, "enqueue";q=100;w=3600',
    },
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}},
    "WWW-Authenticate": {
        "description": 'the RFC 6750 challenge: `Bearer realm="nadzu"`, with an error for rejected '
        "credentials",
        "schema": {"type": "string"},
    },
}
# Problems whose response carries `Retry-After`.
RETRY_AFTER_SLUGS = frozenset(
    {
        "rate-limited",
        "too-many-active-jobs",
        "too-many-streams",
        "idempotency-key-in-use",
        "service-unavailable",
        "captcha-unavailable",
        "github-token-missing",
        "github-token-rejected",
        "github-rate-limited",
        "github-unavailable",
    }
)


def problems(*slugs: str) -> dict[str, Any]:
    """Build a route's `openapi_extra` that lists the problem types only this operation returns."""
    unknown = [slug for slug in slugs if slug not in PROBLEM_TYPES]
    if unknown:
        raise ValueError(f"unknown problem types {unknown}; add them to problem_types.PROBLEM_TYPES")
    return {PROBLEMS_KEY: list(slugs)}


def install_openapi(app: FastAPI) -> None:
    """Replace the app's `openapi()` with one that builds the complete document once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=_description(app.description),
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    components["headers"] = HEADERS
    schemas = components.setdefault("schemas", {})
    # FastAPI's own validation-error shapes are never sent: validation errors are problem details too.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["ProblemDetails"] = problem_schema
    schemas = dict(sorted(schemas.items()))
    components["schemas"] = schemas

    examples: dict[str, Any] = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation, examples)
    components["examples"] = dict(sorted(examples.items()))
    return schema


def _description(base: str) -> str:
    rows = "\n".join(
        f"| `{problem.type_uri}` | {problem.status} | {problem.title} | {problem.description} |"
        for problem in sorted(PROBLEM_TYPES.values(), key=lambda item: item.slug)
    )
    return (
        f"{base}\n\n"
        "Every error is RFC 9457 problem details (`application/problem+json`). Clients branch on `type`, "
        "never on `detail`. Each operation lists the problem types it can return. Any request can also "
        "get `not-found` (404) for an unknown path and `method-not-allowed` (405), and a CORS preflight "
        "from an origin that is not allowed gets `cors-origin-not-allowed` (403).\n\n"
        "| type | status | title | when |\n| --- | --- | --- | --- |\n"
        f"{rows}\n"
    )


def _complete_operation(path: str, method: str, operation: dict[str, Any], examples: dict[str, Any]) -> None:
    """Add security, problem responses and shared headers to one operation.

    `examples` collects one example per problem type, whose `instance` is the first path that uses it.
    """
    if path == METRICS_PATH:
        _complete_metrics_operation(operation, examples)
        return

    own: list[str] = operation.pop(PROBLEMS_KEY, [])
    slugs = list(own)
    unlimited = path in UNLIMITED_PATHS

    if unlimited:
        operation["security"] = []
    elif path in LINK_PATHS:
        operation["security"] = [*CREDENTIALS, {"JobLink": []}]
        slugs += [*SECURED_PROBLEMS, *LINK_PROBLEMS]
    elif path.startswith(SECURED_PREFIXES):
        operation["security"] = CREDENTIALS
        slugs += SECURED_PROBLEMS
    else:
        operation["security"] = [{}, *CREDENTIALS]
    if path.startswith(SCOPED_PREFIXES):
        slugs += SCOPED_PROBLEMS

    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI adds a 422 to every operation with parameters; only bodies and query strings are validated.
    fastapi_422 = responses.pop("422", None)
    has_query = any(parameter.get("in") == "query" for parameter in operation.get("parameters", []))
    if method in BODY_METHODS and "requestBody" in operation:
        slugs += BODY_PROBLEMS
    elif fastapi_422 is not None and has_query:
        slugs.append("validation-failed")
    if not unlimited:
        slugs += EDGE_PROBLEMS
    if path in LINK_PATHS:
        # Added after the check above: FastAPI does not validate `exp`, the access rules read it.
        operation.setdefault("parameters", []).append(LINK_EXPIRY_PARAMETER)

    for status, group in _by_status(slugs).items():
        for problem in group:
            examples.setdefault(_example_name(problem), _problem_example(problem, _example_instance(path)))
        response = _problem_response(group)
        group_slugs = {problem.slug for problem in group}
        if group_slugs & RETRY_AFTER_SLUGS:
            response["headers"] = {"Retry-After": _header_ref("Retry-After")}
        if status == 401 or "forbidden" in group_slugs:
            response["headers"] = {"WWW-Authenticate": _header_ref("WWW-Authenticate")}
        responses[str(status)] = response

    for response in responses.values():
        headers = response.setdefault("headers", {})
        headers["X-Request-Id"] = _header_ref("X-Request-Id")
        if not unlimited:
            headers["RateLimit"] = _header_ref("RateLimit")
            headers["RateLimit-Policy"] = _header_ref("RateLimit-Policy")
    operation["responses"] = dict(sorted(responses.items()))


def _complete_metrics_operation(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    """Add the metrics token, the 401 and the 404 to `GET /metrics`, which is never rate-limited.

    With METRICS_TOKEN set, `MetricsMiddleware` responds before authentication and rate limiting run.
    """
    operation["security"] = [{"MetricsToken": []}]
    responses: dict[str, Any] = operation["responses"]
    for slug, meaning in METRICS_PROBLEMS.items():
        problem = PROBLEM_TYPES[slug]
        examples.setdefault(_example_name(problem), _problem_example(problem, METRICS_PATH))
        response = _problem_response([problem])
        response["description"] = f"- `{slug}`: {meaning}"
        responses[str(problem.status)] = response
    responses["401"]["headers"] = {"WWW-Authenticate": METRICS_CHALLENGE}

    for response in responses.values():
        response.setdefault("headers", {})["X-Request-Id"] = _header_ref("X-Request-Id")
    operation["responses"] = dict(sorted(responses.items()))


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _by_status(slugs: list[str]) -> dict[int, list[ProblemType]]:
    groups: dict[int, list[ProblemType]] = {}
    for slug in dict.fromkeys(slugs):
        problem = PROBLEM_TYPES[slug]
        groups.setdefault(problem.status, []).append(problem)
    return groups


def _example_name(problem: ProblemType) -> str:
    return f"problem-{problem.slug}"


def _problem_example(problem: ProblemType, instance: str) -> dict[str, Any]:
    return {
        "summary": problem.title,
        "value": {
            "type": problem.type_uri,
            "title": problem.title,
            "status": problem.status,
            "detail": problem.description,
            "instance": instance,
            "request_id": "5f0c6a0e9b7d4e2a",
        },
    }


def _problem_response(group: list[ProblemType]) -> dict[str, Any]:
    description = "\n".join(f"- `{problem.slug}`: {problem.description}" for problem in group)
    examples = {
        problem.slug: {"$ref": f"#/components/examples/{_example_name(problem)}"} for problem in group
    }
    return {
        "description": description,
        "content": {
            PROBLEM_CONTENT_TYPE: {
                "schema": {"$ref": "#/components/schemas/ProblemDetails"},
                "examples": examples,
            }
        },
    }


def _example_instance(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: EXAMPLE_PATH_VALUES.get(match[1], "example"), path)
