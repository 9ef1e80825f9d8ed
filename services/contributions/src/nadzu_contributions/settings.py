"""Contributions service settings, read from the environment (and an optional `.env`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from nadzu_common.settings import CommonSettings


class ContributionsSettings(CommonSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Unset: every query fails with a 503 `github-token-missing` problem.
    github_token: SecretStr | None = None
    github_graphql_url: str = "https://api.github.com/graphql"
    github_default_user: str | None = None
    # Seconds a cached calendar counts as fresh.
    contributions_cache_ttl: int = Field(default=3600, ge=0)
    # Seconds a calendar is kept after it turned stale, served while a refresh runs or GitHub fails.
    contributions_stale_ttl: int = Field(default=7 * 24 * 3600, ge=0)
    # Prefix of every Redis key the service writes, so several deployments or test runs share one Redis.
    contributions_key_prefix: str = "nadzu:contributions:"
    # Queries handled at once by one replica.
    contributions_max_concurrency: int = Field(default=64, ge=1)
    # Prometheus metrics port; unset or 0 serves no metrics endpoint.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Seconds to wait for one GitHub response.
    github_timeout_seconds: float = Field(default=10.0, gt=0)
    # Attempts per yearly window on timeouts and 5xx responses, the first one included.
    github_max_attempts: int = Field(default=3, ge=1, le=10)
    # Base of the exponential backoff between attempts, seconds.
    github_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    # Yearly windows fetched from GitHub at once for one query.
    github_max_parallel_windows: int = Field(default=5, ge=1, le=20)

    @field_validator("github_token", "github_default_user", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value
