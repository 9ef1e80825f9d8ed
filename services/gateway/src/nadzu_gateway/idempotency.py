"""`Idempotency-Key` support: a retried create returns the first outcome instead of a second job.

Records live in Redis for 24 hours, scoped to the caller, and remember a hash of the request body so the
same key with a different body is rejected rather than silently answered with the wrong job.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from .problems import Problem, dependency_unavailable

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class IdempotencyRecord:
    body_hash: str
    job_id: uuid.UUID


def body_fingerprint(payload: dict[str, object]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not _KEY_PATTERN.match(key):
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            detail="An Idempotency-Key is 1 to 255 visible ASCII characters.",
        )
    return key


def _redis_key(owner: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"nadzu:idempotency:{owner}:{digest}"


async def claim(
    client: redis.Redis, owner: str, key: str, record: IdempotencyRecord
) -> IdempotencyRecord | None:
    """Store `record` for this key unless one exists; return the existing record when there is one."""
    value = json.dumps({"body_hash": record.body_hash, "job_id": str(record.job_id)})
    try:
        stored = await client.set(_redis_key(owner, key), value, nx=True, ex=IDEMPOTENCY_TTL_SECONDS)
        if stored:
            return None
        existing = await client.get(_redis_key(owner, key))
    except RedisError as error:
        raise dependency_unavailable("redis", type(error).__name__) from None

    if existing is None:  # expired between the two calls: the key is free again
        return await claim(client, owner, key, record)
    data = json.loads(existing)
    return IdempotencyRecord(body_hash=data["body_hash"], job_id=uuid.UUID(data["job_id"]))


async def release(client: redis.Redis, owner: str, key: str) -> None:
    """Forget a key whose request failed before a job existed, so the client can retry with it."""
    try:
        await client.delete(_redis_key(owner, key))
    except RedisError:
        pass
