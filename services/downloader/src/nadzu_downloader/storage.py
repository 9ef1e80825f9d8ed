"""Job records in PostgreSQL (schema `downloader`), the downloader's system of record.

Every state change is one conditional statement, so a redelivered command or a racing cancel can never
move a job backwards: a finished job stays finished.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from nadzu_common.logging import get_logger
from nadzu_common.messages import JobError, JobResult, JobState, JobStatus, Progress

log = get_logger(__name__)

# Applied in order, each once, under an advisory lock so replicas starting together do not race.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE downloader.jobs (
        id uuid PRIMARY KEY,
        owner text NOT NULL,
        url text NOT NULL,
        format text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        progress jsonb NOT NULL DEFAULT '{}'::jsonb,
        result jsonb,
        error jsonb,
        cancel_requested boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        expires_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX jobs_owner_id ON downloader.jobs (owner, id DESC);
    CREATE INDEX jobs_expiry ON downloader.jobs (expires_at) WHERE status = 'completed';
    CREATE INDEX jobs_finished ON downloader.jobs (finished_at) WHERE finished_at IS NOT NULL;
    """,
    """
    CREATE INDEX jobs_reusable ON downloader.jobs (url, format, finished_at DESC) WHERE status = 'completed';
    """,
]
_MIGRATION_LOCK = 0x6E61647A75  # any fixed number; shared by every replica of this service

_FINISHED = ("completed", "failed", "cancelled", "expired")


@dataclass(frozen=True)
class Claim:
    """The outcome of taking a job for a run."""

    job: JobState
    runnable: bool
    cancel_requested: bool = False


def _row_to_job(row: asyncpg.Record) -> JobState:
    return JobState(
        id=row["id"],
        owner=row["owner"],
        url=row["url"],
        format=row["format"],
        status=JobStatus(row["status"]),
        progress=Progress.model_validate(json.loads(row["progress"])) if row["progress"] else Progress(),
        result=JobResult.model_validate(json.loads(row["result"])) if row["result"] else None,
        error=JobError.model_validate(json.loads(row["error"])) if row["error"] else None,
        attempts=row["attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
    )


def _dump(model: Any) -> str | None:
    return None if model is None else model.model_dump_json()


async def _create_database(dsn: str) -> None:
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        log.info("storage.database_created", database=name)
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await conn.close()


class JobStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, max_size: int = 10) -> JobStore:
        """Connect, creating the database when it does not exist yet, and apply migrations."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        except asyncpg.InvalidCatalogNameError:
            await _create_database(dsn)
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        store = cls(pool)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE SCHEMA IF NOT EXISTS downloader")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS downloader.schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                row["version"] for row in await conn.fetch("SELECT version FROM downloader.schema_migrations")
            }
            for version, statement in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                await conn.execute(statement)
                await conn.execute("INSERT INTO downloader.schema_migrations (version) VALUES ($1)", version)
                log.info("storage.migrated", version=version)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def count_by_status(self) -> dict[str, int]:
        """Return how many job records each status has; statuses without a job are left out."""
        rows = await self._pool.fetch("SELECT status, count(*) AS jobs FROM downloader.jobs GROUP BY status")
        return {row["status"]: row["jobs"] for row in rows}

    async def get(self, job_id: uuid.UUID) -> JobState | None:
        row = await self._pool.fetchrow("SELECT * FROM downloader.jobs WHERE id = $1", job_id)
        return _row_to_job(row) if row else None

    async def claim(self, job: JobState) -> Claim:
        """Record the job if new and mark it running for one more attempt, unless it already finished."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO downloader.jobs (id, owner, url, format, status, created_at)
                VALUES ($1, $2, $3, $4, 'queued', $5)
                ON CONFLICT (id) DO NOTHING
                """,
                job.id,
                job.owner,
                job.url,
                job.format,
                job.created_at,
            )
            row = await conn.fetchrow("SELECT * FROM downloader.jobs WHERE id = $1 FOR UPDATE", job.id)
            assert row is not None
            if row["status"] in _FINISHED:
                return Claim(_row_to_job(row), runnable=False)
            if row["cancel_requested"]:
                return Claim(_row_to_job(row), runnable=False, cancel_requested=True)

            row = await conn.fetchrow(
                """
                UPDATE downloader.jobs
                SET status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now()),
                    updated_at = now()
                WHERE id = $1
                RETURNING *
                """,
                job.id,
            )
            return Claim(_row_to_job(row), runnable=True)

    async def complete(
        self, job_id: uuid.UUID, result: JobResult, progress: Progress, ttl: float
    ) -> JobState | None:
        """Mark a running job completed; None when it stopped running meanwhile (cancelled)."""
        now = datetime.now(UTC)
        row = await self._pool.fetchrow(
            """
            UPDATE downloader.jobs
            SET status = 'completed', result = $2, progress = $3, error = NULL, finished_at = $4,
                expires_at = $5, updated_at = now()
            WHERE id = $1 AND status = 'running'
            RETURNING *
            """,
            job_id,
            _dump(result),
            _dump(progress),
            now,
            now + timedelta(seconds=ttl),
        )
        return _row_to_job(row) if row else None

    async def fail(
        self, job_id: uuid.UUID, error: JobError, progress: Progress | None = None
    ) -> JobState | None:
        row = await self._pool.fetchrow(
            """
            UPDATE downloader.jobs
            SET status = 'failed', error = $2, progress = coalesce($3::jsonb, progress), finished_at = now(),
                updated_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING *
            """,
            job_id,
            _dump(error),
            _dump(progress),
        )
        return _row_to_job(row) if row else None

    async def requeue(self, job_id: uuid.UUID, error: JobError, progress: Progress) -> JobState | None:
        """Put a running job back to `queued` between attempts, keeping the error that stopped it."""
        row = await self._pool.fetchrow(
            """
            UPDATE downloader.jobs
            SET status = 'queued', error = $2, progress = $3, updated_at = now()
            WHERE id = $1 AND status = 'running'
            RETURNING *
            """,
            job_id,
            _dump(error),
            _dump(progress),
        )
        return _row_to_job(row) if row else None

    async def mark_cancelled(self, job_id: uuid.UUID, progress: Progress | None = None) -> JobState | None:
        row = await self._pool.fetchrow(
            """
            UPDATE downloader.jobs
            SET status = 'cancelled', progress = coalesce($2::jsonb, progress), finished_at = now(),
                updated_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING *
            """,
            job_id,
            _dump(progress),
        )
        return _row_to_job(row) if row else None

    async def request_cancel(self, job: JobState) -> tuple[JobState, bool]:
        """Cancel a job that has not started (recording it if unknown) or flag a running one.

        Returns the job and whether it is cancelled now; a running job is only flagged, and the replica
        running it finishes the cancellation.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO downloader.jobs (id, owner, url, format, status, created_at, finished_at,
                                             cancel_requested)
                VALUES ($1, $2, $3, $4, 'cancelled', $5, now(), true)
                ON CONFLICT (id) DO NOTHING
                RETURNING *
                """,
                job.id,
                job.owner,
                job.url,
                job.format,
                job.created_at,
            )
            if row is not None:
                return _row_to_job(row), True

            row = await conn.fetchrow("SELECT * FROM downloader.jobs WHERE id = $1 FOR UPDATE", job.id)
            assert row is not None
            if row["status"] == "queued":
                row = await conn.fetchrow(
                    """
                    UPDATE downloader.jobs
                    SET status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now()
                    WHERE id = $1 RETURNING *
                    """,
                    job.id,
                )
                return _row_to_job(row), True
            if row["status"] == "running":
                row = await conn.fetchrow(
                    "UPDATE downloader.jobs SET cancel_requested = true, updated_at = now() "
                    "WHERE id = $1 RETURNING *",
                    job.id,
                )
            return _row_to_job(row), False

    async def running_among(self, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        rows = await self._pool.fetch(
            "SELECT id FROM downloader.jobs WHERE id = ANY($1::uuid[]) AND status = 'running'", job_ids
        )
        return {row["id"] for row in rows}

    async def find_reusable(self, job: JobState) -> JobState | None:
        """A completed, unexpired job that downloaded the same URL in the same format."""
        row = await self._pool.fetchrow(
            """
            SELECT * FROM downloader.jobs
            WHERE url = $1 AND format = $2 AND status = 'completed' AND expires_at > now() AND id <> $3
            ORDER BY finished_at DESC LIMIT 1
            """,
            job.url,
            job.format,
            job.id,
        )
        return _row_to_job(row) if row else None

    async def is_cancel_requested(self, job_id: uuid.UUID) -> bool:
        value = await self._pool.fetchval(
            "SELECT cancel_requested FROM downloader.jobs WHERE id = $1", job_id
        )
        return bool(value)

    async def expire(self, job_id: uuid.UUID) -> JobState | None:
        """Mark a completed job expired; the caller removes its file."""
        row = await self._pool.fetchrow(
            """
            UPDATE downloader.jobs SET status = 'expired', updated_at = now()
            WHERE id = $1 AND status = 'completed'
            RETURNING *
            """,
            job_id,
        )
        return _row_to_job(row) if row else None

    async def due_for_expiry(self, limit: int = 100) -> list[uuid.UUID]:
        rows = await self._pool.fetch(
            "SELECT id FROM downloader.jobs WHERE status = 'completed' AND expires_at <= now() LIMIT $1",
            limit,
        )
        return [row["id"] for row in rows]

    async def delete_finished_before(self, cutoff: datetime, limit: int = 500) -> list[uuid.UUID]:
        """Delete up to `limit` records of jobs that finished before `cutoff`; return their ids."""
        rows = await self._pool.fetch(
            """
            DELETE FROM downloader.jobs WHERE id IN (
                SELECT id FROM downloader.jobs
                WHERE status IN ('failed', 'cancelled', 'expired') AND finished_at < $1
                LIMIT $2
            )
            RETURNING id
            """,
            cutoff,
            limit,
        )
        return [row["id"] for row in rows]
