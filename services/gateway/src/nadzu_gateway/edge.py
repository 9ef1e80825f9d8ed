"""Authentication and rate limiting of every request but `/health*`, as one pure ASGI middleware.

Per request, on the common path (no credentials, a session token, or an API key in this replica's cache)
the middleware makes one Redis round trip: the rate-limit decision. A key that is not cached costs a
check of the failed-authentication budget and a `verify-key` request to the auth service first.

The middleware decides who is calling and whether the request fits its budgets. Which endpoints need
which scope is declared on the routes (see `access.py`), so a route can also accept a signed job link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nadzu_common.auth import (
    AuthClient,
    AuthErrorCode,
    AuthSubjects,
    TokenError,
    TokenExpired,
    TokenSigner,
    VerifyKeyQuery,
    VerifyKeyReply,
    hash_api_key,
    looks_like_session_token,
    plausible_api_key,
)
from nadzu_common.logging import get_logger

from .callers import Caller, CallerKind
from .clientip import ClientAddressResolver, address_group
from .keycache import KeyCache
from .metrics import count_rate_limited
from .middleware import send_problem
from .ratelimit import Decision, Policy, RateLimiter
from .settings import GatewaySettings

log = get_logger(__name__)

ENQUEUE_PATH = "/api/v1/downloads"
SESSION_PATH = "/api/v1/auth/session"
REALM = 'Bearer realm="nadzu"'
AUTH_FAILURES_POLICY = "auth-failures"
SESSIONS_POLICY = "sessions"
ENQUEUE_POLICY = "enqueue"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A response the middleware sends instead of calling the application."""

    status: int
    slug: str
    title: str
    detail: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    errors: list[dict[str, Any]] | None = None


def is_unlimited_path(path: str) -> bool:
    """Liveness and readiness need no credentials and are never rate-limited."""
    return path == "/health" or path.startswith("/health/")


def challenge(error: str | None = None, description: str | None = None) -> bytes:
    """The `WWW-Authenticate` value (RFC 6750): the realm, and the error for rejected credentials."""
    value = REALM
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return value.encode()


class CallerPolicies:
    """The rate-limit policies of each kind of caller, built once from the settings."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.anonymous = Policy.from_rate("anonymous", settings.rate_limit_anonymous)
        self.session = Policy.from_rate("session", settings.rate_limit_session)
        self.session_enqueue = Policy.from_rate(ENQUEUE_POLICY, settings.rate_limit_enqueue_session)
        self.auth_failures = Policy.from_rate(AUTH_FAILURES_POLICY, settings.rate_limit_auth_failures)
        self.sessions_issued = Policy.from_rate(SESSIONS_POLICY, settings.rate_limit_sessions_issued)
        self._settings = settings
        self._tiers: dict[str, tuple[Policy, Policy]] = {}

    def for_tier(self, tier: str) -> tuple[Policy, Policy]:
        """Return the request and enqueue policies of an API key tier."""
        policies = self._tiers.get(tier)
        if policies is None:
            override = self._settings.rate_limit_tiers.get(tier)
            requests = override.requests if override and override.requests else self._settings.rate_limit_key
            enqueue = (
                override.enqueue if override and override.enqueue else self._settings.rate_limit_enqueue_key
            )
            policies = (Policy.from_rate(tier, requests), Policy.from_rate(ENQUEUE_POLICY, enqueue))
            self._tiers[tier] = policies
        return policies

    def requests_and_enqueue(self, caller: Caller) -> tuple[Policy, Policy | None]:
        if caller.kind is CallerKind.KEY:
            return self.for_tier(caller.tier)
        if caller.kind is CallerKind.SESSION:
            return self.session, self.session_enqueue
        return self.anonymous, None


class Edge:
    """State the middleware shares with the routes: settings, caches, and the clients set at start-up."""

    def __init__(self, settings: GatewaySettings, signer: TokenSigner) -> None:
        self.settings = settings
        self.signer = signer
        self.resolver = ClientAddressResolver(settings.trusted_proxies)
        self.policies = CallerPolicies(settings)
        self.keys = KeyCache(settings.auth_key_cache_seconds)
        # Set in the application's lifespan, once NATS and Redis are connected.
        self.limiter: RateLimiter | None = None
        self.auth: AuthClient | None = None

    async def authenticate(self, credential: str, group: str, request_id: str) -> Caller | Rejection:
        """Resolve a presented key or session token to a caller, or to the 401/429/503 to send."""
        if looks_like_session_token(credential):
            try:
                claims = self.signer.verify_session(credential)
            except TokenExpired:
                return await self._failed(
                    group,
                    "session-expired",
                    "Session expired",
                    "The session token has expired; start a new session.",
                )
            except TokenError:
                return await self._failed(
                    group, "invalid-session", "Invalid session", "The session token is not valid."
                )
            return Caller.from_session(claims)

        if not plausible_api_key(credential):
            return await self._failed(
                group, "invalid-key", "Invalid API key", "No key has the presented value."
            )

        key_hash = hash_api_key(credential)
        cached = self.keys.get(key_hash)
        if cached is not None:
            return cached

        # Once the address has used up its failed-authentication budget, no key is checked at all.
        assert self.limiter is not None and self.auth is not None
        budget = await self.limiter.peek([self.policies.auth_failures], [group])
        if not budget.allowed:
            return self._too_many_failures(budget)

        reply = await self.auth.request(
            AuthSubjects.VERIFY_KEY,
            VerifyKeyQuery(key_hash=key_hash),
            VerifyKeyReply,
            request_id,
            self.settings.auth_rpc_timeout_seconds,
        )
        if reply.error is not None:
            if reply.error.code in (AuthErrorCode.UNAVAILABLE, AuthErrorCode.INTERNAL_ERROR):
                log.warning("auth.verify_unavailable", code=reply.error.code.value, error=reply.error.message)
                return Rejection(
                    503,
                    "service-unavailable",
                    "Service unavailable",
                    "auth is unavailable: the key cannot be checked now.",
                    headers=[(b"retry-after", b"5")],
                )
            title = {"key-expired": "API key expired", "key-revoked": "API key revoked"}.get(
                reply.error.code.value, "Invalid API key"
            )
            return await self._failed(group, reply.error.code.value, title, reply.error.message)

        assert reply.key is not None
        caller = Caller.from_key(reply.key, key_hash)
        self.keys.put(key_hash, caller)
        return caller

    async def _failed(self, group: str, slug: str, title: str, detail: str) -> Rejection:
        """Count a failed authentication against the address; 401, or 429 once the budget is used up."""
        assert self.limiter is not None
        decision = await self.limiter.hit([self.policies.auth_failures], [group])
        if not decision.allowed:
            return self._too_many_failures(decision)
        log.info("auth.rejected", reason=slug, client=group)
        headers = [(b"www-authenticate", challenge("invalid_token", title)), *decision.header_fields()]
        return Rejection(401, slug, title, detail, headers)

    def _too_many_failures(self, decision: Decision) -> Rejection:
        # Debug level: a guesser sends these as fast as it can, and the 401s before were logged already.
        log.debug("auth.failure_budget_exhausted", retry_after=decision.retry_after)
        return rate_limited(decision, "Too many failed authentication attempts from this address.")


def rate_limited(decision: Decision, detail: str) -> Rejection:
    for state in decision.states:
        if state.exhausted:
            count_rate_limited(state.policy.name)
    retry_after = decision.retry_after
    errors = [
        {
            "code": state.policy.name,
            "message": f"{state.policy.quota} requests per {state.policy.window_seconds} s; "
            f"quota is restored in {state.reset_seconds} s.",
        }
        for state in decision.states
        if state.exhausted
    ]
    headers = [(b"retry-after", str(retry_after).encode()), *decision.header_fields()]
    return Rejection(
        429, "rate-limited", "Too many requests", f"{detail} Retry in {retry_after} s.", headers, errors
    )


class EdgeMiddleware:
    """Authenticate the caller, apply its rate limits and add the RateLimit fields to the response."""

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_unlimited_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        edge = self.edge
        api_key: bytes | None = None
        authorization: bytes | None = None
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value
            elif name == b"authorization":
                authorization = value
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))

        client = scope.get("client")
        client_ip = edge.resolver.resolve(client[0] if client else None, forwarded)
        group = address_group(client_ip)
        state = scope.setdefault("state", {})
        state["client_ip"] = client_ip
        request_id = state.get("request_id", "")

        outcome: Caller | Rejection
        if api_key is not None:
            outcome = await edge.authenticate(api_key.decode("latin-1").strip(), group, request_id)
        elif authorization is not None:
            scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                outcome = Rejection(
                    401,
                    "invalid-credentials",
                    "Unsupported credentials",
                    "Send an API key or session token as `Authorization: Bearer <token>` or `X-API-Key`.",
                    [(b"www-authenticate", challenge("invalid_request"))],
                )
            else:
                outcome = await edge.authenticate(token.strip(), group, request_id)
        else:
            outcome = Caller.anonymous(group)

        if isinstance(outcome, Rejection):
            await self._reject(scope, send, outcome, request_id)
            return
        caller = outcome

        decision = await self._decide(caller, group, scope)
        if not decision.allowed:
            await self._reject(scope, send, rate_limited(decision, "Rate limit exceeded."), request_id)
            return

        state["caller"] = caller
        limit_fields = decision.header_fields()

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *limit_fields]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _decide(self, caller: Caller, group: str, scope: Scope) -> Decision:
        assert self.edge.limiter is not None
        requests, enqueue = self.edge.policies.requests_and_enqueue(caller)
        policies = [requests]
        subjects = [caller.owner]
        method = scope["method"]
        if method == "POST":
            path = scope["path"]
            if path == ENQUEUE_PATH and enqueue is not None:
                policies.append(enqueue)
                subjects.append(caller.owner)
            elif path == SESSION_PATH:
                policies.append(self.edge.policies.sessions_issued)
                subjects.append(f"ip:{group}")
        return await self.edge.limiter.hit(policies, subjects)

    async def _reject(self, scope: Scope, send: Send, rejection: Rejection, request_id: str) -> None:
        await send_problem(
            send,
            rejection.status,
            rejection.slug,
            rejection.title,
            rejection.detail,
            request_id,
            scope["path"],
            headers=rejection.headers,
            errors=rejection.errors,
        )
