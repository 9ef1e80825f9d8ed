"""Request and response bodies of the public API, and the mapping from bus models to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nadzu_common.messages import JobState, JobStatus

EXAMPLE_JOB_ID = "0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d"
EXAMPLE_LINK = f"https://api.example.com/api/v1/downloads/{EXAMPLE_JOB_ID}"
EXAMPLE_JOB: dict[str, Any] = {
    "id": EXAMPLE_JOB_ID,
    "url": "https://media.example.com/clip.mp4",
    "format": "video",
    "status": "completed",
    "progress": {
        "percent": 100.0,
        "downloaded_bytes": 1048576,
        "total_bytes": 1048576,
        "speed": None,
        "eta": 0,
    },
    "result": {
        "filename": "clip.mp4",
        "size": 1048576,
        "content_type": "video/mp4",
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "title": "clip",
        "duration": 5.0,
        "file_url": f"{EXAMPLE_LINK}/file?exp=1767225600&sig=Q2hhbmdlZC1pbi1ldmVyeS1yZXNwb25zZS1leGFtcGxlMDA",
    },
    "error": None,
    "attempts": 1,
    "events_url": f"{EXAMPLE_LINK}/events?exp=1767225600&sig=Q2hhbmdlZC1pbi1ldmVyeS1yZXNwb25zZS1leGFtcGxlMDA",
    "created_at": "2026-12-04T10:00:00.000000Z",
    "started_at": "2026-12-04T10:00:00.120000Z",
    "finished_at": "2026-12-04T10:00:02.480000Z",
    "expires_at": "2026-12-05T10:00:02.480000Z",
}


class DownloadCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://media.example.com/clip.mp4", "format": "video"},
                {"url": "https://media.example.com/talk", "format": "bv*[height<=720]+ba/b"},
            ]
        },
    )

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
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JOB]})

    id: uuid.UUID
    url: str
    format: str
    status: JobStatus
    progress: ProgressOut
    result: ResultOut | None = None
    error: ErrorOut | None = None
    attempts: int
    events_url: str = Field(description="signed link to the job's event stream, usable without headers")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None


class JobList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [EXAMPLE_JOB], "next_cursor": None}]})

    items: list[JobOut]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


# Bodies of the service and caller endpoints. Their handlers build plain dicts or are served by
# `FastPathMiddleware`, so these models only describe the responses in the OpenAPI document.


class ServiceInfo(BaseModel):
    name: str = Field(examples=["nadzu"])
    version: str = Field(examples=["0.1.0"])
    api: str = Field(examples=["/api/v1"])
    docs: str = Field(examples=["/docs"])
    yt_dlp_version: str | None = Field(
        description="yt-dlp version of the downloaders, null until one has replied", examples=["2026.11.23"]
    )


class Liveness(BaseModel):
    status: Literal["ok"]


class ReadinessCheck(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "unavailable",
                    "checks": {
                        "nats": {"status": "ok"},
                        "redis": {"status": "ok"},
                        "downloader": {"status": "unavailable", "detail": "downloader is unavailable"},
                    },
                }
            ]
        }
    )

    status: Literal["ok", "unavailable"]
    checks: dict[str, ReadinessCheck] = Field(
        description="one entry per dependency: nats, redis, jobs, auth, downloader, proxy, contributions"
    )


class SupportedSiteOut(BaseModel):
    name: str
    description: str | None = None


class SupportedSites(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"count": 1, "items": [{"name": "generic", "description": None}]}]}
    )

    count: int
    items: list[SupportedSiteOut]


class LimitPolicy(BaseModel):
    policy: str = Field(description="policy name as in the `RateLimit-Policy` field")
    quota: int = Field(description="requests allowed per window")
    window: int = Field(description="window length, seconds")


class CallerLimits(BaseModel):
    requests: LimitPolicy
    enqueue: LimitPolicy | None = Field(default=None, description="absent for callers that cannot enqueue")
    max_active_jobs: int
    max_streams: int


class CallerOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "key",
                    "tier": "default",
                    "scopes": ["downloads"],
                    "limits": {
                        "requests": {"policy": "default", "quota": 600, "window": 60},
                        "enqueue": {"policy": "enqueue", "quota": 100, "window": 3600},
                        "max_active_jobs": 10,
                        "max_streams": 20,
                    },
                    "key_id": EXAMPLE_JOB_ID,
                    "name": "ci",
                }
            ]
        }
    )

    kind: Literal["key", "session"]
    tier: str
    scopes: list[str]
    limits: CallerLimits
    key_id: uuid.UUID | None = Field(default=None, description="present for API keys")
    name: str | None = Field(default=None, description="the key's name, present for API keys")
    expires_at: int | None = Field(default=None, description="Unix time, present when the credential expires")


class ProblemFieldError(BaseModel):
    field: str | None = None
    code: str
    message: str


class ProblemDetails(BaseModel):
    """An RFC 9457 problem details body, sent as `application/problem+json`."""

    type: str = Field(description="`urn:nadzu:problem:<slug>`. Clients branch on this, never on `detail`.")
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request path")
    request_id: str | None = Field(description="the response's `X-Request-Id`")
    errors: list[ProblemFieldError] | None = Field(
        default=None, description="one entry per invalid field or exhausted policy"
    )


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
