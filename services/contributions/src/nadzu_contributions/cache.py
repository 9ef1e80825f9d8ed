"""Calendar cache in Redis: fresh for a TTL, then served stale while one refresh runs.

Concurrent misses for one calendar make one upstream fetch, across replicas. The first request takes a
Redis lock and fetches. The others wait for its completion message on a pub/sub channel, then read the
stored calendar or raise the same error. Only complete calendars are stored; a failed fetch stores
nothing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as redis
from pydantic import BaseModel, ValidationError

from nadzu_common.contributions import ContributionCalendar, ContributionsProblem
from nadzu_common.logging import get_logger

from .errors import ContributionsError, SharedFetchFailed
from .metrics import CACHE_LOOKUPS

log = get_logger(__name__)

Loader = Callable[[], Awaitable[ContributionCalendar]]
Clock = Callable[[], datetime]

# Seconds a fetch may hold the lock. A waiter that hears nothing for this long assumes the holder died
# and tries to take the lock itself.
LOCK_TTL_SECONDS = 60
# Seconds a shutdown waits for running refreshes before cancelling them.
STOP_WAIT_SECONDS = 5
# Seconds between two refresh attempts of one stale calendar after a failed refresh.
REFRESH_BACKOFF_SECONDS = 30

# Delete the lock only while it still holds our token, so an expired lock taken over by another
# replica is left alone.
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class _Completion(BaseModel):
    key: str
    problem: ContributionsProblem | None = None


@dataclass(frozen=True)
class CacheResult:
    calendar: ContributionCalendar
    cached: bool
    # Seconds the calendar stays fresh; 0 for a stale one.
    max_age: int


class CalendarCache:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        fresh_ttl: int,
        stale_ttl: int,
        clock: Clock,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._fresh_ttl = fresh_ttl
        self._stale_ttl = stale_ttl
        self._clock = clock
        self._channel = f"{prefix}completed"
        self._waiters: dict[str, list[asyncio.Future[_Completion]]] = {}
        self._flights: dict[str, asyncio.Task[CacheResult]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._refreshing: set[str] = set()
        self._pubsub: redis.client.PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def key(self, login: str, first: str, last: str) -> str:
        return f"{self._prefix}calendar:v1:{login.lower()}:{first}:{last}"

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="contributions-cache-listener")
        await self._subscribed.wait()

    async def stop(self) -> None:
        # A cancelled refresh loses nothing: the stale calendar stays in Redis and a later request retries.
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=STOP_WAIT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()

    async def wait_background(self) -> None:
        """Wait for the stale-calendar refreshes running now."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def get(self, key: str, loader: Loader) -> CacheResult:
        """Return the calendar under `key`, calling `loader` on a miss (once across replicas)."""
        calendar = await self._read(key)
        if calendar is not None:
            age = (self._clock() - calendar.fetched_at).total_seconds()
            if age < self._fresh_ttl:
                CACHE_LOOKUPS.labels(result="fresh").inc()
                return CacheResult(calendar, cached=True, max_age=int(self._fresh_ttl - age))

            CACHE_LOOKUPS.labels(result="stale").inc()
            self._start_refresh(key, loader)
            return CacheResult(calendar, cached=True, max_age=0)

        CACHE_LOOKUPS.labels(result="miss").inc()
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.create_task(self._load_once(key, loader))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        # Shielded: a caller that gives up does not cancel the fetch the other callers wait for.
        return await asyncio.shield(flight)

    async def _load_once(self, key: str, loader: Loader) -> CacheResult:
        while True:
            completion = self._expect_completion(key)
            try:
                token = await self._acquire(key)
                if token is not None:
                    return await self._load_as_leader(key, loader, token)

                # Another request holds the lock. It may have stored the calendar already.
                calendar = await self._read(key)
                if calendar is not None:
                    return CacheResult(calendar, cached=True, max_age=self._max_age(calendar))
                try:
                    done = await asyncio.wait_for(asyncio.shield(completion), LOCK_TTL_SECONDS)
                except TimeoutError:
                    log.warning("contributions.cache_wait_timeout", key=key)
                    continue
                if done.problem is not None:
                    raise SharedFetchFailed(done.problem)
                calendar = await self._read(key)
                if calendar is not None:
                    return CacheResult(calendar, cached=True, max_age=self._max_age(calendar))
            finally:
                self._forget_completion(key, completion)

    async def _load_as_leader(self, key: str, loader: Loader, token: str) -> CacheResult:
        # The calendar is stored before the lock is released, so a request that takes the lock next
        # finds it instead of fetching again.
        try:
            calendar = await loader()
        except ContributionsError as error:
            await self._publish(_Completion(key=key, problem=error.to_problem()))
            raise
        except BaseException:
            problem = ContributionsError("Fetching the calendar failed.").to_problem()
            await self._publish(_Completion(key=key, problem=problem))
            raise
        else:
            await self._write(key, calendar)
            await self._publish(_Completion(key=key))
        finally:
            await self._release(key, token)
        return CacheResult(calendar, cached=False, max_age=self._fresh_ttl)

    def _start_refresh(self, key: str, loader: Loader) -> None:
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        task = asyncio.create_task(self._refresh(key, loader))
        self._background.add(task)

        def forget(finished: asyncio.Task[None]) -> None:
            self._background.discard(finished)
            self._refreshing.discard(key)

        task.add_done_callback(forget)

    async def _refresh(self, key: str, loader: Loader) -> None:
        backoff_key = f"{key}:refresh-backoff"
        try:
            if await self._redis.exists(backoff_key):
                return
            token = await self._acquire(key)
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="refresh", error=str(error))
            return
        if token is None:
            return

        try:
            calendar = await loader()
        except ContributionsError as error:
            # The stale calendar stays; the next attempt waits so a failing GitHub is not called per request.
            wait = max(error.retry_after or 0, REFRESH_BACKOFF_SECONDS)
            log.warning("contributions.refresh_failed", key=key, slug=error.slug, retry_in=wait)
            # A miss that arrived after the stale calendar expired waits on this lock, so it gets the error.
            await self._publish(_Completion(key=key, problem=error.to_problem()))
            try:
                await self._redis.set(backoff_key, "1", ex=wait)
            except redis.RedisError:
                pass
        except Exception:
            log.exception("contributions.refresh_crashed", key=key)
            problem = ContributionsError("Fetching the calendar failed.").to_problem()
            await self._publish(_Completion(key=key, problem=problem))
        else:
            await self._write(key, calendar)
            await self._publish(_Completion(key=key))
            log.info("contributions.refreshed", key=key)
        finally:
            await self._release(key, token)

    def _max_age(self, calendar: ContributionCalendar) -> int:
        age = (self._clock() - calendar.fetched_at).total_seconds()
        return max(0, int(self._fresh_ttl - age))

    # Redis operations. They catch `RedisError`, so a Redis outage degrades to fetching without cache or
    # lock instead of failing the query.

    async def _read(self, key: str) -> ContributionCalendar | None:
        try:
            raw = await self._redis.get(key)
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="read", error=str(error))
            return None
        if raw is None:
            return None
        try:
            return ContributionCalendar.model_validate_json(raw)
        except ValidationError:
            log.warning("contributions.cache_entry_invalid", key=key)
            return None

    async def _write(self, key: str, calendar: ContributionCalendar) -> None:
        try:
            await self._redis.set(
                key, calendar.model_dump_json(), ex=max(1, self._fresh_ttl + self._stale_ttl)
            )
            await self._redis.delete(f"{key}:refresh-backoff")
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="write", error=str(error))

    async def _acquire(self, key: str) -> str | None:
        """Take the fetch lock of `key`; returns its token, or None when another request holds it."""
        token = secrets.token_hex(16)
        try:
            acquired = await self._redis.set(f"{key}:lock", token, nx=True, ex=LOCK_TTL_SECONDS)
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="lock", error=str(error))
            return token
        return token if acquired else None

    async def _release(self, key: str, token: str) -> None:
        try:
            await self._redis.eval(_RELEASE_SCRIPT, 1, f"{key}:lock", token)  # type: ignore[misc]
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="unlock", error=str(error))

    async def _publish(self, completion: _Completion) -> None:
        try:
            await self._redis.publish(self._channel, completion.model_dump_json())
        except redis.RedisError as error:
            log.warning("contributions.cache_unavailable", operation="publish", error=str(error))

    # Completion messages: one subscription per replica, fanned out to the local waiters.

    def _expect_completion(self, key: str) -> asyncio.Future[_Completion]:
        future: asyncio.Future[_Completion] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    def _forget_completion(self, key: str, future: asyncio.Future[_Completion]) -> None:
        waiters = self._waiters.get(key, [])
        if future in waiters:
            waiters.remove(future)
        if not waiters:
            self._waiters.pop(key, None)
        future.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self._channel)
                self._subscribed.set()
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except redis.RedisError as error:
                log.warning("contributions.cache_listener_lost", error=str(error))
                self._subscribed.set()
                await asyncio.sleep(1)

    def _dispatch(self, data: bytes | str) -> None:
        try:
            completion = _Completion.model_validate_json(data)
        except (ValidationError, json.JSONDecodeError):
            log.warning("contributions.completion_invalid")
            return
        for future in self._waiters.get(completion.key, []):
            if not future.done():
                future.set_result(completion)
