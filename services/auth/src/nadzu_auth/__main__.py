"""Entry point of the auth service (`nadzu-auth`)."""

from __future__ import annotations

import asyncio
import signal

from nadzu_common.logging import configure_logging, get_logger
from nadzu_common.metrics import serve_metrics
from nadzu_common.settings import load_settings
from nadzu_common.tracing import configure_tracing, shutdown_tracing

from .errors import StorageUnavailable
from .service import running_service
from .settings import AuthSettings

log = get_logger("nadzu_auth")


async def serve(settings: AuthSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)

    serve_metrics(settings.metrics_port, settings.metrics_host)
    async with running_service(settings):
        await stop.wait()
    log.info("auth.stopped")


def main() -> None:
    settings = load_settings(AuthSettings)
    configure_logging("auth", settings.log_level, settings.log_format)
    configure_tracing("nadzu-auth")
    try:
        asyncio.run(serve(settings))
    except StorageUnavailable as error:
        log.error("auth.start_failed", error=error.message, hint="check DATABASE_URL")
        raise SystemExit(1) from None
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
