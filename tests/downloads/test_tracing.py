"""Traces across the bus: a stack exporting to a local OTLP receiver, and one download followed through it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from nadzu_common.bus import Subjects, encode
from nadzu_common.ids import new_id
from nadzu_common.messages import EnqueueDownload, JobState, JobStatus
from tests.downloads.conftest import Media, create_job, finish, read_events, wait_for
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.stack import Gateway, Stack


@dataclass
class TracedStack:
    stack: Stack
    gateway: Gateway
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def traced() -> Iterator[TracedStack]:
    receiver = OtlpReceiver().start()
    stack = Stack.create(**receiver.env())
    try:
        gateway = stack.start_gateway()
        stack.start_downloader()
        yield TracedStack(stack, gateway, receiver)
    finally:
        stack.close()
        receiver.stop()


EVENT_PUBLISH = "publish downloads.evt.{job_id}"
RUN = "yt-dlp download"


def _python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )


def _one(spans: list[ReceivedSpan], **match: object) -> ReceivedSpan | None:
    found = [span for span in spans if all(getattr(span, key) == value for key, value in match.items())]
    return found[0] if found else None


def _log_lines(stack: Stack, service: str) -> list[dict[str, object]]:
    lines = []
    for running in stack.services:
        if running.name != service:
            continue
        for line in running.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def test_download_is_one_trace(traced: TracedStack, media: Media) -> None:
    receiver = traced.receiver
    with traced.gateway.client(timeout=30) as client:
        response = client.post("/api/v1/downloads", json={"url": media.url("clip.mp4")})
        assert response.status_code == 202, response.text
        job = response.json()
        assert finish(client, job["id"])["status"] == "completed"

    enqueue_id = f"{job['id']}:enqueue"
    publish = receiver.wait_for(
        lambda spans: _one(spans, name="publish downloads.cmd.enqueue", service="nadzu-gateway"),
        what="the gateway's enqueue publish span",
    )
    assert publish.attributes["messaging.message.id"] == enqueue_id
    assert publish.kind == "producer"
    trace_id = publish.trace_id
    # The client learns the trace id from the response, to look the request up in the dashboard.
    version, response_trace_id, _, _ = response.headers["traceresponse"].split("-")
    assert (version, response_trace_id) == ("00", trace_id)

    def complete_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan] | None:
        in_trace = [span for span in spans if span.trace_id == trace_id]
        completed = [
            span
            for span in in_trace
            if span.name == "publish downloads.evt.{job_id}"
            and span.attributes.get("nadzu.job.event") == "completed"
        ]
        return in_trace if completed else None

    spans = receiver.wait_for(complete_trace, what="the job's completed event in the enqueue trace")
    by_id = {span.span_id: span for span in spans}

    # The gateway's HTTP span is the root, named by route, and the publish is inside it.
    server = _one(spans, service="nadzu-gateway", kind="server")
    assert server is not None and server.name == "POST /api/v1/downloads"
    assert server.parent_span_id == ""
    ancestor = publish
    while ancestor.parent_span_id:
        ancestor = by_id[ancestor.parent_span_id]
    assert ancestor is server

    # The rate limiter's Redis call belongs to the request too.
    assert _one(spans, service="nadzu-gateway", name="EVALSHA", kind="client") is not None

    # Across the bus: the downloader's consume span is a child of the gateway's publish span.
    consume = _one(spans, service="nadzu-downloader", name="process downloads.cmd.enqueue")
    assert consume is not None, sorted(f"{span.service}: {span.name}" for span in spans)
    assert consume.kind == "consumer"
    assert consume.parent_span_id == publish.span_id
    assert consume.attributes["nadzu.job.id"] == job["id"]
    assert consume.attributes["nadzu.job.outcome"] == "done"

    # The yt-dlp run, the database calls and the event publishes all belong to the consume span.
    run = _one(spans, service="nadzu-downloader", name=RUN)
    assert run is not None and run.parent_span_id == consume.span_id
    assert run.attributes["nadzu.download.bytes"] == (media.root / "clip.mp4").stat().st_size
    assert run.attributes["server.address"] == "127.0.0.1"
    queries = [span for span in spans if span.service == "nadzu-downloader" and span.kind == "client"]
    assert any(span.attributes.get("db.system") == "postgresql" for span in queries), queries
    events = [
        span
        for span in spans
        if span.name == "publish downloads.evt.{job_id}" and span.service == "nadzu-downloader"
    ]
    assert {span.attributes["nadzu.job.event"] for span in events} >= {"status", "completed"}
    # Progress events are sent while yt-dlp runs, so they are children of its span.
    assert all(span.parent_span_id in (consume.span_id, run.span_id) for span in events)
    completed = [span for span in events if span.attributes["nadzu.job.event"] == "completed"]
    assert [span.parent_span_id for span in completed] == [consume.span_id]

    # Log lines of both services lead to the same trace.
    downloader_lines = [
        line
        for line in _log_lines(traced.stack, "downloader")
        if line.get("event") == "runner.completed" and line.get("job_id") == job["id"]
    ]
    assert downloader_lines and downloader_lines[0]["trace_id"] == trace_id
    assert downloader_lines[0]["span_id"] == consume.span_id
    gateway_lines = [
        line
        for line in _log_lines(traced.stack, "gateway")
        if line.get("event") == "downloads.enqueued" and line.get("job_id") == job["id"]
    ]
    assert gateway_lines and gateway_lines[0]["trace_id"] == trace_id


def test_failed_run_span_has_error(traced: TracedStack, media: Media) -> None:
    with traced.gateway.client(timeout=30) as client:
        job = create_job(client, media.url("missing.mp4"))
        assert finish(client, job["id"])["status"] == "failed"

    failed_run = traced.receiver.wait_for(
        lambda spans: next(
            (
                s
                for s in spans
                if s.name == "yt-dlp download" and s.attributes.get("nadzu.job.id") == job["id"]
            ),
            None,
        ),
        what="the failed run's span",
    )
    assert failed_run.status_code == 2  # ERROR
    assert failed_run.attributes["error.type"] == "source-not-found"

    # yt-dlp's own error line is a JSON line of the downloader, inside the run's span.
    ytdlp_lines = [
        line
        for line in _log_lines(traced.stack, "downloader")
        if line.get("event") == "ytdlp.message" and line.get("job_id") == job["id"]
    ]
    assert ytdlp_lines, "no yt-dlp message logged for the failed job"
    assert "404" in str(ytdlp_lines[-1]["message"])
    assert ytdlp_lines[-1]["trace_id"] == failed_run.trace_id
    assert ytdlp_lines[-1]["span_id"] == failed_run.span_id
    assert ytdlp_lines[-1]["service"] == "downloader"


def test_event_stream_has_no_event_spans(traced: TracedStack, media: Media) -> None:
    name, gate = media.gated_copy()
    with traced.gateway.client(timeout=30) as client:
        job = create_job(client, media.url(name))
        wait_for(client, job["id"], lambda event: event["data"]["status"] == "running")
        gate.set()
        events = read_events(client, job["id"])
    assert len(events) >= 3

    stream = traced.receiver.wait_for(
        lambda spans: (
            _one(spans, name="GET /api/v1/downloads/{job_id}/events", service="nadzu-gateway")
            and [
                span
                for span in spans
                if span.name == "GET /api/v1/downloads/{job_id}/events"
                and span.attributes.get("http.route") == "/api/v1/downloads/{job_id}/events"
            ]
        ),
        what="the SSE request spans",
    )
    trace_ids = {span.trace_id for span in stream}
    for trace_id in trace_ids:
        in_trace = traced.receiver.trace(trace_id)
        # Without send and receive spans excluded there would be one `http send` span per event.
        assert not [span for span in in_trace if "http send" in span.name or "http receive" in span.name]


def test_raw_nats_publish_keeps_trace(traced: TracedStack, media: Media) -> None:
    """A command published with plain nats-py (a replay, another team's tool) continues the caller's trace."""
    import nats

    trace_id = secrets.token_hex(16)
    parent_span_id = secrets.token_hex(8)
    job = JobState(
        id=new_id(),
        url=media.url("clip.mp4"),
        format="best",
        owner="raw-test",
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
    )

    async def publish() -> None:
        nc = await nats.connect(traced.stack.nats.url)
        try:
            await nc.jetstream().publish(
                Subjects.DOWNLOAD_ENQUEUE,
                encode(EnqueueDownload(job=job)),
                headers={
                    "Nats-Msg-Id": f"{job.id}:enqueue",
                    "traceparent": f"00-{trace_id}-{parent_span_id}-01",
                },
            )
        finally:
            await nc.close()

    asyncio.run(publish())
    consume = traced.receiver.wait_for(
        lambda spans: _one(spans, trace_id=trace_id, name="process downloads.cmd.enqueue"),
        what="a consume span in the caller's trace",
    )
    assert consume.parent_span_id == parent_span_id
    assert consume.attributes["nadzu.job.id"] == str(job.id)


def test_tracing_off_without_endpoint() -> None:
    """No exporter configured: no provider, no headers, no ids in logs, and the span helpers do nothing."""
    script = """
import json, sys
from opentelemetry import trace
from nadzu_common import tracing
from nadzu_common.bus import message_headers
assert tracing.configure_tracing("probe") is False
assert not tracing.is_active()
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
with tracing.producer_span("downloads.cmd.enqueue") as span:
    assert span is None
    headers = message_headers(msg_id="x")
assert "traceparent" not in headers, headers
print(json.dumps(sorted(headers)))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Nats-Msg-Id"]


def test_tracing_on_names_service() -> None:
    script = """
import json
from nadzu_common import tracing
from nadzu_common.bus import message_headers
assert tracing.configure_tracing("nadzu-probe") is True
with tracing.producer_span("downloads.evt.0190c3c0-0000-7000-8000-000000000000") as span:
    headers = message_headers()
    context = span.get_span_context()
    print(json.dumps({"traceparent": headers["traceparent"], "trace_id": format(context.trace_id, "032x"),
                      "name": span.name, "service": span.resource.attributes["service.name"]}))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[0])
    assert seen["traceparent"].split("-")[1] == seen["trace_id"]
    assert seen["name"] == "publish downloads.evt.{job_id}"
    assert seen["service"] == "nadzu-probe"

    env["OTEL_SERVICE_NAME"] = "renamed-by-operator"
    renamed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert json.loads(renamed.stdout.splitlines()[0])["service"] == "renamed-by-operator"


def test_unknown_protocol_rejected() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
    script = "from nadzu_common import tracing; tracing.configure_tracing('probe')"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported; "
        "use http/protobuf or grpc"
    )


def test_bad_batch_setting_rejected() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="soon")
    result = _python("from nadzu_common import tracing; tracing.configure_tracing('probe')", env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "invalid configuration: OTEL_BSP_SCHEDULE_DELAY: 'soon' is not a positive whole number"
    )


def test_endpoint_without_scheme_rejected() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "collector:4318"
    result = _python("from nadzu_common import tracing; tracing.configure_tracing('probe')", env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' "
        "is not an http:// or https:// URL"
    )
