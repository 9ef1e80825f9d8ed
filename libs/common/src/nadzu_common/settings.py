"""Settings shared by every service, read from the environment (and an optional `.env`)."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class CommonSettings(BaseSettings):
    """Variables every service reads. Each service subclasses this with its own fields."""

    # An empty variable means unset: compose files pass "" for optional settings they do not fill in.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] | None = None
    # Where the downloader, contributions and auth serve METRICS_PORT. Every interface by default, so a
    # scraper on another host or pod reaches it; `make run` keeps it on loopback.
    metrics_host: str = "0.0.0.0"  # noqa: S104

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def nats_servers(self) -> list[str]:
        return [server.strip() for server in self.nats_url.split(",") if server.strip()]


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Build a settings object, or exit with one line per invalid variable."""
    from pydantic import ValidationError

    try:
        return settings_class()
    except ValidationError as error:
        lines = []
        for item in error.errors():
            variable = "_".join(str(part) for part in item["loc"]).upper()
            lines.append(f"invalid configuration: {variable}: {item['msg']}")
        raise SystemExit("\n".join(lines)) from None
