"""OpenTelemetry setup and the spans the services share, configured only by the standard `OTEL_*` variables.

With no exporter endpoint or exporter set, no SDK provider is installed, no library is instrumented and the
span helpers below hand out a shared no-op context without calling OpenTelemetry at all, so the hot paths
pay one boolean test.

Messages carry W3C trace context in their headers (`traceparent`, `tracestate`). Every publish goes through
`message_headers` in `nadzu_common.bus`, which injects the current span, so a command published with raw
nats-py is linked like one published by FastStream. Consumers start their span from those headers, which
makes the consume span a child of the publish span in another process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

# The instrumentation scope of every span the services make themselves.
TRACER_NAME = "nadzu"
# The span attribute holding a download job's id, to search a dashboard for one job.
JOB_ID = "nadzu.job.id"

_enabled = False
# Fetched once: `get_tracer` builds a new tracer and scope object on every call.
_tracer: trace.Tracer = trace.NoOpTracer()
_NO_SPAN = contextlib.nullcontext(None)

# A job's event subject ends in its id. Span names use the template, so a dashboard groups them.
_JOB_SUBJECT = re.compile(r"\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def tracing_enabled() -> bool:
    """Return whether the environment requests traces: an exporter or an OTLP endpoint, SDK not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter:
        return True
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def is_active() -> bool:
    """Return whether `configure_tracing` installed a provider in this process."""
    return _enabled


def configure_tracing(service_name: str) -> bool:
    """Install a tracer provider and instrument asyncpg, redis and httpx when the environment requests it.

    The sampler comes from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (read by the SDK), the
    exporter from `OTEL_TRACES_EXPORTER` (`otlp`, the default, or `console`), the protocol from
    `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
    `grpc`), and the service name from `OTEL_SERVICE_NAME` or else `service_name`. Returns whether tracing
    is on.
    """
    global _enabled, _tracer
    if _enabled or not tracing_enabled():
        return _enabled

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but attributes passed to it win,
    # so the service's own name is passed only when the operator named it nowhere.
    resource_attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in resource_attributes
    resource = Resource.create({} if named else {SERVICE_NAME: service_name})
    try:
        _check_numbers()
        exporter = _span_exporter()
    except ValueError as error:
        # The same one-line form as every other invalid setting, not a traceback.
        raise SystemExit(f"invalid configuration: {error}") from None
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # With the collector down, the exporters warn on every retry of every batch, so only the error that
    # ends each failed batch is logged.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.ERROR)
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer(TRACER_NAME)
    _instrument_libraries()
    _enabled = True
    return True


# Numeric variables the SDK reads. It warns about some bad values and then fails on them with a bare
# "invalid literal for int()" traceback, so they are checked here first.
_NUMBER_VARIABLES = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
)


def _check_numbers() -> None:
    for variable in _NUMBER_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value and not (value.isdigit() and int(value) > 0):
            raise ValueError(f"{variable}: {value!r} is not a positive whole number")


def _span_exporter() -> Any:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if exporter != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: {exporter!r} is not supported; use otlp, console or none")

    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            endpoint = os.environ.get(variable, "").strip()
            if endpoint and not endpoint.startswith(("http://", "https://")):
                raise ValueError(f"{variable}: {endpoint!r} is not an http:// or https:// URL")

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use http/protobuf or grpc")


def _instrument_libraries() -> None:
    """Instrument the database, Redis and outgoing HTTP clients, whichever of them the service uses."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().instrument()
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def shutdown_tracing() -> None:
    """Export the spans still buffered. Services call it when they stop."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _enabled and shutdown is not None:
        shutdown()


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Write W3C `traceparent`/`tracestate` for the current span into message headers."""
    if _enabled:
        propagate.inject(headers)


def extract_trace_context(headers: Mapping[str, str] | None) -> Any:
    return propagate.extract(dict(headers or {}))


def current_traceresponse() -> str | None:
    """Return the current span as a `traceresponse` header value, or None without a span."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def subject_template(subject: str) -> str:
    """`downloads.evt.<uuid>` → `downloads.evt.{job_id}`, so span names stay few."""
    return _JOB_SUBJECT.sub(".{job_id}", subject)


def _span(
    name: str, kind: SpanKind, attributes: Mapping[str, Any], context: Any = None
) -> contextlib.AbstractContextManager[Span | None]:
    """Open a span with the attributes that have a value, or hand out the shared no-op when tracing is off."""
    if not _enabled:
        return _NO_SPAN
    present = {key: value for key, value in attributes.items() if value is not None}
    return _tracer.start_as_current_span(name, context=context, kind=kind, attributes=present)


def _messaging_span(
    operation: str, kind: SpanKind, subject: str, extra: Mapping[str, Any], context: Any = None
) -> contextlib.AbstractContextManager[Span | None]:
    if not _enabled:
        return _NO_SPAN
    template = subject_template(subject)
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.name": operation,
        "messaging.destination.name": subject,
        "messaging.destination.template": template if template != subject else None,
        **extra,
    }
    return _span(f"{operation} {template}", kind, attributes, context)


def producer_span(subject: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """Open a span around one publish. Headers made inside it name it as the consumer's parent."""
    return _messaging_span("publish", SpanKind.PRODUCER, subject, attributes)


def client_span(subject: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """Open a span around one request/reply query sent over core NATS."""
    return _messaging_span("send", SpanKind.CLIENT, subject, attributes)


def consumer_span(
    subject: str, headers: Mapping[str, str] | None, job_id: object = None, **attributes: Any
) -> contextlib.AbstractContextManager[Span | None]:
    """Open a span for handling one message, as a child of the publish span named in its headers."""
    if not _enabled:
        return _NO_SPAN
    attributes[JOB_ID] = str(job_id) if job_id is not None else None
    return _messaging_span(
        "process", SpanKind.CONSUMER, subject, attributes, context=extract_trace_context(headers)
    )


def redis_span(command: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """Open a client span for a Redis command sent by our own protocol code (redis-py has its own)."""
    attributes = {"db.system.name": "redis", "db.operation.name": command, **attributes}
    return _span(command, SpanKind.CLIENT, attributes)


def internal_span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """Open a span for one step inside a service (a yt-dlp run, a GitHub query)."""
    return _span(name, SpanKind.INTERNAL, attributes)


def mark_failed(span: Span | None, code: str, message: str) -> None:
    """Record a handled failure on a span: error status and the product's error code."""
    if span is None:
        return
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, message))


def faststream_telemetry() -> Any:
    """Build FastStream's tracing middleware for a NATS broker, with reply spans under one name.

    FastStream names a publish span after its subject, and a reply goes to a random `_INBOX.…` subject, so
    every reply would be an operation of its own in the dashboard. Replies are named `(reply) publish`.
    """
    from faststream.nats.opentelemetry import provider as nats_provider
    from faststream.opentelemetry.middleware import TelemetryMiddleware

    class ReplyNamingProvider(nats_provider.NatsTelemetrySettingsProvider):
        def get_publish_destination_name(self, cmd: Any) -> str:
            destination = str(cmd.destination)
            return "(reply)" if destination.startswith("_INBOX.") else subject_template(destination)

    single = ReplyNamingProvider()

    def settings_provider(message: Any) -> Any:
        if isinstance(message, list | tuple):
            return nats_provider.NatsBatchTelemetrySettingsProvider()
        return single

    return TelemetryMiddleware(settings_provider_factory=settings_provider)


def untraced() -> contextlib.AbstractContextManager[object]:
    """Suppress library spans inside the block, for periodic calls that would drown a long trace."""
    if not _enabled:
        return _NO_SPAN
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()
