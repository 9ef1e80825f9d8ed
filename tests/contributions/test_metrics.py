"""Contributions metrics: cache lookups by result and GitHub's rate limit, in-process and on METRICS_PORT."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import redis
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from tests.metrics.conftest import scrape_service
from tests.support.stack import Stack

from .conftest import REDIS_URL, Clock, StartService, ask
from .fake_github import FakeGitHub

LOOKUPS = "nadzu_contributions_cache_lookups_total"
REMAINING = "nadzu_contributions_github_rate_limit_remaining"
RESET = "nadzu_contributions_github_rate_limit_reset_timestamp_seconds"


def _lookups(result: str) -> float:
    return REGISTRY.get_sample_value(LOOKUPS, {"result": result}) or 0.0


async def test_cache_lookups_by_result(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub, clock: Clock
) -> None:
    service = await start_service(contributions_cache_ttl=600)
    before = {result: _lookups(result) for result in ("miss", "fresh", "stale")}

    assert (await ask(nc, username="leaper", year="2024")).calendar is not None
    assert (await ask(nc, username="leaper", year="2024")).calendar is not None
    clock.advance(601)
    assert (await ask(nc, username="leaper", year="2024")).calendar is not None
    await service.cache.wait_background()

    grown = {result: _lookups(result) - before[result] for result in before}
    assert grown == {"miss": 1, "fresh": 1, "stale": 1}


async def test_rate_limit_gauges_follow_github(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    assert (await ask(nc, username="leaper", year="2024")).calendar is not None
    assert REGISTRY.get_sample_value(REMAINING) == 4999

    fake_github.rate_limited_windows.add(("ratey", 2024))
    started = time.time()
    reply = await ask(nc, username="ratey", year="2024")
    assert reply.problem is not None
    assert REGISTRY.get_sample_value(REMAINING) == 0
    reset = REGISTRY.get_sample_value(RESET)
    assert reset is not None
    # The fake resets its window 120 s after the response.
    assert started + 100 <= reset <= time.time() + 120


def test_metrics_served_on_port(fake_github: FakeGitHub) -> None:
    stack = Stack.create()
    prefix = f"nadzu-test:contributions:{uuid.uuid4().hex}:"
    try:
        service = stack.start_contributions(
            REDIS_URL=REDIS_URL,
            GITHUB_TOKEN=fake_github.token,
            GITHUB_GRAPHQL_URL=fake_github.url,
            CONTRIBUTIONS_KEY_PREFIX=prefix,
        )

        async def query() -> None:
            client = await nats.connect(stack.nats.url)
            try:
                assert (await ask(client, username="leaper", year="2024")).calendar is not None
            finally:
                await client.close()

        asyncio.run(query())
        samples = scrape_service(service)
    finally:
        stack.close()
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)

    assert samples.value(REMAINING) == 4999
    assert samples.value(LOOKUPS, result="miss") == 1
    assert samples.value("nadzu_contributions_github_requests_total", outcome="200") == 1
    handlers = samples.label_values("faststream_received_messages_total", "handler")
    assert "contributions.rpc.get" in handlers
    assert samples.created_series() == []
