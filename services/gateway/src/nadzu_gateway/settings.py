"""Gateway settings."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from nadzu_common.auth import DEFAULT_TIER, MIN_SECRET_BYTES, TIER_NAME_PATTERN
from nadzu_common.settings import CommonSettings

_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)\s*$")
_TIER_NAME = re.compile(TIER_NAME_PATTERN)
_WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# An origin is a scheme, a host and an optional port, without a path or a trailing slash.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


class Rate(BaseModel):
    """A budget of `quota` requests per `window_seconds`, parsed from `N/second|minute|hour|day`."""

    quota: int = Field(ge=1)
    window_seconds: int = Field(ge=1)

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a rate such as 60/minute (units: second, minute, hour, day)")
        return cls(quota=int(match.group(1)), window_seconds=_WINDOW_SECONDS[match.group(2)])

    def __str__(self) -> str:
        return f"{self.quota} per {self.window_seconds} s"


class TierRates(BaseModel):
    """Limits of one API key tier; a field left out falls back to RATE_LIMIT_KEY or RATE_LIMIT_ENQUEUE_KEY."""

    requests: Rate | None = None
    enqueue: Rate | None = None

    @field_validator("requests", "enqueue", mode="before")
    @classmethod
    def _parse_rate(cls, value: object) -> object:
        return Rate.parse(value) if isinstance(value, str) else value


# Rates are plain text such as `60/minute`, not JSON, so pydantic-settings must not decode them.
RateSetting = Annotated[Rate, NoDecode]


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class GatewaySettings(CommonSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str | None = None
    max_request_body_bytes: int = Field(default=65536, ge=1024)
    downloads_dir: Path = Path("./downloads")
    downloader_allow_private_urls: bool = False

    # Key that verifies session tokens and signs job links; the same value as the auth service's.
    # `nadzu-gateway` refuses to start without it (see __main__).
    session_secret: SecretStr | None = None
    # Bearer token that Prometheus sends to read `GET /metrics`; unset, the gateway serves no metrics.
    metrics_token: SecretStr | None = None
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=lambda: [ipaddress.ip_network("127.0.0.1/32")]
    )

    rate_limit_anonymous: RateSetting = Rate(quota=60, window_seconds=60)
    rate_limit_session: RateSetting = Rate(quota=120, window_seconds=60)
    rate_limit_key: RateSetting = Rate(quota=600, window_seconds=60)
    rate_limit_enqueue_session: RateSetting = Rate(quota=10, window_seconds=3600)
    rate_limit_enqueue_key: RateSetting = Rate(quota=100, window_seconds=3600)
    rate_limit_auth_failures: RateSetting = Rate(quota=10, window_seconds=60)
    rate_limit_sessions_issued: RateSetting = Rate(quota=10, window_seconds=60)
    # Per-tier overrides for API keys, as JSON:
    # {"partner": {"requests": "6000/minute", "enqueue": "1000/hour"}}.
    rate_limit_tiers: dict[str, TierRates] = Field(default_factory=dict)
    # Prefix of the limiter's Redis keys; replicas that share limits must share it.
    rate_limit_key_prefix: str = "nadzu:rl:"
    # Seconds the limiter waits for Redis before it falls back to this replica's own counters.
    rate_limit_redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)

    max_active_jobs_per_caller: int = Field(default=10, ge=1)
    max_streams_per_caller: int = Field(default=20, ge=1)

    # Seconds a verified API key stays in this replica's cache. Revocations evict it at once via the
    # auth event stream; this bounds how long a missed event could leave a key usable.
    auth_key_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Seconds to wait for the auth service's key checks and key management replies.
    auth_rpc_timeout_seconds: float = Field(default=2.0, gt=0)
    # Seconds to wait for a session: longer than the auth service's reCAPTCHA timeout (3 s by default).
    auth_session_timeout_seconds: float = Field(default=5.0, gt=0)
    # Seconds a signed `events_url` or `file_url` stays valid after the job was read.
    job_link_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 86400)

    # Seconds between SSE comment heartbeats.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Seconds to wait for a backend service's reply before answering 503.
    rpc_timeout_seconds: float = Field(default=2.0, gt=0)
    # Seconds a gateway shutdown waits for open requests and streams.
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator(
        "rate_limit_anonymous",
        "rate_limit_session",
        "rate_limit_key",
        "rate_limit_enqueue_session",
        "rate_limit_enqueue_key",
        "rate_limit_auth_failures",
        "rate_limit_sessions_issued",
        mode="before",
    )
    @classmethod
    def _parse_rate(cls, value: object) -> object:
        return Rate.parse(value) if isinstance(value, str) else value

    @property
    def key_tiers(self) -> list[str]:
        """Return the tiers an API key may have: `default` and every tier in RATE_LIMIT_TIERS."""
        return [DEFAULT_TIER, *sorted(set(self.rate_limit_tiers) - {DEFAULT_TIER})]

    @field_validator("rate_limit_tiers")
    @classmethod
    def _check_tier_names(cls, tiers: dict[str, TierRates]) -> dict[str, TierRates]:
        invalid = [name for name in tiers if not _TIER_NAME.fullmatch(name)]
        if invalid:
            raise ValueError(
                f"tier names {invalid} are invalid. A tier name is 1 to 32 lowercase letters, digits, "
                "`-` or `_`, starting with a letter or digit"
            )
        return tiers

    @field_validator("session_secret", "metrics_token", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes long (got {len(token.encode())})")
        if not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("must be printable ASCII without spaces, as it is sent in a header")
        return value

    @field_validator("session_secret")
    @classmethod
    def _check_session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes long")
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cors_allow_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*":
                continue
            if origin.lower() == "null" or not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an exact origin such as https://app.example.com "
                    "(scheme and host, optional port, no path; `null` is never allowed)"
                )
        if "*" in origins and len(origins) > 1:
            raise ValueError("`*` must be the only entry when it is used")
        return [origin.lower() for origin in origins]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        # An empty variable counts as unset, so `none` is the way to trust no peer at all.
        if isinstance(value, str) and value.strip().lower() == "none":
            return []
        items = _split_list(value)
        if isinstance(items, list):
            return [
                ipaddress.ip_network(item, strict=False) if isinstance(item, str) else item for item in items
            ]
        return items

    @model_validator(mode="after")
    def _default_public_base_url(self) -> GatewaySettings:
        if not self.public_base_url:
            self.public_base_url = f"http://{self.gateway_host}:{self.gateway_port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        return self
