"""Creating, reading and listing jobs, and rejecting bad input."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

import httpx
import pytest

from nadzu_gateway.problems import Problem
from nadzu_gateway.urls import validate_download_url, validate_format
from tests.support.stack import Stack

from .conftest import Media, create_job, finish

FORBIDDEN_URLS = [
    "http://127.0.0.1/a.mp4",
    "http://127.1/a.mp4",
    "http://2130706433/a.mp4",
    "http://0x7f.0.0.1/a.mp4",
    "http://0177.0.0.1/a.mp4",
    "http://[::1]/a.mp4",
    "http://[::ffff:127.0.0.1]/a.mp4",
    "http://[::ffff:7f00:1]/a.mp4",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.8/a.mp4",
    "http://192.168.1.1/a.mp4",
    "http://172.16.5.4/a.mp4",
    "http://100.64.0.1/a.mp4",
    "http://[fd00::1]/a.mp4",
    "http://[fe80::1%25eth0]/a.mp4",
    "http://0.0.0.0/a.mp4",
    "http://224.0.0.1/a.mp4",
    "http://localhost:8080/a.mp4",
    "http://media.localhost/a.mp4",
]
MALFORMED_URLS = [
    ("ftp://example.com/a.mp4", "unsupported-scheme"),
    ("file:///etc/passwd", "unsupported-scheme"),
    ("javascript:alert(1)", "unsupported-scheme"),
    ("--exec=rm", "unsupported-scheme"),
    ("http:///a.mp4", "missing-host"),
    ("https://exa mple.com/a.mp4", "bad-characters"),
    ("http://example.com:99999/a.mp4", "unparseable"),
    ("", "empty"),
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_private_addresses_rejected(url: str) -> None:
    with pytest.raises(Problem) as raised:
        validate_download_url(url, allow_private=False)
    assert raised.value.status == 422
    assert raised.value.errors[0]["code"] == "forbidden-address"


@pytest.mark.parametrize(("url", "code"), MALFORMED_URLS)
def test_malformed_urls_rejected(url: str, code: str) -> None:
    with pytest.raises(Problem) as raised:
        validate_download_url(url, allow_private=True)
    assert raised.value.errors[0]["code"] == code


def test_public_and_allowed_urls_pass() -> None:
    assert validate_download_url("https://media.example.com/v.mp4", allow_private=False)
    assert validate_download_url("http://8.8.8.8/v.mp4", allow_private=False)
    assert validate_download_url("http://127.0.0.1:9000/v.mp4", allow_private=True)


def test_format_selectors_validated() -> None:
    assert validate_format("video") == "video"
    assert validate_format("audio") == "audio"
    assert validate_format("bv*[height<=720]+ba/b") == "bv*[height<=720]+ba/b"
    for bad in ["", "best[", "b;rm -rf", "x" * 300, "--exec whoami", "bv*+ba/b)"]:
        with pytest.raises(Problem) as raised:
            validate_format(bad)
        assert raised.value.slug == "invalid-format", bad


def test_gateway_rejects_private_address(own_stack: Stack) -> None:
    gateway = own_stack.start_gateway(DOWNLOADER_ALLOW_PRIVATE_URLS="false")
    response = httpx.post(
        f"{gateway.base_url}/api/v1/downloads",
        json={"url": "http://[::ffff:127.0.0.1]:80/x.mp4"},
        headers=gateway.auth_headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:nadzu:problem:invalid-url"
    assert body["errors"][0]["code"] == "forbidden-address"


def test_create_returns_job_and_location(client: httpx.Client, media: Media) -> None:
    response = client.post("/api/v1/downloads", json={"url": media.url("clip.mp4")})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/api/v1/downloads/{job['id']}"
    assert uuid.UUID(job["id"]).version == 7
    assert job["status"] == "queued"
    assert job["format"] == "video"
    assert job["attempts"] == 0
    events_path, _, events_query = job["events_url"].partition("?")
    assert events_path.endswith(f"/api/v1/downloads/{job['id']}/events")
    assert set(parse_qs(events_query)) == {"exp", "sig"}
    assert job["created_at"].endswith("Z")

    fetched = client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]
    finish(client, job["id"])


def test_unknown_and_malformed_ids_are_404(client: httpx.Client) -> None:
    for path in (f"/api/v1/downloads/{uuid.uuid4()}", "/api/v1/downloads/not-a-uuid", "/api/v1/downloads/1"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["type"] == "urn:nadzu:problem:job-not-found"
    for suffix in ("/events", "/file"):
        assert client.get(f"/api/v1/downloads/{uuid.uuid4()}{suffix}").status_code == 404
    assert client.delete(f"/api/v1/downloads/{uuid.uuid4()}").status_code == 404


def test_invalid_format_is_422(client: httpx.Client, media: Media) -> None:
    response = client.post("/api/v1/downloads", json={"url": media.url("clip.mp4"), "format": "best[height<"})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:nadzu:problem:invalid-format"


def test_list_newest_first_with_cursor(client: httpx.Client, media: Media) -> None:
    created = [create_job(client, media.url("clip.mp4"))["id"] for _ in range(3)]
    for job_id in created:
        finish(client, job_id)

    first = client.get("/api/v1/downloads", params={"limit": 2}).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    ids = [item["id"] for item in first["items"]]
    assert ids == sorted(ids, reverse=True)
    assert ids[0] == created[-1]

    second = client.get("/api/v1/downloads", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["id"] < ids[-1]
    assert not set(ids) & {item["id"] for item in second["items"]}

    completed = client.get("/api/v1/downloads", params={"status": "completed", "limit": 100}).json()
    assert set(created) <= {item["id"] for item in completed["items"]}
    assert all(item["status"] == "completed" for item in completed["items"])


def test_list_rejects_bad_parameters(client: httpx.Client) -> None:
    assert (
        client.get("/api/v1/downloads", params={"cursor": "nope"}).json()["type"]
        == "urn:nadzu:problem:invalid-cursor"
    )
    assert client.get("/api/v1/downloads", params={"status": "sleeping"}).status_code == 422
    assert client.get("/api/v1/downloads", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/downloads", params={"limit": 1000}).status_code == 422


def test_idempotency_key_replays_and_conflicts(client: httpx.Client, media: Media) -> None:
    key = f"key-{uuid.uuid4()}"
    url = media.url("clip.mp4")
    first = client.post("/api/v1/downloads", json={"url": url}, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers

    replay = client.post("/api/v1/downloads", json={"url": url}, headers={"Idempotency-Key": key})
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]

    other_body = client.post(
        "/api/v1/downloads", json={"url": url, "format": "audio"}, headers={"Idempotency-Key": key}
    )
    assert other_body.status_code == 422
    assert other_body.json()["type"] == "urn:nadzu:problem:idempotency-key-reused"

    bad_key = client.post("/api/v1/downloads", json={"url": url}, headers={"Idempotency-Key": "has space"})
    assert bad_key.status_code == 400
    finish(client, first.json()["id"])
