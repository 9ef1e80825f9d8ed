"""Bad inputs at the gateway: bodies that cannot be parsed, empty bodies, malformed ids, field names in
`errors[]`, and key tiers that have no limits configured."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.stack import Stack

from .conftest import TINY_TIER, key_headers

PROBLEM_PREFIX = "urn:nadzu:problem:"
JSON = {"Content-Type": "application/json"}
LONG_ID = "a" * 3000


@pytest.fixture
def user(new_key: Any) -> dict[str, str]:
    return key_headers(new_key())


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_PREFIX + slug, body
    return body


def test_invalid_utf8_is_malformed_json(http: httpx.Client, user: dict[str, str]) -> None:
    response = http.post(
        "/api/v1/downloads",
        content=b'{"url": "http://127.0.0.1:18555/\xff"}',
        headers={**user, **JSON},
    )
    body = _problem(response, 400, "malformed-json")
    assert body["detail"] == "The request body is not valid UTF-8 JSON."


def test_deeply_nested_json_is_malformed_json(http: httpx.Client, user: dict[str, str]) -> None:
    # 60,000 nested arrays fit in the 64 KiB body limit but exceed Python's recursion limit.
    response = http.post("/api/v1/downloads", content=b"[" * 60000, headers={**user, **JSON})
    body = _problem(response, 400, "malformed-json")
    assert "nested too deeply" in body["detail"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [(b"", JSON), (None, {}), (b"{}", JSON)],
    ids=["empty-json", "no-body", "empty-object"],
)
def test_empty_body_names_missing_field(
    http: httpx.Client, user: dict[str, str], content: bytes | None, headers: dict[str, str]
) -> None:
    response = http.post("/api/v1/downloads", content=content, headers={**user, **headers})
    body = _problem(response, 422, "validation-failed")
    assert body["errors"] == [{"field": "url", "code": "missing", "message": "Field required"}]
    assert "body is empty" in body["detail"] or "empty JSON object" in body["detail"]
    assert body["detail"].endswith(". Send a JSON object with `url`.")


def test_empty_key_body_names_missing_field(http: httpx.Client, edge_stack: Stack) -> None:
    admin = key_headers(edge_stack.admin_key)
    response = http.post("/api/v1/auth/keys", headers=admin)
    body = _problem(response, 422, "validation-failed")
    assert body["errors"] == [{"field": "name", "code": "missing", "message": "Field required"}]
    assert body["detail"] == "The request body is empty. Send a JSON object with `name`."


def test_body_that_is_not_an_object(http: httpx.Client, user: dict[str, str]) -> None:
    for content in (b"[]", b"null", b'"https://example.com/a.mp4"'):
        response = http.post("/api/v1/downloads", content=content, headers={**user, **JSON})
        body = _problem(response, 422, "validation-failed")
        assert body["detail"] == "The request body must be a JSON object.", content
        assert "field" not in body["errors"][0], content


def test_field_names_have_no_location_prefix(
    http: httpx.Client, user: dict[str, str], edge_stack: Stack
) -> None:
    listing = http.get("/api/v1/downloads", params={"status": "done", "limit": "0"}, headers=user)
    fields = [error["field"] for error in _problem(listing, 422, "validation-failed")["errors"]]
    assert fields == ["status", "limit"]

    cursor = http.get("/api/v1/downloads", params={"cursor": "x"}, headers=user)
    assert _problem(cursor, 422, "invalid-cursor")["errors"][0]["field"] == "cursor"

    too_long = http.post("/api/v1/downloads", json={"url": "x" * 5000}, headers=user)
    errors = _problem(too_long, 422, "validation-failed")["errors"]
    assert errors == [
        {"field": "url", "code": "string_too_long", "message": "String should have at most 4096 characters"}
    ]

    svg = http.get("/api/v1/contributions/octocat", params={"format": "pdf"}, headers=user)
    assert _problem(svg, 422, "validation-failed")["errors"][0]["field"] == "format"

    admin = key_headers(edge_stack.admin_key)
    scopes = http.post("/api/v1/auth/keys", json={"name": "x", "scopes": ["bogus"]}, headers=admin)
    assert _problem(scopes, 422, "validation-failed")["errors"][0]["field"] == "scopes.0"


def test_malformed_job_id_is_not_echoed(http: httpx.Client, user: dict[str, str]) -> None:
    requests = [
        ("GET", f"/api/v1/downloads/{LONG_ID}"),
        ("GET", f"/api/v1/downloads/{LONG_ID}/events"),
        ("GET", f"/api/v1/downloads/{LONG_ID}/file"),
        ("DELETE", f"/api/v1/downloads/{LONG_ID}"),
    ]
    for method, path in requests:
        response = http.request(method, path, headers=user)
        body = _problem(response, 404, "job-not-found")
        quoted = f"'{'a' * 40}'... (3000 characters)"
        assert body["detail"] == f"{quoted} is not a valid job id. Job ids are UUIDs.", path
        # Only `detail` is cut. `instance` repeats the whole request path.
        assert body["instance"] == path

    short = http.get("/api/v1/downloads/not-a-uuid", headers=user)
    assert _problem(short, 404, "job-not-found")["detail"] == (
        "'not-a-uuid' is not a valid job id. Job ids are UUIDs."
    )
    unknown_id = "018f0000-0000-7000-8000-0000000000bb"
    unknown = http.get(f"/api/v1/downloads/{unknown_id}", headers=user)
    assert unknown_id in _problem(unknown, 404, "job-not-found")["detail"]


def test_malformed_key_id_is_not_echoed(http: httpx.Client, edge_stack: Stack) -> None:
    response = http.delete(f"/api/v1/auth/keys/{LONG_ID}", headers=key_headers(edge_stack.admin_key))
    body = _problem(response, 404, "key-not-found")
    assert body["detail"] == f"'{'a' * 40}'... (3000 characters) is not a valid key id. Key ids are UUIDs."


def test_unknown_tier_is_rejected(http: httpx.Client, edge_stack: Stack) -> None:
    admin = key_headers(edge_stack.admin_key)
    response = http.post("/api/v1/auth/keys", json={"name": "typo", "tier": "gold"}, headers=admin)
    body = _problem(response, 422, "validation-failed")
    assert body["detail"] == f"Unknown tier 'gold'. The allowed tiers are default, {TINY_TIER}."
    assert body["errors"] == [
        {
            "field": "tier",
            "code": "unknown-tier",
            "message": f"Allowed tiers: default, {TINY_TIER}. A tier is added with RATE_LIMIT_TIERS.",
        }
    ]
    names = [item["name"] for item in http.get("/api/v1/auth/keys", headers=admin).json()["items"]]
    assert "typo" not in names

    for tier in ("default", TINY_TIER):
        created = http.post("/api/v1/auth/keys", json={"name": f"known-{tier}", "tier": tier}, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["tier"] == tier
