"""Downloader settings."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from nadzu_common.settings import CommonSettings


class DownloaderSettings(CommonSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/nadzu"
    downloads_dir: Path = Path("./downloads")
    downloader_proxy_url: str | None = None
    downloader_cookies_file: Path | None = None
    downloader_aria2c: bool = Field(default_factory=lambda: shutil.which("aria2c") is not None)
    downloader_concurrency: int = Field(default=4, ge=1, le=64)
    downloader_max_attempts: int = Field(default=5, ge=1, le=50)
    downloader_stall_timeout: float = Field(default=60.0, gt=0)
    downloader_allow_private_urls: bool = False
    downloader_max_filesize: int = Field(default=4 * 1024**3, gt=0)
    downloader_max_duration: float = Field(default=14400.0, gt=0)
    downloader_min_free_bytes: int = Field(default=1024**3, ge=0)
    downloader_dedupe: bool = True
    downloads_ttl: float = Field(default=86400.0, gt=0)
    jobs_retention: float = Field(default=2_592_000.0, gt=0)
    # Prometheus metrics port; unset or 0 serves no metrics endpoint.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Seconds without an ack before NATS hands a command to another replica (a crashed one's job resumes
    # after this long). Every replica of a deploy must use the same value.
    downloader_ack_wait_seconds: float = Field(default=60.0, ge=1)
    # First retry delay after a transient failure, doubled on each later attempt.
    downloader_retry_base_delay: float = Field(default=5.0, ge=0)
    downloader_retry_max_delay: float = Field(default=300.0, ge=0)
    # Seconds between janitor passes that expire old files and delete old job records.
    downloader_janitor_interval: float = Field(default=60.0, gt=0)
    # Seconds a SIGTERM waits for running jobs before handing them back to the queue.
    downloader_shutdown_timeout: float = Field(default=20.0, gt=0)

    @property
    def heartbeat_seconds(self) -> float:
        """Seconds between in-progress acks of a running job: a quarter of the ack wait."""
        return self.downloader_ack_wait_seconds / 4
