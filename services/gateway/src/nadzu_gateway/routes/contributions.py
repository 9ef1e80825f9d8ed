"""Contributions endpoints (forwarded to the contributions service as NATS queries)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

router = APIRouter(prefix="/api/v1", tags=["contributions"])


def register_checks(app: FastAPI) -> None:
    """Add the contributions service to `/health/ready` once the service exists."""
