"""The service's errors, each mapped to one problem type of the public API.

A `RetryableError` may succeed when tried again later (GitHub down or rate-limited); a `PermanentError`
will not (an unknown user, an invalid span). Errors from httpx and GitHub's payloads are translated into
these in the GitHub client, so no other module handles GitHub's shapes.
"""

from __future__ import annotations

from nadzu_common.contributions import ContributionsProblem, FieldError


class ContributionsError(Exception):
    """Base of every error the service reports to the caller."""

    status = 500
    slug = "internal-error"
    title = "Internal error"
    retry_after: int | None = None

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def to_problem(self) -> ContributionsProblem:
        return ContributionsProblem(
            status=self.status,
            slug=self.slug,
            title=self.title,
            detail=self.detail,
            errors=self.errors,
            retry_after=self.retry_after,
        )


class PermanentError(ContributionsError):
    """The same query fails the same way until the request or the configuration changes."""


class RetryableError(ContributionsError):
    """The query may succeed later, after `retry_after` seconds."""

    status = 503
    retry_after = 30

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        if retry_after is not None:
            self.retry_after = max(1, retry_after)


class InvalidUsername(PermanentError):
    """The login breaks GitHub's rules: letters, digits and single inner hyphens, at most 39 characters."""

    status = 422
    slug = "invalid-username"
    title = "Invalid username"


class InvalidDateRange(PermanentError):
    """A year, date or span the API does not accept."""

    status = 422
    slug = "invalid-date-range"
    title = "Invalid date range"


class UserNotFound(PermanentError):
    """GitHub has no user with this login."""

    status = 404
    slug = "user-not-found"
    title = "User not found"


class DefaultUserNotConfigured(PermanentError):
    """`GITHUB_DEFAULT_USER` is unset, so the path without a username has no user to show."""

    status = 404
    slug = "default-user-not-configured"
    title = "Default user not configured"


class TokenMissing(RetryableError):
    """`GITHUB_TOKEN` is unset. Retryable because an operator can set it without clients changing."""

    slug = "github-token-missing"
    title = "GitHub token not configured"
    retry_after = 3600


class TokenRejected(RetryableError):
    """GitHub returned 401 Bad credentials because the configured token is invalid, expired or revoked."""

    slug = "github-token-rejected"
    title = "GitHub token rejected"
    retry_after = 3600


class GitHubRateLimited(RetryableError):
    """GitHub's primary or secondary rate limit was hit; `retry_after` comes from GitHub's headers."""

    slug = "github-rate-limited"
    title = "GitHub rate limit reached"
    retry_after = 60


class GitHubUnavailable(RetryableError):
    """GitHub timed out, returned 5xx after retries, or returned a response the client cannot parse."""

    slug = "github-unavailable"
    title = "GitHub unavailable"
    retry_after = 30


class SharedFetchFailed(ContributionsError):
    """The fetch that another request (or replica) ran for the same calendar failed with this problem."""

    def __init__(self, problem: ContributionsProblem) -> None:
        super().__init__(problem.detail, errors=problem.errors)
        self.problem = problem
        self.status = problem.status
        self.slug = problem.slug
        self.title = problem.title
        self.retry_after = problem.retry_after

    def to_problem(self) -> ContributionsProblem:
        return self.problem
