"""Every problem type the gateway can return, for the OpenAPI document.

The route code and the middleware raise problems with these slugs. The auth and contributions services
reply with their own codes, which the gateway returns as slugs unchanged, so those codes are listed here
too. tests/contracts checks that every slug used in the code is in this catalog, and docs/errors.md
explains when each one occurs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .problems import TYPE_PREFIX


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    description: str

    @property
    def type_uri(self) -> str:
        return TYPE_PREFIX + self.slug


def _catalog(*types: ProblemType) -> dict[str, ProblemType]:
    return {problem.slug: problem for problem in types}


PROBLEM_TYPES = _catalog(
    # Any endpoint.
    ProblemType("bad-request", 400, "Bad request", "The request cannot be read."),
    ProblemType(
        "malformed-json",
        400,
        "Malformed JSON",
        "The body is not valid JSON, is not UTF-8, or is nested too deeply to parse.",
    ),
    ProblemType(
        "unauthorized", 401, "Authentication required", "A 401 raised outside the access rules (a fallback)."
    ),
    ProblemType("not-found", 404, "Not found", "No route matches the path."),
    ProblemType("method-not-allowed", 405, "Method not allowed", "The route exists but not for this method."),
    ProblemType("not-acceptable", 406, "Not acceptable", "No representation matches `Accept`."),
    ProblemType(
        "payload-too-large", 413, "Request body too large", "The body exceeds `MAX_REQUEST_BODY_BYTES`."
    ),
    ProblemType("unsupported-media-type", 415, "Unsupported media type", "A body was sent that is not JSON."),
    ProblemType(
        "validation-failed",
        422,
        "Validation failed",
        "The body, path or query does not match the schema; `errors[]` names each field.",
    ),
    ProblemType("http-error", 400, "HTTP error", "An HTTP error without a slug of its own."),
    ProblemType("internal-error", 500, "Internal error", "A bug; the gateway logs it with the request id."),
    ProblemType("bad-gateway", 502, "Bad gateway", "A backend service sent a reply the gateway cannot read."),
    ProblemType(
        "service-unavailable",
        503,
        "Service unavailable",
        "A dependency (NATS, Redis, a backend service) is down or did not reply in time; see `Retry-After`.",
    ),
    # Authentication, scopes, rate limits and CORS, checked before the route runs.
    ProblemType(
        "authentication-required",
        401,
        "Authentication required",
        "The endpoint needs an API key or a session token and the request has neither.",
    ),
    ProblemType(
        "invalid-credentials",
        401,
        "Unsupported credentials",
        "`Authorization` uses a scheme other than `Bearer`, or has no token.",
    ),
    ProblemType("invalid-key", 401, "Invalid API key", "The presented value is not a valid API key."),
    ProblemType("key-expired", 401, "API key expired", "The key's `expires_at` has passed."),
    ProblemType("key-revoked", 401, "API key revoked", "The key was revoked."),
    ProblemType(
        "invalid-session", 401, "Invalid session", "The session token is malformed or its signature is wrong."
    ),
    ProblemType("session-expired", 401, "Session expired", "The session token's lifetime has passed."),
    ProblemType(
        "invalid-link", 401, "Invalid link", "The `exp`/`sig` query of a job link is malformed or forged."
    ),
    ProblemType("link-expired", 401, "Link expired", "The job link's `exp` has passed; read the job again."),
    ProblemType("forbidden", 403, "Forbidden", "The caller is authenticated but lacks the required scope."),
    ProblemType(
        "rate-limited",
        429,
        "Too many requests",
        "A rate-limit budget is used up; `errors[].code` names each exhausted policy.",
    ),
    ProblemType(
        "cors-origin-not-allowed",
        403,
        "Origin not allowed",
        "A CORS preflight (`OPTIONS`, any path) came from an origin not in `CORS_ALLOW_ORIGINS`.",
    ),
    # Auth service codes, returned by the key and session endpoints.
    ProblemType("key-not-found", 404, "Key not found", "No API key has this id."),
    ProblemType(
        "invalid-request", 422, "Validation failed", "The auth service rejected a field; `errors[]` names it."
    ),
    ProblemType(
        "invalid-captcha",
        400,
        "Invalid captcha",
        "The captcha token was rejected; `errors[].code` has the provider's error codes.",
    ),
    ProblemType(
        "captcha-not-configured",
        501,
        "Captcha not configured",
        "`RECAPTCHA_SECRET` is not set, so no session can be issued.",
    ),
    ProblemType(
        "captcha-unavailable",
        503,
        "Captcha provider unavailable",
        "The captcha provider could not be reached or answered badly; see `Retry-After`.",
    ),
    # Downloads.
    ProblemType(
        "invalid-url",
        422,
        "Invalid URL",
        "The URL is not http(s), cannot be parsed, or targets a non-public address.",
    ),
    ProblemType(
        "invalid-format",
        422,
        "Invalid format",
        "`format` is not `video`, `audio` or a yt-dlp format selector.",
    ),
    ProblemType(
        "invalid-idempotency-key",
        400,
        "Invalid Idempotency-Key",
        "`Idempotency-Key` is not 1 to 255 visible ASCII characters.",
    ),
    ProblemType(
        "idempotency-key-reused",
        422,
        "Idempotency-Key reused",
        "The `Idempotency-Key` was used before with a different body.",
    ),
    ProblemType(
        "idempotency-key-in-use",
        409,
        "Request in progress",
        "A request with this `Idempotency-Key` is still being processed; see `Retry-After`.",
    ),
    ProblemType(
        "too-many-active-jobs",
        429,
        "Too many active jobs",
        "The caller already has `MAX_ACTIVE_JOBS_PER_CALLER` jobs queued or running.",
    ),
    ProblemType(
        "too-many-streams",
        429,
        "Too many open streams",
        "The caller already has `MAX_STREAMS_PER_CALLER` event streams open.",
    ),
    ProblemType("invalid-cursor", 422, "Invalid cursor", "`cursor` is not a `next_cursor` from this API."),
    ProblemType("job-not-found", 404, "Job not found", "No job with this id exists for the caller."),
    ProblemType(
        "job-not-completed",
        409,
        "Job not completed",
        "The file of a job that is not completed was requested.",
    ),
    ProblemType("file-gone", 410, "File gone", "The job's file expired, was deleted or is missing."),
    ProblemType(
        "range-not-satisfiable",
        416,
        "Range not satisfiable",
        "No byte of the file lies in the requested `Range`; `Content-Range` gives the size.",
    ),
    # Contributions service codes.
    ProblemType(
        "invalid-username", 422, "Invalid username", "The login breaks GitHub's rules for user names."
    ),
    ProblemType(
        "invalid-date-range",
        422,
        "Invalid date range",
        "`year`, `from` or `to` is invalid, or the span is 20 years or longer.",
    ),
    ProblemType("user-not-found", 404, "User not found", "GitHub has no user with this login."),
    ProblemType(
        "default-user-not-configured",
        404,
        "Default user not configured",
        "The path without a username was requested and `GITHUB_DEFAULT_USER` is not set.",
    ),
    ProblemType(
        "github-token-missing",
        503,
        "GitHub token not configured",
        "`GITHUB_TOKEN` is not set on the contributions service.",
    ),
    ProblemType(
        "github-token-rejected",
        503,
        "GitHub token rejected",
        "GitHub rejected the configured token as invalid, expired or revoked.",
    ),
    ProblemType(
        "github-rate-limited",
        503,
        "GitHub rate limit reached",
        "GitHub's rate limit was reached and no cached calendar exists; see `Retry-After`.",
    ),
    ProblemType(
        "github-unavailable",
        503,
        "GitHub unavailable",
        "GitHub timed out or failed on every attempt; see `Retry-After`.",
    ),
)
