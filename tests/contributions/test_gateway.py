"""The gateway's contributions routes, forwarding to a contributions replica over NATS."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient

from nadzu_common.contributions import CONTRIBUTIONS_GET

from .conftest import REDIS_URL, StartService
from .fake_github import FakeGitHub

PROBLEM = "application/problem+json"


@pytest.fixture
async def gateway(nats_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from nadzu_gateway.app import create_app
    from nadzu_gateway.settings import GatewaySettings

    app = create_app(GatewaySettings(nats_url=nats_url, redis_url=REDIS_URL))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield app, client


async def test_json_calendar(start_service: StartService, gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    await start_service()
    _, client = gateway
    response = await client.get("/api/v1/contributions/leaper", params={"year": "2024"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "x-request-id" in response.headers
    assert response.headers["cache-control"].startswith("public, max-age=")
    body = response.json()
    assert set(body) == {
        "username",
        "from",
        "to",
        "total",
        "days",
        "years",
        "streaks",
        "fetched_at",
        "cached",
    }
    assert body["from"] == "2024-01-01"
    assert body["to"] == "2024-12-31"
    assert body["total"] == 7
    assert body["days"][59] == {"date": "2024-02-29", "count": 6, "level": body["days"][59]["level"]}
    assert body["years"] == [{"year": 2024, "total": 7}]
    assert body["streaks"]["longest"] == {"length": 2, "start": "2024-02-29", "end": "2024-03-01"}
    assert body["cached"] is False


async def test_default_user_route(
    start_service: StartService, gateway: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    await start_service(github_default_user="leaper")
    _, client = gateway
    response = await client.get("/api/v1/contributions", params={"from": "2024-02-01", "to": "2024-03-31"})
    assert response.status_code == 200
    assert response.json()["username"] == "leaper"
    assert response.json()["total"] == 7


async def test_svg_by_format_and_accept(
    start_service: StartService, gateway: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    await start_service()
    _, client = gateway
    by_format = await client.get("/api/v1/contributions/Octo-Cat", params={"format": "svg", "theme": "dark"})
    assert by_format.status_code == 200
    assert by_format.headers["content-type"].startswith("image/svg+xml")
    assert by_format.headers["etag"].startswith('"')
    assert "max-age=" in by_format.headers["cache-control"]
    root = ET.fromstring(by_format.text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"

    by_accept = await client.get("/api/v1/contributions/Octo-Cat", headers={"Accept": "image/svg+xml"})
    assert by_accept.status_code == 200
    assert by_accept.headers["content-type"].startswith("image/svg+xml")

    etag = by_accept.headers["etag"]
    revalidated = await client.get(
        "/api/v1/contributions/Octo-Cat", headers={"Accept": "image/svg+xml", "If-None-Match": etag}
    )
    assert revalidated.status_code == 304
    assert revalidated.content == b""


async def test_problem_details(
    start_service: StartService, gateway: tuple[FastAPI, httpx.AsyncClient], fake_github: FakeGitHub
) -> None:
    await start_service()
    _, client = gateway

    unknown = await client.get("/api/v1/contributions/nobody-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["type"] == "urn:nadzu:problem:user-not-found"

    invalid = await client.get("/api/v1/contributions/bad--name")
    assert invalid.status_code == 422
    assert invalid.json()["type"] == "urn:nadzu:problem:invalid-username"

    bad_span = await client.get(
        "/api/v1/contributions/leaper", params={"from": "2024-05-01", "to": "2024-04-01"}
    )
    assert bad_span.status_code == 422
    assert bad_span.json()["type"] == "urn:nadzu:problem:invalid-date-range"
    assert bad_span.json()["errors"][0]["field"] == "from"

    fake_github.scripted_failures.append((429, {"retry-after": "17"}))
    limited = await client.get("/api/v1/contributions/leaper", params={"year": "2023"})
    assert limited.status_code == 503
    assert limited.json()["type"] == "urn:nadzu:problem:github-rate-limited"
    assert limited.headers["retry-after"] == "17"


async def test_service_down_503(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    response = await client.get("/api/v1/contributions/leaper")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "retry-after" in response.headers

    from nadzu_gateway.routes import contributions

    assert await contributions._check_service(app) == "no instance is running"


async def test_service_silent_503(
    gateway: tuple[FastAPI, httpx.AsyncClient], nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nadzu_gateway.routes import contributions

    monkeypatch.setattr(contributions, "DEFAULT_RPC_TIMEOUT_SECONDS", 0.3)
    silent = await nc.subscribe(CONTRIBUTIONS_GET)
    await nc.flush()
    _, client = gateway
    response = await client.get("/api/v1/contributions/leaper")
    await silent.unsubscribe()
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "no reply" in response.json()["detail"]


async def test_readiness_check(
    start_service: StartService, gateway: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    await start_service()
    app, _ = gateway
    check = app.state.readiness_checks["contributions"]
    assert await check(app) is None
