"""A cookies file for sites that need a signed-in session: sent, never changed, never logged."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from tests.support.stack import Stack

from .conftest import Media, create_job, finish

SECRET = f"s3cr3t-{uuid.uuid4().hex}"


def test_cookies_file_signs_requests(own_stack: Stack, media: Media, tmp_path: Path) -> None:
    name = f"members-{uuid.uuid4().hex[:8]}.mp4"
    os.link(media.root / "clip.mp4", media.root / name)
    media.server.faults[f"/{name}"] = f"cookie:session={SECRET}"

    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{SECRET}\n")
    cookies.chmod(0o444)
    before = hashlib.sha256(cookies.read_bytes()).hexdigest()

    gateway = own_stack.start_gateway()
    downloader = own_stack.start_downloader(DOWNLOADER_COOKIES_FILE=str(cookies))
    with gateway.client(timeout=60) as client:
        job = finish(client, create_job(client, media.url(name))["id"])

    assert job["status"] == "completed", job
    assert job["result"]["sha256"] == media.sha256("clip.mp4")
    assert hashlib.sha256(cookies.read_bytes()).hexdigest() == before
    assert SECRET not in downloader.log()
    assert not list(own_stack.downloads_dir.rglob(".cookies.txt"))


def test_without_cookies_members_page_fails(gateway: object, media: Media) -> None:
    name = f"members-{uuid.uuid4().hex[:8]}.mp4"
    os.link(media.root / "clip.mp4", media.root / name)
    media.server.faults[f"/{name}"] = f"cookie:session={SECRET}"
    with gateway.client(timeout=60) as client:  # type: ignore[attr-defined]
        job = finish(client, create_job(client, media.url(name))["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "source-forbidden"
