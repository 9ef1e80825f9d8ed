"""Running download jobs: claim, download in a warm worker, store the file, report, ack.

A command is acked only after the job's outcome is stored and its event published, so a crash at any
point leads to a redelivery that finishes the job once. The claim finds the job finished and only makes
sure its final event exists.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from faststream.nats.message import NatsMessage
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from nadzu_common.bus import COMMANDS_STREAM, EVENTS_STREAM, Subjects, encode, message_headers
from nadzu_common.logging import bound_context, get_logger
from nadzu_common.messages import (
    EnqueueDownload,
    JobError,
    JobEvent,
    JobResult,
    JobState,
    JobStatus,
    Progress,
)
from nadzu_common.tracing import JOB_ID, consumer_span, internal_span, mark_failed, producer_span, untraced

from .egress import EgressGuard
from .errors import DownloaderError, JobCancelled, PermanentError, TransientError
from .events import EventPublisher, ProgressReporter
from .metrics import DOWNLOAD_SECONDS, DOWNLOADED_BYTES, JOBS_FINISHED, RUNNING_JOBS
from .naming import content_type_for, safe_filename
from .pool import WarmWorker, WorkerPool
from .settings import DownloaderSettings
from .storage import JobStore

log = get_logger(__name__)

PARTIAL_DIR = ".partial"
StopReason = Literal["cancel", "shutdown", "failed"]
# A transfer that delivers less than this many bytes within DOWNLOADER_STALL_TIMEOUT seconds is stalled,
# so a server that drips a byte a second is abandoned like one that sends nothing.
STALL_MIN_BYTES = 1024


@dataclass
class RunningJob:
    job_id: uuid.UUID
    worker: WarmWorker | None = None
    stop_reason: StopReason | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    failure: DownloaderError | None = None

    def fail(self, error: DownloaderError) -> None:
        """Stop the job because the runner, not the worker, found it broken (stalled, too large)."""
        if self.stop_reason is None:
            self.failure = error
        self.stop("failed")

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopped.set()
        if self.worker is not None:
            self.worker.kill()


class TransferWatch:
    """Bytes a job has received, to catch stalled transfers and files over the size limit.

    yt-dlp reports bytes per file, and a video job may download a video and an audio file one after
    the other, so a count that drops marks the start of the next file. The watch starts when the worker
    reports that extraction is over; during extraction yt-dlp's socket timeout (the same stall timeout)
    covers a silent server.
    """

    def __init__(self, stall_timeout: float, max_bytes: int) -> None:
        self.stall_timeout = stall_timeout
        self.max_bytes = max_bytes
        self.downloading = False
        self.total = 0
        self._finished_files = 0
        self._current = 0
        self._mark = (time.monotonic(), 0)

    def observe(self, message: dict[str, Any]) -> DownloaderError | None:
        if message.get("type") == "phase":
            self.downloading = message.get("phase") == "downloading"
            self._mark = (time.monotonic(), self.total)
            return None
        downloaded = int(message.get("downloaded_bytes") or 0)
        if downloaded < self._current:
            self._finished_files += self._current
        self._current = downloaded
        self.total = self._finished_files + downloaded
        if self.total > self.max_bytes:
            return PermanentError("too-large", f"The transfer passed the limit of {self.max_bytes} bytes.")
        return None

    def stalled(self) -> DownloaderError | None:
        now = time.monotonic()
        marked_at, marked_bytes = self._mark
        if not self.downloading or self.total - marked_bytes >= STALL_MIN_BYTES:
            self._mark = (now, self.total)
            return None
        if now - marked_at > self.stall_timeout:
            return TransientError(
                "stalled", f"The transfer received under {STALL_MIN_BYTES} bytes in {self.stall_timeout:g} s."
            )
        return None


class JobRunner:
    def __init__(
        self,
        settings: DownloaderSettings,
        store: JobStore,
        pool: WorkerPool,
        nc: NatsClient,
        js: JetStreamContext,
        egress: EgressGuard,
    ) -> None:
        self.settings = settings
        self.egress = egress
        self.store = store
        self.pool = pool
        self.nc = nc
        self.js = js
        self.events = EventPublisher(js)
        self.running: dict[uuid.UUID, RunningJob] = {}
        self.downloads_dir = settings.downloads_dir.resolve()
        # aria2c cannot speak SOCKS, but it only ever talks to the egress guard, an HTTP proxy.
        self.use_aria2c = settings.downloader_aria2c and shutil.which("aria2c") is not None

    # Paths.

    def partial_dir(self, job_id: uuid.UUID) -> Path:
        return self.downloads_dir / PARTIAL_DIR / str(job_id)

    def final_dir(self, job_id: uuid.UUID) -> Path:
        return self.downloads_dir / str(job_id)

    # Events.

    async def _latest_event(self, job_id: uuid.UUID) -> JobEvent | None:
        try:
            msg = await self.js.get_last_msg(EVENTS_STREAM.name, Subjects.download_events(job_id))
        except NotFoundError:
            return None
        return JobEvent.model_validate_json(msg.data or b"")

    async def ensure_final_event(self, job: JobState) -> None:
        """Publish the event of a finished job unless the stream already ends with it (crash recovery)."""
        latest = await self._latest_event(job.id)
        if latest is not None and latest.job.status == job.status:
            return
        await self.publish_outcome(job)

    async def publish_outcome(self, job: JobState) -> None:
        if job.status == JobStatus.COMPLETED:
            await self.events.publish(
                "completed",
                job,
                ["status", "result", "progress", "finished_at", "expires_at"],
                f"{job.id}:completed",
            )
        elif job.status == JobStatus.FAILED:
            await self.events.publish("failed", job, ["status", "error", "finished_at"], f"{job.id}:failed")
        elif job.status == JobStatus.CANCELLED:
            await self.events.publish("cancelled", job, ["status", "finished_at"], f"{job.id}:cancelled")
        elif job.status == JobStatus.EXPIRED:
            await self.events.publish("status", job, ["status"], f"{job.id}:expired")

    # The enqueue command.

    async def handle(self, message: NatsMessage) -> None:
        try:
            command = EnqueueDownload.model_validate_json(message.body)
        except ValueError as error:
            log.error("runner.bad_command", error=str(error))
            await message.reject()  # a body no version of this code can read would fail forever
            return

        job_id = command.job.id
        span_attributes = {"messaging.message.id": message.message_id}
        with (
            consumer_span(Subjects.DOWNLOAD_ENQUEUE, message.headers, job_id, **span_attributes) as span,
            bound_context(job_id=str(job_id), request_id=command.request_id),
        ):
            if span is not None:
                span.set_attribute("messaging.nats.delivery_count", _delivery_count(message))
            heartbeat = asyncio.create_task(self._heartbeat(message, job_id))
            try:
                outcome = await self._run(command)
            finally:
                heartbeat.cancel()
            if outcome == "retry":
                stored = await self.store.get(job_id)
                attempts = stored.attempts if stored else 1
                delay = min(
                    self.settings.downloader_retry_base_delay * 2 ** max(attempts - 1, 0),
                    self.settings.downloader_retry_max_delay,
                )
                await message.nack(delay=delay)
                log.info("runner.retry_scheduled", delay_seconds=delay, attempts=attempts)
            elif outcome == "handed-back":
                await message.nack()
            else:
                await message.ack()
            if span is not None:
                span.set_attribute("nadzu.job.outcome", outcome)

    async def _heartbeat(self, message: NatsMessage, job_id: uuid.UUID) -> None:
        """Keep the command from being redelivered while the job runs, and notice missed cancels."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await message.in_progress()
                # One query per beat for hours would bury the job's trace in identical spans.
                with untraced():
                    cancel_requested = await self.store.is_cancel_requested(job_id)
                if cancel_requested:
                    running = self.running.get(job_id)
                    if running is not None:
                        running.stop("cancel")
            except Exception as error:
                log.warning("runner.heartbeat_failed", error=repr(error))

    async def _cancel_pending(self, job_id: uuid.UUID) -> bool:
        """Return whether a cancel command for the job is still in the stream, unread by its consumer."""
        try:
            await self.js.get_last_msg(COMMANDS_STREAM.name, Subjects.download_cancel(job_id))
        except NotFoundError:
            return False
        return True

    async def _run(self, command: EnqueueDownload) -> Literal["done", "retry", "handed-back"]:
        # The cancel consumer may not have read a cancel sent while no downloader ran. A job cancelled
        # while queued must never start, so look for one before claiming the job.
        if await self._cancel_pending(command.job.id):
            current, _ = await self.store.request_cancel(command.job)
            if current.status == JobStatus.RUNNING:
                # This delivery owns the job (an earlier attempt crashed), so no other replica will end it.
                current = await self.store.mark_cancelled(current.id) or current
            await self.ensure_final_event(current)
            log.info("runner.cancelled_before_start")
            return "done"

        claim = await self.store.claim(command.job)
        job = claim.job
        if claim.cancel_requested and job.status.is_active:
            cancelled = await self.store.mark_cancelled(job.id)
            if cancelled is not None:
                await self.publish_outcome(cancelled)
            return "done"
        if not claim.runnable:
            await self.ensure_final_event(job)
            log.info("runner.already_finished", status=job.status.value)
            return "done"

        if job.attempts > self.settings.downloader_max_attempts:
            await self._dead_letter(command, job, job.error)
            return "done"

        if self.settings.downloader_dedupe and await self._reuse(job):
            return "done"

        running = RunningJob(job.id)
        self.running[job.id] = running
        RUNNING_JOBS.inc()
        try:
            outcome = await self._attempt(command, job, running)
        finally:
            self.egress.forget(job.id)
            RUNNING_JOBS.dec()
            self.running.pop(job.id, None)
            self.discard_partial(job.id)
        return outcome

    def discard_partial(self, job_id: uuid.UUID) -> None:
        shutil.rmtree(self.partial_dir(job_id), ignore_errors=True)

    async def _attempt(
        self, command: EnqueueDownload, job: JobState, running: RunningJob
    ) -> Literal["done", "retry", "handed-back"]:
        latest = await self._latest_event(job.id)
        reporter = ProgressReporter(self.events, job, latest.job.progress if latest else None)
        job.progress = reporter.progress.model_copy()
        await self.events.publish(
            "status", job, ["status", "attempts", "started_at"], f"{job.id}:running:{job.attempts}"
        )
        log.info("runner.started", attempt=job.attempts, url=job.url)

        partial = self.partial_dir(job.id)
        shutil.rmtree(partial, ignore_errors=True)
        spec = self._worker_job(job, partial)
        started = time.monotonic()

        def attach(worker: WarmWorker) -> None:
            running.worker = worker
            if running.stop_reason is not None:
                worker.kill()

        watch = TransferWatch(self.settings.downloader_stall_timeout, self.settings.downloader_max_filesize)

        async def on_message(message: dict[str, Any]) -> None:
            error = watch.observe(message)
            if error is not None:
                running.fail(error)
            if message.get("type") == "progress":
                await reporter.update(message)

        async def watch_stalls() -> None:
            while True:
                await asyncio.sleep(1)
                error = watch.stalled()
                if error is not None:
                    running.fail(error)
                    return

        watchdog = asyncio.create_task(watch_stalls())
        run_span = internal_span(
            "yt-dlp download",
            **{
                JOB_ID: str(job.id),
                "nadzu.job.attempt": job.attempts,
                "nadzu.job.format": job.format,
                "url.scheme": job.url.split(":", 1)[0],
                "server.address": _host_of(job.url),
                "nadzu.downloader.aria2c": self.use_aria2c,
            },
        )
        failure: DownloaderError | None = None
        stopped = False
        with run_span as span:
            try:
                done = await self.pool.run(spec, on_message, attach)
            except (JobCancelled, DownloaderError) as error:
                failure = _run_failure(running, error)
                stopped = failure is None
                if failure is not None:
                    mark_failed(span, failure.code, failure.message)
            else:
                if span is not None:
                    span.set_attribute("nadzu.download.bytes", int(done.get("size") or 0))
            finally:
                watchdog.cancel()
        if stopped:
            return await self._stopped(job, running, reporter)
        if failure is not None:
            return await self._failed(command, job, failure, reporter)

        if running.stop_reason == "failed" and running.failure is not None:
            return await self._failed(command, job, running.failure, reporter)
        if running.stop_reason is not None:
            return await self._stopped(job, running, reporter)
        await reporter.finish()
        result = await asyncio.to_thread(self._store_file, job.id, done)
        self.discard_partial(job.id)
        completed = await self.store.complete(job.id, result, reporter.progress, self.settings.downloads_ttl)
        if completed is None:
            # Cancelled between the end of the transfer and this update: the file must not outlive the job.
            shutil.rmtree(self.final_dir(job.id), ignore_errors=True)
            current = await self.store.get(job.id)
            if current is not None:
                await self.ensure_final_event(current)
            return "done"
        await self.publish_outcome(completed)
        DOWNLOAD_SECONDS.observe(time.monotonic() - started)
        DOWNLOADED_BYTES.inc(result.size)
        JOBS_FINISHED.labels("completed").inc()
        log.info("runner.completed", size=result.size, filename=result.filename)
        return "done"

    async def _reuse(self, job: JobState) -> bool:
        """Complete the job with the file of an earlier job for the same URL and format, if one is kept.

        The file is shared as a hard link, so it stays on disk until every job serving it has expired.
        """
        earlier = await self.store.find_reusable(job)
        if earlier is None or earlier.result is None:
            return False
        source = self.downloads_dir / earlier.result.path
        target_dir = self.final_dir(job.id)
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / earlier.result.filename
            target.unlink(missing_ok=True)
            os.link(source, target)
        except OSError as error:
            # The earlier file expired meanwhile, or the volume cannot link: download it again.
            log.info("runner.reuse_failed", source_job_id=str(earlier.id), error=repr(error))
            shutil.rmtree(target_dir, ignore_errors=True)
            return False

        result = earlier.result.model_copy(update={"path": f"{job.id}/{earlier.result.filename}"})
        progress = Progress(percent=100.0, downloaded_bytes=result.size, total_bytes=result.size)
        completed = await self.store.complete(job.id, result, progress, self.settings.downloads_ttl)
        if completed is None:
            shutil.rmtree(target_dir, ignore_errors=True)
            return True
        await self.publish_outcome(completed)
        JOBS_FINISHED.labels("reused").inc()
        log.info("runner.reused", source_job_id=str(earlier.id))
        return True

    def _worker_job(self, job: JobState, workdir: Path) -> dict[str, Any]:
        settings = self.settings
        return {
            "job_id": str(job.id),
            "url": job.url,
            "format": job.format,
            "workdir": str(workdir),
            "proxy": self.egress.proxy_url(job.id),
            "cookies_file": str(settings.downloader_cookies_file)
            if settings.downloader_cookies_file
            else None,
            "max_filesize": settings.downloader_max_filesize,
            "max_duration": settings.downloader_max_duration,
            "stall_timeout": settings.downloader_stall_timeout,
            "allow_private": settings.downloader_allow_private_urls,
            "aria2c": self.use_aria2c,
        }

    def _store_file(self, job_id: uuid.UUID, done: dict[str, Any]) -> JobResult:
        """Move the finished file from the job's partial directory to its final place."""
        source = Path(done["path"])
        name = safe_filename(done.get("title"), done["ext"], fallback=str(job_id))
        target_dir = self.final_dir(job_id)
        target_dir.mkdir(parents=True, exist_ok=True)
        # A previous attempt may have placed a file before crashing; one job keeps exactly one file.
        for leftover in target_dir.iterdir():
            if leftover.name != name:
                leftover.unlink(missing_ok=True)
        target = target_dir / name
        os.replace(source, target)
        return JobResult(
            filename=name,
            path=f"{job_id}/{name}",
            size=int(done["size"]),
            content_type=content_type_for(done["ext"]),
            sha256=done["sha256"],
            title=done.get("title"),
            duration=done.get("duration"),
        )

    async def _stopped(
        self, job: JobState, running: RunningJob, reporter: ProgressReporter
    ) -> Literal["done", "handed-back"]:
        # Clients may look for leftovers as soon as they see the outcome, so clean up before reporting it.
        self.discard_partial(job.id)
        if running.stop_reason == "shutdown":
            error = JobError(code="interrupted", message="The downloader shut down; the job will run again.")
            requeued = await self.store.requeue(job.id, error, reporter.progress)
            if requeued is not None:
                await self.events.publish("status", requeued, ["status", "error"])
            JOBS_FINISHED.labels("handed_back").inc()
            log.info("runner.handed_back")
            return "handed-back"

        cancelled = await self.store.mark_cancelled(job.id, reporter.progress)
        if cancelled is not None:
            await self.publish_outcome(cancelled)
        JOBS_FINISHED.labels("cancelled").inc()
        log.info("runner.cancelled")
        return "done"

    async def _failed(
        self, command: EnqueueDownload, job: JobState, error: DownloaderError, reporter: ProgressReporter
    ) -> Literal["done", "retry"]:
        self.discard_partial(job.id)
        error = self._egress_cause(job.id, error)
        await reporter.flush()
        job_error = JobError(code=error.code, message=error.message)
        if not error.retryable:
            failed = await self.store.fail(job.id, job_error, reporter.progress)
            if failed is not None:
                await self.publish_outcome(failed)
            JOBS_FINISHED.labels("failed").inc()
            log.info("runner.failed", code=error.code, error=error.message)
            return "done"

        if job.attempts >= self.settings.downloader_max_attempts:
            await self._dead_letter(command, job, job_error)
            return "done"

        requeued = await self.store.requeue(job.id, job_error, reporter.progress)
        if requeued is not None:
            await self.events.publish("status", requeued, ["status", "attempts", "error"])
        JOBS_FINISHED.labels("retried").inc()
        log.warning("runner.transient_failure", code=error.code, error=error.message, attempt=job.attempts)
        return "retry"

    def _egress_cause(self, job_id: uuid.UUID, error: DownloaderError) -> DownloaderError:
        """Replace a worker's vague network error with what the egress guard saw for this job."""
        report = self.egress.report(job_id)
        if report.rejected:
            return PermanentError("forbidden-address", f"A connection was rejected: {report.rejected[0]}.")
        if report.upstream_failures and self.settings.downloader_proxy_url and error.retryable:
            return TransientError(
                "proxy-unavailable", f"The egress proxy failed: {report.upstream_failures[-1]}"
            )
        return error

    async def _dead_letter(
        self, command: EnqueueDownload, job: JobState, last_error: JobError | None
    ) -> None:
        error = last_error or JobError(code="too-many-attempts", message="The job failed on every attempt.")
        msg_id = f"{job.id}:dead-letter"
        with producer_span(Subjects.DOWNLOAD_DEAD_LETTERS, **{"messaging.message.id": msg_id}):
            await self.js.publish(
                Subjects.DOWNLOAD_DEAD_LETTERS,
                encode(command),
                headers=message_headers(
                    msg_id=msg_id,
                    extra={"Nadzu-Error-Code": error.code, "Nadzu-Attempts": str(job.attempts)},
                ),
            )
        failed = await self.store.fail(job.id, error)
        if failed is not None:
            await self.publish_outcome(failed)
        JOBS_FINISHED.labels("dead_lettered").inc()
        log.error("runner.dead_lettered", code=error.code, attempts=job.attempts)

    # Cancel and release commands.

    def stop_local(self, job_id: uuid.UUID, reason: StopReason) -> bool:
        running = self.running.get(job_id)
        if running is None:
            return False
        running.stop(reason)
        return True

    async def cancel(self, job: JobState) -> None:
        """Cancel a job: at once when it has not started, else through the replica running it."""
        current, cancelled_now = await self.store.request_cancel(job)
        if cancelled_now:
            await self.publish_outcome(current)
            log.info("runner.cancelled_before_start", job_id=str(job.id))
            return
        if current.status == JobStatus.RUNNING and not self.stop_local(job.id, "cancel"):
            from nadzu_common.messages import CancelSignal

            with producer_span(Subjects.DOWNLOAD_CANCEL_SIGNAL):
                await self.nc.publish(
                    Subjects.DOWNLOAD_CANCEL_SIGNAL,
                    encode(CancelSignal(job_id=job.id)),
                    headers=message_headers(),
                )
        elif not current.status.is_active:
            await self.ensure_final_event(current)

    async def release(self, job_id: uuid.UUID) -> None:
        """Delete a completed job's file and mark the job expired."""
        expired = await self.store.expire(job_id)
        if expired is None:
            return
        await asyncio.to_thread(shutil.rmtree, self.final_dir(job_id), True)
        await self.publish_outcome(expired)
        log.info("runner.released", job_id=str(job_id))

    async def stop_all(self, reason: StopReason) -> None:
        for running in list(self.running.values()):
            running.stop(reason)

    async def clean_stale_partials(self) -> int:
        """Remove partial directories left by a crash; return how many were removed.

        A directory stays only while its job is `running`, because another replica may be running it
        right now. A crashed replica's running job comes back by redelivery, and its next attempt starts
        from an empty directory anyway.
        """
        root = self.downloads_dir / PARTIAL_DIR
        if not root.is_dir():
            return 0
        entries = {}
        for entry in root.iterdir():
            try:
                entries[uuid.UUID(entry.name)] = entry
            except ValueError:
                entries[uuid.uuid4()] = entry  # not a job directory at all
        running = await self.store.running_among(list(entries))
        removed = 0
        for job_id, entry in entries.items():
            if job_id not in running:
                await asyncio.to_thread(shutil.rmtree, entry, True)
                removed += 1
        if removed:
            log.info("runner.partials_removed", count=removed)
        return removed


def _run_failure(running: RunningJob, error: JobCancelled | DownloaderError) -> DownloaderError | None:
    """Return the error that failed a run, or None when the run was stopped (cancel, shutdown)."""
    if running.stop_reason == "failed" and running.failure is not None:
        return running.failure
    if isinstance(error, JobCancelled) or running.stop_reason is not None:
        return None
    return error


def _host_of(url: str) -> str | None:
    return urlsplit(url).hostname


def _delivery_count(message: NatsMessage) -> int:
    metadata = getattr(message.raw_message, "metadata", None)
    return int(getattr(metadata, "num_delivered", 0) or 0)
