"""Pure pieces of the edge, without processes: client addresses, settings, the key cache, CORS."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from nadzu_common.auth import ApiKeyInfo, Scope
from nadzu_common.ids import new_id
from nadzu_common.messages import JobState, JobStatus
from nadzu_gateway.callers import Caller
from nadzu_gateway.clientip import ClientAddressResolver, address_group
from nadzu_gateway.cors import CorsMiddleware
from nadzu_gateway.jobs import JobDirectory
from nadzu_gateway.keycache import KeyCache
from nadzu_gateway.ratelimit import Decision, Policy, PolicyState
from nadzu_gateway.settings import GatewaySettings, Rate


def networks(*texts: str) -> list[Any]:
    return GatewaySettings(trusted_proxies=",".join(texts)).trusted_proxies


def test_forwarded_for_needs_trusted_peer() -> None:
    resolver = ClientAddressResolver(networks("10.0.0.0/8"))
    assert resolver.resolve("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"
    assert resolver.resolve("10.0.0.2", ["198.51.100.1"]) == "198.51.100.1"
    assert resolver.resolve("10.0.0.2", []) == "10.0.0.2"


def test_forwarded_for_walks_from_right() -> None:
    resolver = ClientAddressResolver(networks("10.0.0.0/8"))
    assert resolver.resolve("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.7"]) == "198.51.100.1"
    assert resolver.resolve("10.0.0.2", ["1.1.1.1", "198.51.100.1, 10.0.0.7"]) == "198.51.100.1"
    # Every hop trusted: the leftmost is the client.
    assert resolver.resolve("10.0.0.2", ["10.1.1.1, 10.0.0.7"]) == "10.1.1.1"
    # An unreadable entry stops the walk at the nearest trusted hop.
    assert resolver.resolve("10.0.0.2", ["198.51.100.1, garbage, 10.0.0.7"]) == "10.0.0.7"
    assert resolver.resolve("10.0.0.2", ["::ffff:198.51.100.4"]) == "198.51.100.4"
    assert resolver.resolve(None, ["198.51.100.1"]) == "unknown"


def test_address_group_uses_ipv6_64() -> None:
    assert address_group("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_group("198.51.100.4") == "198.51.100.4"


def test_rate_parsing() -> None:
    assert Rate.parse("60/minute") == Rate(quota=60, window_seconds=60)
    assert Rate.parse(" 5 / second ") == Rate(quota=5, window_seconds=1)
    assert Rate.parse("100/day") == Rate(quota=100, window_seconds=86400)
    for bad in ("60", "60/minutes", "0/minute", "-1/hour", "x/hour"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_settings_reject_unsafe_cors_origins() -> None:
    for value in (
        "null",
        "https://a.example/",
        "https://a.example/path",
        "*.example.com",
        "*,https://a.example",
    ):
        with pytest.raises(ValidationError):
            GatewaySettings(cors_allow_origins=value)
    settings = GatewaySettings(cors_allow_origins="https://A.example, http://localhost:3000")
    assert settings.cors_allow_origins == ["https://a.example", "http://localhost:3000"]


def test_settings_parse_limits_and_proxies() -> None:
    settings = GatewaySettings(
        rate_limit_key="5/second",
        rate_limit_tiers={"gold": {"requests": "100/minute"}},
        trusted_proxies="none",
    )
    assert settings.rate_limit_key == Rate(quota=5, window_seconds=1)
    assert settings.rate_limit_tiers["gold"].requests == Rate(quota=100, window_seconds=60)
    assert settings.rate_limit_tiers["gold"].enqueue is None
    assert settings.trusted_proxies == []
    with pytest.raises(ValidationError):
        GatewaySettings(session_secret="too short")


def test_settings_list_key_tiers() -> None:
    assert GatewaySettings().key_tiers == ["default"]
    configured = GatewaySettings(rate_limit_tiers={"partner": {}, "default": {}, "bronze": {}})
    assert configured.key_tiers == ["default", "bronze", "partner"]
    for name in ("Gold", "-x", "a" * 33, "with space", "gold\n"):
        with pytest.raises(ValidationError, match="tier names"):
            GatewaySettings(rate_limit_tiers={name: {}})


def test_limit_fields_format() -> None:
    default = Policy("default", 600, 60)
    enqueue = Policy("enqueue", 100, 3600)
    decision = Decision(True, (PolicyState(default, 599, 60), PolicyState(enqueue, 0, 10)))
    assert dict(decision.header_fields()) == {
        b"ratelimit-policy": b'"default";q=600;w=60, "enqueue";q=100;w=3600',
        b"ratelimit": b'"default";r=599;t=60, "enqueue";r=0;t=10',
    }
    assert decision.retry_after == 10


def _caller(expires_at: float | None = None) -> Caller:
    info = ApiKeyInfo(
        id=uuid.uuid4(),
        prefix=None,
        name="unit",
        scopes=[Scope.DOWNLOADS],
        tier="default",
        created_at=datetime.now(UTC),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else None,
    )
    return Caller.from_key(info, "a" * 64)


def test_key_cache_evicts_and_expires() -> None:
    cache = KeyCache(ttl_seconds=60)
    caller = _caller()
    cache.put("hash-1", caller)
    assert cache.get("hash-1") is caller
    assert caller.key_id is not None
    assert cache.evict_key(caller.key_id)
    assert cache.get("hash-1") is None

    # A verification reply that raced with the revocation is not cached again.
    cache.put("hash-1", caller)
    assert cache.get("hash-1") is None

    expiring = _caller(expires_at=time.time() - 1)
    cache.put("hash-2", expiring)
    assert cache.get("hash-2") is None


def test_key_cache_is_bounded() -> None:
    cache = KeyCache(ttl_seconds=60, max_entries=2)
    callers = [_caller() for _ in range(3)]
    for index, caller in enumerate(callers):
        cache.put(f"hash-{index}", caller)
    assert len(cache) == 2
    assert cache.get("hash-0") is None
    assert cache.get("hash-2") is callers[2]


async def _cors_response(allow: list[str], origin: str) -> dict[bytes, bytes]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"origin", origin.encode())]}
    await CorsMiddleware(app, allow)(scope, None, send)
    return dict(sent[0]["headers"])


async def test_cors_wildcard_never_echoes_origin() -> None:
    headers = await _cors_response(["*"], "https://evil.example")
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-credentials" not in headers
    null_origin = await _cors_response(["*"], "null")
    assert null_origin[b"access-control-allow-origin"] == b"*"


async def test_cors_disabled_adds_nothing() -> None:
    headers = await _cors_response([], "https://app.example.com")
    assert headers == {}


def test_job_directory_active_counts_follow_events() -> None:
    """The per-owner active count matches a scan of every job after any order of events."""
    directory = JobDirectory(js=None)  # type: ignore[arg-type]  # record() never touches the stream
    owners = ["alice", "bob", "carol"]
    jobs = [
        JobState(
            id=new_id(),
            url="http://127.0.0.1:9/a.mp4",
            format="video",
            owner=owners[number % 3],
            status=JobStatus.QUEUED,
            created_at=datetime.now(UTC),
        )
        for number in range(30)
    ]
    randomness = random.Random(7)
    events = []
    for sequence in range(1, 400):
        job = randomness.choice(jobs)
        events.append((sequence, job.model_copy(update={"status": randomness.choice(list(JobStatus))})))
    # Deliveries come out of order too (a direct read records a newer event before the subscription).
    randomness.shuffle(events)

    for sequence, job in events:
        directory.record(sequence, job)

    latest: dict[object, tuple[int, JobState]] = {}
    for sequence, job in events:
        if job.id not in latest or latest[job.id][0] < sequence:
            latest[job.id] = (sequence, job)
    for owner in [*owners, "nobody"]:
        expected = sum(1 for _, job in latest.values() if job.owner == owner and job.status.is_active)
        assert directory.count_active(owner) == expected, owner
