"""API keys: verification, creation, listing, revocation and the bootstrap admin key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nadzu_common.auth import (
    DEFAULT_TIER,
    ApiKeyInfo,
    CreateKeyCommand,
    ListKeysQuery,
    RevokeKeyCommand,
    Scope,
    display_prefix,
    generate_api_key,
    hash_api_key,
)
from nadzu_common.auth import KeyRevoked as KeyRevokedEvent
from nadzu_common.ids import new_id
from nadzu_common.logging import get_logger

from .errors import (
    Forbidden,
    InvalidKey,
    InvalidRequest,
    KeyExpired,
    KeyNotFound,
    KeyRevoked,
    StorageUnavailable,
)
from .metrics import KEYS_CREATED, KEYS_REVOKED
from .storage import NewKey, Storage

log = get_logger(__name__)
audit = get_logger("nadzu_auth.audit")

BOOTSTRAP_KEY_NAME = "bootstrap admin (ADMIN_API_KEY)"
BOOTSTRAP_SCOPES = [Scope.ADMIN, Scope.DOWNLOADS]

Clock = Callable[[], datetime]
PublishRevoked = Callable[[KeyRevokedEvent, str | None], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LastUsedRecorder:
    """Collects keys' last-used times in memory and writes them in one batch per interval.

    NOTE: the gateway caches verified keys, so a key's last-used time is only as fresh as the gateway's
    cache lifetime plus the flush interval.
    """

    def __init__(self, storage: Storage, interval_seconds: float) -> None:
        self._storage = storage
        self._interval = interval_seconds
        self._pending: dict[uuid.UUID, datetime] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: uuid.UUID, used_at: datetime) -> None:
        self._pending[key_id] = used_at

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="auth-last-used-flush")

    async def stop(self) -> None:
        """Stop the loop and write what is pending."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return

        batch, self._pending = self._pending, {}
        try:
            await self._storage.record_last_used(batch)
        except StorageUnavailable:
            # Keep the batch for the next attempt; newer times recorded meanwhile win.
            for key_id, used_at in batch.items():
                if key_id not in self._pending:
                    self._pending[key_id] = used_at
            log.warning("keys.last_used_flush_failed", pending=len(self._pending))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            except TimeoutError:
                await self.flush()


class KeyService:
    """The rules for API keys; storage and event publishing are passed in."""

    def __init__(
        self,
        storage: Storage,
        last_used: LastUsedRecorder,
        publish_revoked: PublishRevoked,
        clock: Clock = utc_now,
    ) -> None:
        self._storage = storage
        self._last_used = last_used
        self._publish_revoked = publish_revoked
        self._clock = clock

    async def verify(self, key_hash: str) -> ApiKeyInfo:
        """Return the valid key with this hash; raise `InvalidKey`, `KeyExpired` or `KeyRevoked`."""
        key = await self._storage.find_by_hash(key_hash)
        if key is None:
            raise InvalidKey("the API key is not valid")

        now = self._clock()
        if key.revoked_at is not None:
            raise KeyRevoked("the API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise KeyExpired("the API key has expired")

        self._last_used.touch(key.id, now)
        return key

    async def authorize_admin(self, actor_key_hash: str) -> ApiKeyInfo:
        """Return the acting key when it is valid and has the `admin` scope; raise otherwise."""
        actor = await self.verify(actor_key_hash)
        if not actor.has_scope(Scope.ADMIN):
            raise Forbidden("the acting key lacks the 'admin' scope")
        return actor

    async def create(self, command: CreateKeyCommand) -> tuple[str, ApiKeyInfo]:
        """Create a key; return its secret (shown once) and its stored record."""
        actor = await self.authorize_admin(command.actor_key_hash)

        now = self._clock()
        if command.expires_at is not None and command.expires_at <= now:
            raise InvalidRequest(
                f"expires_at must be in the future (got {command.expires_at.isoformat()})",
                reasons=["expires_at"],
            )

        secret = generate_api_key()
        info = await self._storage.insert_key(
            NewKey(
                id=new_id(),
                key_hash=hash_api_key(secret),
                prefix=display_prefix(secret),
                name=command.name,
                scopes=sorted(set(command.scopes)),
                tier=command.tier,
                created_at=now,
                created_by=actor.id,
                expires_at=command.expires_at,
            )
        )
        KEYS_CREATED.inc()
        audit.info(
            "audit.key_created",
            actor_key_id=str(actor.id),
            key_id=str(info.id),
            key_prefix=info.prefix,
            name=info.name,
            scopes=[scope.value for scope in info.scopes],
            tier=info.tier,
            expires_at=info.expires_at.isoformat() if info.expires_at else None,
            request_id=command.request_id,
        )
        return secret, info

    async def list(self, query: ListKeysQuery) -> list[ApiKeyInfo]:
        await self.authorize_admin(query.actor_key_hash)
        return await self._storage.list_keys(query.include_revoked)

    async def revoke(self, command: RevokeKeyCommand) -> ApiKeyInfo:
        """Revoke a key and publish `auth.evt.key-revoked`, also when it was revoked before.

        Publishing again on a repeated request lets a caller whose first attempt stored the revocation but
        failed to publish retry until every gateway has heard of it.
        """
        actor = await self.authorize_admin(command.actor_key_hash)
        now = self._clock()
        info = await self._storage.revoke_key(command.key_id, now, actor.id)
        if info is None:
            raise KeyNotFound(f"no API key has id {command.key_id}")
        if info.revoked_at == now:
            KEYS_REVOKED.inc()

        assert info.revoked_at is not None
        audit.info(
            "audit.key_revoked",
            actor_key_id=str(actor.id),
            key_id=str(info.id),
            key_prefix=info.prefix,
            name=info.name,
            revoked_at=info.revoked_at.isoformat(),
            request_id=command.request_id,
        )
        event = KeyRevokedEvent(key_id=info.id, revoked_at=info.revoked_at, actor_key_id=actor.id)
        await self._publish_revoked(event, command.request_id)
        return info

    async def ensure_bootstrap_key(self, admin_api_key: str) -> None:
        """Store the ADMIN_API_KEY hash as an admin key unless stored; revoke earlier bootstrap keys."""
        outcome = await self._storage.ensure_bootstrap_key(
            NewKey(
                id=new_id(),
                key_hash=hash_api_key(admin_api_key),
                prefix=None,
                name=BOOTSTRAP_KEY_NAME,
                scopes=BOOTSTRAP_SCOPES,
                tier=DEFAULT_TIER,
                created_at=self._clock(),
                is_bootstrap=True,
            )
        )
        if not outcome.inserted:
            if outcome.key.revoked_at is not None:
                log.warning(
                    "keys.bootstrap_key_revoked",
                    key_id=str(outcome.key.id),
                    hint="ADMIN_API_KEY was revoked; set a new value to get a working bootstrap key",
                )
            return

        KEYS_CREATED.inc()
        audit.info(
            "audit.key_created",
            actor_key_id=None,
            key_id=str(outcome.key.id),
            name=outcome.key.name,
            scopes=[scope.value for scope in outcome.key.scopes],
            tier=outcome.key.tier,
            bootstrap=True,
        )
        for replaced in outcome.replaced:
            assert replaced.revoked_at is not None
            KEYS_REVOKED.inc()
            audit.info(
                "audit.key_revoked",
                actor_key_id=None,
                key_id=str(replaced.id),
                name=replaced.name,
                reason="ADMIN_API_KEY changed",
            )
            event = KeyRevokedEvent(key_id=replaced.id, revoked_at=replaced.revoked_at)
            await self._publish_revoked(event, None)
