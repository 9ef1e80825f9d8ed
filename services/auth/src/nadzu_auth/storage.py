"""PostgreSQL storage of API keys, in the `auth` schema that only this service writes.

Migrations run at start-up inside one transaction that holds an advisory lock, so replicas starting at
the same time apply each migration once and the others wait, then find nothing left to do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from nadzu_common.auth import ApiKeyInfo, Scope
from nadzu_common.logging import get_logger

from .errors import StorageUnavailable

log = get_logger(__name__)

# Key of the transaction-level advisory lock that serialises migrations and bootstrap-key changes. Any
# constant works as long as no other code in the same database takes it; this one is "nadzuath" in ASCII.
MIGRATION_LOCK_ID = 0x6E61647A75617468

# Seconds to wait for a pooled connection or a statement before reporting the database unavailable.
_ACQUIRE_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 10.0

# Append only: a migration's position is its version number, and an applied migration never changes.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE auth.api_keys (
        id uuid PRIMARY KEY,
        key_hash bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
        prefix text,
        name text NOT NULL,
        scopes text[] NOT NULL,
        tier text NOT NULL,
        is_bootstrap boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by uuid,
        expires_at timestamptz,
        revoked_at timestamptz,
        revoked_by uuid,
        last_used_at timestamptz
    );
    CREATE INDEX api_keys_created_at ON auth.api_keys (created_at DESC);
    CREATE INDEX api_keys_active_bootstrap ON auth.api_keys (id) WHERE is_bootstrap AND revoked_at IS NULL;
    """,
)

_KEY_COLUMNS = "id, prefix, name, scopes, tier, created_at, created_by, expires_at, revoked_at, last_used_at"

# Errors that mean the database is unreachable or overloaded rather than that the request is wrong.
_UNAVAILABLE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


@dataclass(frozen=True)
class NewKey:
    id: uuid.UUID
    key_hash: str
    prefix: str | None
    name: str
    scopes: list[Scope]
    tier: str
    created_at: datetime
    created_by: uuid.UUID | None = None
    expires_at: datetime | None = None
    is_bootstrap: bool = False


@dataclass(frozen=True)
class BootstrapOutcome:
    """The stored bootstrap key, whether this start-up inserted it, and the bootstrap keys it replaced."""

    key: ApiKeyInfo
    inserted: bool
    replaced: list[ApiKeyInfo] = field(default_factory=list)


def _to_info(row: asyncpg.Record) -> ApiKeyInfo:
    # Scopes this version does not know (written by a newer one) are dropped rather than failing the read.
    known = {scope.value for scope in Scope}
    return ApiKeyInfo(
        id=row["id"],
        prefix=row["prefix"],
        name=row["name"],
        scopes=[Scope(value) for value in row["scopes"] if value in known],
        tier=row["tier"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


@asynccontextmanager
async def _translate_errors(operation: str) -> AsyncIterator[None]:
    try:
        yield
    except _UNAVAILABLE_ERRORS as error:
        log.warning("storage.unavailable", operation=operation, error=repr(error))
        raise StorageUnavailable(f"the key database is unavailable ({operation})") from error


class Storage:
    """API keys in PostgreSQL, through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, pool_size: int = 10) -> Storage:
        async with _translate_errors("connect"):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                command_timeout=_COMMAND_TIMEOUT,
                server_settings={"application_name": "nadzu-auth"},
            )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        async with _translate_errors(operation), self._pool.acquire(timeout=_ACQUIRE_TIMEOUT) as connection:
            yield connection

    async def ping(self) -> None:
        async with self._connection("ping") as connection:
            await connection.fetchval("SELECT 1")

    # Schema.

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions this call applied."""
        applied_now: list[int] = []
        async with self._connection("migrate") as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            await connection.execute("CREATE SCHEMA IF NOT EXISTS auth")
            await connection.execute(
                """
                CREATE TABLE IF NOT EXISTS auth.schema_migrations (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            rows = await connection.fetch("SELECT version FROM auth.schema_migrations")
            applied = {row["version"] for row in rows}

            for version, statement in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                await connection.execute(statement)
                await connection.execute("INSERT INTO auth.schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)

        if applied_now:
            log.info("storage.migrated", versions=applied_now)
        return applied_now

    # Keys.

    async def find_by_hash(self, key_hash: str) -> ApiKeyInfo | None:
        async with self._connection("find_by_hash") as connection:
            row = await connection.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM auth.api_keys WHERE key_hash = $1",  # noqa: S608 - constant columns
                bytes.fromhex(key_hash),
            )
        return _to_info(row) if row is not None else None

    async def insert_key(self, key: NewKey) -> ApiKeyInfo:
        async with self._connection("insert_key") as connection:
            row = await connection.fetchrow(
                f"""
                INSERT INTO auth.api_keys (
                    id, key_hash, prefix, name, scopes, tier, is_bootstrap, created_at, created_by, expires_at
                )
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING {_KEY_COLUMNS}
                """,  # noqa: S608 - constant columns
                key.id,
                bytes.fromhex(key.key_hash),
                key.prefix,
                key.name,
                [scope.value for scope in key.scopes],
                key.tier,
                key.is_bootstrap,
                key.created_at,
                key.created_by,
                key.expires_at,
            )
        assert row is not None
        return _to_info(row)

    async def list_keys(self, include_revoked: bool) -> list[ApiKeyInfo]:
        condition = "" if include_revoked else "WHERE revoked_at IS NULL"
        async with self._connection("list_keys") as connection:
            rows = await connection.fetch(
                f"SELECT {_KEY_COLUMNS} FROM auth.api_keys {condition} ORDER BY created_at DESC, id DESC"  # noqa: S608
            )
        return [_to_info(row) for row in rows]

    async def revoke_key(
        self, key_id: uuid.UUID, revoked_at: datetime, revoked_by: uuid.UUID | None
    ) -> ApiKeyInfo | None:
        """Revoke a key; a key revoked before keeps its first revocation time. `None` if no such key."""
        async with self._connection("revoke_key") as connection:
            row = await connection.fetchrow(
                f"""
                UPDATE auth.api_keys
                SET revoked_at = COALESCE(revoked_at, $2),
                    revoked_by = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_by END
                WHERE id = $1
                RETURNING {_KEY_COLUMNS}
                """,  # noqa: S608 - constant columns
                key_id,
                revoked_at,
                revoked_by,
            )
        return _to_info(row) if row is not None else None

    async def record_last_used(self, used: Mapping[uuid.UUID, datetime]) -> None:
        """Write last-used times in one statement; an older time never overwrites a newer one."""
        if not used:
            return

        ids = list(used)
        times = [used[key_id] for key_id in ids]
        async with self._connection("record_last_used") as connection:
            await connection.execute(
                """
                UPDATE auth.api_keys AS k
                SET last_used_at = u.used_at
                FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, used_at)
                WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
                """,
                ids,
                times,
            )

    async def ensure_bootstrap_key(self, key: NewKey) -> BootstrapOutcome:
        """Insert the bootstrap admin key unless its hash is stored; revoke bootstrap keys it replaces.

        A stored key is left as it is, even when revoked: an operator who revoked it must set a new
        ADMIN_API_KEY. Runs under the migration lock, so replicas starting together insert it once.
        """
        async with self._connection("ensure_bootstrap_key") as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            row = await connection.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM auth.api_keys WHERE key_hash = $1",  # noqa: S608 - constant columns
                bytes.fromhex(key.key_hash),
            )
            if row is not None:
                return BootstrapOutcome(key=_to_info(row), inserted=False)

            replaced_rows = await connection.fetch(
                f"""
                UPDATE auth.api_keys SET revoked_at = $1
                WHERE is_bootstrap AND revoked_at IS NULL
                RETURNING {_KEY_COLUMNS}
                """,  # noqa: S608 - constant columns
                key.created_at,
            )
            inserted = await connection.fetchrow(
                f"""
                INSERT INTO auth.api_keys (id, key_hash, prefix, name, scopes, tier, is_bootstrap, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, true, $7)
                RETURNING {_KEY_COLUMNS}
                """,  # noqa: S608 - constant columns
                key.id,
                bytes.fromhex(key.key_hash),
                key.prefix,
                key.name,
                [scope.value for scope in key.scopes],
                key.tier,
                key.created_at,
            )
        assert inserted is not None
        return BootstrapOutcome(
            key=_to_info(inserted), inserted=True, replaced=[_to_info(row) for row in replaced_rows]
        )


async def wait_for_database(dsn: str, pool_size: int, attempts: int, delay: float) -> Storage:
    """Connect, retrying while the database is starting; raise `StorageUnavailable` after `attempts`."""
    for attempt in range(1, attempts + 1):
        try:
            return await Storage.connect(dsn, pool_size)
        except StorageUnavailable:
            if attempt == attempts:
                raise
            log.warning("storage.connect_retry", attempt=attempt, delay_seconds=delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
