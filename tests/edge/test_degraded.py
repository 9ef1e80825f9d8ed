"""The edge when things are missing: Redis down, no trusted proxy, captcha not configured.

Decision under test: while Redis is unreachable, each gateway counts rate limits in its own memory with
the same policies (so limits hold per replica) and serves requests as usual. It goes back to Redis once
Redis responds again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.support.stack import Gateway, Stack, free_port, wait_for_port

from .conftest import EDGE_REDIS_URL, key_headers


class RedisServer:
    """A private redis-server that a test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is installed by make test"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def degraded_stack() -> Iterator[Stack]:
    # No RECAPTCHA_SECRET: the auth service of this stack issues no sessions.
    stack = Stack.create(REDIS_URL=EDGE_REDIS_URL, RATE_LIMIT_ANONYMOUS="3/minute")
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def flaky_redis_gateway(degraded_stack: Stack, private_redis: RedisServer) -> Gateway:
    return degraded_stack.start_gateway(REDIS_URL=private_redis.url)


def _statuses(client: httpx.Client, count: int) -> list[int]:
    return [client.get("/").status_code for _ in range(count)]


def test_limits_hold_while_redis_is_down(flaky_redis_gateway: Gateway, private_redis: RedisServer) -> None:
    with httpx.Client(base_url=flaky_redis_gateway.base_url, timeout=10) as client:
        first = client.get("/")
        assert first.status_code == 200
        assert first.headers["ratelimit"] == '"anonymous";r=2;t=60'
        assert redis.Redis.from_url(private_redis.url).dbsize() == 1

        private_redis.stop()
        try:
            responses = [client.get("/") for _ in range(4)]
            assert [response.status_code for response in responses] == [200, 200, 200, 429]
            assert all("ratelimit" in response.headers for response in responses)
            assert responses[-1].json()["type"] == "urn:nadzu:problem:rate-limited"
            assert client.get("/health").status_code == 200
            ready = client.get("/health/ready").json()
            assert ready["checks"]["redis"]["status"] == "unavailable"

            # Keys are still verified (the failed-auth budget is counted locally too).
            key = flaky_redis_gateway.api_key
            assert client.get("/api/v1/auth/me", headers=key_headers(key)).status_code == 200
        finally:
            private_redis.start()

        # Back on Redis, whose counters started empty with the new process.
        deadline = time.monotonic() + 10
        while redis.Redis.from_url(private_redis.url).dbsize() == 0 and time.monotonic() < deadline:
            client.get("/api/v1/auth/me", headers=key_headers(flaky_redis_gateway.api_key))
            time.sleep(0.2)
        assert redis.Redis.from_url(private_redis.url).dbsize() > 0
    log = flaky_redis_gateway.service.log()
    assert "ratelimit.redis_unavailable" in log
    assert "ratelimit.redis_recovered" in log


def test_forwarded_for_from_untrusted_peer_is_ignored(degraded_stack: Stack) -> None:
    gateway = degraded_stack.start_gateway(TRUSTED_PROXIES="none")
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        statuses = [
            client.get("/", headers={"X-Forwarded-For": f"203.0.113.{index}"}).status_code
            for index in range(4)
        ]
    # Every spoofed address counted as the real peer, 127.0.0.1.
    assert statuses == [200, 200, 200, 429]


def test_session_without_captcha_configured_is_501(
    degraded_stack: Stack, flaky_redis_gateway: Gateway
) -> None:
    response = httpx.post(
        f"{flaky_redis_gateway.base_url}/api/v1/auth/session",
        json={"captcha_token": "anything"},
        headers=key_headers(flaky_redis_gateway.api_key),
    )
    assert response.status_code == 501
    assert response.json()["type"] == "urn:nadzu:problem:captcha-not-configured"


def test_auth_service_down_is_503(degraded_stack: Stack, flaky_redis_gateway: Gateway) -> None:
    key = str(degraded_stack.create_key("uncached")["key"])
    assert degraded_stack.auth is not None
    degraded_stack.auth.stop()
    try:
        response = httpx.get(
            f"{flaky_redis_gateway.base_url}/api/v1/auth/me", headers=key_headers(key), timeout=10
        )
        assert response.status_code == 503
        assert response.json()["type"] == "urn:nadzu:problem:service-unavailable"
        assert response.headers["retry-after"] == "5"
        # A key the gateway has cached keeps working.
        cached = httpx.get(
            f"{flaky_redis_gateway.base_url}/api/v1/auth/me", headers=key_headers(flaky_redis_gateway.api_key)
        )
        assert cached.status_code == 200
    finally:
        degraded_stack.auth = None
        degraded_stack.start_auth()
