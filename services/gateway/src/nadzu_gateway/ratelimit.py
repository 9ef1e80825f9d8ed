"""Rate limits shared by every gateway replica: fixed windows counted in Redis, one round trip per decision.

Each policy is a quota per window. A window starts at a caller's first request and lasts `window` seconds,
so `t` in the `RateLimit` field is the exact time until the quota is whole again. A decision covers every
policy that applies to a request (a caller's request budget and, for enqueueing, the enqueue budget): one
Lua script reads all counters and increments them only when none is exhausted, atomically.

When Redis fails or does not answer within RATE_LIMIT_REDIS_TIMEOUT_SECONDS, the limiter counts in this
replica's memory instead, with the same policies, and goes back to Redis after a short pause. Limits stay
enforced, but per replica: with N replicas a caller can get up to N times its quota until Redis is back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from nadzu_common.logging import get_logger

from .redisproto import PipelinedRedis, RedisUnavailable, Script
from .settings import Rate

log = get_logger(__name__)

# Seconds the limiter keeps using its own counters after a Redis failure before it tries Redis again.
REDIS_RETRY_PAUSE_SECONDS = 1.0
_LOCAL_MAX_COUNTERS = 100_000

# KEYS: one counter per policy. ARGV: quota and window (ms) of each policy in KEYS order, then the mode:
# "hit" counts the request when every policy has quota left, "peek" only reads.
# Returns {allowed, count_1, ttl_ms_1, count_2, ttl_ms_2, ...} with counts after the request.
_DECIDE_SCRIPT = """
local n = #KEYS
local mode = ARGV[2 * n + 1]
local state = {}
local allowed = 1
for i = 1, n do
  local quota = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 then
    -- -2: no counter yet. -1: a counter without expiry, which this script never writes; start over.
    if ttl == -1 then
      redis.call('DEL', KEYS[i])
    end
    count = 0
    ttl = window
  end
  if count >= quota then
    allowed = 0
  end
  state[2 * i - 1] = count
  state[2 * i] = ttl
end
if allowed == 1 and mode == 'hit' then
  for i = 1, n do
    local count = redis.call('INCR', KEYS[i])
    if count == 1 then
      redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
    end
    state[2 * i - 1] = count
  end
end
table.insert(state, 1, allowed)
return state
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """A named quota per window, e.g. `"default";q=600;w=60` in `RateLimit-Policy`."""

    name: str
    quota: int
    window_seconds: int

    @classmethod
    def from_rate(cls, name: str, rate: Rate) -> Policy:
        return cls(name, rate.quota, rate.window_seconds)

    @property
    def header_item(self) -> str:
        return f'"{self.name}";q={self.quota};w={self.window_seconds}'


@dataclass(frozen=True, slots=True)
class PolicyState:
    policy: Policy
    remaining: int
    reset_seconds: int

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    states: tuple[PolicyState, ...]

    @property
    def retry_after(self) -> int:
        """Seconds until every exhausted policy has quota again (at least 1)."""
        waits = [state.reset_seconds for state in self.states if state.exhausted]
        return max(1, max(waits, default=1))

    def header_fields(self) -> list[tuple[bytes, bytes]]:
        """The `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-10)."""
        policies = ", ".join(state.policy.header_item for state in self.states)
        limits = ", ".join(
            f'"{state.policy.name}";r={state.remaining};t={state.reset_seconds}' for state in self.states
        )
        return [(b"ratelimit-policy", policies.encode()), (b"ratelimit", limits.encode())]


def _state(policy: Policy, count: int, ttl_ms: int) -> PolicyState:
    remaining = max(0, policy.quota - count)
    return PolicyState(policy, remaining, max(1, math.ceil(ttl_ms / 1000)))


class _LocalCounters:
    """The same fixed windows in this process's memory: the fallback while Redis is unavailable."""

    def __init__(self) -> None:
        # key -> [count, window end on the monotonic clock]
        self._counters: dict[str, list[float]] = {}

    def decide(self, keys: list[str], policies: list[Policy], consume: bool) -> Decision:
        now = time.monotonic()
        if len(self._counters) > _LOCAL_MAX_COUNTERS:
            self._counters = {key: value for key, value in self._counters.items() if value[1] > now}

        current: list[list[float]] = []
        allowed = True
        for key, policy in zip(keys, policies, strict=True):
            counter = self._counters.get(key)
            if counter is None or counter[1] <= now:
                counter = [0, now + policy.window_seconds]
            if counter[0] >= policy.quota:
                allowed = False
            current.append(counter)

        if allowed and consume:
            for key, counter in zip(keys, current, strict=True):
                counter[0] += 1
                self._counters[key] = counter

        states = tuple(
            _state(policy, int(counter[0]), int((counter[1] - now) * 1000))
            for policy, counter in zip(policies, current, strict=True)
        )
        return Decision(allowed, states)


class RateLimiter:
    """Decide whether a request fits its policies; counters live in Redis under `prefix`."""

    def __init__(self, client: PipelinedRedis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = Script(_DECIDE_SCRIPT)
        self._local = _LocalCounters()
        self._redis_paused_until = 0.0
        self.using_fallback = False

    def counter_key(self, policy: Policy, subject: str) -> str:
        # The quota and window are part of the key, so replicas with different settings never share counts.
        return f"{self._prefix}{policy.name}:{policy.quota}:{policy.window_seconds}:{subject}"

    async def hit(self, policies: list[Policy], subjects: list[str]) -> Decision:
        """Count one request against every policy, unless one of them is exhausted."""
        return await self._decide(policies, subjects, consume=True)

    async def peek(self, policies: list[Policy], subjects: list[str]) -> Decision:
        """Report the policies' state without counting anything."""
        return await self._decide(policies, subjects, consume=False)

    async def _decide(self, policies: list[Policy], subjects: list[str], consume: bool) -> Decision:
        keys = [self.counter_key(policy, subject) for policy, subject in zip(policies, subjects, strict=True)]
        if time.monotonic() < self._redis_paused_until:
            return self._local.decide(keys, policies, consume)

        arguments: list[int | str] = []
        for policy in policies:
            arguments.append(policy.quota)
            arguments.append(policy.window_seconds * 1000)
        arguments.append("hit" if consume else "peek")
        try:
            reply = await self._client.evalsha(self._script, keys, arguments)
        except RedisUnavailable as error:
            self._redis_paused_until = time.monotonic() + REDIS_RETRY_PAUSE_SECONDS
            if not self.using_fallback:
                self.using_fallback = True
                log.warning("ratelimit.redis_unavailable", error=repr(error), fallback="per-replica counters")
            return self._local.decide(keys, policies, consume)

        if self.using_fallback:
            self.using_fallback = False
            log.info("ratelimit.redis_recovered")
        states = tuple(
            _state(policy, int(reply[1 + 2 * index]), int(reply[2 + 2 * index]))
            for index, policy in enumerate(policies)
        )
        return Decision(bool(reply[0]), states)
