"""API key management over HTTP: creation, listing, expiry and revocation across two gateways."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.stack import Gateway, Stack

from .conftest import fresh_address, key_headers


def test_create_list_and_use_key(http: httpx.Client, edge_stack: Stack) -> None:
    admin = key_headers(edge_stack.admin_key)
    response = http.post(
        "/api/v1/auth/keys",
        json={"name": "ci runner", "scopes": ["downloads"], "tier": "tiny"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["key"].startswith("nadzu_")
    assert created["prefix"] == created["key"][: len(created["prefix"])]
    assert response.headers["location"] == f"/api/v1/auth/keys/{created['id']}"
    assert response.headers["cache-control"] == "no-store"
    for field in ("id", "name", "scopes", "tier", "created_at", "expires_at"):
        assert field in created, field

    listed = http.get("/api/v1/auth/keys", headers=admin).json()["items"]
    mine = [item for item in listed if item["id"] == created["id"]]
    assert len(mine) == 1
    assert "key" not in mine[0]
    assert created["key"] not in str(listed)

    me = http.get("/api/v1/auth/me", headers=key_headers(created["key"])).json()
    assert me["key_id"] == created["id"]
    assert me["tier"] == "tiny"


def test_create_key_rejects_bad_body(http: httpx.Client, edge_stack: Stack) -> None:
    admin = key_headers(edge_stack.admin_key)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for body in ({"name": ""}, {"name": "x", "tier": "Not A Tier"}, {"name": "x", "unknown": 1}):
        response = http.post("/api/v1/auth/keys", json=body, headers=admin)
        assert response.status_code == 422, body
    expired = http.post("/api/v1/auth/keys", json={"name": "x", "expires_at": past}, headers=admin)
    assert expired.status_code == 422
    assert expired.json()["type"] == "urn:nadzu:problem:invalid-request"


def test_expired_key_is_rejected(http: httpx.Client, edge_stack: Stack) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    key = str(edge_stack.create_key("short-lived", expires_at=expires_at.isoformat())["key"])
    # Its own client address: the 401s below count against that address's failed-credential budget,
    # which other tests of this shared stack must not find spent.
    headers = key_headers(key, fresh_address())
    assert http.get("/api/v1/auth/me", headers=headers).status_code == 200

    # The gateway caches the key, but never past its expiry.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = http.get("/api/v1/auth/me", headers=headers)
        if response.status_code != 200:
            break
        time.sleep(0.1)
    assert response.status_code == 401
    assert datetime.now(UTC) >= expires_at
    assert response.json()["type"] == "urn:nadzu:problem:key-expired"


def test_revocation_reaches_both_gateways_within_a_second(
    gateways: tuple[Gateway, Gateway], edge_stack: Stack
) -> None:
    first, second = gateways
    created = edge_stack.create_key("revoked")
    key, key_id = str(created["key"]), created["info"]["id"]  # type: ignore[index]
    headers = key_headers(key, fresh_address())
    with httpx.Client(timeout=10) as client:
        # Both replicas verify the key once and cache it.
        for gateway in gateways:
            assert client.get(f"{gateway.base_url}/api/v1/auth/me", headers=headers).status_code == 200

        revoked_at = time.monotonic()
        response = client.delete(
            f"{first.base_url}/api/v1/auth/keys/{key_id}", headers=key_headers(edge_stack.admin_key)
        )
        assert response.status_code == 204

        statuses: dict[str, int] = {}
        while len(statuses) < 2 and time.monotonic() - revoked_at < 3:
            for gateway in gateways:
                if gateway.base_url in statuses:
                    continue
                status = client.get(f"{gateway.base_url}/api/v1/auth/me", headers=headers).status_code
                if status == 401:
                    statuses[gateway.base_url] = status
        elapsed = time.monotonic() - revoked_at

    assert statuses == {first.base_url: 401, second.base_url: 401}
    assert elapsed < 1.0, f"revocation took {elapsed:.3f} s to reach both gateways"
    again = httpx.get(f"{second.base_url}/api/v1/auth/me", headers=headers)
    assert again.json()["type"] == "urn:nadzu:problem:key-revoked"


def test_revoke_unknown_and_malformed_ids(http: httpx.Client, edge_stack: Stack) -> None:
    admin = key_headers(edge_stack.admin_key)
    unknown = http.delete("/api/v1/auth/keys/018f0000-0000-7000-8000-000000000000", headers=admin)
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:nadzu:problem:key-not-found"
    assert http.delete("/api/v1/auth/keys/not-a-uuid", headers=admin).status_code == 404


def test_admin_actions_are_audited_without_secrets(
    http: httpx.Client, edge_stack: Stack, gateway: Gateway
) -> None:
    admin = key_headers(edge_stack.admin_key)
    created = http.post("/api/v1/auth/keys", json={"name": "audited"}, headers=admin).json()
    assert http.delete(f"/api/v1/auth/keys/{created['id']}", headers=admin).status_code == 204
    admin_id = http.get("/api/v1/auth/me", headers=admin).json()["key_id"]

    lines = _log_events(gateway)
    created_events = [line for line in lines if line.get("event") == "audit.key_created"]
    revoked_events = [line for line in lines if line.get("event") == "audit.key_revoked"]
    assert any(
        line["key_id"] == created["id"] and line["actor_key_id"] == admin_id for line in created_events
    )
    assert any(
        line["key_id"] == created["id"] and line["actor_key_id"] == admin_id for line in revoked_events
    )

    every_log = "".join(service.log_path.read_text(errors="replace") for service in edge_stack.services)
    assert created["key"] not in every_log
    assert edge_stack.admin_key not in every_log


def _log_events(gateway: Gateway) -> list[dict[str, Any]]:
    import json

    events = []
    for line in gateway.service.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events
