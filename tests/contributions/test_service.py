"""The contributions service over NATS, against Redis and a fake GitHub GraphQL server."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date, timedelta

import redis.asyncio as redis
from nats.aio.client import Client as NatsClient
from structlog.testing import capture_logs

from nadzu_common.bus import encode
from nadzu_common.contributions import CONTRIBUTIONS_HEALTH
from nadzu_common.messages import HealthQuery, HealthReply

from .conftest import TODAY, Clock, StartService, ask, octocat_counts
from .fake_github import FakeGitHub


async def test_default_span_json(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    reply = await ask(nc, username="octo-cat")
    assert reply.problem is None
    calendar = reply.calendar
    assert calendar is not None
    assert calendar.username == "Octo-Cat"
    assert calendar.to_date == TODAY
    assert calendar.from_date == TODAY - timedelta(days=364)
    assert len(calendar.days) == 365
    assert calendar.cached is False
    assert {day.level for day in calendar.days} == {0, 1, 2, 3, 4}
    assert calendar.total == sum(day.count for day in calendar.days)
    assert sum(year.total for year in calendar.years) == calendar.total
    assert len(fake_github.calls) == 1

    again = await ask(nc, username="octo-cat")
    assert again.calendar is not None
    assert again.calendar.cached is True
    assert again.calendar.days == calendar.days
    assert len(fake_github.calls) == 1


async def test_today_empty_keeps_current_streak(start_service: StartService, nc: NatsClient) -> None:
    await start_service()
    reply = await ask(nc, username="Octo-Cat")
    assert reply.calendar is not None
    current = reply.calendar.streaks.current
    assert current.length == 5
    assert current.end == TODAY - timedelta(days=1)
    assert current.start == TODAY - timedelta(days=5)


async def test_today_active_extends_streak(start_service: StartService, nc: NatsClient) -> None:
    await start_service()
    reply = await ask(nc, username="today-active")
    assert reply.calendar is not None
    assert reply.calendar.streaks.current.length == 3
    assert reply.calendar.streaks.current.end == TODAY


async def test_multi_year_span_merged(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    reply = await ask(nc, username="Octo-Cat", from_date="2019-01-01", to_date="2024-12-31")
    calendar = reply.calendar
    assert calendar is not None
    assert len(calendar.days) == (date(2024, 12, 31) - date(2019, 1, 1)).days + 1

    expected = octocat_counts()
    for year in calendar.years:
        assert year.total == sum(count for day, count in expected.items() if day.year == year.year)
    assert [year.year for year in calendar.years] == list(range(2019, 2025))

    assert fake_github.violations == []
    assert len(fake_github.calls) == 6
    covered = sorted((call.first, call.last) for call in fake_github.calls)
    assert covered[0][0] == date(2019, 1, 1)
    assert covered[-1][1] == date(2024, 12, 31)
    for earlier, later in itertools.pairwise(covered):
        assert later[0] == earlier[1] + timedelta(days=1)


async def test_streak_across_new_year(start_service: StartService, nc: NatsClient) -> None:
    await start_service()
    reply = await ask(nc, username="Octo-Cat", from_date="2023-12-01", to_date="2024-01-31")
    assert reply.calendar is not None
    longest = reply.calendar.streaks.longest
    assert longest.length == 15
    assert longest.start == date(2023, 12, 25)
    assert longest.end == date(2024, 1, 8)
    assert [year.year for year in reply.calendar.years] == [2023, 2024]


async def test_leap_year(start_service: StartService, nc: NatsClient, fake_github: FakeGitHub) -> None:
    await start_service()
    reply = await ask(nc, username="leaper", year="2024")
    calendar = reply.calendar
    assert calendar is not None
    assert len(calendar.days) == 366
    leap_day = next(day for day in calendar.days if day.date == date(2024, 2, 29))
    assert leap_day.count == 6
    assert calendar.total == 7
    assert calendar.streaks.longest.length == 2
    assert len(fake_github.calls) == 1
    assert fake_github.violations == []


async def test_zero_user_skips_empty_years(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    reply = await ask(nc, username="zero-user", from_date="2015-01-01", to_date="2024-12-31")
    calendar = reply.calendar
    assert calendar is not None
    assert calendar.total == 0
    assert all(day.count == 0 and day.level == 0 for day in calendar.days)
    assert [year.total for year in calendar.years] == [0] * 10
    assert calendar.streaks.current.length == 0
    assert calendar.streaks.longest.start is None
    # contributionYears is empty, so only the newest window is fetched.
    assert len(fake_github.calls) == 1


async def test_unknown_user_404(start_service: StartService, nc: NatsClient) -> None:
    await start_service()
    reply = await ask(nc, username="nobody-here")
    assert reply.problem is not None
    assert reply.problem.status == 404
    assert reply.problem.slug == "user-not-found"


async def test_invalid_input_skips_github(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    bad_login = await ask(nc, username="bad--login")
    assert bad_login.problem is not None
    assert bad_login.problem.status == 422
    assert bad_login.problem.slug == "invalid-username"

    bad_span = await ask(nc, username="octo-cat", from_date="2000-01-01", to_date="2024-12-31")
    assert bad_span.problem is not None
    assert bad_span.problem.status == 422
    assert bad_span.problem.slug == "invalid-date-range"
    assert bad_span.problem.errors[0].field == "to"
    assert fake_github.calls == []


async def test_default_user(start_service: StartService, nc: NatsClient) -> None:
    await start_service(github_default_user="leaper")
    reply = await ask(nc, year="2020")
    assert reply.calendar is not None
    assert reply.calendar.username == "leaper"
    assert reply.calendar.total == 4


async def test_default_user_missing(start_service: StartService, nc: NatsClient) -> None:
    await start_service(github_default_user=None)
    reply = await ask(nc)
    assert reply.problem is not None
    assert reply.problem.status == 404
    assert reply.problem.slug == "default-user-not-configured"


async def test_token_missing(start_service: StartService, nc: NatsClient, fake_github: FakeGitHub) -> None:
    await start_service(github_token=None)
    reply = await ask(nc, username="octo-cat")
    assert reply.problem is not None
    assert reply.problem.status == 503
    assert reply.problem.slug == "github-token-missing"
    assert reply.problem.retry_after is not None
    assert fake_github.calls == []


async def test_bad_credentials_not_logged(start_service: StartService, nc: NatsClient) -> None:
    await start_service(github_token="wrong-secret-token")
    with capture_logs() as logs:
        reply = await ask(nc, username="octo-cat")
    assert reply.problem is not None
    assert reply.problem.status == 503
    assert reply.problem.slug == "github-token-rejected"
    assert any(entry["event"] == "github.bad_credentials" for entry in logs)
    assert "wrong-secret-token" not in repr(logs)
    assert "wrong-secret-token" not in reply.model_dump_json()


async def test_primary_rate_limit(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    fake_github.rate_limited_windows.add(("ratey", 2024))
    reply = await ask(nc, username="ratey", year="2024")
    assert reply.problem is not None
    assert reply.problem.status == 503
    assert reply.problem.slug == "github-rate-limited"
    assert reply.problem.retry_after is not None
    assert 100 <= reply.problem.retry_after <= 120

    # While the limit lasts, other queries fail without calling GitHub.
    other = await ask(nc, username="leaper", year="2024")
    assert other.problem is not None
    assert other.problem.slug == "github-rate-limited"
    assert len(fake_github.calls) == 1


async def test_secondary_rate_limit(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    fake_github.scripted_failures.append((403, {"retry-after": "42"}))
    reply = await ask(nc, username="leaper", year="2024")
    assert reply.problem is not None
    assert reply.problem.slug == "github-rate-limited"
    assert reply.problem.retry_after == 42


async def test_rate_limited_year_not_cached(
    start_service: StartService,
    nc: NatsClient,
    fake_github: FakeGitHub,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    await start_service()
    fake_github.rate_limited_windows.add(("ratey", 2022))
    reply = await ask(nc, username="ratey", from_date="2020-01-01", to_date="2024-12-31")
    assert reply.problem is not None
    assert reply.problem.slug == "github-rate-limited"
    stored = [key async for key in redis_client.scan_iter(match=f"{key_prefix}calendar:*")]
    assert [key for key in stored if not key.endswith(b":lock")] == []


async def test_server_errors_retried(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service(github_max_attempts=3)
    fake_github.scripted_failures.extend([(502, {}), (503, {})])
    reply = await ask(nc, username="leaper", year="2024")
    assert reply.calendar is not None
    assert len(fake_github.calls) == 3


async def test_server_errors_exhausted(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service(github_max_attempts=2)
    fake_github.scripted_failures.extend([(500, {}), (502, {}), (502, {})])
    reply = await ask(nc, username="leaper", year="2024")
    assert reply.problem is not None
    assert reply.problem.status == 503
    assert reply.problem.slug == "github-unavailable"
    assert len(fake_github.calls) == 2


async def test_timeout_retried_then_503(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service(github_max_attempts=2, github_timeout_seconds=0.2)
    fake_github.gate.clear()
    fake_github.stall_seconds = 1.0
    reply = await ask(nc, username="leaper", year="2024")
    assert reply.problem is not None
    assert reply.problem.slug == "github-unavailable"
    assert len(fake_github.calls) == 2


async def test_stale_served_while_refreshing(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub, clock: Clock
) -> None:
    service = await start_service(contributions_cache_ttl=600)
    first = await ask(nc, username="leaper", year="2024")
    assert first.calendar is not None
    assert first.max_age == 600

    fake_github.users["leaper"].counts[date(2024, 7, 1)] = 10
    clock.advance(601)
    stale = await ask(nc, username="leaper", year="2024")
    assert stale.calendar is not None
    assert stale.calendar.cached is True
    assert stale.calendar.total == 7
    assert stale.max_age == 0

    await service.cache.wait_background()
    assert len(fake_github.calls) == 2
    fresh = await ask(nc, username="leaper", year="2024")
    assert fresh.calendar is not None
    assert fresh.calendar.cached is True
    assert fresh.calendar.total == 17


async def test_stale_served_when_rate_limited(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub, clock: Clock
) -> None:
    service = await start_service(contributions_cache_ttl=600)
    first = await ask(nc, username="ratey", year="2024")
    assert first.calendar is not None

    fake_github.rate_limited_windows.add(("ratey", 2024))
    clock.advance(601)
    stale = await ask(nc, username="ratey", year="2024")
    assert stale.calendar is not None
    assert stale.calendar.total == first.calendar.total
    await service.cache.wait_background()
    assert len(fake_github.calls) == 2

    # The failed refresh backs off instead of calling GitHub on every request.
    again = await ask(nc, username="ratey", year="2024")
    assert again.calendar is not None
    await service.cache.wait_background()
    assert len(fake_github.calls) == 2


async def test_concurrent_cold_single_flight(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    await start_service()
    fake_github.gate.clear()
    requests = [asyncio.create_task(ask(nc, username="Octo-Cat", year="2023")) for _ in range(100)]
    assert await asyncio.to_thread(fake_github.wait_for_calls, 1)
    fake_github.gate.set()
    replies = await asyncio.gather(*requests)

    assert all(reply.calendar is not None for reply in replies)
    assert len({reply.calendar.total for reply in replies if reply.calendar}) == 1
    assert len(fake_github.calls) == 1


async def test_concurrent_cold_failure_shared(
    start_service: StartService, nc: NatsClient, fake_github: FakeGitHub
) -> None:
    await start_service()
    await start_service()
    fake_github.gate.clear()
    requests = [asyncio.create_task(ask(nc, username="nobody-here", year="2023")) for _ in range(20)]
    assert await asyncio.to_thread(fake_github.wait_for_calls, 1)
    fake_github.gate.set()
    replies = await asyncio.gather(*requests)
    assert all(reply.problem is not None and reply.problem.slug == "user-not-found" for reply in replies)
    assert len(fake_github.calls) <= 2


async def test_health(start_service: StartService, nc: NatsClient) -> None:
    await start_service()
    message = await nc.request(CONTRIBUTIONS_HEALTH, encode(HealthQuery()), timeout=5)
    reply = HealthReply.model_validate_json(message.data)
    assert reply.status == "ok"
    assert reply.checks["github_token"] == "configured"
