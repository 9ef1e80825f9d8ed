"""aria2c for direct media: several connections, live progress from the file it writes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nadzu_common.testing.media import MediaServer, make_video
from tests.support.stack import Stack

from .conftest import create_job, read_events

PER_CONNECTION_RATE = 512 * 1024


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    root: Path = tmp_path_factory.mktemp("throttled")
    make_video(root / "eight-mb.mp4", seconds=4, size="640x360", bitrate="16M")
    server = MediaServer(root, rate_bytes_per_second=PER_CONNECTION_RATE).start()
    yield server
    server.stop()


def test_aria2c_download_reports_progress(own_stack: Stack, throttled: MediaServer) -> None:
    assert shutil.which("aria2c"), "aria2c is installed by make test"
    gateway = own_stack.start_gateway()
    own_stack.start_downloader(DOWNLOADER_ARIA2C="true")
    source = throttled.root / "eight-mb.mp4"
    with gateway.client(timeout=60) as client:
        job = create_job(client, throttled.url("eight-mb.mp4"))
        events = read_events(client, job["id"], timeout=120)

    progress = [event["data"]["progress"] for event in events if event["event"] == "progress"]
    assert len(progress) >= 3, progress
    percents = [item["percent"] for item in progress]
    assert percents == sorted(percents)
    assert any(0 < percent < 100 for percent in percents)
    assert all(item["total_bytes"] == source.stat().st_size for item in progress), (
        source.stat().st_size,
        progress,
    )

    completed = events[-1]
    assert completed["event"] == "completed"
    assert completed["data"]["result"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    ranged = [path for method, path in throttled.requests if method == "GET" and path == "/eight-mb.mp4"]
    assert len(ranged) >= 2, "aria2c opened several connections"
