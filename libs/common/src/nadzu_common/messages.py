"""Typed bodies of every command, event and query on the bus.

Producers and consumers import these classes, so a field renamed here is renamed everywhere. Each body
carries `v`, its schema version: a consumer rejects versions it does not know instead of guessing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)

    v: Literal[1] = SCHEMA_VERSION


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


# States after which a job's event stream ends (an `expired` status may still follow `completed`).
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})


class Progress(BaseModel):
    percent: float | None = None
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    speed: float | None = Field(default=None, description="bytes per second")
    eta: int | None = Field(default=None, description="seconds")


class JobResult(BaseModel):
    filename: str
    path: str = Field(description="file path relative to DOWNLOADS_DIR")
    size: int
    content_type: str
    sha256: str
    title: str | None = None
    duration: float | None = None


class JobError(BaseModel):
    code: str
    message: str


class JobState(BaseModel):
    """A download job as the downloader stores it; every job event carries the whole state."""

    id: uuid.UUID
    owner: str
    url: str
    format: str
    status: JobStatus
    progress: Progress = Field(default_factory=Progress)
    result: JobResult | None = None
    error: JobError | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None


# Commands (JetStream, handled once).


class EnqueueDownload(Message):
    """`downloads.cmd.enqueue`: download the job in `job`, from `job.url` in `job.format`.

    The gateway sends it once per job, with the job it created (status `queued`).
    """

    job: JobState = Field(description="the job to download, as the gateway created it")
    request_id: str | None = Field(default=None, description="id of the HTTP request that created the job")


class CancelDownload(Message):
    """`downloads.cmd.cancel`: stop the job, or make sure it never starts.

    Carries the job as the gateway saw it, so the downloader can record a cancellation for a job whose
    enqueue command it has not read yet.
    """

    job: JobState
    request_id: str | None = None


class ReleaseDownload(Message):
    """`downloads.cmd.release`: delete a completed job's file; the job becomes `expired`."""

    job_id: uuid.UUID
    request_id: str | None = None


# Control broadcasts (core NATS, every replica receives them).


class CancelSignal(Message):
    """`downloads.ctl.cancel`: the replica running `job_id` stops it."""

    job_id: uuid.UUID


# Events (JetStream, any number of subscribers).

EventName = Literal["status", "progress", "completed", "failed", "cancelled"]


class JobEvent(Message):
    """`downloads.evt.<job_id>`: something happened to a job.

    `changed` names the job fields this event changed; `job` is the whole state after the change, so the
    latest event of a job is also its current state.
    """

    event: EventName
    changed: list[str] = Field(default_factory=list)
    job: JobState


# Queries (core NATS request/reply).


class SupportedSitesQuery(Message):
    pass


class SupportedSite(BaseModel):
    name: str
    description: str | None = None


class SupportedSitesReply(Message):
    yt_dlp_version: str
    items: list[SupportedSite]


class HealthQuery(Message):
    pass


class HealthReply(Message):
    status: Literal["ok", "unavailable"]
    service: str
    detail: str | None = None
    checks: dict[str, str] = Field(default_factory=dict)
