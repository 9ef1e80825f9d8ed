"""Jobs across stopped, killed and cancelled downloaders, with two replicas sharing the work."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import nats

from nadzu_common.bus import COMMANDS_STREAM, ENQUEUE_CONSUMER, EVENTS_STREAM, Subjects
from tests.support.stack import Stack, free_port

from .conftest import Media, create_job, finish, read_events, wait_for, wait_for_bus_status


def _history(stack: Stack, job_id: str) -> list[str]:
    """Every event name of the job in the event stream, oldest first."""
    from nats.js.api import DeliverPolicy

    from nadzu_common.messages import JobEvent

    async def read() -> list[str]:
        nc = await nats.connect(stack.nats.url)
        js = nc.jetstream()
        subject = Subjects.download_events(job_id)
        last = (await js.get_last_msg(EVENTS_STREAM.name, subject)).seq
        names: list[str] = []
        done = asyncio.Event()

        async def on_message(msg: object) -> None:
            event = JobEvent.model_validate_json(msg.data)  # type: ignore[attr-defined]
            names.append(event.event if event.event != "status" else f"status:{event.job.status.value}")
            if msg.metadata.sequence.stream >= last:  # type: ignore[attr-defined]
                done.set()

        subscription = await js.subscribe(
            subject, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        await asyncio.wait_for(done.wait(), 10)
        await subscription.unsubscribe()
        await nc.close()
        return names

    return asyncio.run(read())


def _consumer_idle(stack: Stack, timeout: float = 10) -> bool:
    """Whether the enqueue consumer has nothing pending or unacked within `timeout`.

    A job's final event is published just before its command is acked, so the ack may trail it briefly;
    NATS sends no event for an ack, which is why this polls the consumer's state.
    """

    async def check() -> bool:
        nc = await nats.connect(stack.nats.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                info = await nc.jetstream().consumer_info(COMMANDS_STREAM.name, ENQUEUE_CONSUMER)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return True
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.05)
        finally:
            await nc.close()

    return asyncio.run(check())


def test_enqueue_while_downloader_stopped(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    with gateway.client(timeout=30) as client:
        job = create_job(client, media.url("clip.mp4"))
        assert client.get(f"/api/v1/downloads/{job['id']}").json()["status"] == "queued"
        listed = client.get("/api/v1/downloads").json()["items"]
        assert [item["id"] for item in listed] == [job["id"]]
        snapshot = read_events(client, job["id"], stop_after=1)
        assert snapshot[0]["data"]["status"] == "queued"

        metrics_port = free_port()
        own_stack.start_downloader(METRICS_PORT=str(metrics_port))
        done = finish(client, job["id"])
        assert done["status"] == "completed"
        assert done["attempts"] == 1

    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'nadzu_downloader_jobs_total{outcome="completed"} 1.0' in metrics
    assert f"nadzu_downloader_downloaded_bytes_total {float(done['result']['size'])}" in metrics


def test_cancel_queued_job_never_starts(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    with gateway.client(timeout=30) as client:
        name = f"never-{uuid.uuid4().hex[:8]}.mp4"
        (media.root / name).hardlink_to(media.root / "clip.mp4")
        job = create_job(client, media.url(name))
        response = client.delete(f"/api/v1/downloads/{job['id']}")
        assert response.status_code == 202
        assert response.json()["status"] == "queued"

        own_stack.start_downloader()
        cancelled = wait_for_bus_status(own_stack, job["id"], "cancelled")
        assert cancelled["attempts"] == 0

        # A later job completing means the downloader has read the cancelled job's command too.
        later = finish(client, create_job(client, media.url("clip.mp4"))["id"])
        assert later["status"] == "completed"
        assert _consumer_idle(own_stack)
        assert not media.requested(name)
        final = client.get(f"/api/v1/downloads/{job['id']}").json()
        assert final["status"] == "cancelled"
        assert final["started_at"] is None
        assert client.delete(f"/api/v1/downloads/{job['id']}").status_code == 204


def test_cancel_running_job_with_two_replicas(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    own_stack.start_downloader()
    own_stack.start_downloader()
    with gateway.client(timeout=30) as client:
        name, gate = media.gated_copy()
        job = create_job(client, media.url(name))
        wait_for(client, job["id"], lambda event: event["event"] == "progress")
        assert (own_stack.downloads_dir / ".partial" / job["id"]).exists()

        response = client.delete(f"/api/v1/downloads/{job['id']}")
        assert response.status_code == 202
        events = read_events(client, job["id"])
        gate.set()
        assert events[-1]["event"] == "cancelled"

        final = client.get(f"/api/v1/downloads/{job['id']}").json()
        assert final["status"] == "cancelled"
        assert final["result"] is None
        assert not (own_stack.downloads_dir / ".partial" / job["id"]).exists()
        assert not (own_stack.downloads_dir / job["id"]).exists()
        assert _history(own_stack, job["id"]).count("cancelled") == 1

        # Both replicas keep working after one of them killed its worker.
        others = [create_job(client, media.url("clip.mp4"))["id"] for _ in range(3)]
        assert all(finish(client, job_id)["status"] == "completed" for job_id in others)


def test_killed_downloader_job_completes_once(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    downloader = own_stack.start_downloader()
    with gateway.client(timeout=30) as client:
        name, gate = media.gated_copy()
        job = create_job(client, media.url(name))
        wait_for(client, job["id"], lambda event: event["event"] == "progress")

        downloader.kill()
        gate.set()
        own_stack.start_downloader()
        done = finish(client, job["id"], timeout=120)

    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    assert done["result"]["sha256"] == media.sha256(name)
    history = _history(own_stack, job["id"])
    assert history.count("completed") == 1
    assert [path.name for path in (own_stack.downloads_dir / job["id"]).iterdir()] == [
        done["result"]["filename"]
    ]
    assert not (own_stack.downloads_dir / ".partial" / job["id"]).exists()
    assert _consumer_idle(own_stack)
