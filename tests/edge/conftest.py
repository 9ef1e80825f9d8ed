"""Fixtures for the edge tests: two gateways sharing one auth service, Redis and NATS, and a fake siteverify.

The stack runs no downloader, so every job stays queued: that is all the access, link and cap tests need.
Rate-limit tests give each case its own budget by using a fresh key or, for per-address budgets, a
client address of its own sent in `X-Forwarded-For` (127.0.0.1, where the tests run, is a trusted proxy).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer
from tests.support.stack import Gateway, Stack

# Redis database 1 belongs to the download tests; these use database 3.
EDGE_REDIS_URL = os.environ.get("NADZU_TEST_EDGE_REDIS", "redis://127.0.0.1:6379/3")
RECAPTCHA_SECRET = "6Le-edge-test-secret"
ALLOWED_ORIGIN = "https://app.example.com"
TINY_TIER = "tiny"
TINY_QUOTA = 3

EDGE_ENV = {
    "REDIS_URL": EDGE_REDIS_URL,
    "RATE_LIMIT_ANONYMOUS": "5/minute",
    "RATE_LIMIT_SESSION": "100/minute",
    "RATE_LIMIT_KEY": "1000/minute",
    "RATE_LIMIT_ENQUEUE_SESSION": "2/hour",
    "RATE_LIMIT_ENQUEUE_KEY": "1000/hour",
    "RATE_LIMIT_AUTH_FAILURES": "4/minute",
    "RATE_LIMIT_SESSIONS_ISSUED": "3/minute",
    "RATE_LIMIT_TIERS": '{"tiny": {"requests": "3/minute", "enqueue": "2/hour"}}',
    "MAX_ACTIVE_JOBS_PER_CALLER": "2",
    "MAX_STREAMS_PER_CALLER": "2",
    "CORS_ALLOW_ORIGINS": ALLOWED_ORIGIN,
    "RECAPTCHA_SECRET": RECAPTCHA_SECRET,
    "RECAPTCHA_EXPECTED_ACTION": "login",
    "RECAPTCHA_EXPECTED_HOSTNAMES": "app.example.com",
    "AUTH_KEY_CACHE_SECONDS": "60",
}

_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address no other test of this worker uses (TEST-NET-3, plus the worker's own /16)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    number = next(_addresses)
    return f"10.{int(worker) % 250}.{number // 250}.{number % 250 + 1}"


@pytest.fixture(scope="session")
def recaptcha() -> Iterator[tuple[FakeRecaptcha, FakeRecaptchaServer]]:
    fake = FakeRecaptcha(secret=RECAPTCHA_SECRET)
    with FakeRecaptchaServer(fake) as server:
        yield fake, server


@pytest.fixture(scope="session")
def edge_stack(recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer]) -> Iterator[Stack]:
    _, server = recaptcha
    stack = Stack.create(**EDGE_ENV, RECAPTCHA_VERIFY_URL=server.verify_url)
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def gateways(edge_stack: Stack) -> tuple[Gateway, Gateway]:
    """Two replicas behind the same Redis and NATS."""
    return edge_stack.start_gateway(), edge_stack.start_gateway()


@pytest.fixture(scope="session")
def gateway(gateways: tuple[Gateway, Gateway]) -> Gateway:
    return gateways[0]


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def new_key(edge_stack: Stack) -> Any:
    """Create a key and return its secret; `new_key(scopes=[...], tier=...)`."""

    def create(
        name: str = "edge", scopes: list[str] | None = None, tier: str = "default", **fields: Any
    ) -> str:
        return str(edge_stack.create_key(name, scopes, tier, **fields)["key"])

    return create


def key_headers(key: str, address: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": key}
    if address is not None:
        headers["X-Forwarded-For"] = address
    return headers


def start_session(client: httpx.Client, fake: FakeRecaptcha, address: str | None = None) -> str:
    """Exchange a fresh v3 token for a session token."""
    headers = {"X-Forwarded-For": address or fresh_address()}
    response = client.post("/api/v1/auth/session", json={"captcha_token": fake.issue_v3()}, headers=headers)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
