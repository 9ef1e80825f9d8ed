"""Downloader replicas killed with SIGKILL at chosen moments: every job still completes exactly once."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import DeliverPolicy

from nadzu_common.bus import EVENTS_STREAM
from nadzu_common.messages import JobEvent
from nadzu_common.testing.media import MediaServer
from tests.support.stack import Service, Stack

from .conftest import create_job, finish

JOBS = 8
# The moments to kill a replica at, in order: before it starts a job (the job was just queued),
# mid-transfer, just after a job's outcome was stored and published (before its command is acked), just
# after a job started, and with a job's file complete but not yet moved or recorded (the 100 % progress
# event comes right before that).
KILL_SCHEDULE = ["queued", "progress", "completed", "running", "finishing", "progress", "completed"]


@pytest.fixture
def slow_media(tmp_path: Path, media_root: Path) -> Iterator[MediaServer]:
    for index in range(JOBS):
        os.link(media_root / "clip.mp4", tmp_path / f"job-{index}.mp4")
    # About two seconds per job, so kills land while transfers run.
    server = MediaServer(tmp_path, rate_bytes_per_second=100_000).start()
    yield server
    server.stop()


class Killer(threading.Thread):
    """Follow every job event and kill a downloader replica at each scheduled kind of event."""

    def __init__(self, stack: Stack, replicas: list[Service]) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.replicas = replicas
        self.schedule = list(KILL_SCHEDULE)
        self.kills: list[str] = []
        self.killed = threading.Event()
        self.done = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        nc = await nats.connect(self.stack.nats.url)
        target = 0

        async def on_event(msg: Any) -> None:
            nonlocal target
            if not self.schedule:
                return
            event = JobEvent.model_validate_json(msg.data)
            kind = event.event
            if event.event == "status":
                kind = event.job.status.value
            elif event.event == "progress" and event.job.progress.percent == 100.0:
                kind = "finishing"
            if kind != self.schedule[0]:
                return
            replica = self.replicas[target % len(self.replicas)]
            if not replica.alive():
                return
            replica.kill()
            self.kills.append(f"{kind} (job {event.job.id})")
            self.schedule.pop(0)
            target += 1
            self.killed.set()
            if not self.schedule:
                self.done.set()

        subscription = await nc.jetstream().subscribe(
            "downloads.evt.>", cb=on_event, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        await asyncio.to_thread(self._stopping.wait)
        await subscription.unsubscribe()
        await nc.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)


def _history(stack: Stack, job_id: str) -> list[str]:
    async def read() -> list[str]:
        nc = await nats.connect(stack.nats.url)
        js = nc.jetstream()
        subject = f"downloads.evt.{job_id}"
        last = (await js.get_last_msg(EVENTS_STREAM.name, subject)).seq
        names: list[str] = []
        finished = asyncio.Event()

        async def on_message(msg: Any) -> None:
            names.append(JobEvent.model_validate_json(msg.data).event)
            if msg.metadata.sequence.stream >= last:
                finished.set()

        subscription = await js.subscribe(
            subject, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        await asyncio.wait_for(finished.wait(), 10)
        await subscription.unsubscribe()
        await nc.close()
        return names

    return asyncio.run(read())


def test_jobs_complete_once_through_kills(own_stack: Stack, slow_media: MediaServer) -> None:
    gateway = own_stack.start_gateway()
    replicas = [own_stack.start_downloader(), own_stack.start_downloader()]
    killer = Killer(own_stack, replicas)
    killer.start()

    with gateway.client(timeout=60) as client:
        jobs = [create_job(client, slow_media.url(f"job-{index}.mp4"))["id"] for index in range(JOBS)]

        # Restart each killed replica, so work goes on until the schedule is used up.
        while not killer.done.is_set():
            assert killer.killed.wait(timeout=120), f"kills so far: {killer.kills}"
            killer.killed.clear()
            for index, replica in enumerate(replicas):
                if not replica.alive():
                    replicas[index] = own_stack.start_downloader()
            killer.replicas = replicas
        killer.stop()
        for index, replica in enumerate(replicas):
            if not replica.alive():
                replicas[index] = own_stack.start_downloader()

        results = [finish(client, job_id, timeout=180) for job_id in jobs]

    assert len(killer.kills) == len(KILL_SCHEDULE)
    for job in results:
        assert job["status"] == "completed", job
        history = _history(own_stack, job["id"])
        assert history.count("completed") == 1, (job["id"], history)
        files = list((own_stack.downloads_dir / job["id"]).iterdir())
        assert [path.name for path in files] == [job["result"]["filename"]]
    assert not any((own_stack.downloads_dir / ".partial").glob("*"))
    retried = sum(1 for job in results if job["attempts"] > 1)
    print(
        f"crash tally: {JOBS} jobs, {len(killer.kills)} kills ({', '.join(killer.kills)}), "
        f"{retried} jobs ran more than once, {JOBS} completed exactly once"
    )
