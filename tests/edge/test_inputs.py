"""Bad inputs at the gateway: bodies that cannot be parsed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import key_headers

PROBLEM_PREFIX = "urn:nadzu:problem:"
JSON = {"Content-Type": "application/json"}


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
