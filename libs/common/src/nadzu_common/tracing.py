"""OpenTelemetry setup, configured only by the standard `OTEL_*` variables.

With no exporter endpoint or exporter set, no SDK provider is installed and the API's no-op tracer costs
nothing on the hot paths.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from opentelemetry import propagate, trace


def tracing_enabled() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter and exporter != "none":
        return True
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service_name: str) -> None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, when the environment asks for one."""
    if not tracing_enabled():
        return

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Write W3C `traceparent`/`tracestate` for the current span into message headers."""
    propagate.inject(headers)


def extract_trace_context(headers: MutableMapping[str, str] | None) -> object:
    return propagate.extract(headers or {})
