"""Start-up: migrations under concurrency, the bootstrap admin key, settings and the entry point."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from nadzu_auth.settings import AuthSettings
from nadzu_auth.storage import MIGRATIONS, Storage
from nadzu_common.auth import (
    AUTH_EVENTS_STREAM,
    AuthClient,
    AuthErrorCode,
    AuthSubjects,
    KeyRevoked,
    RevokeKeyCommand,
    hash_api_key,
)
from nadzu_common.settings import load_settings

from .conftest import ADMIN_KEY, SESSION_SECRET, StartService

NEW_ADMIN_KEY = "a-rotated-operator-admin-secret-9876543210"
ENTRY_POINT = Path(sys.executable).parent / "nadzu-auth"


async def test_concurrent_migrations_apply_once(database_url: str, db: asyncpg.Connection) -> None:
    stores = [await Storage.connect(database_url, pool_size=1) for _ in range(6)]
    try:
        results = await asyncio.gather(*(store.migrate() for store in stores))
    finally:
        for store in stores:
            await store.close()

    applied = sorted(results, key=len)
    assert applied[-1] == list(range(1, len(MIGRATIONS) + 1))
    assert all(result == [] for result in applied[:-1])
    versions = await db.fetch("SELECT version FROM auth.schema_migrations ORDER BY version")
    assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))


async def test_replicas_start_together(
    start_service: StartService, auth: AuthClient, db: asyncpg.Connection
) -> None:
    managers = [start_service() for _ in range(3)]
    await asyncio.gather(*(manager.__aenter__() for manager in managers))
    try:
        replies = await asyncio.gather(*(auth.verify_key(ADMIN_KEY) for _ in range(20)))
    finally:
        for manager in reversed(managers):
            await manager.__aexit__(None, None, None)

    assert all(reply.error is None for reply in replies)
    count = await db.fetchval("SELECT count(*) FROM auth.api_keys WHERE is_bootstrap")
    assert count == 1


async def test_bootstrap_key_stored_once(
    start_service: StartService, auth: AuthClient, db: asyncpg.Connection
) -> None:
    async with start_service():
        first = await auth.verify_key(ADMIN_KEY)
    async with start_service():
        second = await auth.verify_key(ADMIN_KEY)

    assert first.key is not None and second.key is not None
    assert first.key.id == second.key.id
    rows = await db.fetch("SELECT key_hash FROM auth.api_keys")
    assert [row["key_hash"].hex() for row in rows] == [hash_api_key(ADMIN_KEY)]


async def test_rotated_bootstrap_key_replaces_old(
    start_service: StartService, auth: AuthClient, nc: NatsClient
) -> None:
    async with start_service():
        old = await auth.verify_key(ADMIN_KEY)
    assert old.key is not None

    received: asyncio.Queue[KeyRevoked] = asyncio.Queue()

    async def collect(message) -> None:  # type: ignore[no-untyped-def]
        await received.put(KeyRevoked.model_validate_json(message.data))

    subscription = await nc.jetstream().subscribe(
        AuthSubjects.KEY_REVOKED,
        stream=AUTH_EVENTS_STREAM.name,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
        cb=collect,
    )
    try:
        async with start_service(admin_api_key=NEW_ADMIN_KEY):
            new = await auth.verify_key(NEW_ADMIN_KEY)
            stale = await auth.verify_key(ADMIN_KEY)
            async with asyncio.timeout(5):
                event = await received.get()
                while event.key_id != old.key.id:
                    event = await received.get()
    finally:
        await subscription.unsubscribe()

    assert new.error is None
    assert stale.error is not None
    assert stale.error.code == AuthErrorCode.KEY_REVOKED
    assert event.actor_key_id is None


async def test_revoked_bootstrap_key_stays_revoked(start_service: StartService, auth: AuthClient) -> None:
    async with start_service():
        admin = await auth.verify_key(ADMIN_KEY)
        assert admin.key is not None
        command = RevokeKeyCommand(actor_key_hash=hash_api_key(ADMIN_KEY), key_id=admin.key.id)
        assert (await auth.revoke_key(command)).error is None

    async with start_service():
        reply = await auth.verify_key(ADMIN_KEY)

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.KEY_REVOKED


async def test_no_bootstrap_key(
    start_service: StartService, auth: AuthClient, db: asyncpg.Connection
) -> None:
    async with start_service(admin_api_key=None):
        reply = await auth.verify_key(ADMIN_KEY)

    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.INVALID_KEY
    assert await db.fetchval("SELECT count(*) FROM auth.api_keys") == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SESSION_SECRET", "short", "SESSION_SECRET: Value error, must be at least 32 bytes long (got 5)"),
        ("ADMIN_API_KEY", "x" * 31, "ADMIN_API_KEY: Value error, must be 32 to 256 characters long (got 31)"),
        ("ADMIN_API_KEY", "nzs1." + "x" * 40, "must not start with the session token prefix"),
        ("ADMIN_API_KEY", "x" * 20 + " " + "x" * 20, "must be printable ASCII without spaces"),
        ("RECAPTCHA_MIN_SCORE", "1.5", "RECAPTCHA_MIN_SCORE"),
    ],
)
def test_invalid_settings_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as raised:
        load_settings(AuthSettings)

    assert message in str(raised.value)


def test_empty_optional_settings_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("RECAPTCHA_SECRET", "")
    monkeypatch.setenv("ADMIN_API_KEY", "")
    monkeypatch.setenv("RECAPTCHA_EXPECTED_HOSTNAMES", " a.example , B.example ,")

    settings = load_settings(AuthSettings)

    assert settings.recaptcha_secret is None
    assert settings.admin_api_key is None
    assert settings.expected_hostnames == frozenset({"a.example", "b.example"})


def test_missing_session_secret_stops_start(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SESSION_", "ADMIN_"))}

    result = subprocess.run(
        [str(ENTRY_POINT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode != 0
    assert "invalid configuration: SESSION_SECRET: Field required" in result.stderr


async def test_entry_point_serves_and_stops(
    tmp_path: Path, nats_url: str, database_url: str, auth: AuthClient, nc: NatsClient
) -> None:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "SESSION_SECRET": SESSION_SECRET,
        "ADMIN_API_KEY": ADMIN_KEY,
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        str(ENTRY_POINT), cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    lines: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while not any(line.get("event") == "auth.started" for line in lines):
                raw = await process.stderr.readline()
                assert raw, "nadzu-auth exited before it started"
                lines.append(json.loads(raw))

        await nc.flush()
        reply = await auth.verify_key(ADMIN_KEY)
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await process.stderr.read()
            code = await process.wait()

    assert reply.error is None
    assert code == 0
    assert b'"auth.stopped"' in rest
    logged = json.dumps(lines) + rest.decode()
    assert ADMIN_KEY not in logged
    assert SESSION_SECRET not in logged
