"""Rate limits: the RateLimit fields, 429 at the exact boundary, budgets shared by two gateways, the
enqueue, failed-authentication and session budgets, client addresses, and the per-caller caps."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer
from tests.support.stack import Gateway

from .conftest import EDGE_ENV, TINY_QUOTA, TINY_TIER, fresh_address, key_headers, start_session

_LIMIT_ITEM = re.compile(r'"(?P<name>[a-z0-9_-]+)";r=(?P<r>\d+);t=(?P<t>\d+)')


def remaining(response: httpx.Response) -> dict[str, int]:
    return {match["name"]: int(match["r"]) for match in _LIMIT_ITEM.finditer(response.headers["ratelimit"])}


def test_limit_fields_on_every_limited_response(http: httpx.Client, new_key: Any) -> None:
    key = key_headers(new_key())
    for path in ("/", "/api/v1/auth/me", "/api/v1/downloads", "/no-such-route"):
        response = http.get(path, headers=key)
        assert response.headers["ratelimit-policy"] == '"default";q=1000;w=60', path
        assert re.fullmatch(r'"default";r=\d+;t=\d+', response.headers["ratelimit"]), path

    anonymous = http.get("/", headers={"X-Forwarded-For": fresh_address()})
    assert anonymous.headers["ratelimit-policy"] == '"anonymous";q=5;w=60'
    assert anonymous.headers["ratelimit"] == '"anonymous";r=4;t=60'

    for path in ("/health", "/health/ready"):
        assert "ratelimit" not in http.get(path).headers, path


def test_health_is_never_rate_limited(http: httpx.Client) -> None:
    address = {"X-Forwarded-For": fresh_address()}
    anonymous_quota = int(EDGE_ENV["RATE_LIMIT_ANONYMOUS"].split("/")[0])
    requests = 3 * anonymous_quota
    liveness = [http.get("/health", headers=address).status_code for _ in range(requests)]
    assert liveness == [200] * requests
    # No downloader or contributions service runs here, so readiness may be 503, but never 429.
    readiness = {http.get("/health/ready", headers=address).status_code for _ in range(requests)}
    assert readiness <= {200, 503}, readiness

    # The probes used none of the address's budget.
    first = http.get("/", headers=address)
    assert first.status_code == 200
    assert remaining(first) == {"anonymous": anonymous_quota - 1}


def test_boundary_is_exact_and_shared_by_two_gateways(
    gateways: tuple[Gateway, Gateway], new_key: Any
) -> None:
    key = key_headers(new_key(tier=TINY_TIER))
    seen = []
    with httpx.Client(timeout=10) as client:
        for index in range(TINY_QUOTA):
            gateway = gateways[index % 2]
            response = client.get(f"{gateway.base_url}/api/v1/auth/me", headers=key)
            assert response.status_code == 200
            seen.append(remaining(response)[TINY_TIER])
        assert seen == [TINY_QUOTA - 1 - index for index in range(TINY_QUOTA)]

        for gateway in gateways:
            rejected = client.get(f"{gateway.base_url}/api/v1/auth/me", headers=key)
            assert rejected.status_code == 429
            assert rejected.headers["content-type"] == "application/problem+json"
            body = rejected.json()
            assert body["type"] == "urn:nadzu:problem:rate-limited"
            assert body["errors"][0]["code"] == TINY_TIER
            retry_after = int(rejected.headers["retry-after"])
            assert 1 <= retry_after <= 60
            assert remaining(rejected) == {TINY_TIER: 0}
            assert rejected.headers["ratelimit-policy"] == f'"{TINY_TIER}";q={TINY_QUOTA};w=60'


def test_enqueue_has_its_own_budget(http: httpx.Client, new_key: Any) -> None:
    # The tiny tier allows 2 enqueues an hour (and 3 requests a minute in all).
    key = key_headers(new_key(tier=TINY_TIER))
    body = {"url": "ftp://not-enqueued.example/x"}
    first = http.post("/api/v1/downloads", json=body, headers=key)
    assert first.headers["ratelimit-policy"] == f'"{TINY_TIER}";q=3;w=60, "enqueue";q=2;w=3600'
    assert remaining(first) == {TINY_TIER: 2, "enqueue": 1}
    second = http.post("/api/v1/downloads", json=body, headers=key)
    assert remaining(second) == {TINY_TIER: 1, "enqueue": 0}

    third = http.post("/api/v1/downloads", json=body, headers=key)
    assert third.status_code == 429
    assert [error["code"] for error in third.json()["errors"]] == ["enqueue"]
    assert int(third.headers["retry-after"]) > 60

    # A read still fits the request budget, which the rejected enqueue did not use.
    read = http.get("/api/v1/downloads", headers=key)
    assert read.status_code == 200
    assert remaining(read) == {TINY_TIER: 0}


def test_failed_auth_budget_stops_key_guessing(http: httpx.Client, new_key: Any) -> None:
    guesser = fresh_address()
    valid = new_key()
    for attempt in range(4):
        response = http.get("/", headers=key_headers(f"nadzu_guess{attempt:02d}" + "x" * 32, guesser))
        assert response.status_code == 401
        assert remaining(response) == {"auth-failures": 3 - attempt}

    blocked = http.get("/", headers=key_headers("nadzu_guess99" + "x" * 32, guesser))
    assert blocked.status_code == 429
    assert [error["code"] for error in blocked.json()["errors"]] == ["auth-failures"]
    assert "retry-after" in blocked.headers

    # Not even a valid key is checked from that address now; elsewhere it works.
    assert http.get("/api/v1/auth/me", headers=key_headers(valid, guesser)).status_code == 429
    assert http.get("/api/v1/auth/me", headers=key_headers(valid, fresh_address())).status_code == 200


def test_forged_sessions_count_as_failures(http: httpx.Client) -> None:
    address = fresh_address()
    forged = {
        "Authorization": "Bearer nzs1.AAAAAAAAAAAAAAAAAAAAAA.9999999999." + "A" * 43,
        "X-Forwarded-For": address,
    }
    statuses = [http.get("/", headers=forged).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]


def test_session_issuance_budget(
    http: httpx.Client, recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer]
) -> None:
    fake, _ = recaptcha
    address = fresh_address()
    for _ in range(3):
        start_session(http, fake, address)
    token = fake.issue_v3()
    response = http.post(
        "/api/v1/auth/session", json={"captcha_token": token}, headers={"X-Forwarded-For": address}
    )
    assert response.status_code == 429
    assert "sessions" in [error["code"] for error in response.json()["errors"]]
    assert 'sessions";q=3;w=60' in response.headers["ratelimit-policy"]


def test_ipv6_clients_are_grouped_by_64(http: httpx.Client) -> None:
    prefix = f"2001:db8:{fresh_address().split('.')[-1]}:{fresh_address().split('.')[-1]}"
    statuses = [
        http.get("/", headers={"X-Forwarded-For": f"{prefix}::{index + 1:x}"}).status_code
        for index in range(5)
    ]
    assert statuses == [200] * 5
    assert http.get("/", headers={"X-Forwarded-For": f"{prefix}:ffff:ffff:ffff:ffff"}).status_code == 429
    assert http.get("/", headers={"X-Forwarded-For": f"{prefix}1::1"}).status_code == 200


def test_forwarded_for_is_walked_from_the_right(http: httpx.Client) -> None:
    client_address = fresh_address()
    for spoof in range(5):
        # A client that puts fake entries first still counts as the address our proxy appended.
        chain = f"198.51.100.{spoof}, {client_address}"
        assert http.get("/", headers={"X-Forwarded-For": chain}).status_code == 200
    assert http.get("/", headers={"X-Forwarded-For": f"192.0.2.77, {client_address}"}).status_code == 429
    # Trusted proxies (127.0.0.1 here) on the right are skipped.
    assert http.get("/", headers={"X-Forwarded-For": f"{client_address}, 127.0.0.1"}).status_code == 429


def test_active_jobs_cap(http: httpx.Client, new_key: Any) -> None:
    key = key_headers(new_key())
    jobs = []
    for _ in range(2):
        response = http.post("/api/v1/downloads", json={"url": "http://127.0.0.1:9/a.mp4"}, headers=key)
        assert response.status_code == 202
        jobs.append(response.json())
    over = http.post("/api/v1/downloads", json={"url": "http://127.0.0.1:9/a.mp4"}, headers=key)
    assert over.status_code == 429
    assert over.json()["type"] == "urn:nadzu:problem:too-many-active-jobs"
    assert "retry-after" in over.headers

    assert http.delete(f"/api/v1/downloads/{jobs[0]['id']}", headers=key).status_code == 202


@pytest.mark.parametrize("via_link", [False, True])
def test_stream_cap_shared_by_gateways(
    gateways: tuple[Gateway, Gateway], new_key: Any, via_link: bool
) -> None:
    key = key_headers(new_key())
    with httpx.Client(timeout=10) as client:
        job = client.post(
            f"{gateways[0].base_url}/api/v1/downloads", json={"url": "http://127.0.0.1:9/s.mp4"}, headers=key
        ).json()

        def open_stream(gateway: Gateway) -> Any:
            if via_link:
                url = job["events_url"].replace(gateways[0].base_url, gateway.base_url)
                return client.stream("GET", url, headers={"X-Forwarded-For": fresh_address()})
            return client.stream(
                "GET", f"{gateway.base_url}/api/v1/downloads/{job['id']}/events", headers=key
            )

        with open_stream(gateways[0]) as first, open_stream(gateways[1]) as second:
            assert first.status_code == 200
            assert second.status_code == 200
            third = client.get(f"{gateways[1].base_url}/api/v1/downloads/{job['id']}/events", headers=key)
            assert third.status_code == 429
            assert third.json()["type"] == "urn:nadzu:problem:too-many-streams"

        # Closed streams give their slots back once the server has seen the disconnect.
        deadline = time.monotonic() + 5
        while True:
            with open_stream(gateways[1]) as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        assert again.status_code == 200
        client.delete(f"{gateways[0].base_url}/api/v1/downloads/{job['id']}", headers=key)
