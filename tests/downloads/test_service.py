"""Service endpoints and the API's cross-cutting conventions."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.support.stack import Stack

PROBLEM = "application/problem+json"


def test_root_describes_the_api(client: httpx.Client) -> None:
    body = client.get("/").json()
    assert body["name"] == "nadzu"
    assert body["api"] == "/api/v1"
    assert body["docs"] == "/docs"
    assert body["version"]


def test_health_is_ok(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_reports_each_dependency(client: httpx.Client) -> None:
    body = client.get("/health/ready").json()
    for name in ("nats", "redis", "downloader"):
        assert body["checks"][name] == {"status": "ok"}, body


def test_readiness_fails_without_downloader(own_stack: Stack) -> None:
    gateway = own_stack.start_gateway()
    response = httpx.get(f"{gateway.base_url}/health/ready", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["downloader"]["status"] == "unavailable"
    assert body["checks"]["nats"]["status"] == "ok"


def test_request_id_is_echoed_or_generated(client: httpx.Client) -> None:
    echoed = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert generated.headers["x-request-id"] != "bad id\twith spaces"
    assert len(generated.headers["x-request-id"]) == 32


def test_unknown_route_is_problem(client: httpx.Client) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "urn:nadzu:problem:not-found"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"] == "/api/v1/nothing-here"


def test_body_limits_and_types(client: httpx.Client) -> None:
    too_large = client.post(
        "/api/v1/downloads",
        content=b'{"url": "' + b"a" * 70000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert too_large.status_code == 413
    assert too_large.json()["type"] == "urn:nadzu:problem:payload-too-large"

    def chunked_body() -> Iterator[bytes]:
        yield b'{"url": "'
        yield b"a" * 70000
        yield b'"}'

    chunked = client.post(
        "/api/v1/downloads", content=chunked_body(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert chunked.json()["type"] == "urn:nadzu:problem:payload-too-large"

    def small_chunked_body() -> Iterator[bytes]:
        yield b'{"link": '
        yield b'"x"}'

    small = client.post(
        "/api/v1/downloads", content=small_chunked_body(), headers={"Content-Type": "application/json"}
    )
    assert small.status_code == 422, "a small chunked body still reaches the application"

    wrong_type = client.post("/api/v1/downloads", content=b"url=x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"] == PROBLEM

    malformed = client.post(
        "/api/v1/downloads", content=b'{"url": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "urn:nadzu:problem:malformed-json"

    invalid = client.post("/api/v1/downloads", json={"link": "https://example.com/a.mp4"})
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["type"] == "urn:nadzu:problem:validation-failed"
    assert {error["field"] for error in body["errors"]} >= {"url"}


def test_supported_sites_lists_extractors(client: httpx.Client) -> None:
    everything = client.get("/api/v1/supported-sites").json()
    assert everything["count"] == len(everything["items"])
    assert everything["count"] > 1000
    names = [item["name"] for item in everything["items"]]
    assert len(names) == len(set(names))

    youtube = client.get("/api/v1/supported-sites", params={"q": "YouTube"}).json()
    assert 0 < youtube["count"] < everything["count"]
    assert all(
        "youtube" in item["name"].lower() or "youtube" in (item["description"] or "").lower()
        for item in youtube["items"]
    )
    assert client.get("/").json()["yt_dlp_version"]
