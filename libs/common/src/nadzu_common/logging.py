"""Structured logging: JSON lines in deploys, a readable console on a terminal.

Context such as `request_id` and `job_id` is bound with `bind_context` and merged into every line logged
in the same task, so handlers never pass ids around by hand.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

from . import tracing

__all__ = ["bind_context", "bound_context", "clear_context", "configure_logging", "get_logger"]

bind_context = bind_contextvars
bound_context = bound_contextvars
clear_context = clear_contextvars


def _add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add the current OpenTelemetry trace and span ids, so a log line leads to its trace."""
    if not tracing.is_active():
        return event_dict
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


def configure_logging(service: str, level: str = "INFO", log_format: str | None = None) -> None:
    """Configure structlog and the standard library logging for one service process."""
    if log_format is None:
        log_format = "console" if sys.stderr.isatty() else "json"

    def add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # A processor rather than a bound context variable: threads (the span exporter's, for one)
        # start without this process's context variables.
        event_dict.setdefault("service", service)
        return event_dict

    shared_processors: list[Any] = [
        add_service,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared_processors.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    # Library loggers (uvicorn, faststream, nats) go through the same renderer, so one process writes
    # one format.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
