"""A contributions request traced from the gateway through the bus to the GitHub call and the Redis cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.stack import Stack

from .fake_github import FakeGitHub


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def traced_stack(receiver: OtlpReceiver, fake_github: FakeGitHub) -> Iterator[Stack]:
    stack = Stack.create(**receiver.env())
    try:
        stack.start_contributions(
            GITHUB_TOKEN=fake_github.token,
            GITHUB_GRAPHQL_URL=fake_github.url,
            CONTRIBUTIONS_KEY_PREFIX=f"nadzu:test:{uuid.uuid4().hex[:12]}:",
        )
        yield stack
    finally:
        stack.close()


def test_contributions_query_is_one_trace(receiver: OtlpReceiver, traced_stack: Stack) -> None:
    gateway = traced_stack.start_gateway()
    response = httpx.get(
        f"{gateway.base_url}/api/v1/contributions/Octo-Cat", params={"year": "2024"}, timeout=30
    )
    assert response.status_code == 200, response.text

    def github_call(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next((span for span in spans if span.name == "github contributionsCollection"), None)

    github = receiver.wait_for(github_call, what="the GitHub call span")
    spans = receiver.wait_for(
        lambda spans: (
            (in_trace := [span for span in spans if span.trace_id == github.trace_id])
            and any(span.service == "nadzu-gateway" and span.kind == "server" for span in in_trace)
            and any(span.service == "nadzu-contributions" and span.kind == "consumer" for span in in_trace)
            and in_trace
        ),
        what="the whole contributions trace",
    )
    by_id = {span.span_id: span for span in spans}

    server = next(span for span in spans if span.kind == "server")
    assert server.name == "GET /api/v1/contributions/{username}"
    query = next(span for span in spans if span.name == "send contributions.rpc.get")
    assert query.service == "nadzu-gateway"
    assert query.kind == "client"
    consume = next(
        span for span in spans if span.service == "nadzu-contributions" and span.kind == "consumer"
    )
    assert consume.parent_span_id == query.span_id
    # Replies go to random inbox subjects; naming spans after them would make an operation per request.
    replies = [span for span in spans if span.service == "nadzu-contributions" and span.kind == "producer"]
    assert [span.name for span in replies] == ["(reply) publish"]

    # The GitHub query, its HTTP request and the cache calls all descend from the consume span.
    assert github.attributes["github.login"] == "Octo-Cat"
    http_calls = [span for span in spans if span.service == "nadzu-contributions" and span.name == "POST"]
    assert http_calls and all(span.parent_span_id == github.span_id for span in http_calls)
    cache_calls = [
        span
        for span in spans
        if span.service == "nadzu-contributions" and span.attributes.get("db.system") == "redis"
    ]
    assert cache_calls, sorted(span.name for span in spans)

    def descends_from(span: ReceivedSpan, ancestor: ReceivedSpan) -> bool:
        while span.parent_span_id:
            if span.parent_span_id == ancestor.span_id:
                return True
            span = by_id[span.parent_span_id]
        return False

    assert descends_from(github, consume)
    assert all(descends_from(span, consume) for span in cache_calls)
