"""Auth service metrics on METRICS_PORT: key verifications, captcha outcomes, keys created and revoked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import nats
import pytest

from nadzu_common.auth import (
    AuthClient,
    CreateKeyCommand,
    CreateSessionCommand,
    RevokeKeyCommand,
    hash_api_key,
)
from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer
from tests.support.stack import Service, Stack

from .conftest import Samples, scrape_service

RECAPTCHA_SECRET = "6Le-metrics-test-secret"
VERIFICATIONS = "nadzu_auth_key_verifications_total"
CAPTCHAS = "nadzu_auth_captcha_verifications_total"


@pytest.fixture(scope="module")
def recaptcha() -> Iterator[tuple[FakeRecaptcha, FakeRecaptchaServer]]:
    fake = FakeRecaptcha(secret=RECAPTCHA_SECRET)
    with FakeRecaptchaServer(fake) as server:
        yield fake, server


@pytest.fixture(scope="module")
def auth_stack(recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer]) -> Iterator[tuple[Stack, Service]]:
    _, server = recaptcha
    stack = Stack.create(RECAPTCHA_SECRET=RECAPTCHA_SECRET, RECAPTCHA_VERIFY_URL=server.verify_url)
    auth = stack.start_auth()
    yield stack, auth
    stack.close()


def _grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_key_verifications_by_result(auth_stack: tuple[Stack, Service]) -> None:
    stack, auth = auth_stack
    before = scrape_service(auth)

    async def run() -> None:
        nc = await nats.connect(stack.nats.url)
        client = AuthClient(nc, 10)
        admin = hash_api_key(stack.admin_key)
        try:
            created = await client.create_key(
                CreateKeyCommand(actor_key_hash=admin, name="metrics", scopes=["downloads"])
            )
            assert created.key is not None and created.info is not None
            assert (await client.verify_key(created.key)).error is None
            assert (await client.verify_key("nadzu_" + uuid.uuid4().hex)).error is not None

            revoke = RevokeKeyCommand(actor_key_hash=admin, key_id=created.info.id)
            assert (await client.revoke_key(revoke)).error is None
            # Revoking again succeeds but is not a second revocation.
            assert (await client.revoke_key(revoke)).error is None
            assert (await client.verify_key(created.key)).error is not None
        finally:
            await nc.close()

    asyncio.run(run())
    after = scrape_service(auth)

    assert _grew(before, after, VERIFICATIONS, result="valid") == 1
    assert _grew(before, after, VERIFICATIONS, result="invalid-key") == 1
    assert _grew(before, after, VERIFICATIONS, result="key-revoked") == 1
    assert _grew(before, after, "nadzu_auth_keys_created_total") == 1
    assert _grew(before, after, "nadzu_auth_keys_revoked_total") == 1
    # Without prometheus_client's default, this scrape would also have `nadzu_auth_keys_created_created`.
    assert after.created_series() == []
    # FastStream's per-subject figures count every request the service handled.
    received = "faststream_received_messages_total"
    assert _grew(before, after, received, app_name="auth", broker="nats", handler="auth.rpc.verify-key") == 3


def test_captcha_verifications_by_outcome(
    auth_stack: tuple[Stack, Service], recaptcha: tuple[FakeRecaptcha, FakeRecaptchaServer]
) -> None:
    stack, auth = auth_stack
    fake, _ = recaptcha
    before = scrape_service(auth)

    async def run() -> None:
        nc = await nats.connect(stack.nats.url)
        client = AuthClient(nc, 10)
        try:
            passed = await client.create_session(CreateSessionCommand(captcha_token=fake.issue_v3()))
            assert passed.error is None
            rejected = await client.create_session(CreateSessionCommand(captcha_token="not-a-token"))
            assert rejected.error is not None
            fake.failure_status = 502
            try:
                unavailable = await client.create_session(CreateSessionCommand(captcha_token=fake.issue_v3()))
            finally:
                fake.failure_status = None
            assert unavailable.error is not None
        finally:
            await nc.close()

    asyncio.run(run())
    after = scrape_service(auth)

    for outcome in ("passed", "rejected", "unavailable"):
        assert _grew(before, after, CAPTCHAS, outcome=outcome) == 1, outcome
