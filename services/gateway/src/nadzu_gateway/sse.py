"""Job events as Server-Sent Events.

Each SSE `id` is the event's sequence in the job event stream: it increases, and a reconnecting client
sends it back as `Last-Event-ID` to resume exactly after it. Reading the job's latest event and then
subscribing from the next sequence leaves no gap and no duplicate between the snapshot and live events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from nadzu_common.bus import EVENTS_STREAM, Subjects
from nadzu_common.logging import get_logger
from nadzu_common.messages import TERMINAL_EVENTS, JobEvent, JobStatus

from .schemas import job_to_public

log = get_logger(__name__)

FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})
# nats-py bounds a subscription's buffer by default and drops messages past it; an SSE stream must not.
UNBOUNDED_PENDING_MSGS = 10_000_000
UNBOUNDED_PENDING_BYTES = 10 * 1024**3
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _event_data(event: JobEvent, base_url: str, snapshot: bool, link_query: str | None) -> dict[str, Any]:
    public = job_to_public(event.job, base_url, link_query)
    if snapshot:
        return {"job_id": public["id"], **{key: value for key, value in public.items() if key != "id"}}
    data: dict[str, Any] = {"job_id": public["id"], "status": public["status"]}
    for field in event.changed:
        if field in public and field != "id":
            data[field] = public[field]
    return data


def _to_sse(
    event: JobEvent, sequence: int, base_url: str, snapshot: bool = False, link_query: str | None = None
) -> ServerSentEvent:
    name = "status" if snapshot else event.event
    return ServerSentEvent(
        data=json.dumps(_event_data(event, base_url, snapshot, link_query), separators=(",", ":")),
        event=name,
        id=str(sequence),
    )


def parse_last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 19:
        return None
    sequence = int(value)
    return sequence if sequence > 0 else None


async def _message_at(js: JetStreamContext, sequence: int) -> Any:
    try:
        return await js.get_msg(EVENTS_STREAM.name, seq=sequence)
    except NotFoundError:
        return None


class _Follower:
    """An ordered consumer on one job's events, from a given stream sequence on."""

    def __init__(self, js: JetStreamContext, job_id: uuid.UUID, start_sequence: int) -> None:
        self._js = js
        self._subject = Subjects.download_events(job_id)
        self._start = start_sequence
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._subscription: Any = None

    async def __aenter__(self) -> _Follower:
        async def on_message(msg: Msg) -> None:
            self.queue.put_nowait(msg)

        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._start)
        self._subscription = await self._js.subscribe(
            self._subject,
            stream=EVENTS_STREAM.name,
            cb=on_message,
            ordered_consumer=True,
            config=config,
            pending_msgs_limit=UNBOUNDED_PENDING_MSGS,
            pending_bytes_limit=UNBOUNDED_PENDING_BYTES,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def next_event(self) -> tuple[int, JobEvent | None]:
        msg = await self.queue.get()
        sequence = msg.metadata.sequence.stream
        try:
            return sequence, JobEvent.model_validate_json(msg.data)
        except ValidationError:
            log.warning("sse.bad_event", subject=msg.subject, sequence=sequence)
            return sequence, None


async def _finished_history(
    js: JetStreamContext, job_id: uuid.UUID, after: int, last: int
) -> list[tuple[int, JobEvent]]:
    """Return a finished job's events after `after`, up to and including its first terminal event."""
    events: list[tuple[int, JobEvent]] = []
    if after >= last:
        return events
    async with _Follower(js, job_id, after + 1) as follower:
        while True:
            sequence, event = await asyncio.wait_for(follower.next_event(), timeout=10)
            if event is not None:
                events.append((sequence, event))
                if event.event in TERMINAL_EVENTS:
                    break
            if sequence >= last:
                break
    if not events or events[-1][1].event not in TERMINAL_EVENTS:
        return []
    return events


async def job_event_stream(
    js: JetStreamContext,
    job_id: uuid.UUID,
    last_event_id: str | None,
    base_url: str,
    heartbeat_seconds: float,
    link_query: str | None = None,
) -> Response:
    """Build the SSE response for one job, or a 204 when a resuming client has already seen its end.

    `link_query` is the signature added to the job links inside events.
    """
    subject = Subjects.download_events(job_id)
    latest = await js.get_last_msg(EVENTS_STREAM.name, subject)
    latest_sequence = latest.seq or 0
    latest_event = JobEvent.model_validate_json(latest.data or b"")
    finished = latest_event.job.status in FINISHED

    resume_after = parse_last_event_id(last_event_id)
    if resume_after is not None:
        # A position of another job, or one past the stream's end, is treated as absent.
        resumed = await _message_at(js, resume_after) if resume_after <= latest_sequence else None
        if resumed is None or resumed.subject != subject:
            resume_after = None

    if resume_after is not None and finished:
        history = await _finished_history(js, job_id, resume_after, latest_sequence)
        if not history:
            return Response(status_code=204, headers=SSE_HEADERS)

        async def replay() -> AsyncIterator[ServerSentEvent]:
            for sequence, event in history:
                yield _to_sse(event, sequence, base_url, link_query=link_query)

        return EventSourceResponse(replay(), headers=SSE_HEADERS, ping=heartbeat_seconds)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        start = resume_after
        if start is None:
            yield _to_sse(latest_event, latest_sequence, base_url, snapshot=True, link_query=link_query)
            if finished:
                return
            start = latest_sequence

        async with _Follower(js, job_id, start + 1) as follower:
            while True:
                sequence, event = await follower.next_event()
                if event is None:
                    continue
                yield _to_sse(event, sequence, base_url, link_query=link_query)
                if event.event in TERMINAL_EVENTS:
                    return

    return EventSourceResponse(stream(), headers=SSE_HEADERS, ping=heartbeat_seconds)
