"""Captcha-verified sessions: a verified reCAPTCHA token is exchanged for a signed session token."""

from __future__ import annotations

from nadzu_common.auth import CreateSessionCommand, IssuedSession, TokenSigner
from nadzu_common.logging import get_logger

from .captcha import CaptchaVerifier

log = get_logger(__name__)


class SessionService:
    def __init__(self, verifier: CaptchaVerifier, signer: TokenSigner, ttl_seconds: int) -> None:
        self._verifier = verifier
        self._signer = signer
        self._ttl = ttl_seconds

    async def create(self, command: CreateSessionCommand) -> IssuedSession:
        """Verify the captcha token, then issue a session; raise the captcha errors unchanged."""
        verdict = await self._verifier.verify(command.captcha_token, command.remote_ip)
        session = self._signer.issue_session(self._ttl)
        log.info(
            "session.created",
            session_id=session.session_id,
            expires_at=session.expires_at,
            captcha_score=verdict.score,
            captcha_hostname=verdict.hostname,
            request_id=command.request_id,
        )
        return session
