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
    metrics_port: int | None = None

    # Seconds between in-progress acks of a running job; well under the consumer's ack wait.
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    # First retry delay after a transient failure, doubled on each later attempt.
    retry_base_delay_seconds: float = Field(default=5.0, ge=0)
    retry_max_delay_seconds: float = Field(default=300.0, ge=0)
    # Seconds between janitor passes that expire old files and delete old job records.
    janitor_interval_seconds: float = Field(default=60.0, gt=0)
    # Seconds a SIGTERM waits for running jobs before handing them back to the queue.
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
