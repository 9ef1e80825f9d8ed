"""Download endpoints: create, read, list, follow, fetch and cancel jobs.

The gateway owns no job data. It publishes commands for the downloader and reads job state from the job
event stream, so a job is visible from the moment its 202 is returned, whether or not a downloader runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from starlette.responses import Response

from nadzu_common.auth import Scope
from nadzu_common.bus import Subjects, encode, message_headers
from nadzu_common.ids import new_id, parse_id
from nadzu_common.logging import get_logger
from nadzu_common.messages import (
    CancelDownload,
    CancelSignal,
    EnqueueDownload,
    JobError,
    JobEvent,
    JobState,
    JobStatus,
    ReleaseDownload,
)
from nadzu_common.tracing import producer_span

from .. import idempotency
from ..access import (
    authentication_required,
    current_caller,
    job_link_grants,
    missing_scope,
    require_scope,
)
from ..callers import Caller
from ..files import file_response
from ..jobs import JobDirectory
from ..metrics import count_rate_limited
from ..openapi import problems
from ..problems import Problem, dependency_unavailable, quote_input
from ..schemas import DownloadCreate, JobList, JobOut, job_to_public
from ..sse import job_event_stream
from ..streams import StreamSlots
from ..urls import validate_download_url, validate_format

log = get_logger(__name__)

# OpenAPI descriptions of the event stream and file endpoints, whose responses FastAPI cannot infer.
SSE_EXAMPLE = (
    'event: status\nid: 41\ndata: {"job_id":"0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d","status":"queued",...}\n\n'
    'event: progress\nid: 44\ndata: {"job_id":"0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d","status":"running",'
    '"progress":{"percent":42.5,"downloaded_bytes":445644,"total_bytes":1048576,"speed":524288.0,"eta":1}}\n\n'
    ": heartbeat\n\n"
    'event: completed\nid: 47\ndata: {"job_id":"0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d",'
    '"status":"completed",...}\n\n'
)
_STRING = {"type": "string"}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file; `Content-Type` is the file's own",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Content-Disposition": {
                "description": "attachment with `filename` and RFC 6266 `filename*`",
                "schema": _STRING,
            },
            "Content-Length": {"schema": {"type": "integer"}},
            "ETag": {"description": "the file's SHA-256 in quotes", "schema": _STRING},
            "Last-Modified": {"schema": _STRING},
            "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
        },
    },
    206: {
        "description": "The requested byte range (several ranges come as `multipart/byteranges`)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {"Content-Range": {"schema": _STRING}},
    },
    304: {"description": "`If-None-Match` matched the file's `ETag`"},
}
FILE_OPENAPI: dict[str, Any] = {
    **problems("job-not-found", "job-not-completed", "file-gone", "range-not-satisfiable"),
    "parameters": [
        {"name": "Range", "in": "header", "required": False, "schema": _STRING},
        {"name": "If-None-Match", "in": "header", "required": False, "schema": _STRING},
        {"name": "If-Range", "in": "header", "required": False, "schema": _STRING},
    ],
}

router = APIRouter(prefix="/api/v1/downloads", tags=["downloads"])
require_downloads = require_scope(Scope.DOWNLOADS)
PUBLISH_TIMEOUT_SECONDS = 5.0
# Seconds a caller at its cap of active jobs is told to wait before trying again.
ACTIVE_JOBS_RETRY_AFTER_SECONDS = 10


def _caller(request: Request) -> tuple[str, bool]:
    """Return the caller's owner id and whether it may see every caller's jobs."""
    caller = current_caller(request)
    return caller.owner, caller.is_admin


def _link_or_caller(request: Request, job_id: str) -> bool:
    """Authorize a request for a job's events or file; return True when a signed link grants it.

    A valid link works without credentials and for any caller. A caller with the `downloads` scope whose
    link is invalid still gets in by ownership, like a request without a link.
    """
    caller = current_caller(request)
    allowed_by_caller = caller.authenticated and caller.has_scope(Scope.DOWNLOADS)
    try:
        if job_link_grants(request, request.app.state.edge.signer, job_id):
            return True
    except Problem:
        if not allowed_by_caller:
            raise
    if allowed_by_caller:
        return False
    if caller.authenticated:
        raise missing_scope(Scope.DOWNLOADS)
    raise authentication_required()


def _job_not_found(job_id: uuid.UUID) -> Problem:
    return Problem(
        404, "job-not-found", "Job not found", detail=f"No download job {job_id} exists for this caller."
    )


async def _find_job(request: Request, job_id: str, via_link: bool = False) -> tuple[int, JobState]:
    """Return a job the request may see: the caller's own, any job for admin, or the linked job."""
    parsed = parse_id(job_id)
    if parsed is None:
        # A path id that is not a UUID is an unknown job (404), and the detail marks the id as invalid.
        raise Problem(
            404,
            "job-not-found",
            "Job not found",
            detail=f"{quote_input(job_id)} is not a valid job id. Job ids are UUIDs.",
        )
    directory: JobDirectory = request.app.state.jobs
    entry = await directory.get(parsed)
    if entry is None:
        raise _job_not_found(parsed)
    if not via_link:
        owner, is_admin = _caller(request)
        if not is_admin and entry.job.owner != owner:
            raise _job_not_found(parsed)
    return entry.sequence, entry.job


def _link_query(request: Request, job_id: uuid.UUID) -> str:
    settings = request.app.state.settings
    query: str = request.app.state.edge.signer.job_link_query(job_id, settings.job_link_ttl_seconds)
    return query


def _public(request: Request, job: JobState) -> dict[str, Any]:
    return job_to_public(job, request.app.state.settings.public_base_url, _link_query(request, job.id))


async def _publish(request: Request, subject: str, payload: bytes, msg_id: str) -> int:
    try:
        with producer_span(subject, **{"messaging.message.id": msg_id}):
            headers = message_headers(msg_id=msg_id, request_id=request.state.request_id)
            ack = await request.app.state.js.publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers
            )
    except (NatsError, JetStreamError, TimeoutError) as error:
        log.error("downloads.publish_failed", subject=subject, error=repr(error))
        raise dependency_unavailable("nats", "the message bus did not accept the command") from None
    return int(ack.seq)


async def _publish_event(request: Request, event: JobEvent, msg_id: str) -> int:
    sequence = await _publish(request, Subjects.download_events(event.job.id), encode(event), msg_id)
    request.app.state.jobs.record(sequence, event.job)
    return sequence


def _accepted(request: Request, job: JobState, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/api/v1/downloads/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(_public(request, job), status_code=202, headers=headers)


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        202: {
            "description": "Job accepted; it is visible to every other endpoint from now on",
            "headers": {
                "Location": {"description": "the job's URL", "schema": {"type": "string"}},
                "Idempotent-Replayed": {
                    "description": "`true` when this is the stored response to an earlier request with the "
                    "same `Idempotency-Key`",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        }
    },
    openapi_extra=problems(
        "invalid-url",
        "invalid-format",
        "invalid-idempotency-key",
        "idempotency-key-reused",
        "idempotency-key-in-use",
        "too-many-active-jobs",
    ),
)
async def create_download(
    request: Request,
    body: DownloadCreate,
    caller: Annotated[Caller, Depends(require_downloads)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="makes retries safe: the same key and body return the same job for 24 hours",
        ),
    ] = None,
) -> Response:
    settings = request.app.state.settings
    url = validate_download_url(body.url, settings.downloader_allow_private_urls)
    selector = validate_format(body.format)
    owner = caller.owner

    job = JobState(
        id=new_id(),
        owner=owner,
        url=url,
        format=selector,
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
    )

    key = idempotency.validate_key(idempotency_key) if idempotency_key is not None else None
    if key is not None:
        fingerprint = idempotency.body_fingerprint({"url": url, "format": selector})
        existing = await idempotency.claim(
            request.app.state.redis, owner, key, idempotency.IdempotencyRecord(fingerprint, job.id)
        )
        if existing is not None:
            return await _replay(request, existing, fingerprint)

    # NOTE: two requests racing on two replicas can both pass this check, so the cap can be exceeded by
    # the number of requests in flight; the job directory learns of a new job only from its event.
    active = request.app.state.jobs.count_active(owner)
    if active >= settings.max_active_jobs_per_caller:
        if key is not None:
            await idempotency.release(request.app.state.redis, owner, key)
        count_rate_limited("active-jobs")
        raise Problem(
            429,
            "too-many-active-jobs",
            "Too many active jobs",
            detail=f"This caller has {active} jobs queued or running; the limit is "
            f"{settings.max_active_jobs_per_caller}. Wait for one to finish or cancel one.",
            headers={"Retry-After": str(ACTIVE_JOBS_RETRY_AFTER_SECONDS)},
        )

    try:
        await _publish_event(
            request, JobEvent(event="status", changed=["status"], job=job), f"{job.id}:created"
        )
    except Problem:
        if key is not None:
            await idempotency.release(request.app.state.redis, owner, key)
        raise

    command = EnqueueDownload(job=job, request_id=request.state.request_id)
    try:
        await _publish(request, Subjects.DOWNLOAD_ENQUEUE, encode(command), f"{job.id}:enqueue")
    except Problem:
        # The job is already visible; record why it will never run rather than leave it queued forever.
        job.status = JobStatus.FAILED
        job.error = JobError(
            code="enqueue-failed", message="The download command could not be queued; retry."
        )
        job.finished_at = datetime.now(UTC)
        try:
            await _publish_event(
                request,
                JobEvent(event="failed", changed=["status", "error", "finished_at"], job=job),
                f"{job.id}:enqueue-failed",
            )
        except Problem:
            log.error("downloads.job_left_queued", job_id=str(job.id))
        if key is not None:
            await idempotency.release(request.app.state.redis, owner, key)
        raise

    log.info("downloads.enqueued", job_id=str(job.id), url=url, format=selector)
    return _accepted(request, job, replayed=False)


async def _replay(request: Request, record: idempotency.IdempotencyRecord, fingerprint: str) -> Response:
    if record.body_hash != fingerprint:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            detail="This Idempotency-Key was already used with a different request body.",
        )
    entry = await request.app.state.jobs.get(record.job_id)
    if entry is None:
        raise Problem(
            409,
            "idempotency-key-in-use",
            "Request in progress",
            detail="A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    return _accepted(request, entry.job, replayed=True)


@router.get(
    "",
    response_model=JobList,
    dependencies=[Depends(require_downloads)],
    openapi_extra=problems("invalid-cursor"),
)
async def list_downloads(
    request: Request,
    status: JobStatus | None = None,
    cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
    limit: int = Query(default=20, ge=1, le=100),
) -> JSONResponse:
    before: uuid.UUID | None = None
    if cursor is not None:
        before = parse_id(cursor)
        if before is None:
            raise Problem(
                422,
                "invalid-cursor",
                "Invalid cursor",
                detail="Pass the `next_cursor` value of a previous page.",
                errors=[
                    {"field": "cursor", "code": "invalid-cursor", "message": "Not a cursor from this API."}
                ],
            )
    owner, is_admin = _caller(request)
    jobs, next_cursor = request.app.state.jobs.list(None if is_admin else owner, status, before, limit)
    body = {
        "items": [_public(request, job) for job in jobs],
        "next_cursor": str(next_cursor) if next_cursor else None,
    }
    return JSONResponse(body)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    dependencies=[Depends(require_downloads)],
    openapi_extra=problems("job-not-found"),
)
async def get_download(request: Request, job_id: str) -> JSONResponse:
    _, job = await _find_job(request, job_id)
    return JSONResponse(_public(request, job))


@router.get(
    "/{job_id}/events",
    response_class=Response,
    responses={
        200: {
            "description": "The job's events as Server-Sent Events, until its terminal event",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": SSE_EXAMPLE,
                }
            },
            "headers": {
                "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
                "X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}},
            },
        },
        204: {
            "description": "`Last-Event-ID` is at or past the job's terminal event: nothing more will come"
        },
    },
    openapi_extra=problems("job-not-found", "too-many-streams"),
)
async def download_events(
    request: Request,
    job_id: str,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="the `id` of the last event received: the stream resumes after it, without a "
            "snapshot",
        ),
    ] = None,
) -> Response:
    """Follow a job's events; works with credentials or with the job's signed `events_url` alone."""
    via_link = _link_or_caller(request, job_id)
    _, job = await _find_job(request, job_id, via_link)
    settings = request.app.state.settings

    # A stream opened through a link counts against the job's owner, who shared the link.
    owner = job.owner if via_link else current_caller(request).owner
    slots: StreamSlots = request.app.state.stream_slots
    stream_id = await slots.acquire(owner)
    if stream_id is None:
        count_rate_limited("streams")
        raise Problem(
            429,
            "too-many-streams",
            "Too many open streams",
            detail=f"This caller already has {slots.cap} event streams open; close one first.",
            headers={"Retry-After": "5"},
        )

    try:
        response = await job_event_stream(
            request.app.state.js,
            job.id,
            last_event_id,
            settings.public_base_url,
            settings.sse_heartbeat_seconds,
            _link_query(request, job.id),
        )
    except BaseException:
        await slots.release(stream_id)
        raise
    return _ReleasingResponse(response, slots, stream_id)


class _ReleasingResponse(Response):
    """Send `inner` and give its stream slot back once the response ends, however it ends."""

    def __init__(self, inner: Response, slots: StreamSlots, stream_id: str) -> None:
        self._inner = inner
        self._slots = slots
        self._stream_id = stream_id
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._inner(scope, receive, send)
        finally:
            await self._slots.release(self._stream_id)


@router.get(
    "/{job_id}/file",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=FILE_OPENAPI,
)
@router.head(
    "/{job_id}/file",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=FILE_OPENAPI,
)
async def download_file(request: Request, job_id: str) -> Response:
    """Fetch a completed job's file; works with credentials or with the job's signed `file_url` alone."""
    via_link = _link_or_caller(request, job_id)
    _, job = await _find_job(request, job_id, via_link)
    if job.status == JobStatus.EXPIRED:
        raise Problem(410, "file-gone", "File gone", detail="The job's file has expired or was deleted.")
    if job.status != JobStatus.COMPLETED or job.result is None:
        raise Problem(
            409,
            "job-not-completed",
            "Job not completed",
            detail=f"The job is {job.status.value}; its file exists only once it is completed.",
        )
    return file_response(request, request.app.state.settings.downloads_dir, job.result)


@router.delete(
    "/{job_id}",
    status_code=202,
    responses={
        202: {"model": JobOut, "description": "Cancellation requested for a queued or running job"},
        204: {
            "description": "The job had finished: a completed job's file is released (the job becomes "
            "`expired`); for a failed, cancelled or expired job nothing changes"
        },
    },
    dependencies=[Depends(require_downloads)],
    openapi_extra=problems("job-not-found"),
)
async def delete_download(request: Request, job_id: str) -> Response:
    _, job = await _find_job(request, job_id)

    if job.status.is_active:
        command = CancelDownload(job=job, request_id=request.state.request_id)
        await _publish(request, Subjects.download_cancel(job.id), encode(command), f"{job.id}:cancel")
        # The broadcast reaches the replica running the job at once; the command above makes sure a job
        # that no replica has started yet never starts.
        try:
            with producer_span(Subjects.DOWNLOAD_CANCEL_SIGNAL):
                await request.app.state.nats.publish(
                    Subjects.DOWNLOAD_CANCEL_SIGNAL,
                    encode(CancelSignal(job_id=job.id)),
                    headers=message_headers(request_id=request.state.request_id),
                )
        except NatsError as error:
            log.warning("downloads.cancel_signal_failed", job_id=str(job.id), error=repr(error))
        log.info("downloads.cancel_requested", job_id=str(job.id))
        return JSONResponse(_public(request, job), status_code=202)

    if job.status == JobStatus.COMPLETED:
        command_release = ReleaseDownload(job_id=job.id, request_id=request.state.request_id)
        await _publish(request, Subjects.DOWNLOAD_RELEASE, encode(command_release), f"{job.id}:release")
        log.info("downloads.release_requested", job_id=str(job.id))
    return Response(status_code=204)
