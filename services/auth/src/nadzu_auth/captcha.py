"""reCAPTCHA siteverify client (v2 and v3).

The provider returns HTTP 200 with `success` and, on failure, `error-codes`. Codes about the request
(`missing-input-response`, `invalid-input-response`, `timeout-or-duplicate`, `bad-request`) are the
client's problem and are passed back. Codes about our secret (`missing-input-secret`,
`invalid-input-secret`) mean this service is misconfigured, so they become a 503 and an error log
line instead of blaming the client. A v3 answer carries `score` and `action`, checked against the
configured minimum score and expected action; the hostname is checked for both versions when
expected hostnames are configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from nadzu_common.logging import get_logger

from .errors import CaptchaNotConfigured, CaptchaUnavailable, InvalidCaptcha
from .metrics import CAPTCHA_VERIFICATIONS
from .settings import AuthSettings

log = get_logger(__name__)

# Our own reasons, next to the provider's codes, for tokens the provider accepted but our checks did not.
SCORE_TOO_LOW = "score-too-low"
ACTION_MISMATCH = "action-mismatch"
HOSTNAME_MISMATCH = "hostname-mismatch"

_SECRET_ERROR_CODES = frozenset({"missing-input-secret", "invalid-input-secret"})


@dataclass(frozen=True)
class CaptchaConfig:
    secret: str | None
    verify_url: str
    min_score: float
    expected_action: str | None
    expected_hostnames: frozenset[str]
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> CaptchaConfig:
        return cls(
            secret=settings.recaptcha_secret.get_secret_value() if settings.recaptcha_secret else None,
            verify_url=settings.recaptcha_verify_url,
            min_score=settings.recaptcha_min_score,
            expected_action=settings.recaptcha_expected_action,
            expected_hostnames=settings.expected_hostnames,
            timeout_seconds=settings.recaptcha_timeout_seconds,
        )


@dataclass(frozen=True)
class CaptchaVerdict:
    """A token that passed every check. `score` and `action` are set for v3 tokens only."""

    hostname: str | None
    score: float | None
    action: str | None


class CaptchaVerifier:
    def __init__(self, config: CaptchaConfig, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._client = client or httpx.AsyncClient(timeout=config.timeout_seconds, follow_redirects=False)

    @property
    def configured(self) -> bool:
        return self._config.secret is not None

    async def close(self) -> None:
        await self._client.aclose()

    async def verify(self, token: str, remote_ip: str | None = None) -> CaptchaVerdict:
        """Verify a token with the provider and our checks; return the verdict of a token that passes.

        Raise `InvalidCaptcha`, `CaptchaUnavailable` or `CaptchaNotConfigured` otherwise.
        """
        try:
            verdict = await self._verify(token, remote_ip)
        except InvalidCaptcha:
            CAPTCHA_VERIFICATIONS.labels(outcome="rejected").inc()
            raise
        except CaptchaUnavailable:
            CAPTCHA_VERIFICATIONS.labels(outcome="unavailable").inc()
            raise
        except CaptchaNotConfigured:
            CAPTCHA_VERIFICATIONS.labels(outcome="not-configured").inc()
            raise
        CAPTCHA_VERIFICATIONS.labels(outcome="passed").inc()
        return verdict

    async def _verify(self, token: str, remote_ip: str | None) -> CaptchaVerdict:
        if self._config.secret is None:
            raise CaptchaNotConfigured("captcha verification is not configured (RECAPTCHA_SECRET is unset)")

        token = token.strip()
        if not token:
            raise InvalidCaptcha("the captcha token is empty", reasons=["missing-input-response"])

        answer = await self._siteverify(self._config.secret, token, remote_ip)
        return self._judge(answer)

    async def _siteverify(self, secret: str, token: str, remote_ip: str | None) -> dict[str, Any]:
        form = {"secret": secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip

        try:
            response = await self._client.post(self._config.verify_url, data=form)
        except httpx.HTTPError as error:
            log.warning("captcha.provider_unreachable", error=type(error).__name__)
            raise CaptchaUnavailable("the captcha provider could not be reached") from error

        if response.status_code != 200:
            log.warning("captcha.provider_error", status=response.status_code)
            raise CaptchaUnavailable(f"the captcha provider returned HTTP {response.status_code}")

        try:
            answer = response.json()
        except ValueError as error:
            log.warning("captcha.provider_bad_answer", content_type=response.headers.get("content-type"))
            raise CaptchaUnavailable("the captcha provider returned a body that is not JSON") from error

        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            keys = sorted(answer) if isinstance(answer, dict) else None
            log.warning("captcha.provider_bad_answer", keys=keys)
            raise CaptchaUnavailable("the captcha provider returned JSON without a boolean 'success' field")
        return answer

    def _judge(self, answer: dict[str, Any]) -> CaptchaVerdict:
        raw_codes = answer.get("error-codes") or []
        codes = [str(code) for code in raw_codes] if isinstance(raw_codes, list) else []

        if not answer["success"]:
            if _SECRET_ERROR_CODES.intersection(codes):
                log.error("captcha.secret_rejected", codes=codes, hint="check RECAPTCHA_SECRET")
                raise CaptchaUnavailable("captcha verification is misconfigured on the server")
            log.info("captcha.rejected", reasons=codes)
            reasons = codes or ["invalid-input-response"]
            raise InvalidCaptcha("the captcha token was rejected", reasons=reasons)

        hostname = answer.get("hostname") if isinstance(answer.get("hostname"), str) else None
        action = answer.get("action") if isinstance(answer.get("action"), str) else None
        raw_score = answer.get("score")
        score: float | None = None
        if "score" in answer:
            if not isinstance(raw_score, int | float) or isinstance(raw_score, bool):
                log.warning("captcha.provider_bad_answer", score_type=type(raw_score).__name__)
                raise CaptchaUnavailable("the captcha provider returned a score that is not a number")
            score = float(raw_score)

        failed_checks: list[str] = []
        if score is not None and score < self._config.min_score:
            failed_checks.append(SCORE_TOO_LOW)
        expected_action = self._config.expected_action
        if score is not None and expected_action is not None and action != expected_action:
            failed_checks.append(ACTION_MISMATCH)
        expected_hostnames = self._config.expected_hostnames
        if expected_hostnames and (hostname is None or hostname.lower() not in expected_hostnames):
            failed_checks.append(HOSTNAME_MISMATCH)

        if failed_checks:
            log.info("captcha.rejected", reasons=failed_checks, score=score, action=action, hostname=hostname)
            raise InvalidCaptcha("the captcha token did not pass verification", reasons=failed_checks)
        return CaptchaVerdict(hostname=hostname, score=score, action=action)
