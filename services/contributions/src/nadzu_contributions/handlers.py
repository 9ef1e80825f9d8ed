"""Bus handlers: `contributions.rpc.get` and `contributions.rpc.health`, core NATS request/reply.

Both subscribe in a queue group, so each query reaches one replica. Core NATS has no acknowledgements
or redeliveries: a query whose reply is lost times out at the gateway, which then responds 503.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from faststream.nats import NatsBroker, NatsMessage
from faststream.types import BrokerMiddleware

from nadzu_common.contributions import (
    CONTRIBUTIONS_GET,
    CONTRIBUTIONS_HEALTH,
    CONTRIBUTIONS_QUEUE_GROUP,
    ContributionsQuery,
    ContributionsReply,
)
from nadzu_common.logging import bound_context, get_logger
from nadzu_common.messages import HealthQuery, HealthReply

from .errors import ContributionsError
from .metrics import QUERIES
from .service import ContributionsService
from .settings import ContributionsSettings

log = get_logger(__name__)

# Seconds a shutdown waits for queries in progress. The deploy files give the service a longer stop grace
# period than this.
GRACEFUL_TIMEOUT_SECONDS = 10.0


def create_broker(
    settings: ContributionsSettings,
    service: ContributionsService,
    middlewares: Sequence[BrokerMiddleware] = (),
) -> NatsBroker:
    broker = NatsBroker(
        settings.nats_servers,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS,
        middlewares=middlewares,
        max_reconnect_attempts=-1,
        # FastStream's own logger has a coloured text handler; this one goes through the service's
        # log configuration, so its lines are JSON like the rest.
        logger=logging.getLogger("nadzu.faststream"),
        # FastStream logs every message received and processed; at INFO that is two lines per query.
        log_level=logging.DEBUG,
    )

    @broker.subscriber(
        CONTRIBUTIONS_GET,
        queue=CONTRIBUTIONS_QUEUE_GROUP,
        max_workers=settings.contributions_max_concurrency,
        title="contributions.rpc.get",
        description="Contribution calendar of one GitHub user, as JSON data or an SVG heatmap.",
    )
    async def get_contributions(query: ContributionsQuery, message: NatsMessage) -> ContributionsReply:
        request_id = query.request_id or message.headers.get("X-Request-Id")
        with bound_context(request_id=request_id, username=query.username):
            try:
                reply = await service.answer(query)
            except ContributionsError as error:
                QUERIES.labels(outcome=error.slug).inc()
                if error.status >= 500:
                    log.warning("contributions.query_failed", slug=error.slug, detail=error.detail)
                else:
                    log.info("contributions.query_rejected", slug=error.slug, detail=error.detail)
                return ContributionsReply(problem=error.to_problem())
            except Exception:
                QUERIES.labels(outcome="internal-error").inc()
                log.exception("contributions.query_crashed")
                return ContributionsReply(
                    problem=ContributionsError("An unexpected error occurred.").to_problem()
                )
            QUERIES.labels(outcome="ok").inc()
            return reply

    @broker.subscriber(
        CONTRIBUTIONS_HEALTH,
        queue=CONTRIBUTIONS_QUEUE_GROUP,
        title="contributions.rpc.health",
        description="Readiness of one contributions replica.",
    )
    async def health(query: HealthQuery) -> HealthReply:
        problem = await service.health()
        checks = {"redis": "ok" if problem is None else "unavailable"}
        checks["github_token"] = "configured" if settings.github_token is not None else "missing"
        return HealthReply(
            status="ok" if problem is None else "unavailable",
            service="contributions",
            detail=problem,
            checks=checks,
        )

    return broker
