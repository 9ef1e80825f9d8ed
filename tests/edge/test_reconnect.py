"""Revocations still reach a gateway after its NATS server restarted.

The gateway follows revocations with an ordered consumer, which the client library recreates from the
last sequence it saw once heartbeats stop arriving. After a reconnect the gateway also drops its whole
key cache, because events published while it was away may be missed until the consumer is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.stack import Stack

from .conftest import EDGE_REDIS_URL, key_headers


@pytest.fixture
def restart_stack() -> Iterator[Stack]:
    stack = Stack.create(REDIS_URL=EDGE_REDIS_URL)
    yield stack
    stack.close()


def _wait_until(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_revocation_after_nats_restart(restart_stack: Stack) -> None:
    gateway = restart_stack.start_gateway()
    key = str(restart_stack.create_key("cached before the restart")["key"])
    admin = key_headers(restart_stack.admin_key)

    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        assert client.get("/api/v1/auth/me", headers=key_headers(key)).status_code == 200

        # The same port and store: the auth event stream and its history survive the restart.
        assert restart_stack.nats.process is not None
        restart_stack.nats.process.terminate()
        restart_stack.nats.process.wait(timeout=10)
        restart_stack.nats.start()

        def reconnected() -> bool:
            checks = client.get("/health/ready").json()["checks"]
            return bool(checks["nats"]["status"] == "ok" and checks["auth"]["status"] == "ok")

        _wait_until(reconnected, 20, "gateway and auth reconnecting")
        _wait_until(lambda: "keycache.cleared_after_reconnect" in gateway.service.log(), 5, "cache cleared")

        # Revoked through another replica, so only the event can tell the restarted gateway.
        other = restart_stack.start_gateway()
        created = restart_stack.create_key("cached after the restart")
        new_key, new_id = str(created["key"]), created["info"]["id"]  # type: ignore[index]
        assert client.get("/api/v1/auth/me", headers=key_headers(new_key)).status_code == 200
        revoke = client.delete(f"{other.base_url}/api/v1/auth/keys/{new_id}", headers=admin)
        assert revoke.status_code == 204

        elapsed = _wait_until(
            lambda: client.get("/api/v1/auth/me", headers=key_headers(new_key)).status_code == 401,
            10,
            "revocation reaching the restarted gateway",
        )
    # The consumer is recreated after two missed heartbeats (1 s apart), then the event arrives at once.
    assert elapsed < 3.0
