"""Prometheus metrics of the downloader, served on METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

JOBS_FINISHED = Counter("nadzu_downloader_jobs_total", "Download attempts by outcome", ["outcome"])
RUNNING_JOBS = Gauge("nadzu_downloader_running_jobs", "Jobs running in this replica")
DOWNLOAD_SECONDS = Histogram(
    "nadzu_downloader_download_seconds",
    "Seconds from the start of an attempt to its completed file",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DOWNLOADED_BYTES = Counter("nadzu_downloader_downloaded_bytes_total", "Bytes of completed files")


def serve_metrics(port: int | None) -> None:
    """Start the metrics endpoint in a background thread; no port means no endpoint."""
    if port:
        start_http_server(port, addr="0.0.0.0")  # noqa: S104  scraped from other hosts in deploys
