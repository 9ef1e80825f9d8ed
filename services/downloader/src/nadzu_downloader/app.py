"""The downloader service: FastStream subscribers around the job runner.

The enqueue consumer is read by a loop that fetches a command only when a worker slot is free. FastStream's
concurrent pull subscriber (0.7.8) fetches ahead of its free workers, and commands held that way are
redelivered to other replicas as duplicates. Fetching one at a time after taking a slot avoids that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from datetime import UTC, datetime, timedelta

from faststream import AckPolicy as HandlerAckPolicy
from faststream import FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from prometheus_client import REGISTRY

from nadzu_common.bus import (
    CANCEL_CONSUMER,
    COMMANDS_STREAM,
    ENQUEUE_CONSUMER,
    EVENTS_STREAM,
    RELEASE_CONSUMER,
    Subjects,
    connect,
    control_consumer_config,
    enqueue_consumer_config,
    ensure_streams,
)
from nadzu_common.logging import get_logger
from nadzu_common.messages import (
    CancelDownload,
    CancelSignal,
    HealthQuery,
    HealthReply,
    ReleaseDownload,
    SupportedSitesQuery,
    SupportedSitesReply,
)
from nadzu_common.metrics import faststream_metrics
from nadzu_common.tracing import consumer_span

from .egress import EgressGuard
from .metrics import JobStatusCollector
from .pool import WorkerPool
from .runner import JobRunner
from .settings import DownloaderSettings
from .sites import supported_sites
from .storage import JobStore

log = get_logger(__name__)

SERVICE_QUEUE = "downloader"


def create_app(settings: DownloaderSettings) -> FastStream:
    broker = NatsBroker(
        settings.nats_servers,
        name="nadzu-downloader",
        graceful_timeout=settings.downloader_shutdown_timeout,
        # FastStream's own lines go through the service's log configuration, so they are JSON too.
        logger=logging.getLogger("nadzu.faststream"),
        # Per-message "Received"/"Processed" lines at DEBUG: at INFO they would dominate the log.
        log_level=logging.DEBUG,
        middlewares=[faststream_metrics("downloader")],
    )
    commands = JStream(COMMANDS_STREAM.name, declare=False)
    state: dict[str, object] = {}

    enqueue_subscriber = broker.subscriber(
        Subjects.DOWNLOAD_ENQUEUE,
        stream=commands,
        durable=ENQUEUE_CONSUMER,
        config=enqueue_consumer_config(settings.downloader_ack_wait_seconds),
        pull_sub=PullSub(batch_size=1),
        ack_policy=HandlerAckPolicy.MANUAL,
        title="downloads.cmd.enqueue",
        description="Download commands; fetched one at a time when a worker slot is free.",
    )

    def runner() -> JobRunner:
        return state["runner"]  # type: ignore[return-value]

    @broker.subscriber(
        Subjects.DOWNLOAD_CANCEL,
        stream=commands,
        durable=CANCEL_CONSUMER,
        config=control_consumer_config(CANCEL_CONSUMER, Subjects.DOWNLOAD_CANCEL),
        # One message per fetch: nats-py 2.16 can end a multi-message fetch with a bare
        # asyncio.TimeoutError that FastStream 0.7.8's pull loop does not expect, which it logs as an
        # ERROR with a traceback before restarting the loop. Control commands are rare, so batches gain
        # nothing here.
        pull_sub=PullSub(batch_size=1),
        ack_policy=HandlerAckPolicy.NACK_ON_ERROR,
        title=Subjects.DOWNLOAD_CANCEL,
        description="Cancel a job: at once when it has not started, else through the replica running it.",
    )
    async def on_cancel(command: CancelDownload, message: NatsMessage) -> None:
        with consumer_span(message.raw_message.subject, message.headers, job_id=command.job.id):
            await runner().cancel(command.job)

    @broker.subscriber(
        Subjects.DOWNLOAD_RELEASE,
        stream=commands,
        durable=RELEASE_CONSUMER,
        config=control_consumer_config(RELEASE_CONSUMER, Subjects.DOWNLOAD_RELEASE),
        pull_sub=PullSub(batch_size=1),  # see the cancel consumer
        ack_policy=HandlerAckPolicy.NACK_ON_ERROR,
        title=Subjects.DOWNLOAD_RELEASE,
        description="Delete a completed job's file and mark the job expired.",
    )
    async def on_release(command: ReleaseDownload, message: NatsMessage) -> None:
        with consumer_span(message.raw_message.subject, message.headers, job_id=command.job_id):
            await runner().release(command.job_id)

    # Core NATS without a queue group, so every replica receives every cancel signal.
    @broker.subscriber(
        Subjects.DOWNLOAD_CANCEL_SIGNAL,
        title=Subjects.DOWNLOAD_CANCEL_SIGNAL,
        description="Stop the job if this replica runs it.",
    )
    async def on_cancel_signal(signal: CancelSignal, message: NatsMessage) -> None:
        with consumer_span(Subjects.DOWNLOAD_CANCEL_SIGNAL, message.headers, job_id=signal.job_id):
            if runner().stop_local(signal.job_id, "cancel"):
                log.info("downloader.cancel_signal", job_id=str(signal.job_id))

    @broker.subscriber(
        Subjects.DOWNLOAD_SITES,
        queue=SERVICE_QUEUE,
        title=Subjects.DOWNLOAD_SITES,
        description="The extractors of the installed yt-dlp, and its version.",
    )
    async def on_sites(query: SupportedSitesQuery) -> SupportedSitesReply:
        return await asyncio.to_thread(supported_sites)

    @broker.subscriber(
        Subjects.DOWNLOAD_HEALTH,
        queue=SERVICE_QUEUE,
        title=Subjects.DOWNLOAD_HEALTH,
        description="Readiness of one downloader replica: database, egress proxy and free disk space.",
    )
    async def on_health(query: HealthQuery) -> HealthReply:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(runner().store.ping(), 2)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {type(error).__name__}"
        proxy_problem = await runner().egress.check_upstream()
        checks["proxy"] = "ok" if proxy_problem is None else proxy_problem
        free = shutil.disk_usage(settings.downloads_dir).free
        checks["disk"] = "ok" if free >= settings.downloader_min_free_bytes else f"low: {free} bytes free"
        healthy = all(value == "ok" for value in checks.values())
        return HealthReply(
            status="ok" if healthy else "unavailable",
            service="downloader",
            checks=checks,
            detail=None if healthy else "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
        )

    app = FastStream(broker, logger=logging.getLogger("nadzu.faststream"))
    tasks: list[asyncio.Task[None]] = []

    @app.on_startup
    async def start() -> None:
        settings.downloads_dir.mkdir(parents=True, exist_ok=True)
        nc = await connect(settings.nats_servers, name="nadzu-downloader-runner")
        js = nc.jetstream()
        await ensure_streams(js, settings.nats_stream_replicas)
        store = await JobStore.open(settings.database_url, max_size=settings.downloader_concurrency + 4)
        pool = WorkerPool(settings.downloader_concurrency)
        await pool.start()
        egress = EgressGuard(settings.downloader_allow_private_urls, settings.downloader_proxy_url)
        await egress.start()
        job_runner = JobRunner(settings, store, pool, nc, js, egress)
        await job_runner.clean_stale_partials()
        state.update(runner=job_runner, nc=nc)
        job_counts = JobStatusCollector(store.count_by_status, asyncio.get_running_loop())
        REGISTRY.register(job_counts)
        state["job_counts"] = job_counts

    @app.after_startup
    async def start_loops() -> None:
        tasks.append(asyncio.create_task(_work_loop(enqueue_subscriber, runner(), settings)))
        tasks.append(asyncio.create_task(_janitor(runner(), settings)))
        log.info("downloader.started", concurrency=settings.downloader_concurrency)

    @app.on_shutdown
    async def stop() -> None:
        if "runner" not in state:
            return  # stopped before start-up finished: nothing of ours is running yet
        job_runner = runner()
        loop_task, janitor_task = tasks
        janitor_task.cancel()
        # Stop fetching, give running jobs the grace period, then hand the rest back to the queue.
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        in_flight = [task for task in _job_tasks if not task.done()]
        if in_flight:
            log.info("downloader.draining", jobs=len(in_flight))
            _, pending = await asyncio.wait(in_flight, timeout=settings.downloader_shutdown_timeout)
            if pending:
                await job_runner.stop_all("shutdown")
                await asyncio.wait(pending, timeout=10)
        await job_runner.pool.close()
        await job_runner.egress.stop()
        REGISTRY.unregister(state["job_counts"])  # type: ignore[arg-type]
        await job_runner.store.close()
        await state["nc"].drain()  # type: ignore[attr-defined]
        log.info("downloader.stopped")

    return app


_job_tasks: set[asyncio.Task[None]] = set()


async def _work_loop(subscriber: object, job_runner: JobRunner, settings: DownloaderSettings) -> None:
    """Fetch a command whenever a slot is free and run it in the background."""
    slots = asyncio.Semaphore(settings.downloader_concurrency)
    paused = False
    while True:
        await slots.acquire()
        free = shutil.disk_usage(settings.downloads_dir).free
        if free < settings.downloader_min_free_bytes:
            # Jobs wait in the queue (another replica with room may take them) until space is freed.
            if not paused:
                log.warning(
                    "downloader.paused_low_disk",
                    free_bytes=free,
                    min_free_bytes=settings.downloader_min_free_bytes,
                )
                paused = True
            slots.release()
            await asyncio.sleep(5)
            continue
        if paused:
            log.info("downloader.resumed", free_bytes=free)
            paused = False
        try:
            message = await subscriber.get_one(timeout=5)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            slots.release()
            raise
        except Exception as error:
            slots.release()
            log.warning("downloader.fetch_failed", error=repr(error))
            await asyncio.sleep(1)
            continue
        if message is None:
            slots.release()
            continue

        async def run(message: object = message) -> None:
            try:
                await job_runner.handle(message)  # type: ignore[arg-type]
            except Exception:
                log.exception("downloader.job_crashed")
                # The command stays unacked and comes back after the ack wait.
            finally:
                slots.release()

        task = asyncio.create_task(run())
        _job_tasks.add(task)
        task.add_done_callback(_job_tasks.discard)


async def _janitor(job_runner: JobRunner, settings: DownloaderSettings) -> None:
    """Expire files past DOWNLOADS_TTL and delete job records past JOBS_RETENTION."""
    while True:
        try:
            for job_id in await job_runner.store.due_for_expiry():
                await job_runner.release(job_id)
            cutoff = datetime.now(UTC) - timedelta(seconds=settings.jobs_retention)
            deleted = await job_runner.store.delete_finished_before(cutoff)
            for job_id in deleted:
                # The job's events are the gateway's copy of it; the job is gone once they are too.
                await job_runner.js.purge_stream(EVENTS_STREAM.name, subject=Subjects.download_events(job_id))
            if deleted:
                log.info("janitor.jobs_deleted", count=len(deleted))
        except Exception as error:
            log.warning("janitor.failed", error=repr(error))
        await asyncio.sleep(settings.downloader_janitor_interval)
