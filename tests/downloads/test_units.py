"""Pieces of the downloader that need no running service: names, progress and migrations."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from nadzu_common.messages import JobState, JobStatus
from nadzu_downloader.events import ProgressReporter
from nadzu_downloader.naming import MAX_NAME_BYTES, content_type_for, safe_filename
from nadzu_downloader.storage import MIGRATIONS, JobStore
from tests.support.stack import create_database, drop_database


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("clip", "clip.mp4"),
        ("../../etc/passwd", "_.._etc_passwd.mp4"),
        ("a/b\\c", "a_b_c.mp4"),
        ("line\nbreak\ttab", "line_break_tab.mp4"),
        ("CON", "download_CON.mp4"),
        ("nul.txt", "download_nul.txt.mp4"),
        ("...", "download.mp4"),
        ("", "download.mp4"),
        (None, "download.mp4"),
        ("  spaced   out  ", "spaced out.mp4"),
        ("right\u202eleft", "right_left.mp4"),
    ],
)
def test_safe_filename_cases(title: str | None, expected: str) -> None:
    assert safe_filename(title, "mp4") == expected


def test_safe_filename_limits_bytes() -> None:
    for title in ("标题" * 200, "🎬" * 200, "é" * 500):
        name = safe_filename(title, "mp4")
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
        assert name.endswith(".mp4")
        assert name[:-4]
        name.encode("utf-8").decode("utf-8")  # cut on a character boundary


def test_safe_filename_rejects_odd_extensions() -> None:
    assert safe_filename("clip", "../sh") == "clip.bin"
    assert safe_filename("clip", "MP4") == "clip.mp4"


def test_content_types() -> None:
    assert content_type_for("mp4") == "video/mp4"
    assert content_type_for("m4a") == "audio/mp4"
    assert content_type_for("webm") == "video/webm"
    assert content_type_for("weird") == "application/octet-stream"


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[float | None] = []

    async def publish(self, event: str, job: JobState, changed: list[str], msg_id: str | None = None) -> int:
        self.sent.append(job.progress.percent)
        return len(self.sent)


def _job() -> JobState:
    from datetime import UTC, datetime

    return JobState(
        id=uuid.uuid4(),
        owner="o",
        url="http://x",
        format="video",
        status=JobStatus.RUNNING,
        created_at=datetime.now(UTC),
    )


async def test_progress_never_goes_backwards() -> None:
    recorder = _Recorder()
    reporter = ProgressReporter(recorder, _job())  # type: ignore[arg-type]
    reporter._interval = 0  # send every update
    for downloaded, total in [(10, 100), (50, 100), (40, 120), (90, 100), (95, 200)]:
        await reporter.update({"downloaded_bytes": downloaded, "total_bytes": total})
    await reporter.finish()
    assert recorder.sent == sorted(recorder.sent)
    assert recorder.sent[-1] == 100.0


async def test_progress_is_throttled_but_last_sent() -> None:
    recorder = _Recorder()
    reporter = ProgressReporter(recorder, _job())  # type: ignore[arg-type]
    for downloaded in range(1, 101):
        await reporter.update({"downloaded_bytes": downloaded, "total_bytes": 100})
    assert len(recorder.sent) < 5
    await reporter.flush()
    assert recorder.sent[-1] == 100.0


async def test_migrations_safe_when_replicas_start_together() -> None:
    url = create_database()
    try:
        stores = await asyncio.gather(*(JobStore.open(url) for _ in range(4)))
        for store in stores:
            await store.ping()
        applied = await stores[0]._pool.fetchval("SELECT count(*) FROM downloader.schema_migrations")
        assert applied == len(MIGRATIONS)
        for store in stores:
            await store.close()
    finally:
        drop_database(url)
