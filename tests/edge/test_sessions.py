"""Captcha sessions through the gateway: issue, use, and each way a captcha check fails."""

from __future__ import annotations

import httpx

from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer

from .conftest import fresh_address

Recaptcha = tuple[FakeRecaptcha, FakeRecaptchaServer]


def _post(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/api/v1/auth/session", json={"captcha_token": token}, headers={"X-Forwarded-For": fresh_address()}
    )


def test_session_is_issued_and_usable(http: httpx.Client, recaptcha: Recaptcha) -> None:
    fake, _ = recaptcha
    response = _post(http, fake.issue_v3(score=0.9))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert response.headers["cache-control"] == "no-store"

    me = http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["kind"] == "session"
    assert me.json()["tier"] == "session"
    assert me.json()["scopes"] == ["downloads"]
    assert "key_id" not in me.json()
    assert me.headers["ratelimit-policy"] == '"session";q=100;w=60'

    # The address reaches the provider as `remoteip`.
    assert fake.requests[-1]["remoteip"].startswith("10.")


def test_failed_checks_are_400_with_reasons(http: httpx.Client, recaptcha: Recaptcha) -> None:
    fake, _ = recaptcha
    cases = {
        "score-too-low": fake.issue_v3(score=0.1),
        "action-mismatch": fake.issue_v3(action="signup"),
        "hostname-mismatch": fake.issue_v3(hostname="evil.example"),
        "invalid-input-response": "never-issued-token",
    }
    for reason, token in cases.items():
        response = _post(http, token)
        assert response.status_code == 400, reason
        body = response.json()
        assert body["type"] == "urn:nadzu:problem:invalid-captcha"
        assert reason in [error["code"] for error in body["errors"]], body


def test_replayed_token_is_rejected(http: httpx.Client, recaptcha: Recaptcha) -> None:
    fake, _ = recaptcha
    token = fake.issue_v3()
    assert _post(http, token).status_code == 200
    replay = _post(http, token)
    assert replay.status_code == 400
    assert [error["code"] for error in replay.json()["errors"]] == ["timeout-or-duplicate"]


def test_provider_down_is_503(http: httpx.Client, recaptcha: Recaptcha) -> None:
    fake, _ = recaptcha
    fake.failure_status = 502
    try:
        response = _post(http, fake.issue_v3())
    finally:
        fake.failure_status = None
    assert response.status_code == 503
    assert response.json()["type"] == "urn:nadzu:problem:captcha-unavailable"
    assert response.headers["retry-after"] == "5"


def test_session_body_is_validated(http: httpx.Client) -> None:
    assert _post(http, "").status_code == 422
    missing = http.post("/api/v1/auth/session", json={}, headers={"X-Forwarded-For": fresh_address()})
    assert missing.status_code == 422
