"""Wiring of the auth service: database, bus, captcha client and handlers, started and stopped in order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats.errors
from faststream.nats import NatsBroker
from faststream.nats.publisher.usecase import LogicPublisher
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from nadzu_common.auth import AuthSubjects, KeyRevoked, TokenSigner
from nadzu_common.bus import AUTH_EVENTS_STREAM, encode, message_headers
from nadzu_common.logging import get_logger
from nadzu_common.metrics import faststream_metrics
from nadzu_common.tracing import faststream_telemetry
from nadzu_common.tracing import is_active as tracing_active

from .captcha import CaptchaConfig, CaptchaVerifier
from .errors import RetryableError
from .handlers import register_handlers
from .keys import KeyService, LastUsedRecorder, PublishRevoked
from .sessions import SessionService
from .settings import AuthSettings
from .storage import Storage, wait_for_database

log = get_logger(__name__)

_PUBLISH_TIMEOUT_SECONDS = 2.0
_DATABASE_CONNECT_ATTEMPTS = 30
_DATABASE_CONNECT_DELAY_SECONDS = 1.0


class EventsUnavailable(RetryableError):
    """The revocation is stored but its event could not be published; repeating the request publishes it."""


@dataclass
class AuthService:
    settings: AuthSettings
    broker: NatsBroker
    storage: Storage
    keys: KeyService
    sessions: SessionService


async def ensure_auth_stream(js: JetStreamContext, replicas: int) -> None:
    """Create or update the AUTH_EVENTS stream."""
    config = AUTH_EVENTS_STREAM.config(replicas)
    try:
        await js.stream_info(AUTH_EVENTS_STREAM.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("nats.stream_created", stream=AUTH_EVENTS_STREAM.name)
    else:
        await js.update_stream(config)


def declare_revocation_publisher(broker: NatsBroker) -> LogicPublisher:
    """Declare the `auth.evt.key-revoked` publisher, so the broker's AsyncAPI document lists it."""
    return broker.publisher(
        AuthSubjects.KEY_REVOKED,
        schema=KeyRevoked,
        title=f"auth:{AuthSubjects.KEY_REVOKED}",
        description="A key was revoked, so every gateway replica drops it from its cache.",
    )


def revocation_publisher(publisher: LogicPublisher) -> PublishRevoked:
    """Return the function that publishes `auth.evt.key-revoked` to JetStream and waits for its ack."""

    async def publish(event: KeyRevoked, request_id: str | None) -> None:
        # The message id de-duplicates a repeated revocation inside the stream's duplicate window.
        headers = message_headers(msg_id=f"{event.key_id}:key-revoked", request_id=request_id)
        try:
            await publisher.publish(
                encode(event),
                headers=headers,
                stream=AUTH_EVENTS_STREAM.name,
                timeout=_PUBLISH_TIMEOUT_SECONDS,
            )
        except (nats.errors.Error, TimeoutError) as error:
            log.warning("keys.revocation_publish_failed", key_id=str(event.key_id), error=repr(error))
            raise EventsUnavailable(
                "the key is revoked but gateways were not notified; repeat the request"
            ) from error

    return publish


def make_broker(settings: AuthSettings) -> NatsBroker:
    middlewares: list[Any] = [faststream_metrics("auth")]
    if tracing_active():
        middlewares.append(faststream_telemetry())

    return NatsBroker(
        settings.nats_servers,
        name="nadzu-auth",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        graceful_timeout=settings.auth_shutdown_timeout_seconds,
        middlewares=middlewares,
        # Through the service's log configuration rather than FastStream's coloured text handler.
        logger=logging.getLogger("nadzu.faststream"),
        # One line per message would flood the logs on the verify-key path.
        log_level=logging.DEBUG,
        # Handlers take the raw message (see handlers.register_handlers), so no dependency injection.
        apply_types=False,
    )


@asynccontextmanager
async def running_service(settings: AuthSettings) -> AsyncIterator[AuthService]:
    """Start the auth service, yield it while it serves requests, then stop it gracefully."""
    async with AsyncExitStack() as stack:
        storage = await wait_for_database(
            settings.database_url,
            settings.auth_db_pool_size,
            attempts=_DATABASE_CONNECT_ATTEMPTS,
            delay=_DATABASE_CONNECT_DELAY_SECONDS,
        )
        stack.push_async_callback(storage.close)
        await storage.migrate()

        broker = make_broker(settings)
        revocations = declare_revocation_publisher(broker)
        await broker.connect()
        stack.push_async_callback(broker.stop)
        await ensure_auth_stream(broker.config.connection_state.stream, settings.nats_stream_replicas)

        last_used = LastUsedRecorder(storage, settings.auth_last_used_flush_seconds)
        keys = KeyService(storage, last_used, revocation_publisher(revocations))
        if settings.admin_api_key is not None:
            await keys.ensure_bootstrap_key(settings.admin_api_key.get_secret_value())
        else:
            hint = "set ADMIN_API_KEY to administer keys on a fresh deploy"
            log.warning("keys.no_bootstrap_key", hint=hint)

        verifier = CaptchaVerifier(CaptchaConfig.from_settings(settings))
        stack.push_async_callback(verifier.close)
        if not verifier.configured:
            log.warning("captcha.not_configured", hint="set RECAPTCHA_SECRET to issue sessions")

        signer = TokenSigner(settings.session_secret.get_secret_value())
        sessions = SessionService(verifier, signer, settings.session_ttl)

        register_handlers(broker, keys, sessions, storage)
        last_used.start()
        stack.push_async_callback(last_used.stop)
        await broker.start()
        # Exit callbacks run in reverse, so this second stop ends the handlers before the final last-used
        # flush above. The first stop only matters when start-up fails, and stopping twice is safe.
        stack.push_async_callback(broker.stop)
        # A round trip to the server makes sure it has processed our subscriptions before we report ready,
        # so a request sent right after start-up finds a responder.
        await broker.config.connection_state.connection.flush()

        log.info("auth.started", captcha=verifier.configured, session_ttl=settings.session_ttl)
        try:
            yield AuthService(settings=settings, broker=broker, storage=storage, keys=keys, sessions=sessions)
        finally:
            log.info("auth.stopping")
