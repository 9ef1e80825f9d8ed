"""Prometheus metrics of the auth service, served on METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter

KEY_VERIFICATIONS = Counter(
    "nadzu_auth_key_verifications_total",
    "API key verifications (auth.rpc.verify-key), by result: `valid` or the reply's error code",
    ["result"],
)
CAPTCHA_VERIFICATIONS = Counter(
    "nadzu_auth_captcha_verifications_total",
    "reCAPTCHA token verifications, by outcome: passed, rejected, unavailable or not-configured",
    ["outcome"],
)
KEYS_CREATED = Counter("nadzu_auth_keys_created_total", "API keys created, the bootstrap admin key included")
KEYS_REVOKED = Counter(
    "nadzu_auth_keys_revoked_total", "API keys revoked; repeating a revocation does not count again"
)
