"""Entry point of the contributions service: `nadzu-contributions`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import redis.asyncio as redis
from faststream import FastStream

from nadzu_common.logging import configure_logging, get_logger
from nadzu_common.metrics import faststream_metrics, serve_metrics
from nadzu_common.settings import load_settings
from nadzu_common.tracing import configure_tracing, faststream_telemetry, is_active, shutdown_tracing

from .github import GitHubClient
from .handlers import create_broker
from .service import ContributionsService
from .settings import ContributionsSettings

log = get_logger(__name__)


async def run(settings: ContributionsSettings) -> None:
    serve_metrics(settings.metrics_port, settings.metrics_host)

    redis_client = redis.from_url(settings.redis_url, health_check_interval=30)
    http = httpx.AsyncClient(
        timeout=settings.github_timeout_seconds,
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )
    github = GitHubClient(
        http,
        settings.github_graphql_url,
        settings.github_token,
        max_attempts=settings.github_max_attempts,
        retry_backoff_seconds=settings.github_retry_backoff_seconds,
    )
    service = ContributionsService(settings, redis_client, github)

    middlewares: list[Any] = [faststream_metrics("contributions")]
    if is_active():
        middlewares.append(faststream_telemetry())
    broker = create_broker(settings, service, middlewares)
    app = FastStream(broker, logger=logging.getLogger("nadzu.faststream"))

    @app.on_startup
    async def start_service() -> None:
        await service.start()
        if settings.github_token is None:
            log.warning(
                "contributions.token_missing",
                detail="GITHUB_TOKEN is not set, so every query returns 503 until it is set",
            )
        log.info("contributions.started", default_user=settings.github_default_user)

    @app.after_shutdown
    async def stop_service() -> None:
        await service.stop()
        await http.aclose()
        await redis_client.aclose()
        log.info("contributions.stopped")

    await app.run()


def main() -> None:
    settings = load_settings(ContributionsSettings)
    configure_logging("contributions", settings.log_level, settings.log_format)
    configure_tracing("nadzu-contributions")
    try:
        asyncio.run(run(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
