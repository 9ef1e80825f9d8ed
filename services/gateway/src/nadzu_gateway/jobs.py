"""The gateway's view of download jobs, read from the job event stream.

Every job event carries the job's whole state, so the latest event of each job is its current state. The
directory follows the stream from the last event of every job onwards and keeps that state in memory:
listings cost no round trip, and reads and listings keep working while the downloader is down or
backlogged.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from nadzu_common.bus import EVENTS_STREAM, Subjects
from nadzu_common.logging import get_logger
from nadzu_common.messages import JobEvent, JobState, JobStatus

log = get_logger(__name__)


@dataclass(frozen=True)
class JobEntry:
    sequence: int
    job: JobState


class JobDirectory:
    """Current state of every job within the event stream's retention, kept up to date by a subscription."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._entries: dict[uuid.UUID, JobEntry] = {}
        # Active jobs per owner, kept in step with `_entries`: the per-caller cap is checked on every
        # enqueue, and counting by a scan would cost time in proportion to every retained job.
        self._active_by_owner: collections.Counter[str] = collections.Counter()
        self._subscription: JetStreamContext.PushSubscription | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        info = await self._js.stream_info(EVENTS_STREAM.name)
        if info.state.messages == 0:
            self.caught_up.set()

        self._subscription = await self._js.subscribe(
            Subjects.DOWNLOAD_EVENTS,
            cb=self._on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            # Without a cap, a slow gateway would drop events once the client's default buffer filled.
            stream=EVENTS_STREAM.name,
            pending_msgs_limit=10_000_000,
            pending_bytes_limit=10_000_000_000,
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_event(self, msg: Msg) -> None:
        metadata = msg.metadata
        try:
            event = JobEvent.model_validate_json(msg.data)
        except ValidationError as error:
            log.warning(
                "jobs.bad_event", subject=msg.subject, sequence=metadata.sequence.stream, error=str(error)
            )
        else:
            self.record(metadata.sequence.stream, event.job)

        if metadata.num_pending == 0:
            self.caught_up.set()

    def record(self, sequence: int, job: JobState) -> None:
        """Keep `job` unless a later event of the same job is already known."""
        current = self._entries.get(job.id)
        if current is not None and current.sequence >= sequence:
            return
        if current is not None and current.job.status.is_active:
            self._active_by_owner[current.job.owner] -= 1
            if self._active_by_owner[current.job.owner] <= 0:
                del self._active_by_owner[current.job.owner]
        if job.status.is_active:
            self._active_by_owner[job.owner] += 1
        self._entries[job.id] = JobEntry(sequence, job)

    async def get(self, job_id: uuid.UUID) -> JobEntry | None:
        """Return a job's latest state, read from the stream so it is never behind this replica's events.

        The in-memory copy can trail an event another subscription of this process has already seen (an
        SSE client reading `completed` and then asking for the job), so single reads go to the stream.
        """
        try:
            msg = await self._js.get_last_msg(EVENTS_STREAM.name, Subjects.download_events(job_id))
        except NotFoundError:
            return None
        event = JobEvent.model_validate_json(msg.data or b"")
        self.record(msg.seq or 0, event.job)
        return JobEntry(msg.seq or 0, event.job)

    def list(
        self, owner: str | None, status: JobStatus | None, before: uuid.UUID | None, limit: int
    ) -> tuple[list[JobState], uuid.UUID | None]:
        """List jobs newest first (UUIDv7 ids sort by creation); `owner=None` lists everyone's."""
        # NOTE: a linear scan over every retained job; fine for thousands of jobs, and the place to add
        # a per-owner index if one instance ever keeps far more.
        selected = [
            entry.job
            for entry in self._entries.values()
            if (owner is None or entry.job.owner == owner)
            and (status is None or entry.job.status == status)
            and (before is None or entry.job.id < before)
        ]
        selected.sort(key=lambda job: job.id, reverse=True)
        page = selected[:limit]
        next_cursor = page[-1].id if len(selected) > limit else None
        return page, next_cursor

    def count_active(self, owner: str) -> int:
        return self._active_by_owner[owner]
