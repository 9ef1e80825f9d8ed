"""Fixtures for the download tests: a private stack per test session and a local media host."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nadzu_common.testing.media import MediaServer, make_embed_page, make_hls, make_video
from tests.support.stack import Gateway, Stack, parse_sse

UNICODE_TITLE = "Ünïcödé 标题 — clip 🎬"


@pytest.fixture(scope="session")
def media_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="nadzu-media-"))
    make_video(root / "clip.mp4", seconds=2)
    shutil.copy(root / "clip.mp4", root / f"{UNICODE_TITLE}.mp4")
    make_hls(root / "clip.mp4", root / "hls")
    make_embed_page(root / "page.html", "clip.mp4", UNICODE_TITLE)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Media:
    """The local media host: files made by ffmpeg, served with Range support."""

    def __init__(self, server: MediaServer, root: Path) -> None:
        self.server = server
        self.root = root

    def url(self, name: str) -> str:
        return self.server.url(name)

    def sha256(self, name: str) -> str:
        return hashlib.sha256((self.root / name).read_bytes()).hexdigest()

    def gated_copy(self) -> tuple[str, threading.Event]:
        """A fresh copy of the clip whose transfer stalls after its first bytes until the event is set."""
        name = f"gated-{uuid.uuid4().hex[:8]}.mp4"
        os.link(self.root / "clip.mp4", self.root / name)
        gate = threading.Event()
        self.server.gates[f"/{name}"] = gate
        return name, gate

    def requested(self, name: str) -> bool:
        return any(path == f"/{name}" for _, path in self.server.requests)


@pytest.fixture(scope="session")
def media(media_root: Path) -> Iterator[Media]:
    server = MediaServer(media_root).start()
    yield Media(server, media_root)
    server.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack.create()
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> Gateway:
    gateway = stack.start_gateway()
    stack.start_downloader()
    return gateway


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.client(timeout=30) as client:
        yield client


@pytest.fixture
def own_stack() -> Iterator[Stack]:
    """A stack of its own for a test that stops, kills or adds services."""
    stack = Stack.create()
    yield stack
    stack.close()


def create_job(client: httpx.Client, url: str, fmt: str | None = None, **headers: str) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if fmt is not None:
        body["format"] = fmt
    response = client.post("/api/v1/downloads", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def read_events(
    client: httpx.Client,
    job_id: str,
    last_event_id: str | None = None,
    timeout: float = 90,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Read a job's SSE stream until the server ends it (or `stop_after` events); comments are skipped."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with client.stream(
        "GET", f"/api/v1/downloads/{job_id}/events", headers=headers, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse_sse(response.iter_lines()):
            if "comment" in event:
                assert time.monotonic() < deadline, "stream did not end in time"
                continue
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def wait_for(client: httpx.Client, job_id: str, predicate: Any, timeout: float = 90) -> list[dict[str, Any]]:
    """Follow a job's events until one matches `predicate`; return the events read so far."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"/api/v1/downloads/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200
        for event in parse_sse(response.iter_lines()):
            assert time.monotonic() < deadline, f"no matching event within {timeout} s: {events}"
            if "comment" in event:
                continue
            events.append(event)
            if predicate(event):
                return events
    raise AssertionError(f"stream ended without a matching event: {events}")


def finish(client: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """Wait for the job's stream to end and return the job as GET shows it then."""
    read_events(client, job_id, timeout=timeout)
    response = client.get(f"/api/v1/downloads/{job_id}")
    assert response.status_code == 200
    return response.json()


def wait_for_bus_status(
    stack: Stack, job_id: str, status: str, timeout: float = 60, with_error: bool = False
) -> dict[str, Any]:
    """Wait until the job event stream shows the job in `status` (also after the SSE stream ended).

    `with_error` skips events without an error, such as the first `queued` event of a job that is
    later put back to `queued` with one.
    """
    import asyncio

    import nats
    from nats.js.api import DeliverPolicy

    from nadzu_common.bus import Subjects
    from nadzu_common.messages import JobEvent

    async def wait() -> dict[str, Any]:
        nc = await nats.connect(stack.nats.url)
        found: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_message(msg: Any) -> None:
            event = JobEvent.model_validate_json(msg.data)
            matches = event.job.status.value == status and (not with_error or event.job.error is not None)
            if matches and not found.done():
                found.set_result(event.job.model_dump(mode="json"))

        subscription = await nc.jetstream().subscribe(
            Subjects.download_events(job_id),
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            return await asyncio.wait_for(found, timeout)
        finally:
            await subscription.unsubscribe()
            await nc.close()

    return asyncio.run(wait())
