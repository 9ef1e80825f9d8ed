"""CORS: exact origins only, never a reflected or `null` origin, never credentials."""

from __future__ import annotations

import httpx

from .conftest import ALLOWED_ORIGIN, fresh_address


def _preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options(
        "/api/v1/downloads",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )


def test_preflight_from_allowed_origin(http: httpx.Client) -> None:
    response = _preflight(http, ALLOWED_ORIGIN)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "x-api-key" in allowed_headers
    assert "authorization" in allowed_headers
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_from_other_origins_is_refused(http: httpx.Client) -> None:
    for origin in (
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
    ):
        response = _preflight(http, origin)
        assert response.status_code == 403, origin
        assert "access-control-allow-origin" not in response.headers, origin
        assert response.json()["type"] == "urn:nadzu:problem:cors-origin-not-allowed"


def test_simple_request_from_allowed_origin(http: httpx.Client) -> None:
    response = http.get("/", headers={"Origin": ALLOWED_ORIGIN, "X-Forwarded-For": fresh_address()})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert response.headers["vary"] == "Origin"
    exposed = response.headers["access-control-expose-headers"]
    for name in ("RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-Id"):
        assert name in exposed, name
    assert "access-control-allow-credentials" not in response.headers


def test_error_responses_carry_cors_headers(http: httpx.Client) -> None:
    response = http.get(
        "/api/v1/auth/me", headers={"Origin": ALLOWED_ORIGIN, "X-Forwarded-For": fresh_address()}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_simple_request_from_other_origin_gets_no_grant(http: httpx.Client) -> None:
    for origin in ("https://evil.example", "null"):
        response = http.get("/", headers={"Origin": origin, "X-Forwarded-For": fresh_address()})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers, origin
        assert response.headers["vary"] == "Origin"
