"""Queries to backend services over core NATS request/reply."""

from __future__ import annotations

from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from nadzu_common.bus import encode, message_headers
from nadzu_common.logging import get_logger
from nadzu_common.tracing import client_span

from .problems import Problem, dependency_unavailable

log = get_logger(__name__)

ReplyT = TypeVar("ReplyT", bound=BaseModel)


async def request(
    nc: NatsClient,
    subject: str,
    query: BaseModel,
    reply_type: type[ReplyT],
    service: str,
    timeout: float,  # noqa: ASYNC109  handed to nats-py, which enforces it per request
    request_id: str | None = None,
) -> ReplyT:
    """Send a query and parse its reply; a service that is down or silent becomes a 503 problem."""
    try:
        with client_span(subject):
            reply = await nc.request(
                subject, encode(query), timeout=timeout, headers=message_headers(request_id=request_id)
            )
    except NoRespondersError:
        raise dependency_unavailable(service, "no instance is running") from None
    except NatsTimeoutError:
        raise dependency_unavailable(service, f"no reply within {timeout:g} s") from None

    try:
        return reply_type.model_validate_json(reply.data)
    except ValidationError as error:
        log.error("rpc.bad_reply", subject=subject, error=str(error))
        raise Problem(
            502, "bad-gateway", "Bad gateway", detail=f"{service} sent a reply that cannot be read."
        ) from None
