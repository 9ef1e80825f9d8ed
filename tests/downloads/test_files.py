"""Serving finished files: ranges, conditional requests and the file's lifecycle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Media, create_job, finish, read_events, wait_for, wait_for_bus_status


@pytest.fixture(scope="module")
def done_job(gateway: Any, media: Media) -> dict[str, Any]:
    with gateway.client(timeout=30) as client:
        return finish(client, create_job(client, media.url("clip.mp4"))["id"])


def test_full_file_with_validators(client: httpx.Client, done_job: dict[str, Any], media: Media) -> None:
    response = client.get(f"/api/v1/downloads/{done_job['id']}/file")
    assert response.status_code == 200
    assert response.content == (media.root / "clip.mp4").read_bytes()
    assert response.headers["etag"] == f'"{done_job["result"]["sha256"]}"'
    assert response.headers["content-length"] == str(done_job["result"]["size"])
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["last-modified"].endswith("GMT")


def test_range_request_is_partial(client: httpx.Client, done_job: dict[str, Any], media: Media) -> None:
    data = (media.root / "clip.mp4").read_bytes()
    response = client.get(f"/api/v1/downloads/{done_job['id']}/file", headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == data[100:200]
    assert response.headers["content-range"] == f"bytes 100-199/{len(data)}"

    suffix = client.get(f"/api/v1/downloads/{done_job['id']}/file", headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206
    assert suffix.content == data[-10:]


def test_unsatisfiable_range_is_416(client: httpx.Client, done_job: dict[str, Any]) -> None:
    size = done_job["result"]["size"]
    response = client.get(
        f"/api/v1/downloads/{done_job['id']}/file", headers={"Range": f"bytes={size + 10}-"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.json()["type"] == "urn:nadzu:problem:range-not-satisfiable"


def test_conditional_requests(client: httpx.Client, done_job: dict[str, Any], media: Media) -> None:
    url = f"/api/v1/downloads/{done_job['id']}/file"
    etag = client.head(url).headers["etag"]
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""

    same = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206
    changed = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert changed.status_code == 200
    assert len(changed.content) == done_job["result"]["size"]


def test_head_matches_get_headers(client: httpx.Client, done_job: dict[str, Any]) -> None:
    response = client.head(f"/api/v1/downloads/{done_job['id']}/file")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(done_job["result"]["size"])


def test_file_before_completion_is_409(client: httpx.Client, media: Media) -> None:
    name, gate = media.gated_copy()
    job = create_job(client, media.url(name))
    wait_for(client, job["id"], lambda event: event["event"] == "progress")
    response = client.get(f"/api/v1/downloads/{job['id']}/file")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:nadzu:problem:job-not-completed"
    gate.set()
    assert finish(client, job["id"])["status"] == "completed"


def test_delete_completed_releases_file(client: httpx.Client, media: Media, stack: Any) -> None:
    job = finish(client, create_job(client, media.url("clip.mp4"))["id"])
    last_id = read_events(client, job["id"])[-1]["id"]
    assert client.delete(f"/api/v1/downloads/{job['id']}").status_code == 204

    # A client that saw the completed event has nothing more to read, even once the job expires.
    with client.stream(
        "GET", f"/api/v1/downloads/{job['id']}/events", headers={"Last-Event-ID": last_id}
    ) as response:
        assert response.status_code == 204

    wait_for_bus_status(stack, job["id"], "expired")
    assert client.get(f"/api/v1/downloads/{job['id']}").json()["status"] == "expired"
    gone = client.get(f"/api/v1/downloads/{job['id']}/file")
    assert gone.status_code == 410
    assert gone.json()["type"] == "urn:nadzu:problem:file-gone"
    assert not (stack.downloads_dir / job["id"]).exists()
    assert client.delete(f"/api/v1/downloads/{job['id']}").status_code == 204
