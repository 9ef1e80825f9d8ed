"""Prometheus metrics endpoints for the services that have no HTTP server of their own.

The downloader, contributions and auth services serve the default registry of `prometheus_client` on
`METRICS_PORT` from a background thread. The gateway serves `/metrics` itself (see nadzu_gateway.metrics).
"""

from __future__ import annotations

from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import REGISTRY, disable_created_metrics, start_http_server

from .logging import get_logger

log = get_logger(__name__)

# prometheus_client serves a `<name>_created` series with the creation time beside every counter and
# histogram, which doubles their series and yields names such as `nadzu_auth_keys_created_created`.
# The setting is process-wide and applies to FastStream's metrics too.
disable_created_metrics()


def serve_metrics(port: int | None, host: str) -> None:
    """Start the metrics endpoint on `host:port` in a background thread, unless `port` is 0 or None."""
    if not port:
        log.info("metrics.disabled", reason="METRICS_PORT is unset or 0")
        return
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        # An unknown host or a port in use: one line, like any other invalid setting.
        raise SystemExit(
            f"invalid configuration: METRICS_HOST, METRICS_PORT: cannot listen on {host}:{port}: {error}"
        ) from None
    log.info("metrics.serving", host=host, port=port)


def faststream_metrics(service: str) -> NatsPrometheusMiddleware:
    """FastStream's per-subject consume and publish metrics (`faststream_*`), labelled `app_name=service`."""
    return NatsPrometheusMiddleware(registry=REGISTRY, app_name=service)
