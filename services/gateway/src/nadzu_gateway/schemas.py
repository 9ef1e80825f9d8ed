"""Request and response bodies of the public API, and the mapping from bus models to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nadzu_common.messages import JobState, JobStatus


class DownloadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=4096, examples=["https://media.example.com/clip.mp4"])
    format: str = Field(
        default="video",
        max_length=400,
        description="`video` (best, merged into MP4 when possible), `audio`, or a yt-dlp format selector.",
    )


class ProgressOut(BaseModel):
    percent: float | None = None
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    speed: float | None = None
    eta: int | None = None


class ResultOut(BaseModel):
    filename: str
    size: int
    content_type: str
    sha256: str
    title: str | None = None
    duration: float | None = None
    file_url: str


class ErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: uuid.UUID
    url: str
    format: str
    status: JobStatus
    progress: ProgressOut
    result: ResultOut | None = None
    error: ErrorOut | None = None
    attempts: int
    events_url: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = None


def job_links(base_url: str, job_id: uuid.UUID, link_query: str | None = None) -> tuple[str, str]:
    """Return the job's events and file URLs, with the signed `exp`/`sig` query when one is given."""
    resource = f"{base_url}/api/v1/downloads/{job_id}"
    suffix = f"?{link_query}" if link_query else ""
    return f"{resource}/events{suffix}", f"{resource}/file{suffix}"


def job_to_public(job: JobState, base_url: str, link_query: str | None = None) -> dict[str, Any]:
    """The API's JSON for a job: the bus model without internal fields, plus links.

    `link_query` is the job's link signature (`TokenSigner.job_link_query`), which lets a browser open
    the links without credentials.
    """
    events_url, file_url = job_links(base_url, job.id, link_query)
    result = None
    if job.result is not None:
        result = job.result.model_dump(mode="json", exclude={"path"})
        result["file_url"] = file_url
    return {
        "id": str(job.id),
        "url": job.url,
        "format": job.format,
        "status": job.status.value,
        "progress": job.progress.model_dump(mode="json"),
        "result": result,
        "error": job.error.model_dump(mode="json") if job.error else None,
        "attempts": job.attempts,
        "events_url": events_url,
        "created_at": _timestamp(job.created_at),
        "started_at": _timestamp(job.started_at),
        "finished_at": _timestamp(job.finished_at),
        "expires_at": _timestamp(job.expires_at),
    }


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
