"""Prometheus metrics of the contributions service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

GITHUB_REQUESTS = Counter(
    "nadzu_contributions_github_requests_total",
    "HTTP requests sent to the GitHub GraphQL API, by outcome.",
    ["outcome"],
)
GITHUB_LATENCY = Histogram(
    "nadzu_contributions_github_request_seconds",
    "Duration of one GitHub GraphQL request, seconds.",
)
CACHE_LOOKUPS = Counter(
    "nadzu_contributions_cache_lookups_total",
    "Calendar cache lookups, by result: fresh, stale or miss.",
    ["result"],
)
QUERIES = Counter(
    "nadzu_contributions_queries_total",
    "Contributions queries replied to, by problem slug (`ok` for a calendar or SVG).",
    ["outcome"],
)
