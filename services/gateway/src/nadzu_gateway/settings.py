"""Gateway settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from nadzu_common.settings import CommonSettings


class GatewaySettings(CommonSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str | None = None
    max_request_body_bytes: int = Field(default=65536, ge=1024)
    downloads_dir: Path = Path("./downloads")
    downloader_allow_private_urls: bool = False

    # Seconds between SSE comment heartbeats.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Seconds to wait for a backend service's reply before answering 503.
    rpc_timeout_seconds: float = Field(default=2.0, gt=0)
    # Seconds a gateway shutdown waits for open requests and streams.
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _default_public_base_url(self) -> GatewaySettings:
        if not self.public_base_url:
            self.public_base_url = f"http://{self.gateway_host}:{self.gateway_port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        return self
