"""The gateway's `/metrics`: who may read it, and what its request, limit and stream figures count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from nadzu_gateway.metrics import HttpMetrics
from tests.downloads.conftest import Media, create_job, finish
from tests.support.stack import Gateway, Service, Stack, parse_sse

from .conftest import TINY_QUOTA, TINY_TIER, Samples, scrape_gateway, scrape_until

REQUESTS = "nadzu_gateway_http_requests_total"
DURATION_COUNT = "nadzu_gateway_http_request_duration_seconds_count"
JOB_ROUTE = "/api/v1/downloads/{job_id}"
EVENTS_ROUTE = "/api/v1/downloads/{job_id}/events"
OPEN_STREAMS = "nadzu_gateway_sse_streams_open"
STREAMS = "nadzu_gateway_sse_streams_total"


def test_metrics_require_token(gateway: Gateway) -> None:
    url = f"{gateway.base_url}/metrics"

    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["type"] == "urn:nadzu:problem:authentication-required"

    wrong = httpx.get(url, headers={"Authorization": "Bearer " + "x" * 43})
    assert wrong.status_code == 401

    # An API key opens the API, not the metrics.
    with_key = httpx.get(url, headers={"X-API-Key": gateway.api_key})
    assert with_key.status_code == 401

    right = httpx.get(url, headers={"Authorization": f"Bearer {gateway.metrics_token}"})
    assert right.status_code == 200
    assert "nadzu_gateway_http_requests_total" in right.text


def test_metrics_without_token_not_found(metrics_stack: Stack) -> None:
    gateway = metrics_stack.start_gateway(METRICS_TOKEN="")
    try:
        anonymous = httpx.get(f"{gateway.base_url}/metrics")
        assert anonymous.status_code == 404
        assert anonymous.json()["type"] == "urn:nadzu:problem:not-found"
        with_key = httpx.get(f"{gateway.base_url}/metrics", headers={"X-API-Key": gateway.api_key})
        assert with_key.status_code == 404
    finally:
        gateway.service.stop()


def test_no_created_series(gateway: Gateway, client: httpx.Client) -> None:
    # Labelled counters get a `_created` series per label set, so one counter gets a value first.
    assert httpx.get(f"{gateway.base_url}/metrics").status_code == 401

    samples = scrape_gateway(gateway)

    assert samples.value("nadzu_gateway_auth_failures_total", reason="authentication-required") >= 1
    assert samples.created_series() == []


def test_requests_labelled_by_route_template(gateway: Gateway, client: httpx.Client) -> None:
    before = scrape_gateway(gateway)
    job_ids = [str(uuid.uuid4()) for _ in range(3)]
    for job_id in job_ids:
        assert client.get(f"/api/v1/downloads/{job_id}").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/api/v1/auth/me").status_code == 200
    assert httpx.get(f"{gateway.base_url}/api/v1/auth/me").status_code == 401

    after = scrape_gateway(gateway)

    def grew(route: str, status: str) -> float:
        labels = {"route": route, "method": "GET", "status": status}
        return after.value(REQUESTS, **labels) - before.value(REQUESTS, **labels)

    assert grew(JOB_ROUTE, "404") == 3
    assert grew("unmatched", "404") == 1
    # Served before the router by the fast path, and still labelled with its route.
    assert grew("/api/v1/auth/me", "200") == 1
    assert grew("/api/v1/auth/me", "401") == 1
    routes = after.label_values(REQUESTS, "route")
    assert not any(job_id in route for job_id in job_ids for route in routes)
    job_duration = after.value(DURATION_COUNT, route=JOB_ROUTE, method="GET")
    assert job_duration - before.value(DURATION_COUNT, route=JOB_ROUTE, method="GET") == 3
    bucket = "nadzu_gateway_http_request_duration_seconds_bucket"
    assert after.value(bucket, route=JOB_ROUTE, method="GET", le="+Inf") == job_duration


def test_duration_buckets_cumulative() -> None:
    metrics = HttpMetrics()
    for seconds in (0.0005, 0.001, 0.003, 20.0):
        metrics.observe("/r", "GET", seconds)
    metrics.count("/r", "GET", 200)

    requests, durations = list(metrics.collect())
    assert [
        (sample.labels, sample.value) for sample in requests.samples if sample.name.endswith("_total")
    ] == [({"route": "/r", "method": "GET", "status": "200"}, 1)]
    buckets = {sample.labels["le"]: sample.value for sample in durations.samples if "le" in sample.labels}
    assert buckets["0.001"] == 2  # an observation equal to a bound falls in that bucket
    assert buckets["0.0025"] == 2
    assert buckets["0.005"] == 3
    assert buckets["10.0"] == 3
    assert buckets["+Inf"] == 4
    totals = {sample.name: sample.value for sample in durations.samples if "le" not in sample.labels}
    assert totals["nadzu_gateway_http_request_duration_seconds_count"] == 4
    assert totals["nadzu_gateway_http_request_duration_seconds_sum"] == 0.0005 + 0.001 + 0.003 + 20.0


def test_unusual_method_gets_fixed_label(gateway: Gateway, client: httpx.Client) -> None:
    before = scrape_gateway(gateway)
    assert client.request("PROPFIND", "/api/v1/downloads").status_code == 405

    after = scrape_gateway(gateway)
    labels = {"route": "/api/v1/downloads", "method": "other", "status": "405"}
    assert after.value(REQUESTS, **labels) - before.value(REQUESTS, **labels) == 1
    assert "PROPFIND" not in after.label_values(REQUESTS, "method")


def test_rate_limit_rejection_counted(gateway: Gateway, metrics_stack: Stack) -> None:
    key = str(metrics_stack.create_key("tiny", tier=TINY_TIER)["key"])
    before = scrape_gateway(gateway)

    statuses = [
        httpx.get(f"{gateway.base_url}/api/v1/auth/me", headers={"X-API-Key": key}).status_code
        for _ in range(TINY_QUOTA + 1)
    ]
    assert statuses == [200] * TINY_QUOTA + [429]

    after = scrape_gateway(gateway)
    limited = "nadzu_gateway_rate_limited_total"
    assert after.value(limited, policy=TINY_TIER) - before.value(limited, policy=TINY_TIER) == 1
    labels = {"route": "/api/v1/auth/me", "method": "GET", "status": "429"}
    assert after.value(REQUESTS, **labels) - before.value(REQUESTS, **labels) == 1


def test_auth_failures_counted_by_reason(gateway: Gateway) -> None:
    before = scrape_gateway(gateway)
    unknown_key = "nadzu_" + "a" * 40
    response = httpx.get(f"{gateway.base_url}/api/v1/auth/me", headers={"X-API-Key": unknown_key})
    assert response.status_code == 401
    basic = httpx.get(f"{gateway.base_url}/api/v1/auth/me", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401

    after = scrape_gateway(gateway)
    failures = "nadzu_gateway_auth_failures_total"
    for reason in ("invalid-key", "invalid-credentials"):
        assert after.value(failures, reason=reason) - before.value(failures, reason=reason) == 1


def test_every_401_counted(gateway: Gateway) -> None:
    failures = "nadzu_gateway_auth_failures_total"
    # The file link, because the stream test expects no duration on the events route.
    job_file = f"{gateway.base_url}/api/v1/downloads/{uuid.uuid4()}/file"
    # One 401 from each place that sends them: a route, the fast path, the metrics endpoint, a link check.
    requests = [
        ("POST", f"{gateway.base_url}/api/v1/downloads", "authentication-required"),
        ("GET", f"{gateway.base_url}/api/v1/auth/me", "authentication-required"),
        ("GET", f"{gateway.base_url}/metrics", "authentication-required"),
        ("GET", f"{job_file}?exp=4102444800&sig=forged", "invalid-link"),
    ]
    before = scrape_gateway(gateway)

    reasons = []
    for method, url, reason in requests:
        response = httpx.request(method, url, json={"url": "https://media.example.com/clip.mp4"})
        assert response.status_code == 401, f"{method} {url}: {response.text}"
        assert response.json()["type"] == f"urn:nadzu:problem:{reason}"
        reasons.append(reason)

    after = scrape_gateway(gateway)
    for reason in set(reasons):
        grown = after.value(failures, reason=reason) - before.value(failures, reason=reason)
        assert grown == reasons.count(reason), reason
    assert after.value(REQUESTS, route="/metrics", method="GET", status="401") >= 1


@pytest.fixture
def gated_job(client: httpx.Client, downloader: Service, media: Media) -> Iterator[str]:
    """A job whose transfer waits until the test ends, so its event stream stays open."""
    name, gate = media.gated_copy()
    job = create_job(client, media.url(name))
    yield job["id"]
    gate.set()
    # Finished here, so its completion does not move the counters that later tests compare.
    assert finish(client, job["id"])["status"] == "completed"


def test_sse_streams_kept_out_of_latency(gateway: Gateway, client: httpx.Client, gated_job: str) -> None:
    before = scrape_gateway(gateway)

    with client.stream("GET", f"/api/v1/downloads/{gated_job}/events") as response:
        assert response.status_code == 200
        # A closed line iterator would close the response, so it stays referenced while the stream is read.
        events = parse_sse(response.iter_lines())
        first = next(event for event in events if "comment" not in event)
        assert first["event"] == "status"

        during = scrape_gateway(gateway)
        assert during.value(OPEN_STREAMS) == before.value(OPEN_STREAMS) + 1
        assert during.value(STREAMS) - before.value(STREAMS) == 1

    # The server notices the closed connection on its next write (a heartbeat every second here).
    def stream_closed(samples: Samples) -> bool:
        return samples.value(OPEN_STREAMS) == before.value(OPEN_STREAMS)

    after = scrape_until(lambda: scrape_gateway(gateway), stream_closed)
    labels = {"route": EVENTS_ROUTE, "method": "GET", "status": "200"}
    assert after.value(REQUESTS, **labels) - before.value(REQUESTS, **labels) == 1
    assert after.value(DURATION_COUNT, route=EVENTS_ROUTE, method="GET") == 0
