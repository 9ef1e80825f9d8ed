"""This replica's cache of verified API keys, and the subscription that evicts revoked ones.

A key is cached under the SHA-256 of its value, so a lookup is a dict access on a digest: no comparison
of secrets happens in the gateway, and the auth service compares hashes through an index. Entries last
AUTH_KEY_CACHE_SECONDS, never past the key's own expiry. A `KeyRevoked` event on the auth event stream
evicts the key on every replica; tests/edge/test_keys.py checks that two gateways reject a revoked key
within a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from nadzu_common.auth import AuthSubjects, KeyRevoked
from nadzu_common.bus import AUTH_EVENTS_STREAM
from nadzu_common.logging import get_logger

from .callers import Caller

log = get_logger(__name__)

_MAX_ENTRIES = 50_000
# Seconds between checks of the NATS connection's reconnect count.
_RECONNECT_CHECK_SECONDS = 0.5


class KeyCache:
    def __init__(self, ttl_seconds: float, max_entries: int = _MAX_ENTRIES) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        # key hash -> (caller, monotonic time the entry lapses, Unix time the key expires or None)
        self._entries: OrderedDict[str, tuple[Caller, float, float | None]] = OrderedDict()
        self._hashes_by_key_id: dict[uuid.UUID, str] = {}
        # Key ids revoked recently: a verification reply that raced with the revocation is not cached.
        self._revoked: dict[uuid.UUID, float] = {}

    def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        caller, lapses_at, expires_at = entry
        if time.monotonic() >= lapses_at or (expires_at is not None and time.time() >= expires_at):
            self._drop(key_hash)
            return None
        return caller

    def put(self, key_hash: str, caller: Caller) -> None:
        if self._ttl <= 0 or caller.key_id is None:
            return
        now = time.monotonic()
        if caller.key_id in self._revoked and self._revoked[caller.key_id] > now:
            return
        while len(self._entries) >= self._max_entries:
            oldest_hash, (oldest, _, _) = self._entries.popitem(last=False)
            self._forget_key_id(oldest, oldest_hash)
        self._entries[key_hash] = (caller, now + self._ttl, caller.expires_at)
        self._hashes_by_key_id[caller.key_id] = key_hash

    def evict_key(self, key_id: uuid.UUID) -> bool:
        """Drop a key by id; return whether it was cached."""
        now = time.monotonic()
        self._revoked = {kid: until for kid, until in self._revoked.items() if until > now}
        self._revoked[key_id] = now + max(self._ttl, 1.0)
        key_hash = self._hashes_by_key_id.pop(key_id, None)
        if key_hash is None:
            return False
        self._entries.pop(key_hash, None)
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._hashes_by_key_id.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key_hash: str) -> None:
        entry = self._entries.pop(key_hash, None)
        if entry is not None:
            self._forget_key_id(entry[0], key_hash)

    def _forget_key_id(self, caller: Caller, key_hash: str) -> None:
        if caller.key_id is not None and self._hashes_by_key_id.get(caller.key_id) == key_hash:
            del self._hashes_by_key_id[caller.key_id]


class RevocationFollower:
    """Evict revoked keys from the cache as `auth.evt.key-revoked` events arrive.

    An ordered consumer delivers new events only, because the cache starts empty. The client library
    recreates it from the last sequence seen when it detects a gap or a lost consumer, so events published
    while NATS was unreachable still arrive. As a second guard, the whole cache is dropped after every
    reconnect: keys are then verified again on their next use.
    """

    def __init__(self, nc: NatsClient, js: JetStreamContext, cache: KeyCache) -> None:
        self._nc = nc
        self._js = js
        self._cache = cache
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self._js.subscribe(
            AuthSubjects.KEY_REVOKED,
            stream=AUTH_EVENTS_STREAM.name,
            cb=self._on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=1.0,
        )
        self._watcher = asyncio.create_task(self._watch_reconnects(), name="keycache-reconnects")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = KeyRevoked.model_validate_json(msg.data)
        except ValidationError as error:
            log.warning("keycache.bad_event", subject=msg.subject, error=str(error))
            return
        cached = self._cache.evict_key(event.key_id)
        log.info("keycache.key_revoked", key_id=str(event.key_id), was_cached=cached)

    async def _watch_reconnects(self) -> None:
        seen = self._nc.stats["reconnects"]
        while True:
            await asyncio.sleep(_RECONNECT_CHECK_SECONDS)
            current = self._nc.stats["reconnects"]
            if current != seen:
                seen = current
                dropped = len(self._cache)
                self._cache.clear()
                log.info("keycache.cleared_after_reconnect", dropped=dropped)
