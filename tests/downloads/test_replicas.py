"""Several downloader replicas on one durable consumer, and an HLS stream with a hole in it."""

from __future__ import annotations

import shutil
import uuid

from tests.support.stack import Stack

from .conftest import Media, create_job, finish


def test_replicas_share_work_without_duplicates(own_stack: Stack, media: Media) -> None:
    gateway = own_stack.start_gateway()
    replicas = [own_stack.start_downloader(), own_stack.start_downloader()]
    with gateway.client(timeout=60) as client:
        jobs = [create_job(client, media.url("clip.mp4"))["id"] for _ in range(10)]
        results = [finish(client, job_id) for job_id in jobs]

    assert all(job["status"] == "completed" for job in results)
    assert all(job["attempts"] == 1 for job in results)
    starts = [replica.log().count('"runner.started"') for replica in replicas]
    assert sum(starts) == len(jobs)
    assert all(count > 0 for count in starts), f"both replicas took work: {starts}"


def test_hls_with_missing_segment_fails(gateway: object, media: Media) -> None:
    holed = f"hls-holed-{uuid.uuid4().hex[:8]}"
    shutil.copytree(media.root / "hls", media.root / holed)
    segments = sorted((media.root / holed).glob("*.ts"))
    assert len(segments) >= 2
    segments[1].unlink()

    with gateway.client(timeout=60) as client:  # type: ignore[attr-defined]
        job = finish(client, create_job(client, media.url(f"{holed}/index.m3u8"))["id"])
    assert job["status"] == "failed", job
    assert job["result"] is None
    assert job["error"]["code"] in ("source-not-found", "incomplete-download", "download-failed"), job[
        "error"
    ]
