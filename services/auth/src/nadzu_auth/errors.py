"""The auth service's errors. Each one states whether retrying can help and maps to one reply error code.

Library errors (asyncpg, httpx) are translated into these at the module that calls the library; the
handlers turn them into `AuthError` replies in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from nadzu_common.auth import AuthError, AuthErrorCode


class AuthServiceError(Exception):
    """Base of every error the auth service replies with."""

    code: AuthErrorCode = AuthErrorCode.INTERNAL_ERROR
    retryable = False

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = list(reasons)

    def to_reply(self) -> AuthError:
        return AuthError(code=self.code, message=self.message, retryable=self.retryable, reasons=self.reasons)


class PermanentError(AuthServiceError):
    """The same request fails again until the caller changes it."""


class RetryableError(AuthServiceError):
    """A dependency failed; the same request may succeed later."""

    retryable = True


class InvalidKey(PermanentError):
    """No key has the presented hash."""

    code = AuthErrorCode.INVALID_KEY


class KeyExpired(PermanentError):
    """The key's expiry time has passed."""

    code = AuthErrorCode.KEY_EXPIRED


class KeyRevoked(PermanentError):
    """The key was revoked."""

    code = AuthErrorCode.KEY_REVOKED


class Forbidden(PermanentError):
    """The acting key lacks the scope the request needs."""

    code = AuthErrorCode.FORBIDDEN


class KeyNotFound(PermanentError):
    """No key has the requested id."""

    code = AuthErrorCode.KEY_NOT_FOUND


class InvalidRequest(PermanentError):
    """The request body does not match its message model."""

    code = AuthErrorCode.INVALID_REQUEST


class InvalidCaptcha(PermanentError):
    """The captcha provider, or our score, action or hostname checks, rejected the token."""

    code = AuthErrorCode.INVALID_CAPTCHA


class CaptchaNotConfigured(PermanentError):
    """RECAPTCHA_SECRET is unset, so sessions cannot be issued."""

    code = AuthErrorCode.CAPTCHA_NOT_CONFIGURED


class CaptchaUnavailable(RetryableError):
    """The captcha provider could not be reached or returned no usable response."""

    code = AuthErrorCode.CAPTCHA_UNAVAILABLE


class StorageUnavailable(RetryableError):
    """PostgreSQL could not be reached or timed out."""

    code = AuthErrorCode.UNAVAILABLE
