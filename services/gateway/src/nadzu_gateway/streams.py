"""Open SSE streams per caller, counted across every gateway replica in Redis.

Each open stream is a member of a sorted set per caller, scored with the time its lease ends. The replica
that holds a stream renews the leases of all its streams every third of a lease, so the streams of a
replica that crashed stop counting after one lease. Adding a stream trims expired members, counts the
rest and adds the new one in one script, so two replicas cannot both take the last slot.

When Redis is unavailable, this replica counts its own streams instead: the cap then holds per replica.
"""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

from nadzu_common.logging import get_logger

log = get_logger(__name__)

LEASE_SECONDS = 60

# KEYS[1]: the caller's set. ARGV: lease (ms), cap, member. Returns 1 when the stream was added.
_ACQUIRE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: sets; ARGV[1]: lease (ms), then one member per key. Extends the leases of streams still open.
_RENEW_SCRIPT = """
local now = redis.call('TIME')
local until_ms = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""


class StreamSlots:
    def __init__(self, client: redis.Redis, prefix: str, cap: int) -> None:
        self._client = client
        self._prefix = prefix
        self.cap = cap
        self._acquire = client.register_script(_ACQUIRE_SCRIPT)
        self._renew = client.register_script(_RENEW_SCRIPT)
        # stream id -> (owner, whether Redis counts it)
        self._open: dict[str, tuple[str, bool]] = {}
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, owner: str) -> str:
        return f"{self._prefix}streams:{owner}"

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_forever(), name="stream-slot-renewal")

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def acquire(self, owner: str) -> str | None:
        """Take a stream slot for `owner`; return its id, or None when the owner is at the cap."""
        stream_id = uuid.uuid4().hex
        try:
            added = await self._acquire(
                keys=[self._key(owner)], args=[LEASE_SECONDS * 1000, self.cap, stream_id]
            )
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("streams.redis_unavailable", error=repr(error), fallback="per-replica count")
            local = sum(1 for open_owner, _ in self._open.values() if open_owner == owner)
            if local >= self.cap:
                return None
            self._open[stream_id] = (owner, False)
            return stream_id

        if not added:
            return None
        self._open[stream_id] = (owner, True)
        return stream_id

    async def release(self, stream_id: str) -> None:
        owner, in_redis = self._open.pop(stream_id, ("", False))
        if not in_redis:
            return
        try:
            await self._client.zrem(self._key(owner), stream_id)
        except (RedisError, OSError, TimeoutError) as error:
            # The lease runs out on its own.
            log.warning("streams.release_failed", error=repr(error))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            held = [(owner, stream_id) for stream_id, (owner, in_redis) in self._open.items() if in_redis]
            if not held:
                continue
            try:
                await self._renew(
                    keys=[self._key(owner) for owner, _ in held],
                    args=[LEASE_SECONDS * 1000, *(stream_id for _, stream_id in held)],
                )
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("streams.renew_failed", streams=len(held), error=repr(error))
