"""API key lifecycle over NATS against a running auth service, PostgreSQL and JetStream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from nadzu_auth.service import AuthService
from nadzu_common.auth import (
    AUTH_EVENTS_STREAM,
    AuthClient,
    AuthErrorCode,
    AuthSubjects,
    CreateKeyCommand,
    KeyRevoked,
    ListKeysQuery,
    RevokeKeyCommand,
    Scope,
    VerifyKeyReply,
    hash_api_key,
)
from nadzu_common.messages import HealthReply

from .conftest import ADMIN_KEY, StartService

ADMIN_HASH = hash_api_key(ADMIN_KEY)


class RevocationWatcher:
    """Collects `auth.evt.key-revoked` events from JetStream, as a gateway would."""

    def __init__(self) -> None:
        self.events: list[KeyRevoked] = []
        self._changed = asyncio.Condition()

    async def on_message(self, message) -> None:  # type: ignore[no-untyped-def]
        async with self._changed:
            self.events.append(KeyRevoked.model_validate_json(message.data))
            self._changed.notify_all()

    async def wait_for(self, key_id: uuid.UUID, count: int = 1) -> list[KeyRevoked]:
        def matching() -> list[KeyRevoked]:
            return [event for event in self.events if event.key_id == key_id]

        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(matching()) >= count)
        return matching()


@pytest_asyncio.fixture
async def revocations(nc: NatsClient, service: AuthService) -> AsyncIterator[RevocationWatcher]:
    watcher = RevocationWatcher()
    js = nc.jetstream()
    subscription = await js.subscribe(
        AuthSubjects.KEY_REVOKED,
        stream=AUTH_EVENTS_STREAM.name,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
        cb=watcher.on_message,
    )
    try:
        yield watcher
    finally:
        await subscription.unsubscribe()


async def create_key(auth: AuthClient, **fields: object) -> tuple[str, uuid.UUID]:
    reply = await auth.create_key(CreateKeyCommand(actor_key_hash=ADMIN_HASH, name="test", **fields))
    assert reply.error is None, reply.error
    assert reply.key is not None and reply.info is not None
    return reply.key, reply.info.id


async def test_bootstrap_key_verifies(service: AuthService, auth: AuthClient) -> None:
    reply = await auth.verify_key(ADMIN_KEY)

    assert reply.error is None
    assert reply.key is not None
    assert set(reply.key.scopes) == {Scope.ADMIN, Scope.DOWNLOADS}
    assert reply.key.prefix is None


async def test_unknown_key_invalid(service: AuthService, auth: AuthClient) -> None:
    reply = await auth.verify_key("nadzu_" + "A" * 40)

    assert reply.key is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.INVALID_KEY
    assert reply.error.http_status == 401
    assert not reply.error.retryable


async def test_created_key_verifies(service: AuthService, auth: AuthClient) -> None:
    expires_at = datetime.now(UTC) + timedelta(days=1)
    reply = await auth.create_key(
        CreateKeyCommand(
            actor_key_hash=ADMIN_HASH,
            name="  ci runner  ",
            scopes=[Scope.DOWNLOADS],
            tier="gold",
            expires_at=expires_at,
        )
    )
    assert reply.error is None
    assert reply.key is not None and reply.info is not None

    verified = await auth.verify_key(reply.key)

    assert verified.key is not None
    assert verified.key.id == reply.info.id
    assert verified.key.name == "ci runner"
    assert verified.key.scopes == [Scope.DOWNLOADS]
    assert verified.key.tier == "gold"
    assert verified.key.expires_at == expires_at
    assert verified.key.prefix == reply.key[:12]
    admin = await auth.verify_key(ADMIN_KEY)
    assert admin.key is not None
    assert verified.key.created_by == admin.key.id


async def test_secret_not_stored(service: AuthService, auth: AuthClient, db: asyncpg.Connection) -> None:
    secret, key_id = await create_key(auth)

    row = await db.fetchrow("SELECT * FROM auth.api_keys WHERE id = $1", key_id)

    assert row is not None
    assert row["key_hash"].hex() == hash_api_key(secret)
    assert all(secret not in str(value) for value in row.values())


async def test_default_scopes_and_tier(service: AuthService, auth: AuthClient) -> None:
    secret, _ = await create_key(auth)

    reply = await auth.verify_key(secret)

    assert reply.key is not None
    assert reply.key.scopes == [Scope.DOWNLOADS]
    assert reply.key.tier == "default"
    assert reply.key.expires_at is None


async def test_non_admin_cannot_create(service: AuthService, auth: AuthClient) -> None:
    secret, _ = await create_key(auth, scopes=[Scope.DOWNLOADS])

    reply = await auth.create_key(CreateKeyCommand(actor_key_hash=hash_api_key(secret), name="escalate"))

    assert reply.key is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.FORBIDDEN
    assert reply.error.http_status == 403


async def test_unknown_actor_rejected(service: AuthService, auth: AuthClient) -> None:
    unknown = hash_api_key("nadzu_" + "B" * 40)

    reply = await auth.list_keys(ListKeysQuery(actor_key_hash=unknown))

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.INVALID_KEY


async def test_created_admin_can_manage(service: AuthService, auth: AuthClient) -> None:
    admin_secret, _ = await create_key(auth, scopes=[Scope.ADMIN])

    reply = await auth.create_key(
        CreateKeyCommand(actor_key_hash=hash_api_key(admin_secret), name="by admin")
    )

    assert reply.error is None


async def test_past_expiry_rejected(service: AuthService, auth: AuthClient) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)

    reply = await auth.create_key(CreateKeyCommand(actor_key_hash=ADMIN_HASH, name="old", expires_at=past))

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.INVALID_REQUEST
    assert reply.error.reasons == ["expires_at"]


async def test_expired_key_rejected(service: AuthService, auth: AuthClient, db: asyncpg.Connection) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    secret, key_id = await create_key(auth, expires_at=soon)
    assert (await auth.verify_key(secret)).error is None

    await db.execute(
        "UPDATE auth.api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", key_id
    )
    reply = await auth.verify_key(secret)

    assert reply.key is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.KEY_EXPIRED
    assert reply.error.http_status == 401


async def test_revoked_key_rejected_and_announced(
    service: AuthService, auth: AuthClient, revocations: RevocationWatcher
) -> None:
    secret, key_id = await create_key(auth)

    reply = await auth.revoke_key(RevokeKeyCommand(actor_key_hash=ADMIN_HASH, key_id=key_id))

    assert reply.error is None
    assert reply.info is not None and reply.info.revoked_at is not None
    events = await revocations.wait_for(key_id)
    assert events[0].revoked_at == reply.info.revoked_at
    admin = await auth.verify_key(ADMIN_KEY)
    assert admin.key is not None
    assert events[0].actor_key_id == admin.key.id
    verified = await auth.verify_key(secret)
    assert verified.error is not None
    assert verified.error.code == AuthErrorCode.KEY_REVOKED


async def test_revoke_twice_keeps_first_time(
    service: AuthService, auth: AuthClient, revocations: RevocationWatcher
) -> None:
    _, key_id = await create_key(auth)
    command = RevokeKeyCommand(actor_key_hash=ADMIN_HASH, key_id=key_id)

    first = await auth.revoke_key(command)
    second = await auth.revoke_key(command)

    assert first.info is not None and second.info is not None
    assert second.error is None
    assert second.info.revoked_at == first.info.revoked_at
    await revocations.wait_for(key_id)


async def test_revoke_unknown_key(service: AuthService, auth: AuthClient) -> None:
    reply = await auth.revoke_key(RevokeKeyCommand(actor_key_hash=ADMIN_HASH, key_id=uuid.uuid4()))

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.KEY_NOT_FOUND
    assert reply.error.http_status == 404


async def test_list_keys_without_secrets(service: AuthService, auth: AuthClient, nc: NatsClient) -> None:
    secret, key_id = await create_key(auth)
    _, revoked_id = await create_key(auth)
    await auth.revoke_key(RevokeKeyCommand(actor_key_hash=ADMIN_HASH, key_id=revoked_id))

    every = await auth.list_keys(ListKeysQuery(actor_key_hash=ADMIN_HASH))
    active = await auth.list_keys(ListKeysQuery(actor_key_hash=ADMIN_HASH, include_revoked=False))
    raw = await nc.request(
        AuthSubjects.LIST_KEYS, ListKeysQuery(actor_key_hash=ADMIN_HASH).model_dump_json().encode(), timeout=5
    )

    assert every.error is None
    assert [item.id for item in every.items][:2] == [revoked_id, key_id]
    assert revoked_id not in {item.id for item in active.items}
    assert key_id in {item.id for item in active.items}
    assert secret not in raw.data.decode()
    assert hash_api_key(secret) not in raw.data.decode()
    assert "key_hash" not in json.loads(raw.data)["items"][0]


async def test_last_used_written_on_stop(
    start_service: StartService, auth: AuthClient, db: asyncpg.Connection
) -> None:
    async with start_service(auth_last_used_flush_seconds=3600):
        secret, key_id = await create_key(auth)
        before = datetime.now(UTC)
        assert (await auth.verify_key(secret)).error is None
        stored_while_running = await db.fetchval(
            "SELECT last_used_at FROM auth.api_keys WHERE id = $1", key_id
        )

    stored = await db.fetchval("SELECT last_used_at FROM auth.api_keys WHERE id = $1", key_id)

    assert stored_while_running is None
    assert stored is not None
    assert stored >= before - timedelta(seconds=1)


async def test_last_used_flushed_in_batches(
    start_service: StartService, auth: AuthClient, db: asyncpg.Connection
) -> None:
    async with start_service(auth_last_used_flush_seconds=0.05) as running:
        secrets_and_ids = [await create_key(auth) for _ in range(3)]
        for secret, _ in secrets_and_ids:
            assert (await auth.verify_key(secret)).error is None

        # Flushing directly waits on the write itself rather than on the interval.
        await running.keys._last_used.flush()
        rows = await db.fetch(
            "SELECT id FROM auth.api_keys WHERE last_used_at IS NOT NULL AND id = ANY($1::uuid[])",
            [key_id for _, key_id in secrets_and_ids],
        )

    assert len(rows) == 3


async def test_malformed_request_answered(service: AuthService, nc: NatsClient) -> None:
    cases = [b"not json", b"{}", b'{"v": 2, "key_hash": "' + b"0" * 64 + b'"}', b'{"key_hash": "xyz"}']
    for body in cases:
        message = await nc.request(AuthSubjects.VERIFY_KEY, body, timeout=5)
        reply = VerifyKeyReply.model_validate_json(message.data)

        assert reply.error is not None, body
        assert reply.error.code == AuthErrorCode.INVALID_REQUEST, body
        assert reply.error.http_status == 422


async def test_unknown_scope_rejected(service: AuthService, nc: NatsClient) -> None:
    body = {"actor_key_hash": ADMIN_HASH, "name": "x", "scopes": ["root"]}

    message = await nc.request(AuthSubjects.CREATE_KEY, json.dumps(body).encode(), timeout=5)

    assert json.loads(message.data)["error"]["code"] == "invalid-request"
    assert json.loads(message.data)["error"]["reasons"] == ["scopes.0"]


async def test_health_reports_database(service: AuthService, nc: NatsClient) -> None:
    message = await nc.request(AuthSubjects.HEALTH, b"{}", timeout=5)

    reply = HealthReply.model_validate_json(message.data)
    assert reply.status == "ok"
    assert reply.checks == {"database": "ok"}


async def test_no_service_is_unavailable(nats_url: str, auth: AuthClient) -> None:
    reply = await auth.verify_key(ADMIN_KEY)

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.UNAVAILABLE
    assert reply.error.retryable
    assert reply.error.http_status == 503
