"""Broken servers, limits and retries: every bad transfer ends as a failed job with a clear code."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from nadzu_common.bus import DEAD_LETTERS_STREAM, Subjects
from nadzu_common.messages import EnqueueDownload
from nadzu_common.testing.media import make_video
from tests.support.stack import Stack

from .conftest import Media, create_job, finish, read_events, wait_for_bus_status

MAX_FILESIZE = 1_000_000


@pytest.fixture(scope="module")
def strict_stack() -> Iterator[Stack]:
    """A stack with tight limits and fast retries, so failures show quickly."""
    stack = Stack.create(
        DOWNLOADER_STALL_TIMEOUT="3",
        DOWNLOADER_MAX_DURATION="4",
        DOWNLOADER_MAX_FILESIZE=str(MAX_FILESIZE),
        DOWNLOADER_MAX_ATTEMPTS="3",
        DOWNLOADER_RETRY_BASE_DELAY="0.2",
        DOWNLOADS_TTL="4",
        DOWNLOADER_JANITOR_INTERVAL="0.5",
        DOWNLOADER_DEDUPE="true",
        JOBS_RETENTION="8",
    )
    stack.start_downloader()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def strict(strict_stack: Stack) -> Iterator[httpx.Client]:
    gateway = strict_stack.start_gateway()
    with gateway.client(timeout=60) as client:
        yield client


def _copy(media: Media, fault: str | None = None, source: str = "clip.mp4") -> str:
    name = f"copy-{uuid.uuid4().hex[:8]}{Path(source).suffix}"
    os.link(media.root / source, media.root / name)
    if fault is not None:
        media.server.faults[f"/{name}"] = fault
    return name


def _failed_with(client: httpx.Client, url: str) -> dict[str, Any]:
    job = finish(client, create_job(client, url)["id"], timeout=120)
    assert job["status"] == "failed", job
    assert job["result"] is None
    return job


def test_server_error_is_retried_then_dead_lettered(
    strict: httpx.Client, strict_stack: Stack, media: Media
) -> None:
    name = _copy(media, "status:503")
    job = create_job(strict, media.url(name))
    events = read_events(strict, job["id"], timeout=120)

    requeued = [
        event["data"]
        for event in events
        if event["data"]["status"] == "queued" and event["data"].get("error")
    ]
    assert [data["attempts"] for data in requeued] == [1, 2]
    assert [data["error"]["code"] for data in requeued] == ["source-unavailable", "source-unavailable"]
    assert events[-1]["event"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "source-unavailable"

    final = strict.get(f"/api/v1/downloads/{job['id']}").json()
    assert final["attempts"] == 3
    assert sum(1 for method, path in media.server.requests if path == f"/{name}" and method == "GET") >= 3

    async def dead_letter() -> EnqueueDownload:
        nc = await nats.connect(strict_stack.nats.url)
        try:
            msg = await nc.jetstream().get_last_msg(DEAD_LETTERS_STREAM.name, Subjects.DOWNLOAD_DEAD_LETTERS)
            assert msg.headers is not None
            assert msg.headers["Nadzu-Error-Code"] == "source-unavailable"
            return EnqueueDownload.model_validate_json(msg.data or b"")
        finally:
            await nc.close()

    assert str(asyncio.run(dead_letter()).job.id) == job["id"]


def test_not_found_fails_without_retry(strict: httpx.Client, media: Media) -> None:
    job = _failed_with(strict, media.url("missing.mp4"))
    assert job["error"]["code"] == "source-not-found"
    assert job["attempts"] == 1


def test_truncated_body_never_completes(strict: httpx.Client, media: Media, strict_stack: Stack) -> None:
    job = _failed_with(strict, media.url(_copy(media, "truncate")))
    assert job["error"]["code"] == "incomplete-download"
    assert job["attempts"] == 3
    assert not (strict_stack.downloads_dir / job["id"]).exists()


def test_empty_body_fails(strict: httpx.Client, media: Media) -> None:
    job = _failed_with(strict, media.url(_copy(media, "empty")))
    assert job["error"]["code"] in ("empty-media", "corrupt-media")


def test_dripping_server_is_abandoned(strict: httpx.Client, media: Media) -> None:
    job = _failed_with(strict, media.url(_copy(media, "drip")))
    assert job["error"]["code"] == "stalled"
    assert job["attempts"] == 3


def test_garbage_file_is_corrupt_media(strict: httpx.Client, media: Media) -> None:
    name = f"garbage-{uuid.uuid4().hex[:8]}.mp4"
    (media.root / name).write_bytes(os.urandom(300_000))
    job = _failed_with(strict, media.url(name))
    assert job["error"]["code"] == "corrupt-media"
    assert job["attempts"] == 1


def test_too_long_media_refused(strict: httpx.Client, media: Media) -> None:
    name = f"long-{uuid.uuid4().hex[:8]}.mp4"
    make_video(media.root / name, seconds=6)
    job = _failed_with(strict, media.url(name))
    assert job["error"]["code"] == "too-long"


def test_too_large_file_refused(strict: httpx.Client, media: Media) -> None:
    name = f"large-{uuid.uuid4().hex[:8]}.mp4"
    make_video(media.root / name, seconds=3, size="640x360", bitrate="4M")
    assert (media.root / name).stat().st_size > MAX_FILESIZE
    job = _failed_with(strict, media.url(name))
    assert job["error"]["code"] == "too-large"


def test_playlist_page_refused(strict: httpx.Client, media: Media) -> None:
    name = f"playlist-{uuid.uuid4().hex[:8]}.html"
    (media.root / name).write_text(
        "<!doctype html><html><head><title>Two clips</title></head><body>"
        "<video><source src='clip.mp4' type='video/mp4'></video>"
        f"<video><source src='{_copy(media)}' type='video/mp4'></video></body></html>"
    )
    job = _failed_with(strict, media.url(name))
    assert job["error"]["code"] == "playlist-not-supported"


def test_expired_file_is_gone(strict: httpx.Client, media: Media, strict_stack: Stack) -> None:
    job = finish(strict, create_job(strict, media.url("clip.mp4"))["id"])
    assert job["status"] == "completed"
    expired = wait_for_bus_status(strict_stack, job["id"], "expired", timeout=30)
    assert expired["result"]["sha256"] == media.sha256("clip.mp4")

    response = strict.get(f"/api/v1/downloads/{job['id']}/file")
    assert response.status_code == 410
    assert not (strict_stack.downloads_dir / job["id"]).exists()


def test_same_url_reuses_stored_file(strict: httpx.Client, media: Media, strict_stack: Stack) -> None:
    name = _copy(media)
    first = finish(strict, create_job(strict, media.url(name))["id"])
    requests_for_first = [request for request in media.server.requests if request[1] == f"/{name}"]
    second = finish(strict, create_job(strict, media.url(name))["id"])
    assert first["status"] == second["status"] == "completed"
    assert second["result"]["sha256"] == first["result"]["sha256"]
    assert [request for request in media.server.requests if request[1] == f"/{name}"] == requests_for_first

    first_file = strict_stack.downloads_dir / first["id"] / first["result"]["filename"]
    second_file = strict_stack.downloads_dir / second["id"] / second["result"]["filename"]
    assert first_file.stat().st_ino == second_file.stat().st_ino

    assert strict.delete(f"/api/v1/downloads/{first['id']}").status_code == 204
    wait_for_bus_status(strict_stack, first["id"], "expired")
    assert not first_file.exists()
    response = strict.get(f"/api/v1/downloads/{second['id']}/file")
    assert response.status_code == 200
    assert len(response.content) == second["result"]["size"]


def test_other_format_is_not_reused(strict: httpx.Client, media: Media) -> None:
    name = _copy(media)
    video = finish(strict, create_job(strict, media.url(name))["id"])
    audio = finish(strict, create_job(strict, media.url(name), fmt="audio")["id"])
    assert video["status"] == audio["status"] == "completed"
    assert audio["result"]["sha256"] != video["result"]["sha256"]


def test_endless_body_stops_at_size_limit(strict: httpx.Client, media: Media) -> None:
    job = _failed_with(strict, media.url(_copy(media, "endless")))
    assert job["error"]["code"] == "too-large"
    assert job["attempts"] == 1


def test_finished_records_deleted_after_retention(
    strict: httpx.Client, media: Media, strict_stack: Stack
) -> None:
    import asyncpg

    job = _failed_with(strict, media.url("gone-for-good.mp4"))

    async def count_rows() -> int:
        conn = await asyncpg.connect(strict_stack.database_url)
        try:
            for _ in range(200):
                rows = await conn.fetchval(
                    "SELECT count(*) FROM downloader.jobs WHERE id = $1", uuid.UUID(job["id"])
                )
                if rows == 0:
                    return 0
                await asyncio.sleep(0.1)
            return int(rows)
        finally:
            await conn.close()

    # The janitor runs every half second here and deletes records finished more than 8 s ago.
    assert asyncio.run(count_rows()) == 0
    assert strict.get(f"/api/v1/downloads/{job['id']}").status_code == 404


def test_resume_on_server_ignoring_range(strict: httpx.Client, media: Media, strict_stack: Stack) -> None:
    job = finish(
        strict, create_job(strict, media.url(_copy(media, "cut-then-ignore-range")))["id"], timeout=120
    )
    # Either a correct restart from the first byte, or a clear failure: never a spliced file.
    if job["status"] == "completed":
        assert job["result"]["sha256"] == media.sha256("clip.mp4")
        path = strict_stack.downloads_dir / job["id"] / job["result"]["filename"]
        assert path.stat().st_size == (media.root / "clip.mp4").stat().st_size
    else:
        assert job["status"] == "failed", job
        assert job["error"]["code"] in ("incomplete-download", "corrupt-media", "download-failed")
