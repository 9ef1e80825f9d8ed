"""Entry point: `nadzu-gateway` runs the API under uvicorn."""

from __future__ import annotations

import uvicorn

from nadzu_common.logging import configure_logging
from nadzu_common.settings import load_settings
from nadzu_common.tracing import configure_tracing, shutdown_tracing

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    if settings.session_secret is None:
        raise SystemExit(
            "invalid configuration: SESSION_SECRET: missing; set the same value as the auth service's"
        )
    configure_logging("gateway", settings.log_level, settings.log_format)
    configure_tracing("nadzu-gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
    )
    shutdown_tracing()


if __name__ == "__main__":
    main()
