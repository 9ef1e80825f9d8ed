"""Prometheus metrics of the contributions service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GITHUB_REQUESTS = Counter(
    "nadzu_contributions_github_requests_total",
    "HTTP requests sent to the GitHub GraphQL API, by outcome",
    ["outcome"],
)
GITHUB_LATENCY = Histogram(
    "nadzu_contributions_github_request_seconds",
    "Duration of one GitHub GraphQL request, seconds",
)
CACHE_LOOKUPS = Counter(
    "nadzu_contributions_cache_lookups_total",
    "Calendar cache lookups, by result: fresh, stale or miss",
    ["result"],
)
QUERIES = Counter(
    "nadzu_contributions_queries_total",
    "Contributions queries replied to, by problem slug (`ok` for a calendar or SVG)",
    ["outcome"],
)
GITHUB_RATE_LIMIT_REMAINING = Gauge(
    "nadzu_contributions_github_rate_limit_remaining",
    "Points left in GitHub's primary rate limit window (`x-ratelimit-remaining` of the latest response)",
)
GITHUB_RATE_LIMIT_RESET = Gauge(
    "nadzu_contributions_github_rate_limit_reset_timestamp_seconds",
    "Unix time at which GitHub's rate limit window resets (`x-ratelimit-reset` of the latest response)",
)
