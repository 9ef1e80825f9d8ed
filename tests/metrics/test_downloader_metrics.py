"""Downloader metrics as real jobs run, and the download queue as the gateway reports it."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import nats

from nadzu_common.bus import COMMANDS_STREAM, enqueue_consumer_config
from tests.downloads.conftest import Media, create_job, finish
from tests.support.stack import Gateway, Service, Stack

from .conftest import Samples, scrape_gateway, scrape_service, scrape_until

JOBS = "nadzu_downloader_jobs_total"
BYTES = "nadzu_downloader_downloaded_bytes_total"


def test_completed_download_counted(
    client: httpx.Client, downloader: Service, gateway: Gateway, media: Media
) -> None:
    before = scrape_service(downloader)

    job = finish(client, create_job(client, media.url("clip.mp4"))["id"])
    assert job["status"] == "completed"
    size = job["result"]["size"]

    # The counters move just after the job's final event is published.
    def counted(samples: Samples) -> bool:
        return samples.value(JOBS, outcome="completed") > before.value(JOBS, outcome="completed")

    after = scrape_until(lambda: scrape_service(downloader), counted)
    assert after.value(JOBS, outcome="completed") - before.value(JOBS, outcome="completed") == 1
    assert after.value(BYTES) - before.value(BYTES) == size
    seconds = "nadzu_downloader_download_seconds_count"
    assert after.value(seconds) - before.value(seconds) == 1
    assert after.value("nadzu_downloader_job_records", status="completed") >= 1
    assert after.value("nadzu_downloader_job_records", status="queued") == 0
    assert after.value("nadzu_downloader_running_jobs") == 0

    # FastStream's own per-subject figures, from its middleware.
    handlers = after.label_values("faststream_received_messages_total", "handler")
    assert "downloads.cmd.enqueue" in handlers
    apps = after.label_values("faststream_received_messages_total", "app_name")
    assert apps == {"downloader"}
    assert after.created_series() == []


def test_failing_download_retried_then_dead_lettered(
    client: httpx.Client, downloader: Service, media: Media
) -> None:
    name = f"failing-{uuid.uuid4().hex[:8]}.mp4"
    os.link(media.root / "clip.mp4", media.root / name)
    media.server.faults[f"/{name}"] = "status:503"
    before = scrape_service(downloader)

    job = finish(client, create_job(client, media.url(name))["id"], timeout=120)
    assert job["status"] == "failed"
    assert job["attempts"] == 2

    def dead_lettered(samples: Samples) -> bool:
        return samples.value(JOBS, outcome="dead_lettered") > before.value(JOBS, outcome="dead_lettered")

    after = scrape_until(lambda: scrape_service(downloader), dead_lettered)
    # DOWNLOADER_MAX_ATTEMPTS is 2 in this stack: one retry, then the dead letter.
    assert after.value(JOBS, outcome="retried") - before.value(JOBS, outcome="retried") == 1
    assert after.value(JOBS, outcome="dead_lettered") - before.value(JOBS, outcome="dead_lettered") == 1
    assert after.value("nadzu_downloader_job_records", status="failed") >= 1


def test_queue_backlog_without_downloader(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    empty = scrape_gateway(gateway)
    assert empty.value("nadzu_downloads_queue_pending") == 0
    assert empty.value("nadzu_downloads_queue_oldest_pending_age_seconds") == 0

    with gateway.client(timeout=30) as client:
        job_ids = [create_job(client, media.url("clip.mp4"))["id"] for _ in range(2)]

    # No downloader has run yet, so no consumer exists: the gateway counts the commands on the subject.
    waiting = scrape_gateway(gateway)
    assert waiting.value("nadzu_downloads_queue_pending") == 2
    assert waiting.value("nadzu_downloads_queue_ack_pending") == 0
    assert waiting.value("nadzu_downloads_queue_oldest_pending_age_seconds") > 0

    # The consumer exists once a downloader has fetched; declared here with the downloader's own config.
    asyncio.run(_declare_enqueue_consumer(own_stack))
    declared = scrape_gateway(gateway)
    assert declared.value("nadzu_downloads_queue_pending") == 2
    assert declared.value("nadzu_downloads_queue_ack_pending") == 0
    oldest = declared.value("nadzu_downloads_queue_oldest_pending_age_seconds")
    assert oldest >= waiting.value("nadzu_downloads_queue_oldest_pending_age_seconds")

    own_stack.start_downloader()
    with gateway.client(timeout=30) as client:
        for job_id in job_ids:
            assert finish(client, job_id)["status"] == "completed"
    drained = scrape_gateway(gateway)
    assert drained.value("nadzu_downloads_queue_pending") == 0
    assert drained.value("nadzu_downloads_queue_oldest_pending_age_seconds") == 0


async def _declare_enqueue_consumer(stack: Stack) -> None:
    nc = await nats.connect(stack.nats.url)
    try:
        await nc.jetstream().add_consumer(COMMANDS_STREAM.name, enqueue_consumer_config())
    finally:
        await nc.close()
