"""Auth service settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from nadzu_common.auth import (
    MAX_API_KEY_LENGTH,
    MIN_API_KEY_LENGTH,
    MIN_SECRET_BYTES,
    looks_like_session_token,
)
from nadzu_common.settings import CommonSettings

GOOGLE_SITEVERIFY_URL = "https://www.google.com/recaptcha/api/siteverify"


class AuthSettings(CommonSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/nadzu"
    session_secret: SecretStr
    session_ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="seconds")
    admin_api_key: SecretStr | None = None

    recaptcha_secret: SecretStr | None = None
    recaptcha_verify_url: str = GOOGLE_SITEVERIFY_URL
    recaptcha_min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    recaptcha_expected_action: str | None = None
    recaptcha_expected_hostnames: str | None = None
    # Kept below the gateway's timeout for auth RPCs, so a slow provider ends as a 503, not a gateway timeout.
    recaptcha_timeout_seconds: float = Field(default=3.0, gt=0, le=30)

    # Prometheus metrics port; unset or 0 serves no metrics endpoint.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Seconds between batched writes of keys' last-used times.
    auth_last_used_flush_seconds: float = Field(default=30.0, gt=0)
    auth_db_pool_size: int = Field(default=10, ge=1, le=100)
    # Seconds a shutdown waits for requests in flight.
    auth_shutdown_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator(
        "admin_api_key",
        "recaptcha_secret",
        "recaptcha_expected_action",
        "recaptcha_expected_hostnames",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("session_secret")
    @classmethod
    def _check_session_secret(cls, value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value().encode())
        if length < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes long (got {length})")
        return value

    @field_validator("admin_api_key")
    @classmethod
    def _check_admin_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None

        key = value.get_secret_value()
        if not MIN_API_KEY_LENGTH <= len(key) <= MAX_API_KEY_LENGTH:
            raise ValueError(
                f"must be {MIN_API_KEY_LENGTH} to {MAX_API_KEY_LENGTH} characters long (got {len(key)})"
            )
        if not key.isascii() or not key.isprintable() or " " in key:
            raise ValueError("must be printable ASCII without spaces")
        if looks_like_session_token(key):
            raise ValueError("must not start with the session token prefix 'nzs1.'")
        return value

    @property
    def expected_hostnames(self) -> frozenset[str]:
        if not self.recaptcha_expected_hostnames:
            return frozenset()
        names = self.recaptcha_expected_hostnames.split(",")
        return frozenset(name.strip().lower() for name in names if name.strip())
