"""Who may call what: tiers per endpoint, job ownership, and signed job links."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer
from tests.support.stack import Gateway, Stack

from .conftest import fresh_address, key_headers, start_session

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def credentials(
    edge_stack: Stack, gateway: Gateway, recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer]
) -> dict[str, dict[str, str]]:
    """Headers for each tier; anonymous callers get an address of their own."""
    fake, _ = recaptcha
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        session = start_session(client, fake)
    return {
        "anonymous": {"X-Forwarded-For": fresh_address()},
        "session": {"Authorization": f"Bearer {session}"},
        "key": key_headers(str(edge_stack.create_key("tiers")["key"])),
        "admin": key_headers(edge_stack.admin_key),
    }


UNKNOWN = "018f0000-0000-7000-8000-0000000000aa"
# (method, path, body) -> expected status per tier: anonymous, session, key, admin.
ACCESS_TABLE: list[tuple[str, str, dict[str, Any] | None, tuple[int, int, int, int]]] = [
    ("GET", "/", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/auth/me", None, (401, 200, 200, 200)),
    ("GET", "/api/v1/downloads", None, (401, 200, 200, 200)),
    ("GET", f"/api/v1/downloads/{UNKNOWN}", None, (401, 404, 404, 404)),
    ("DELETE", f"/api/v1/downloads/{UNKNOWN}", None, (401, 404, 404, 404)),
    ("GET", f"/api/v1/downloads/{UNKNOWN}/events", None, (401, 404, 404, 404)),
    ("GET", f"/api/v1/downloads/{UNKNOWN}/file", None, (401, 404, 404, 404)),
    ("POST", "/api/v1/downloads", {"url": "ftp://example.com/x"}, (401, 422, 422, 422)),
    ("GET", "/api/v1/auth/keys", None, (401, 403, 403, 200)),
    ("POST", "/api/v1/auth/keys", {"name": "x", "scopes": ["bogus"]}, (401, 403, 403, 422)),
    ("DELETE", f"/api/v1/auth/keys/{UNKNOWN}", None, (401, 403, 403, 404)),
]
TIERS = ("anonymous", "session", "key", "admin")


@pytest.mark.parametrize(("method", "path", "body", "expected"), ACCESS_TABLE)
def test_tier_access(
    http: httpx.Client,
    credentials: dict[str, dict[str, str]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: tuple[int, int, int, int],
) -> None:
    # Each case counts against a fresh anonymous address, so the per-address budget never interferes.
    headers = {**credentials, "anonymous": {"X-Forwarded-For": fresh_address()}}
    for tier, status in zip(TIERS, expected, strict=True):
        response = http.request(method, path, json=body, headers=headers[tier])
        assert response.status_code == status, (tier, response.text)
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer realm=")
            assert response.json()["type"] == "urn:nadzu:problem:authentication-required"
        if status == 403:
            assert response.json()["type"] == "urn:nadzu:problem:forbidden"
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_open_endpoints_never_ask_for_credentials(http: httpx.Client, gateway: Gateway) -> None:
    address = {"X-Forwarded-For": fresh_address()}
    # No downloader or contributions service runs here: 503 shows the request got past the edge.
    assert http.get("/api/v1/supported-sites", headers=address).status_code == 503
    assert http.get("/api/v1/contributions/octocat", headers=address).status_code == 503
    assert http.get("/health").status_code == 200
    assert http.get("/health/ready").status_code in (200, 503)


def test_invalid_credentials_are_401_everywhere(http: httpx.Client) -> None:
    address = fresh_address()
    cases = [
        ({"X-API-Key": "short"}, "invalid-key"),
        ({"X-API-Key": "nadzu_" + "x" * 40}, "invalid-key"),
        ({"Authorization": "Bearer nzs1.abc.123.sig"}, "invalid-session"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid-credentials"),
    ]
    for headers, slug in cases:
        response = http.get("/", headers={**headers, "X-Forwarded-For": address})
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == f"urn:nadzu:problem:{slug}"
        assert "www-authenticate" in response.headers


def test_me_describes_caller(http: httpx.Client, edge_stack: Stack, new_key: Any) -> None:
    created = edge_stack.create_key("me", ["downloads"], "tiny")
    response = http.get("/api/v1/auth/me", headers=key_headers(str(created["key"])))
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "key"
    assert body["key_id"] == created["info"]["id"]  # type: ignore[index]
    assert body["tier"] == "tiny"
    assert body["scopes"] == ["downloads"]
    assert body["limits"]["requests"] == {"policy": "tiny", "quota": 3, "window": 60}
    assert body["limits"]["enqueue"] == {"policy": "enqueue", "quota": 2, "window": 3600}
    assert body["limits"]["max_active_jobs"] == 2
    assert body["limits"]["max_streams"] == 2


def _anonymous() -> dict[str, str]:
    return {"X-Forwarded-For": fresh_address()}


def _create_job(http: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    response = http.post("/api/v1/downloads", json={"url": "http://127.0.0.1:9/clip.mp4"}, headers=headers)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_jobs_belong_to_their_caller(http: httpx.Client, new_key: Any, edge_stack: Stack) -> None:
    alice = key_headers(new_key("alice"))
    bob = key_headers(new_key("bob"))
    admin = key_headers(edge_stack.admin_key)
    job = _create_job(http, alice)

    assert http.get(f"/api/v1/downloads/{job['id']}", headers=alice).status_code == 200
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/events"), ("GET", "/file")):
        response = http.request(method, f"/api/v1/downloads/{job['id']}{suffix}", headers=bob)
        assert response.status_code == 404, (method, suffix)
        assert response.json()["type"] == "urn:nadzu:problem:job-not-found"

    assert [item["id"] for item in http.get("/api/v1/downloads", headers=alice).json()["items"]] == [
        job["id"]
    ]
    assert http.get("/api/v1/downloads", headers=bob).json()["items"] == []
    every_id = [item["id"] for item in http.get("/api/v1/downloads?limit=100", headers=admin).json()["items"]]
    assert job["id"] in every_id
    assert http.get(f"/api/v1/downloads/{job['id']}", headers=admin).status_code == 200

    assert http.delete(f"/api/v1/downloads/{job['id']}", headers=alice).status_code == 202


def test_session_owns_its_jobs(
    http: httpx.Client, recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer], new_key: Any
) -> None:
    fake, _ = recaptcha
    session = {"Authorization": f"Bearer {start_session(http, fake)}"}
    job = _create_job(http, session)
    assert http.get(f"/api/v1/downloads/{job['id']}", headers=session).status_code == 200
    other = {"Authorization": f"Bearer {start_session(http, fake)}"}
    assert http.get(f"/api/v1/downloads/{job['id']}", headers=other).status_code == 404
    assert http.get(f"/api/v1/downloads/{job['id']}", headers=key_headers(new_key())).status_code == 404


def test_signed_links_work_without_headers(http: httpx.Client, new_key: Any) -> None:
    owner = key_headers(new_key("links"))
    job = _create_job(http, owner)
    other = _create_job(http, owner)

    with http.stream("GET", job["events_url"], headers=_anonymous()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in response.iter_lines() if line.startswith("data:"))
        assert job["id"] in first

    # The job is queued, so its file does not exist yet: 409 shows the link was accepted.
    file_response = http.get(job["events_url"].replace("/events", "/file"), headers=_anonymous())
    assert file_response.status_code == 409

    query = job["events_url"].partition("?")[2]
    bare = job["events_url"].partition("?")[0]
    assert http.get(bare, headers=_anonymous()).status_code == 401

    foreign = http.get(f"/api/v1/downloads/{other['id']}/events?{query}", headers=_anonymous())
    assert foreign.status_code == 401
    assert foreign.json()["type"] == "urn:nadzu:problem:invalid-link"

    tampered = job["events_url"][:-2] + ("AA" if not job["events_url"].endswith("AA") else "BB")
    assert http.get(tampered, headers=_anonymous()).json()["type"] == "urn:nadzu:problem:invalid-link"

    expired = f"{bare}?exp=1000&sig={query.partition('sig=')[2]}"
    assert http.get(expired, headers=_anonymous()).status_code == 401

    # A link opens only its own job's events and file, never the job itself.
    assert http.get(f"/api/v1/downloads/{job['id']}?{query}", headers=_anonymous()).status_code == 401


def test_link_signature_expires(http: httpx.Client, new_key: Any, edge_stack: Stack) -> None:
    from nadzu_common.auth import TokenSigner

    job = _create_job(http, key_headers(new_key("expiry")))
    stale = TokenSigner(edge_stack.env["SESSION_SECRET"]).job_link_query(job["id"], ttl_seconds=-5)
    anonymous = {"X-Forwarded-For": fresh_address()}
    response = http.get(f"/api/v1/downloads/{job['id']}/events?{stale}", headers=anonymous)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:nadzu:problem:link-expired"


def test_openapi_describes_credentials(http: httpx.Client) -> None:
    schema = http.get("/openapi.json", headers=_anonymous()).json()
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "Bearer", "JobLink", "MetricsToken"}
    assert schema["paths"]["/metrics"]["get"]["security"] == [{"MetricsToken": []}]
    assert schema["paths"]["/api/v1/auth/me"]["get"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert schema["paths"]["/api/v1/downloads"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    # Open to anyone: `{}` makes credentials optional.
    assert schema["paths"]["/api/v1/auth/session"]["post"]["security"][0] == {}


def test_readiness_checks_auth(http: httpx.Client) -> None:
    checks = http.get("/health/ready").json()["checks"]
    assert checks["auth"] == {"status": "ok"}
