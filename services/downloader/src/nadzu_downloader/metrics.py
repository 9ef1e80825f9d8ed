"""Prometheus metrics of the downloader, served on METRICS_PORT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nadzu_common.logging import get_logger
from nadzu_common.messages import JobStatus

log = get_logger(__name__)

JOBS_FINISHED = Counter("nadzu_downloader_jobs_total", "Download attempts by outcome", ["outcome"])
RUNNING_JOBS = Gauge("nadzu_downloader_running_jobs", "Jobs running in this replica")
DOWNLOAD_SECONDS = Histogram(
    "nadzu_downloader_download_seconds",
    "Seconds from the start of an attempt to its completed file",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DOWNLOADED_BYTES = Counter("nadzu_downloader_downloaded_bytes_total", "Bytes of completed files")

# Seconds a scrape waits for the job counts before it leaves them out.
JOB_COUNT_TIMEOUT_SECONDS = 2.0


class JobStatusCollector(Collector):
    """`nadzu_downloader_job_records`: job records in PostgreSQL by status, counted at each scrape.

    The metrics endpoint runs in its own thread, so the count runs on the service's event loop and the
    scrape thread waits for it. Every replica reports the same counts of the shared table.
    """

    def __init__(
        self, count: Callable[[], Coroutine[Any, Any, dict[str, int]]], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._count = count
        self._loop = loop

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing without counting keeps registration, which runs on the event loop, from waiting on it.
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        future = asyncio.run_coroutine_threadsafe(self._count(), self._loop)
        try:
            counts = future.result(JOB_COUNT_TIMEOUT_SECONDS)
        except Exception as error:
            future.cancel()
            log.warning("metrics.job_count_failed", error=repr(error))
            return
        family = self._family()
        for status in JobStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "nadzu_downloader_job_records", "Job records in the database, by status", labels=["status"]
        )
