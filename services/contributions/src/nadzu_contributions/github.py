"""GitHub GraphQL client: the anti-corruption layer of the service.

GitHub's payloads, status codes and headers stop here. The rest of the service gets `WindowCalendar`
values and the errors of `errors.py`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from nadzu_common.contributions import ContributionDay
from nadzu_common.logging import get_logger
from nadzu_common.tracing import internal_span

from .errors import (
    ContributionsError,
    GitHubRateLimited,
    GitHubUnavailable,
    TokenMissing,
    TokenRejected,
    UserNotFound,
)
from .metrics import (
    GITHUB_LATENCY,
    GITHUB_RATE_LIMIT_REMAINING,
    GITHUB_RATE_LIMIT_RESET,
    GITHUB_REQUESTS,
)
from .span import Span

log = get_logger(__name__)

CALENDAR_QUERY = """
query Contributions($login: String!, $from: DateTime!, $to: DateTime!) {
  user(login: $login) {
    login
    contributionsCollection(from: $from, to: $to) {
      contributionYears
      contributionCalendar {
        totalContributions
        weeks {
          contributionDays {
            date
            contributionCount
            contributionLevel
          }
        }
      }
    }
  }
}
""".strip()

_LEVELS = {"NONE": 0, "FIRST_QUARTILE": 1, "SECOND_QUARTILE": 2, "THIRD_QUARTILE": 3, "FOURTH_QUARTILE": 4}
# Error types GitHub puts in a 200 response when the primary rate limit is spent.
_RATE_LIMIT_TYPES = {"RATE_LIMITED", "RATE_LIMIT"}
_DEFAULT_RATE_LIMIT_WAIT = 60


@dataclass(frozen=True)
class WindowCalendar:
    """One window of a user's calendar, in our own terms."""

    login: str
    days: list[ContributionDay]
    contribution_years: list[int]


# GitHub's response body, validated before anything is read from it.


class _Day(BaseModel):
    date: str
    contributionCount: int
    contributionLevel: str


class _Week(BaseModel):
    contributionDays: list[_Day]


class _Calendar(BaseModel):
    totalContributions: int
    weeks: list[_Week]


class _Collection(BaseModel):
    contributionYears: list[int]
    contributionCalendar: _Calendar


class _User(BaseModel):
    login: str
    contributionsCollection: _Collection


class _Data(BaseModel):
    user: _User | None = None


class _GraphQLError(BaseModel):
    type: str | None = None
    message: str = ""


class _Response(BaseModel):
    data: _Data | None = None
    errors: list[_GraphQLError] = []


class _TransientFailure(Exception):
    """A failure worth another attempt: a timeout, a connection error or a 5xx answer."""


class GitHubClient:
    """Fetch contribution calendars from the GitHub GraphQL API, one window of at most a year per call."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        token: SecretStr | None,
        *,
        max_attempts: int = 3,
        retry_backoff_seconds: float = 0.5,
    ) -> None:
        self._http = http
        self._url = url
        self._token = token
        self._max_attempts = max_attempts
        self._retry_backoff_seconds = retry_backoff_seconds

    @property
    def configured(self) -> bool:
        return self._token is not None

    async def fetch_window(self, login: str, window: Span) -> WindowCalendar:
        """Fetch the calendar of `login` for the days of `window`, retrying timeouts and 5xx responses."""
        attributes = {
            "github.login": login,
            "nadzu.window.first": window.first.isoformat(),
            "nadzu.window.last": window.last.isoformat(),
        }
        with internal_span("github contributionsCollection", **attributes):
            return await self._fetch_window(login, window)

    async def _fetch_window(self, login: str, window: Span) -> WindowCalendar:
        if self._token is None:
            raise TokenMissing("GITHUB_TOKEN is not set, so contributions cannot be fetched from GitHub.")

        payload = {
            "query": CALENDAR_QUERY,
            "variables": {
                "login": login,
                "from": f"{window.first.isoformat()}T00:00:00Z",
                "to": f"{window.last.isoformat()}T23:59:59Z",
            },
        }
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._post(payload, login)
            except _TransientFailure as failure:
                if attempt == self._max_attempts:
                    log.error("github.unavailable", login=login, attempts=attempt, error=str(failure))
                    raise GitHubUnavailable(
                        f"GitHub failed {attempt} attempts in a row, the last one with: {failure}."
                    ) from None
                delay = self._retry_backoff_seconds * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311
                log.warning(
                    "github.retry", login=login, attempt=attempt, delay=round(delay, 3), error=str(failure)
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, payload: dict[str, Any], login: str) -> WindowCalendar:
        assert self._token is not None
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": "nadzu-contributions",
        }
        started = time.perf_counter()
        try:
            response = await self._http.post(self._url, json=payload, headers=headers)
        except httpx.TimeoutException as error:
            GITHUB_REQUESTS.labels(outcome="timeout").inc()
            raise _TransientFailure(f"timed out: {type(error).__name__}") from None
        except httpx.TransportError as error:
            GITHUB_REQUESTS.labels(outcome="connection_error").inc()
            raise _TransientFailure(f"connection failed: {type(error).__name__}") from None
        finally:
            GITHUB_LATENCY.observe(time.perf_counter() - started)

        GITHUB_REQUESTS.labels(outcome=str(response.status_code)).inc()
        record_rate_limit(response.headers)
        self._raise_for_status(response)
        return _parse_response(response, login)

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        status = response.status_code
        if status >= 500:
            raise _TransientFailure(f"HTTP {status}")
        if status == 401:
            # The token is never logged; GitHub's message is short and names no secret.
            log.error("github.bad_credentials", status=status, message=_message_of(response))
            raise TokenRejected("GitHub rejected the configured GITHUB_TOKEN (401 Bad credentials).")
        if status in (403, 429):
            wait = rate_limit_wait(response.headers)
            if wait is not None or status == 429:
                wait = wait or _DEFAULT_RATE_LIMIT_WAIT
                log.warning("github.rate_limited", status=status, retry_after=wait)
                raise GitHubRateLimited(f"GitHub's rate limit was reached (HTTP {status}).", retry_after=wait)
            log.error("github.forbidden", status=status, message=_message_of(response))
            raise GitHubUnavailable("GitHub refused the request (HTTP 403).")
        if status != 200:
            log.error("github.unexpected_status", status=status, message=_message_of(response))
            raise GitHubUnavailable(f"GitHub returned HTTP {status}.")


def record_rate_limit(headers: Mapping[str, str]) -> None:
    """Set the rate-limit gauges from a response's `x-ratelimit-*` headers; absent headers change nothing."""
    remaining = headers.get("x-ratelimit-remaining", "")
    if remaining.isdigit():
        GITHUB_RATE_LIMIT_REMAINING.set(int(remaining))
    reset = headers.get("x-ratelimit-reset", "")
    if reset.isdigit():
        GITHUB_RATE_LIMIT_RESET.set(int(reset))


def rate_limit_wait(headers: Mapping[str, str], now: float | None = None) -> int | None:
    """Seconds until GitHub accepts requests again, from `retry-after` or spent `x-ratelimit-*` headers.

    Returns None when the headers do not show a rate limit.
    """
    retry_after = headers.get("retry-after")
    if retry_after is not None and retry_after.strip().isdigit():
        return max(1, int(retry_after))
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            current = time.time() if now is None else now
            return max(1, int(reset) - int(current))
        return _DEFAULT_RATE_LIMIT_WAIT
    return None


def _message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return str(message)[:200]


def _parse_response(response: httpx.Response, login: str) -> WindowCalendar:
    try:
        answer = _Response.model_validate_json(response.content)
    except ValidationError as error:
        log.error("github.unparsable_response", login=login, error=str(error)[:300])
        raise GitHubUnavailable("GitHub's response could not be parsed.") from None

    error_types = {error.type for error in answer.errors}
    if error_types & _RATE_LIMIT_TYPES:
        wait = rate_limit_wait(response.headers) or _DEFAULT_RATE_LIMIT_WAIT
        log.warning("github.rate_limited", status=200, retry_after=wait)
        raise GitHubRateLimited("GitHub's rate limit was reached.", retry_after=wait)
    if "NOT_FOUND" in error_types:
        raise UserNotFound(f"GitHub has no user with the login {login!r}.")
    if answer.errors or answer.data is None or answer.data.user is None:
        messages = "; ".join(error.message for error in answer.errors)[:300]
        log.error("github.query_rejected", login=login, errors=messages)
        raise ContributionsError("GitHub rejected the calendar query.")

    user = answer.data.user
    collection = user.contributionsCollection
    days = []
    for week in collection.contributionCalendar.weeks:
        for day in week.contributionDays:
            try:
                days.append(
                    ContributionDay(
                        date=date.fromisoformat(day.date),
                        count=day.contributionCount,
                        level=_LEVELS[day.contributionLevel],
                    )
                )
            except (KeyError, ValueError):
                log.error("github.unreadable_day", login=login, day=day.model_dump())
                raise GitHubUnavailable("GitHub's response could not be parsed.") from None
    return WindowCalendar(login=user.login, days=days, contribution_years=collection.contributionYears)
