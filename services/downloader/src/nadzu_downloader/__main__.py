"""Entry point: `nadzu-downloader` runs the download worker service."""

from __future__ import annotations

import asyncio

from nadzu_common.logging import configure_logging
from nadzu_common.metrics import serve_metrics
from nadzu_common.settings import load_settings
from nadzu_common.tracing import configure_tracing, shutdown_tracing

from .app import create_app
from .settings import DownloaderSettings


def main() -> None:
    settings = load_settings(DownloaderSettings)
    configure_logging("downloader", settings.log_level, settings.log_format)
    configure_tracing("nadzu-downloader")
    # Before the app starts, so a port that cannot be opened stops the service with one line.
    serve_metrics(settings.metrics_port, settings.metrics_host)
    try:
        asyncio.run(create_app(settings).run())
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
