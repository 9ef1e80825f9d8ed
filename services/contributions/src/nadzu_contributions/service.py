"""The contributions query: validation, cache, yearly windows fetched from GitHub, and the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime

import redis.asyncio as redis

from nadzu_common.contributions import ContributionCalendar, ContributionsQuery, ContributionsReply
from nadzu_common.logging import get_logger

from .cache import CalendarCache
from .calendar import build_calendar, zero_window
from .errors import ContributionsError, DefaultUserNotConfigured, GitHubRateLimited, TokenMissing
from .github import GitHubClient, WindowCalendar
from .settings import ContributionsSettings
from .span import Span, resolve_span, validate_username
from .svg import render_svg

log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ContributionsService:
    def __init__(
        self,
        settings: ContributionsSettings,
        client: redis.Redis,
        github: GitHubClient,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._redis = client
        self._github = github
        self._clock = clock
        self._window_slots = asyncio.Semaphore(settings.github_max_parallel_windows)
        self._rate_limit_key = f"{settings.contributions_key_prefix}github:rate-limited"
        self.cache = CalendarCache(
            client,
            settings.contributions_key_prefix,
            fresh_ttl=settings.contributions_cache_ttl,
            stale_ttl=settings.contributions_stale_ttl,
            clock=clock,
        )

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()

    async def health(self) -> str | None:
        """Return None when Redis replies to a ping, else the reason."""
        try:
            await self._redis.ping()
        except redis.RedisError as error:
            return f"redis: {type(error).__name__}"
        return None

    async def answer(self, query: ContributionsQuery) -> ContributionsReply:
        """Build the reply to one query, or raise a `ContributionsError` for the caller to see."""
        login = query.username if query.username is not None else self._settings.github_default_user
        if login is None:
            raise DefaultUserNotConfigured(
                "No username was given and GITHUB_DEFAULT_USER is not set. "
                "Request /api/v1/contributions/{username} instead."
            )
        validate_username(login)
        today = self._clock().date()
        span = resolve_span(query.year, query.from_date, query.to_date, today)
        if not self._github.configured:
            raise TokenMissing("GITHUB_TOKEN is not set, so contributions cannot be fetched from GitHub.")

        key = self.cache.key(login, span.first.isoformat(), span.last.isoformat())
        result = await self.cache.get(key, lambda: self._fetch(login, span, today))
        calendar = result.calendar.model_copy(update={"cached": result.cached})

        if query.format == "svg":
            return ContributionsReply(svg=render_svg(calendar, query.theme), max_age=result.max_age)
        return ContributionsReply(calendar=calendar, max_age=result.max_age)

    async def _fetch(self, login: str, span: Span, today: date) -> ContributionCalendar:
        """Fetch every window of the span; any failed window fails the whole calendar."""
        await self._raise_if_rate_limited()
        windows = span.windows()
        log.info("contributions.fetch", login=login, first=span.first, last=span.last, windows=len(windows))

        # The newest window also lists the years with any contributions. Older windows in other years
        # are all zeros and are not fetched.
        newest = await self._fetch_window(login, windows[-1])
        years = set(newest.contribution_years)
        results: list[WindowCalendar | None] = [None] * (len(windows) - 1) + [newest]
        pending = {
            index: window
            for index, window in enumerate(windows[:-1])
            if any(year in years for year in range(window.first.year, window.last.year + 1))
        }
        for index, window in enumerate(windows[:-1]):
            if index not in pending:
                results[index] = zero_window(newest.login, window)

        if pending:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = {
                        index: group.create_task(self._fetch_window(login, window))
                        for index, window in pending.items()
                    }
            except* ContributionsError as failures:
                raise failures.exceptions[0] from None
            for index, task in tasks.items():
                results[index] = task.result()

        complete = [window for window in results if window is not None]
        return build_calendar(span, complete, today, self._clock())

    async def _fetch_window(self, login: str, window: Span) -> WindowCalendar:
        async with self._window_slots:
            try:
                return await self._github.fetch_window(login, window)
            except GitHubRateLimited as error:
                await self._remember_rate_limit(error.retry_after or 60)
                raise

    async def _raise_if_rate_limited(self) -> None:
        """Raise without calling GitHub while a rate limit GitHub reported is still in force."""
        try:
            remaining = await self._redis.ttl(self._rate_limit_key)
        except redis.RedisError:
            return
        if remaining > 0:
            raise GitHubRateLimited("GitHub's rate limit was reached.", retry_after=remaining)

    async def _remember_rate_limit(self, seconds: int) -> None:
        try:
            await self._redis.set(self._rate_limit_key, "1", ex=max(1, seconds))
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="rate_limit", error=str(error))
