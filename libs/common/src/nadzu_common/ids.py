"""Identifiers: UUIDv7, so ids sort by creation time."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def parse_id(value: str) -> uuid.UUID | None:
    """Parse a path id; anything that is not a UUID is `None` (the API treats it as unknown)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
