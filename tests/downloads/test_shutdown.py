"""Downloader shutdown and back-pressure: SIGTERM hands jobs back, a full disk pauses new work."""

from __future__ import annotations

import uuid

from tests.support.stack import Stack

from .conftest import Media, create_job, finish, wait_for, wait_for_bus_status


def test_sigterm_hands_running_job_back(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    downloader = own_stack.start_downloader(DOWNLOADER_SHUTDOWN_TIMEOUT="1")
    with gateway.client(timeout=30) as client:
        name, gate = media.gated_copy()
        job = create_job(client, media.url(name))
        wait_for(client, job["id"], lambda event: event["event"] == "progress")

        downloader.stop(timeout=30)
        assert downloader.process.returncode == 0
        handed_back = wait_for_bus_status(own_stack, job["id"], "queued", with_error=True)
        assert handed_back["error"]["code"] == "interrupted"
        assert handed_back["attempts"] == 1
        assert not (own_stack.downloads_dir / ".partial" / job["id"]).exists()

        gate.set()
        own_stack.start_downloader()
        done = finish(client, job["id"])
    assert done["status"] == "completed"
    assert done["attempts"] == 2
    assert done["error"] is None


def test_low_disk_pauses_new_work(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    # No volume has an exabyte free, so this replica never takes a job.
    full = own_stack.start_downloader(DOWNLOADER_MIN_FREE_BYTES=str(10**18))
    with gateway.client(timeout=30) as client:
        ready = client.get("/health/ready").json()
        assert ready["checks"]["downloader"]["status"] == "unavailable"
        assert "disk" in ready["checks"]["downloader"]["detail"]

        job = create_job(client, media.url("clip.mp4"))
        roomy = own_stack.start_downloader()
        # The roomy replica takes the job; the full one left it in the queue.
        done = finish(client, job["id"])
        assert done["status"] == "completed"
        assert "downloader.paused_low_disk" in full.log()
        assert roomy.alive()


def test_start_removes_leftover_partials(own_stack: Stack) -> None:
    leftovers = own_stack.downloads_dir / ".partial"
    stale = leftovers / str(uuid.uuid4())
    stale.mkdir(parents=True)
    (stale / "media.mp4.part").write_bytes(b"half a file")
    stray = leftovers / "not-a-job"
    stray.mkdir()

    own_stack.start_downloader()
    assert not stale.exists()
    assert not stray.exists()
