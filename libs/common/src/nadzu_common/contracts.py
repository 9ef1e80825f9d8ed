"""Bus traffic that does not go through a FastStream broker, declared for the AsyncAPI document.

The gateway talks to NATS with nats-py, and the downloader publishes job events, dead letters and
cancel broadcasts with nats-py too. FastStream cannot see that traffic, so this module declares it as
publishers and subscribers on brokers that are never connected. Each declaration names the same
subject constant and model that the sending or receiving code uses. The services' own FastStream
subscribers come from their real brokers (see scripts/contracts.py).
"""

from __future__ import annotations

from faststream.nats import NatsBroker

from .auth import (
    AuthSubjects,
    CreateKeyCommand,
    CreateSessionCommand,
    KeyRevoked,
    ListKeysQuery,
    RevokeKeyCommand,
    VerifyKeyQuery,
)
from .bus import Subjects
from .contributions import CONTRIBUTIONS_GET, CONTRIBUTIONS_HEALTH, ContributionsQuery
from .healthcheck import BUS_DOMAINS
from .messages import (
    CancelDownload,
    CancelSignal,
    EnqueueDownload,
    HealthQuery,
    JobEvent,
    ReleaseDownload,
    SupportedSitesQuery,
)

# Subjects of one job, as the senders fill them in.
JOB_EVENTS_SUBJECT = Subjects.download_events("{job_id}")
JOB_CANCEL_SUBJECT = Subjects.download_cancel("{job_id}")


def _documentation_broker() -> NatsBroker:
    # Never connected: it only carries declarations for the document.
    return NatsBroker("nats://127.0.0.1:4222")


def gateway_broker() -> NatsBroker:
    """Declare what the gateway sends and follows with nats-py."""
    broker = _documentation_broker()
    sends = [
        (Subjects.DOWNLOAD_ENQUEUE, EnqueueDownload, "Queue a new job (`POST /api/v1/downloads`)."),
        (
            JOB_CANCEL_SUBJECT,
            CancelDownload,
            "Cancel a queued or running job (`DELETE /api/v1/downloads/{id}`); a downloader about to "
            "start the job looks for this command first.",
        ),
        (Subjects.DOWNLOAD_CANCEL_SIGNAL, CancelSignal, "Tell the replica running the job to stop it now."),
        (
            Subjects.DOWNLOAD_RELEASE,
            ReleaseDownload,
            "Delete a completed job's file (`DELETE /api/v1/downloads/{id}`).",
        ),
        (
            JOB_EVENTS_SUBJECT,
            JobEvent,
            "The first `status` event of a new job (`queued`), and a `failed` event when its command "
            "could not be queued.",
        ),
        (Subjects.DOWNLOAD_SITES, SupportedSitesQuery, "Ask a downloader for yt-dlp's extractors."),
        (Subjects.DOWNLOAD_HEALTH, HealthQuery, "Readiness check of the downloaders (`/health/ready`)."),
        (CONTRIBUTIONS_GET, ContributionsQuery, "Forward a contributions request."),
        (CONTRIBUTIONS_HEALTH, HealthQuery, "Readiness check of the contributions service."),
        (AuthSubjects.VERIFY_KEY, VerifyKeyQuery, "Check an API key that is not cached, by its hash."),
        (AuthSubjects.CREATE_KEY, CreateKeyCommand, "Create an API key (`POST /api/v1/auth/keys`)."),
        (AuthSubjects.LIST_KEYS, ListKeysQuery, "List API keys (`GET /api/v1/auth/keys`)."),
        (AuthSubjects.REVOKE_KEY, RevokeKeyCommand, "Revoke an API key (`DELETE /api/v1/auth/keys/{id}`)."),
        (
            AuthSubjects.CREATE_SESSION,
            CreateSessionCommand,
            "Exchange a captcha token for a session (`POST /api/v1/auth/session`).",
        ),
        (AuthSubjects.HEALTH, HealthQuery, "Readiness check of the auth service."),
    ]
    for subject, model, description in sends:
        broker.publisher(subject, schema=model, title=f"gateway:{subject}", description=description)

    @broker.subscriber(
        JOB_EVENTS_SUBJECT,
        title=f"gateway:{JOB_EVENTS_SUBJECT}",
        description="Keep the job list (the latest event per job) and stream one job's events as SSE, "
        "from a stream sequence on.",
    )
    async def follow_job_events(event: JobEvent) -> None:
        """Documentation only: the gateway reads these in jobs.py and sse.py."""

    @broker.subscriber(
        AuthSubjects.KEY_REVOKED,
        title=f"gateway:{AuthSubjects.KEY_REVOKED}",
        description="Drop the revoked key from this replica's key cache.",
    )
    async def follow_revocations(event: KeyRevoked) -> None:
        """Documentation only: the gateway reads these in keycache.py."""

    return broker


def downloader_broker() -> NatsBroker:
    """Declare the downloader traffic that its FastStream broker does not describe.

    The enqueue subscriber has no handler, because a loop fetches one command whenever a worker slot is
    free, so FastStream cannot tell its payload. Events, dead letters and relayed cancel signals are
    published with nats-py.
    """
    broker = _documentation_broker()

    @broker.subscriber(
        Subjects.DOWNLOAD_ENQUEUE,
        title=f"downloader:{Subjects.DOWNLOAD_ENQUEUE}",
        description="Run the job. The durable pull consumer `downloader-enqueue` is shared by every "
        "replica, and each fetches a command only when one of its worker slots is free.",
    )
    async def run_job(command: EnqueueDownload) -> None:
        """Documentation only: the downloader reads these in runner.py."""

    broker.publisher(
        JOB_EVENTS_SUBJECT,
        schema=JobEvent,
        title=f"downloader:{JOB_EVENTS_SUBJECT}",
        description="Every change of a job: `status` (running, re-queued, expired), `progress` (at most "
        "4 a second), and one terminal `completed`, `failed` or `cancelled`.",
    )
    broker.publisher(
        Subjects.DOWNLOAD_DEAD_LETTERS,
        schema=EnqueueDownload,
        title=f"downloader:{Subjects.DOWNLOAD_DEAD_LETTERS}",
        description="The enqueue command of a job that failed `DOWNLOADER_MAX_ATTEMPTS` times.",
    )
    broker.publisher(
        Subjects.DOWNLOAD_CANCEL_SIGNAL,
        schema=CancelSignal,
        title=f"downloader:{Subjects.DOWNLOAD_CANCEL_SIGNAL}",
        description="Relay a cancel command to the replica that runs the job.",
    )
    return broker


def healthcheck_broker() -> NatsBroker:
    """Declare the queries of the container health check, `python -m nadzu_common.healthcheck`."""
    broker = _documentation_broker()
    for domain in BUS_DOMAINS.values():
        subject = f"{domain}.rpc.health"
        broker.publisher(
            subject,
            schema=HealthQuery,
            title=f"healthcheck:{subject}",
            description="Container health check; exits 0 when a replica replies `ok`.",
        )
    return broker
