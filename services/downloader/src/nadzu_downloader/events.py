"""Publishing job events, with progress throttled per job and never going backwards."""

from __future__ import annotations

import time
from typing import Any

from nats.js import JetStreamContext

from nadzu_common.bus import Subjects, encode, message_headers
from nadzu_common.messages import EventName, JobEvent, JobState, Progress
from nadzu_common.tracing import producer_span

# At most this many progress events per second and job; the last one is always sent.
PROGRESS_EVENTS_PER_SECOND = 4


class EventPublisher:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(
        self, event: EventName, job: JobState, changed: list[str], msg_id: str | None = None
    ) -> int:
        body = JobEvent(event=event, changed=changed, job=job)
        subject = Subjects.download_events(job.id)
        with producer_span(subject, **{"messaging.message.id": msg_id, "nadzu.job.event": event}):
            ack = await self._js.publish(
                subject, encode(body), headers=message_headers(msg_id=msg_id), timeout=10
            )
        return int(ack.seq)


class ProgressReporter:
    """Turn a worker's progress lines into `progress` events for one job."""

    def __init__(self, publisher: EventPublisher, job: JobState, start: Progress | None = None) -> None:
        self._publisher = publisher
        self._job = job
        self._interval = 1.0 / PROGRESS_EVENTS_PER_SECOND
        self._last_sent_at = 0.0
        self._pending = False
        self.progress = (start or Progress()).model_copy()

    def _merge(self, line: dict[str, Any]) -> None:
        current = self.progress
        downloaded = line.get("downloaded_bytes")
        total = line.get("total_bytes")
        if total:
            current.total_bytes = int(total)
        if downloaded is not None:
            current.downloaded_bytes = max(int(downloaded), current.downloaded_bytes or 0)
        current.speed = line.get("speed")
        eta = line.get("eta")
        current.eta = int(eta) if eta is not None else None

        percent = None
        if line.get("finished") and downloaded is not None:
            percent = 100.0
        elif total and downloaded is not None:
            percent = min(100.0, round(100.0 * int(downloaded) / int(total), 2))
        if percent is not None:
            # Fragmented downloads report sizes that shrink now and then; the percent shown never does.
            current.percent = max(percent, current.percent or 0.0)

    async def update(self, line: dict[str, Any]) -> None:
        self._merge(line)
        self._pending = True
        now = time.monotonic()
        if now - self._last_sent_at >= self._interval:
            await self._send(now)

    async def flush(self) -> None:
        """Send the latest progress if it was held back by the throttle."""
        if self._pending:
            await self._send(time.monotonic())

    async def finish(self) -> None:
        """Report the transfer complete: 100 percent, no speed or ETA left."""
        current = self.progress
        current.percent = 100.0
        if current.downloaded_bytes is not None and current.total_bytes is None:
            current.total_bytes = current.downloaded_bytes
        current.eta = 0
        self._pending = True
        await self.flush()

    async def _send(self, now: float) -> None:
        self._last_sent_at = now
        self._pending = False
        self._job.progress = self.progress.model_copy()
        await self._publisher.publish("progress", self._job, ["progress"])
