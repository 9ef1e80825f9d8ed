"""Downloads end to end: real yt-dlp and ffmpeg against the local media host."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import httpx

from tests.support.stack import Stack

from .conftest import UNICODE_TITLE, Media, create_job, finish, read_events


def _probe_streams(path: Path) -> list[str]:
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line.strip() for line in output.splitlines() if line.strip())


def test_direct_mp4_completes_with_metadata(client: httpx.Client, media: Media, stack: Stack) -> None:
    job = create_job(client, media.url("clip.mp4"))
    events = read_events(client, job["id"])
    names = [event["event"] for event in events]
    assert names[-1] == "completed"
    assert "progress" in names

    percents = [event["data"]["progress"]["percent"] for event in events if event["event"] == "progress"]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0

    done = client.get(f"/api/v1/downloads/{job['id']}").json()
    assert done["status"] == "completed"
    assert done["attempts"] == 1
    result = done["result"]
    assert result["sha256"] == media.sha256("clip.mp4")
    assert result["size"] == (media.root / "clip.mp4").stat().st_size
    assert result["content_type"] == "video/mp4"
    assert result["filename"] == "clip.mp4"
    assert abs(result["duration"] - 2.0) < 0.2
    file_path, _, file_query = result["file_url"].partition("?")
    assert file_path.endswith(f"/api/v1/downloads/{job['id']}/file")
    assert set(parse_qs(file_query)) == {"exp", "sig"}
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    assert done["expires_at"] > done["finished_at"]

    body = client.get(f"/api/v1/downloads/{job['id']}/file").content
    assert hashlib.sha256(body).hexdigest() == result["sha256"]
    # One job, one file: nothing is left beside it, and no partial directory remains.
    assert [path.name for path in (stack.downloads_dir / job["id"]).iterdir()] == ["clip.mp4"]
    assert not (stack.downloads_dir / ".partial" / job["id"]).exists()


def test_hls_stream_is_merged_to_mp4(client: httpx.Client, media: Media, stack: Stack) -> None:
    job = finish(client, create_job(client, media.url("hls/index.m3u8"))["id"])
    assert job["status"] == "completed", job
    assert job["result"]["content_type"] == "video/mp4"
    path = stack.downloads_dir / job["id"] / job["result"]["filename"]
    assert _probe_streams(path) == ["audio", "video"]
    assert abs(job["result"]["duration"] - 2.0) < 0.5


def test_embedded_page_uses_generic_extractor(client: httpx.Client, media: Media) -> None:
    job = finish(client, create_job(client, media.url("page.html"))["id"])
    assert job["status"] == "completed", job
    assert job["result"]["title"].startswith(UNICODE_TITLE)
    assert job["result"]["sha256"] == media.sha256("clip.mp4")


def test_unicode_title_keeps_name_and_header(client: httpx.Client, media: Media) -> None:
    job = finish(client, create_job(client, media.url(f"{UNICODE_TITLE}.mp4"))["id"])
    assert job["status"] == "completed", job
    assert job["result"]["filename"] == f"{UNICODE_TITLE}.mp4"

    response = client.head(f"/api/v1/downloads/{job['id']}/file")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20%E6%A0%87%E9%A2%98" in disposition
    disposition.encode("ascii")  # the header itself is plain ASCII


def test_audio_format_extracts_audio(client: httpx.Client, media: Media, stack: Stack) -> None:
    job = finish(client, create_job(client, media.url("clip.mp4"), fmt="audio")["id"])
    assert job["status"] == "completed", job
    assert job["format"] == "audio"
    assert job["result"]["content_type"].startswith("audio/")
    path = stack.downloads_dir / job["id"] / job["result"]["filename"]
    assert _probe_streams(path) == ["audio"]


def test_missing_media_fails_with_code(client: httpx.Client, media: Media) -> None:
    job = create_job(client, media.url("no-such-file.mp4"))
    events = read_events(client, job["id"])
    assert events[-1]["event"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "source-not-found"

    failed = client.get(f"/api/v1/downloads/{job['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "source-not-found"
    assert "404" in failed["error"]["message"]
    assert failed["result"] is None
    assert client.get(f"/api/v1/downloads/{job['id']}/file").status_code == 409


def test_unavailable_format_fails(client: httpx.Client, media: Media) -> None:
    job = finish(client, create_job(client, media.url("clip.mp4"), fmt="bv*[height>=2160]")["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "format-not-available"
