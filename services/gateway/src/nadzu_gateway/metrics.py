"""Prometheus metrics of the gateway, and the `GET /metrics` endpoint that serves them.

`MetricsMiddleware` is a pure ASGI middleware placed outside CORS, authentication and rate limiting, so it
counts every response, those middlewares' own rejections included. Requests are labelled with the route
template (`/api/v1/downloads/{job_id}`), never the raw path, so a client cannot create new series.
Server-Sent Event streams stay out of the duration histogram: a stream lasts as long as its job, which
would drown every other latency. They have a gauge and a counter of their own.

`/metrics` is served only when METRICS_TOKEN is set, and only to requests that send it as
`Authorization: Bearer <token>`. Without the token setting the path is unknown (404), like any other.
The route in `router` describes the endpoint in the OpenAPI document, and it runs only in that case.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import itertools
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nadzu_common.bus import COMMANDS_STREAM, ENQUEUE_CONSUMER, Subjects
from nadzu_common.logging import get_logger

from .middleware import send_problem
from .problems import TYPE_PREFIX

log = get_logger(__name__)

# Turn off the `<name>_created` timestamp series beside each counter and histogram, for the whole
# process. They double the series count, and Prometheus does not need them.
disable_created_metrics()

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
# The `reason` of a 401 whose body is not a problem document, which no code path of the gateway sends.
UNKNOWN_REASON = "unknown"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds a scrape waits for NATS to describe the download queue before it reports the figures as NaN.
QUEUE_INFO_TIMEOUT_SECONDS = 1.0

# The start of a scrape, for the OpenAPI example.
EXPOSITION_EXAMPLE = """\
# HELP nadzu_gateway_sse_streams_open Server-Sent Event streams open on this replica
# TYPE nadzu_gateway_sse_streams_open gauge
nadzu_gateway_sse_streams_open 0.0
"""

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKET_LABELS = [floatToGoString(bound) for bound in DURATION_BUCKETS] + ["+Inf"]


class HttpMetrics(Collector):
    """`nadzu_gateway_http_requests_total` and `nadzu_gateway_http_request_duration_seconds`.

    Plain dicts instead of prometheus_client's metric objects, which take a lock on every update. The
    gateway records and serves `/metrics` on its one event loop thread, so no lock is needed. In-process
    that saved about 1 µs a request (bench/gateway_metrics_overhead.py, figures in docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        # (route, method) -> count per bucket (the last one is +Inf, not cumulative), and the sum
        self._durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def count(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        self._requests[key] = self._requests.get(key, 0) + 1

    def observe(self, route: str, method: str, seconds: float) -> None:
        entry = self._durations.get((route, method))
        if entry is None:
            entry = ([0] * (len(DURATION_BUCKETS) + 1), [0.0])
            self._durations[(route, method)] = entry
        entry[0][bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        requests, durations = self._families()
        for (route, method, status), total in self._requests.items():
            requests.add_metric([route, method, str(status)], total)
        for (route, method), (counts, total_seconds) in self._durations.items():
            cumulative = list(itertools.accumulate(counts))
            bounds = [floatToGoString(bound) for bound in DURATION_BUCKETS] + ["+Inf"]
            durations.add_metric(
                [route, method], list(zip(bounds, cumulative, strict=True)), total_seconds[0]
            )
        yield requests
        yield durations

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "nadzu_gateway_http_requests",
            "HTTP responses sent, by route template, method and status",
            labels=["route", "method", "status"],
        )
        durations = HistogramMetricFamily(
            "nadzu_gateway_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response, event streams left out",
            labels=["route", "method"],
        )
        return requests, durations


HTTP_METRICS = HttpMetrics()
REGISTRY.register(HTTP_METRICS)
SSE_STREAMS_OPEN = Gauge("nadzu_gateway_sse_streams_open", "Server-Sent Event streams open on this replica")
SSE_STREAMS = Counter("nadzu_gateway_sse_streams_total", "Server-Sent Event streams opened")
RATE_LIMITED = Counter(
    "nadzu_gateway_rate_limited_total",
    "Requests rejected with 429, by the policy that was exhausted",
    ["policy"],
)
AUTH_FAILURES = Counter(
    "nadzu_gateway_auth_failures_total",
    "Responses sent with status 401, by problem slug: missing or rejected credentials, or an invalid link",
    ["reason"],
)
QUEUE_PENDING = Gauge(
    "nadzu_downloads_queue_pending",
    "Download commands no downloader has fetched yet (num_pending of the enqueue consumer)",
)
QUEUE_ACK_PENDING = Gauge(
    "nadzu_downloads_queue_ack_pending",
    "Download commands fetched but not acknowledged: running, or waiting for a retry",
)
QUEUE_OLDEST_PENDING_SECONDS = Gauge(
    "nadzu_downloads_queue_oldest_pending_age_seconds",
    "Age of the oldest download command no downloader has fetched; 0 when none waits",
)
QUEUE_WAITING_PULLS = Gauge(
    "nadzu_downloads_queue_waiting_pulls",
    "Fetch requests open on the enqueue consumer: at most one per downloader replica with a free worker slot",
)


def count_rate_limited(policy: str) -> None:
    RATE_LIMITED.labels(policy=policy).inc()


def problem_slug(body: bytes) -> str:
    """Return the slug of a problem details body, or UNKNOWN_REASON when the body is not one."""
    try:
        problem = json.loads(body)
    except ValueError:
        return UNKNOWN_REASON
    problem_type = problem.get("type") if isinstance(problem, dict) else None
    if isinstance(problem_type, str) and problem_type.startswith(TYPE_PREFIX):
        return problem_type.removeprefix(TYPE_PREFIX)
    return UNKNOWN_REASON


class RouteLabels:
    """The route template of a request, also for requests a middleware responded to before the router ran.

    The templates come from the OpenAPI document's paths, which list the full path of every route of the
    included routers (FastAPI 0.165 keeps included routers nested, so `app.routes` does not), plus the
    application's own routes outside the document.
    """

    def __init__(self, app: FastAPI) -> None:
        templates = set(app.openapi().get("paths", {}))
        templates.update(
            path for route in app.routes if isinstance(path := getattr(route, "path", None), str)
        )
        self._static = {template for template in templates if "{" not in template}
        self._templated = [
            (compile_path(template)[0], template) for template in sorted(templates) if "{" in template
        ]

    def label(self, path: str) -> str:
        if path in self._static:
            return path
        for pattern, template in self._templated:
            if pattern.match(path):
                return template
        return UNMATCHED_ROUTE


class MetricsMiddleware:
    """Count every request and response, and serve `GET /metrics` to holders of METRICS_TOKEN."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = f"Bearer {token}".encode() if token else None
        self._labels: RouteLabels | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        # The status uvicorn sends when the application raises before it starts a response.
        status = 500
        streaming = False
        # The problem slug of a 401, read from the first body chunk. Every 401 of the gateway, from a
        # middleware or a route, is a problem document of one chunk.
        unauthorized_reason: str | None = None

        async def send_observed(message: Message) -> None:
            nonlocal status, streaming, unauthorized_reason
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"content-type":
                        streaming = value.startswith(b"text/event-stream")
                        break
                if streaming:
                    SSE_STREAMS_OPEN.inc()
                    SSE_STREAMS.inc()
            elif status == 401 and unauthorized_reason is None and message["type"] == "http.response.body":
                unauthorized_reason = problem_slug(message.get("body", b""))
            await send(message)

        serves_metrics = self._token is not None and scope["path"] == METRICS_PATH
        try:
            if serves_metrics:
                await self._serve_metrics(scope, send_observed)
            else:
                await self.app(scope, receive, send_observed)
        finally:
            route = METRICS_PATH if serves_metrics else self._route(scope)
            method = scope["method"] if scope["method"] in _METHODS else OTHER_METHOD
            HTTP_METRICS.count(route, method, status)
            if status == 401:
                AUTH_FAILURES.labels(reason=unauthorized_reason or UNKNOWN_REASON).inc()
            if streaming:
                SSE_STREAMS_OPEN.dec()
            else:
                HTTP_METRICS.observe(route, method, time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        if self._labels is None:
            # Starlette puts the application in the scope, and its routes are final once it serves requests.
            self._labels = RouteLabels(scope["app"])
        return self._labels.label(scope["path"])

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        state = scope.get("state", {})
        if scope["method"] not in ("GET", "HEAD"):
            await send_problem(
                send,
                405,
                "method-not-allowed",
                "Method not allowed",
                f"{METRICS_PATH} answers GET and HEAD only.",
                state.get("request_id", ""),
                METRICS_PATH,
                headers=[(b"allow", b"GET, HEAD")],
            )
            return

        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        assert self._token is not None
        if not hmac.compare_digest(authorization, self._token):
            await send_problem(
                send,
                401,
                "authentication-required",
                "Authentication required",
                f"Send METRICS_TOKEN as `Authorization: Bearer <token>` to read {METRICS_PATH}.",
                state.get("request_id", ""),
                METRICS_PATH,
                headers=[(b"www-authenticate", b'Bearer realm="nadzu-metrics"')],
            )
            return

        await refresh_queue_metrics(getattr(scope["app"].state, "js", None))
        body = generate_latest(REGISTRY)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


router = APIRouter()


@router.get(
    METRICS_PATH,
    tags=["service"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The metrics of this gateway replica in the Prometheus text exposition format "
            f"(`Content-Type: {CONTENT_TYPE_LATEST}`)",
            "content": {"text/plain": {"example": EXPOSITION_EXAMPLE}},
        }
    },
)
async def metrics() -> None:
    """Prometheus metrics of this gateway replica, and the download queue of every replica.

    Served only when METRICS_TOKEN is set, and only to requests that send it as
    `Authorization: Bearer <token>`. API keys and session tokens do not open it, and scrapes are not
    rate-limited. Without METRICS_TOKEN the path does not exist (404). docs/metrics.md lists the metrics.
    """
    # With METRICS_TOKEN set, MetricsMiddleware serves this path before the router runs.
    raise StarletteHTTPException(404)


async def refresh_queue_metrics(js: JetStreamContext | None) -> None:
    """Read the backlog of the downloaders' enqueue consumer into the queue gauges.

    The gateway reports the queue, not the downloader, so the backlog stays visible while no downloader
    runs. A figure NATS did not give within QUEUE_INFO_TIMEOUT_SECONDS is NaN, so no stale value is served.
    """
    if js is None:
        # The application's lifespan has not connected to NATS (an application built in-process).
        pending = ack_pending = waiting = oldest_age = math.nan
    else:
        try:
            pending, ack_pending, waiting, oldest_age = await asyncio.wait_for(
                _read_queue(js), QUEUE_INFO_TIMEOUT_SECONDS
            )
        except Exception as error:
            log.warning("metrics.queue_info_failed", error=repr(error))
            pending = ack_pending = waiting = oldest_age = math.nan

    QUEUE_PENDING.set(pending)
    QUEUE_ACK_PENDING.set(ack_pending)
    QUEUE_WAITING_PULLS.set(waiting)
    QUEUE_OLDEST_PENDING_SECONDS.set(oldest_age)


async def _read_queue(js: JetStreamContext) -> tuple[float, float, float, float]:
    """Return pending, ack-pending, waiting pulls, and the age in seconds of the oldest pending command.

    Before any downloader has created the consumer, every command on the enqueue subject is pending.
    """
    try:
        info = await js.consumer_info(COMMANDS_STREAM.name, ENQUEUE_CONSUMER)
    except NotFoundError:
        stream = await js.stream_info(COMMANDS_STREAM.name, subjects_filter=Subjects.DOWNLOAD_ENQUEUE)
        subjects = stream.state.subjects or {}
        pending, ack_pending, waiting, first_sequence = subjects.get(Subjects.DOWNLOAD_ENQUEUE, 0), 0, 0, 1
    else:
        delivered = info.delivered.stream_seq if info.delivered and info.delivered.stream_seq else 0
        pending = info.num_pending or 0
        ack_pending = info.num_ack_pending or 0
        waiting = info.num_waiting or 0
        first_sequence = delivered + 1

    oldest_age = 0.0
    if pending:
        # The first command on the subject after the last one delivered is the oldest still waiting.
        message = await js.get_msg(
            COMMANDS_STREAM.name, seq=first_sequence, subject=Subjects.DOWNLOAD_ENQUEUE, next=True
        )
        if message.time is not None:
            oldest_age = max(0.0, (datetime.now(UTC) - message.time).total_seconds())
    return pending, ack_pending, waiting, oldest_age
