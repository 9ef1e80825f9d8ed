"""Captcha-verified sessions over NATS, against a local stand-in for reCAPTCHA siteverify."""

from __future__ import annotations

import socket
import threading

import pytest

from nadzu_common.auth import (
    AuthClient,
    AuthErrorCode,
    CreateSessionCommand,
    CreateSessionReply,
    TokenSigner,
)

from .conftest import RECAPTCHA_SECRET, SESSION_SECRET, StartService, free_port
from .fake_recaptcha import TOKEN_LIFETIME_SECONDS, FakeRecaptcha

FakeProvider = tuple[FakeRecaptcha, str]


def captcha_settings(verify_url: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {"recaptcha_secret": RECAPTCHA_SECRET, "recaptcha_verify_url": verify_url}
    values.update(overrides)
    return values


async def exchange(auth: AuthClient, token: str, remote_ip: str | None = None) -> CreateSessionReply:
    return await auth.create_session(CreateSessionCommand(captcha_token=token, remote_ip=remote_ip))


def assert_invalid(reply: CreateSessionReply, reasons: list[str]) -> None:
    assert reply.access_token is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.INVALID_CAPTCHA
    assert reply.error.http_status == 400
    assert reply.error.reasons == reasons


def assert_unavailable(reply: CreateSessionReply) -> None:
    assert reply.access_token is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.CAPTCHA_UNAVAILABLE
    assert reply.error.http_status == 503
    assert reply.error.retryable


async def test_v3_token_gives_session(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    settings = captcha_settings(
        url,
        session_ttl=600,
        recaptcha_expected_action="login",
        recaptcha_expected_hostnames="app.example.com",
    )
    async with start_service(**settings):
        reply = await exchange(auth, fake.issue_v3(score=0.9), remote_ip="203.0.113.7")

    assert reply.error is None
    assert reply.access_token is not None
    assert reply.token_type == "Bearer"
    assert reply.expires_in == 600
    claims = TokenSigner(SESSION_SECRET).verify_session(reply.access_token)
    assert claims.session_id
    assert fake.requests[-1] == {
        "secret": RECAPTCHA_SECRET,
        "response": fake.requests[-1]["response"],
        "remoteip": "203.0.113.7",
    }


async def test_v2_token_gives_session(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    async with start_service(**captcha_settings(url, recaptcha_expected_action="login")):
        reply = await exchange(auth, fake.issue_v2())

    assert reply.error is None
    assert reply.access_token is not None
    assert "remoteip" not in fake.requests[-1]


async def test_low_score_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    async with start_service(**captcha_settings(url, recaptcha_min_score=0.5)):
        low = await exchange(auth, fake.issue_v3(score=0.3))
        at_threshold = await exchange(auth, fake.issue_v3(score=0.5))

    assert_invalid(low, ["score-too-low"])
    assert at_threshold.error is None


async def test_wrong_action_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    async with start_service(**captcha_settings(url, recaptcha_expected_action="login")):
        reply = await exchange(auth, fake.issue_v3(action="signup"))

    assert_invalid(reply, ["action-mismatch"])


async def test_wrong_hostname_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    hostnames = "app.example.com, www.example.com"
    async with start_service(**captcha_settings(url, recaptcha_expected_hostnames=hostnames)):
        other_v3 = await exchange(auth, fake.issue_v3(hostname="evil.example.net"))
        other_v2 = await exchange(auth, fake.issue_v2(hostname="evil.example.net"))
        listed = await exchange(auth, fake.issue_v2(hostname="WWW.example.com"))

    assert_invalid(other_v3, ["hostname-mismatch"])
    assert_invalid(other_v2, ["hostname-mismatch"])
    assert listed.error is None


async def test_every_failed_check_reported(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    settings = captcha_settings(
        url, recaptcha_expected_action="login", recaptcha_expected_hostnames="a.example"
    )
    async with start_service(**settings):
        reply = await exchange(auth, fake.issue_v3(score=0.1, action="other", hostname="b.example"))

    assert_invalid(reply, ["score-too-low", "action-mismatch", "hostname-mismatch"])


async def test_replayed_token_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    token = fake.issue_v3()
    async with start_service(**captcha_settings(url)):
        first = await exchange(auth, token)
        replay = await exchange(auth, token)

    assert first.error is None
    assert_invalid(replay, ["timeout-or-duplicate"])


async def test_stale_token_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    token = fake.issue_v2()
    fake.clock_offset = TOKEN_LIFETIME_SECONDS + 1
    async with start_service(**captcha_settings(url)):
        reply = await exchange(auth, token)

    assert_invalid(reply, ["timeout-or-duplicate"])


async def test_unknown_and_empty_tokens_rejected(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    async with start_service(**captcha_settings(url)):
        unknown = await exchange(auth, "03A-not-issued-by-the-provider")
        empty = await exchange(auth, "   ")

    assert_invalid(unknown, ["invalid-input-response"])
    assert_invalid(empty, ["missing-input-response"])
    # The empty token is rejected without asking the provider.
    assert [request["response"] for request in fake.requests] == ["03A-not-issued-by-the-provider"]


async def test_rejected_secret_is_unavailable(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    async with start_service(**captcha_settings(url, recaptcha_secret="6Le-wrong-secret")):
        reply = await exchange(auth, fake.issue_v3())

    assert_unavailable(reply)
    assert reply.error is not None
    assert "invalid-input-secret" not in reply.error.message


async def test_provider_unreachable(start_service: StartService, auth: AuthClient) -> None:
    # A port that was free a moment ago: connections are refused.
    url = f"http://127.0.0.1:{free_port()}/recaptcha/api/siteverify"
    async with start_service(**captcha_settings(url)):
        reply = await exchange(auth, "03A-any-token")

    assert_unavailable(reply)


async def test_provider_error_status(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    token = fake.issue_v3()
    fake.failure_status = 502
    async with start_service(**captcha_settings(url)):
        reply = await exchange(auth, token)

    assert_unavailable(reply)


async def test_provider_timeout(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider
) -> None:
    fake, url = fake_recaptcha
    token = fake.issue_v3()
    fake.hold = threading.Event()
    try:
        async with start_service(**captcha_settings(url, recaptcha_timeout_seconds=0.2)):
            reply = await exchange(auth, token)
    finally:
        fake.hold.set()

    assert_unavailable(reply)


async def test_provider_closes_connection(start_service: StartService, auth: AuthClient) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def accept_and_close() -> None:
            connection, _ = listener.accept()
            connection.close()

        closer = threading.Thread(target=accept_and_close, daemon=True)
        closer.start()
        async with start_service(**captcha_settings(f"http://127.0.0.1:{port}/recaptcha/api/siteverify")):
            reply = await exchange(auth, "03A-any-token")
        closer.join(timeout=5)

    assert_unavailable(reply)


async def test_not_configured(start_service: StartService, auth: AuthClient) -> None:
    async with start_service(recaptcha_secret=""):
        reply = await exchange(auth, "03A-any-token")

    assert reply.access_token is None
    assert reply.error is not None
    assert reply.error.code == AuthErrorCode.CAPTCHA_NOT_CONFIGURED
    assert reply.error.http_status == 501
    assert not reply.error.retryable


@pytest.mark.parametrize("score", ["high", True, [0.9]])
async def test_non_numeric_score_unavailable(
    start_service: StartService, auth: AuthClient, fake_recaptcha: FakeProvider, score: object
) -> None:
    fake, url = fake_recaptcha
    token = fake.issue_v3()
    fake.tokens[token].score = score  # type: ignore[assignment]
    async with start_service(**captcha_settings(url)):
        reply = await exchange(auth, token)

    assert_unavailable(reply)
