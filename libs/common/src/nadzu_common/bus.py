"""The bus: subjects, JetStream streams and consumers, declared in one place.

Every service calls `ensure_streams` at start-up. Declaring is idempotent: a stream that exists is updated
to the settings below, so all services agree on them whatever order they start in.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from .logging import get_logger

log = get_logger(__name__)

DAY = 24 * 3600
# Header names that `message_headers` sets on published messages.
MSG_ID_HEADER = "Nats-Msg-Id"
REQUEST_ID_HEADER = "X-Request-Id"


class Subjects:
    """Subject names: `<domain>.<kind>.<name>`."""

    DOWNLOAD_ENQUEUE = "downloads.cmd.enqueue"
    # One subject per job, so a downloader about to start a job can see whether a cancel is pending.
    DOWNLOAD_CANCEL = "downloads.cmd.cancel.>"
    DOWNLOAD_RELEASE = "downloads.cmd.release"
    DOWNLOAD_CANCEL_SIGNAL = "downloads.ctl.cancel"
    DOWNLOAD_EVENTS = "downloads.evt.>"
    DOWNLOAD_DEAD_LETTERS = "downloads.dlq.enqueue"
    DOWNLOAD_SITES = "downloads.rpc.sites"
    DOWNLOAD_HEALTH = "downloads.rpc.health"

    @staticmethod
    def download_events(job_id: uuid.UUID | str) -> str:
        return f"downloads.evt.{job_id}"

    @staticmethod
    def download_cancel(job_id: uuid.UUID | str) -> str:
        return f"downloads.cmd.cancel.{job_id}"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    retention: RetentionPolicy
    max_age_seconds: float
    max_bytes: int
    max_msgs_per_subject: int = -1
    duplicate_window_seconds: float = 120

    def config(self, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=self.subjects,
            retention=self.retention,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=self.max_age_seconds,
            max_bytes=self.max_bytes,
            max_msgs_per_subject=self.max_msgs_per_subject,
            discard=DiscardPolicy.OLD,
            duplicate_window=self.duplicate_window_seconds,
            allow_direct=True,
        )


# Commands wait here until a downloader takes them; a work queue deletes each one once it is acked.
COMMANDS_STREAM = StreamSpec(
    name="DOWNLOADS_COMMANDS",
    subjects=["downloads.cmd.>"],
    retention=RetentionPolicy.WORK_QUEUE,
    max_age_seconds=7 * DAY,
    max_bytes=1024**3,
)

# Job events. The latest event of a job carries its whole state, so this stream doubles as the gateway's
# read model: history is kept as long as job records are (30 days by default), at most 2,000 events per
# job (a long download's oldest progress events go first; a client resuming from one gets a snapshot).
EVENTS_STREAM = StreamSpec(
    name="DOWNLOADS_EVENTS",
    subjects=[Subjects.DOWNLOAD_EVENTS],
    retention=RetentionPolicy.LIMITS,
    max_age_seconds=30 * DAY,
    max_bytes=4 * 1024**3,
    max_msgs_per_subject=2000,
)

DEAD_LETTERS_STREAM = StreamSpec(
    name="DOWNLOADS_DEAD_LETTERS",
    subjects=["downloads.dlq.>"],
    retention=RetentionPolicy.LIMITS,
    max_age_seconds=30 * DAY,
    max_bytes=256 * 1024**2,
)

# Auth facts such as revoked keys; every gateway replica follows them to drop cached keys.
AUTH_EVENTS_STREAM = StreamSpec(
    name="AUTH_EVENTS",
    subjects=["auth.evt.>"],
    retention=RetentionPolicy.LIMITS,
    max_age_seconds=7 * DAY,
    max_bytes=64 * 1024**2,
)

ALL_STREAMS = (COMMANDS_STREAM, EVENTS_STREAM, DEAD_LETTERS_STREAM, AUTH_EVENTS_STREAM)

# The downloader's durable consumers. Ack waits are short because running jobs send in-progress acks.
ENQUEUE_CONSUMER = "downloader-enqueue"
CANCEL_CONSUMER = "downloader-cancel"
RELEASE_CONSUMER = "downloader-release"
ENQUEUE_ACK_WAIT_SECONDS = 60.0


def enqueue_consumer_config(ack_wait_seconds: float = ENQUEUE_ACK_WAIT_SECONDS) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=ENQUEUE_CONSUMER,
        filter_subject=Subjects.DOWNLOAD_ENQUEUE,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_seconds,
        # The handler dead-letters a job itself past DOWNLOADER_MAX_ATTEMPTS, so the server never drops
        # a command silently by running out of deliveries.
        max_deliver=-1,
        # Each replica fetches only when it has a free slot, so this bounds nothing in practice; it is
        # the ceiling for all replicas together.
        max_ack_pending=10_000,
    )


def control_consumer_config(durable_name: str, subject: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable_name,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_deliver=20,
        max_ack_pending=1000,
    )


async def connect(servers: list[str], name: str) -> NatsClient:
    """Connect to NATS, retrying in the background after a lost connection."""

    client: NatsClient | None = None

    async def on_disconnect() -> None:
        # nats-py calls this on a drain or close too; only a lost connection deserves a warning.
        if client is not None and (client.is_closed or client.is_draining):
            log.info("nats.closed")
        else:
            log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    async def on_error(error: Exception) -> None:
        log.warning("nats.error", error=str(error))

    client = await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return client


async def ensure_streams(js: JetStreamContext, replicas: int) -> None:
    """Create or update every stream the platform uses."""
    for spec in ALL_STREAMS:
        config = spec.config(replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("nats.stream_created", stream=spec.name)
        else:
            await js.update_stream(config)


def message_headers(
    msg_id: str | None = None, request_id: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers for a published message: de-duplication id, request id and trace context."""
    headers: dict[str, str] = {}
    if msg_id:
        headers[MSG_ID_HEADER] = msg_id
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id

    from .tracing import inject_trace_context

    inject_trace_context(headers)
    if extra:
        headers.update(extra)
    return headers


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()
