"""Auth on the bus: subjects, message models, API key hashing, and the session and link token codec.

The auth service and the gateway both import this module. The gateway verifies session tokens and job
link signatures locally with `TokenSigner`, without a round trip. It checks API keys with a request to
`auth.rpc.verify-key` that carries only the key's SHA-256 hash, so key secrets never travel on the bus.

Token formats (all ASCII, URL-safe):

- session token: `nzs1.<session_id>.<expires>.<signature>`
- job link: query parameters `exp=<expires>&sig=<signature>`, signed over the job id

`expires` is a Unix time in seconds. Signatures are HMAC-SHA256, base64url without padding, under keys
derived from SESSION_SECRET with a distinct label per token kind, so a link signature never passes as a
session token and the reverse. Verification compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import nats.errors
from nats.aio.client import Client as NatsClient
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from .bus import AUTH_EVENTS_STREAM as AUTH_EVENTS_STREAM
from .bus import message_headers
from .messages import Message
from .tracing import client_span

# Subjects and streams.


class AuthSubjects:
    """Subjects of the auth service: queries and commands are core NATS request/reply, events JetStream."""

    VERIFY_KEY = "auth.rpc.verify-key"
    CREATE_KEY = "auth.rpc.create-key"
    LIST_KEYS = "auth.rpc.list-keys"
    REVOKE_KEY = "auth.rpc.revoke-key"
    CREATE_SESSION = "auth.rpc.create-session"
    HEALTH = "auth.rpc.health"
    KEY_REVOKED = "auth.evt.key-revoked"
    EVENTS = "auth.evt.>"


# Every auth replica subscribes to the RPC subjects in this queue group, so each request reaches one.
AUTH_QUEUE_GROUP = "auth"

# AUTH_EVENTS_STREAM is declared with every other stream in `bus`; imported here for existing callers.

# API keys.

API_KEY_PREFIX = "nadzu_"
_KEY_ALPHABET = string.ascii_letters + string.digits
# 40 base62 characters carry about 238 bits, so a plain SHA-256 of the key is a safe stored hash.
_KEY_SECRET_LENGTH = 40
# Characters of a generated key shown in listings, so an operator can tell keys apart.
_KEY_DISPLAY_LENGTH = len(API_KEY_PREFIX) + 6

# Bounds on any presented key, generated or bootstrap: shorter or longer values cannot be valid, so the
# gateway rejects them without a round trip.
MIN_API_KEY_LENGTH = 32
MAX_API_KEY_LENGTH = 256


class Scope(StrEnum):
    """Permissions an API key can carry."""

    ADMIN = "admin"
    DOWNLOADS = "downloads"


DEFAULT_SCOPES = (Scope.DOWNLOADS,)
DEFAULT_TIER = "default"
# The tier of captcha-verified sessions; sessions carry only the `downloads` scope.
SESSION_TIER = "session"
SESSION_SCOPES = (Scope.DOWNLOADS,)

KeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TIER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
TierName = Annotated[str, StringConstraints(pattern=TIER_NAME_PATTERN)]
KeyHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def generate_api_key() -> str:
    """Generate a new API key: the `nadzu_` prefix and 40 random base62 characters."""
    body = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_SECRET_LENGTH))
    return API_KEY_PREFIX + body


def hash_api_key(key: str) -> str:
    """Hash a presented API key (hex SHA-256): the value stored, looked up and sent on the bus."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str | None:
    """Return the leading characters of a generated key for listings; `None` for any other key format."""
    if key.startswith(API_KEY_PREFIX) and len(key) == len(API_KEY_PREFIX) + _KEY_SECRET_LENGTH:
        return key[:_KEY_DISPLAY_LENGTH]
    return None


def plausible_api_key(value: str) -> bool:
    """Check the length bounds every valid key meets, before spending a round trip on it."""
    return MIN_API_KEY_LENGTH <= len(value) <= MAX_API_KEY_LENGTH


# Errors carried in replies.


class AuthErrorCode(StrEnum):
    INVALID_KEY = "invalid-key"
    KEY_EXPIRED = "key-expired"
    KEY_REVOKED = "key-revoked"
    FORBIDDEN = "forbidden"
    KEY_NOT_FOUND = "key-not-found"
    INVALID_REQUEST = "invalid-request"
    INVALID_CAPTCHA = "invalid-captcha"
    CAPTCHA_NOT_CONFIGURED = "captcha-not-configured"
    CAPTCHA_UNAVAILABLE = "captcha-unavailable"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal-error"


# The HTTP status the gateway returns for each error code.
ERROR_STATUS: dict[AuthErrorCode, int] = {
    AuthErrorCode.INVALID_KEY: 401,
    AuthErrorCode.KEY_EXPIRED: 401,
    AuthErrorCode.KEY_REVOKED: 401,
    AuthErrorCode.FORBIDDEN: 403,
    AuthErrorCode.KEY_NOT_FOUND: 404,
    AuthErrorCode.INVALID_REQUEST: 422,
    AuthErrorCode.INVALID_CAPTCHA: 400,
    AuthErrorCode.CAPTCHA_NOT_CONFIGURED: 501,
    AuthErrorCode.CAPTCHA_UNAVAILABLE: 503,
    AuthErrorCode.UNAVAILABLE: 503,
    AuthErrorCode.INTERNAL_ERROR: 500,
}


class AuthError(BaseModel):
    """An error reply. `retryable` is true when the same request may succeed later (a dependency was down)."""

    code: AuthErrorCode
    message: str
    retryable: bool = False
    reasons: list[str] = Field(
        default_factory=list,
        description="machine-readable causes, e.g. the reCAPTCHA provider's error codes",
    )

    @property
    def http_status(self) -> int:
        return ERROR_STATUS[self.code]


class AuthReply(Message):
    """Base of every auth reply: either the payload fields are set or `error` is."""

    error: AuthError | None = None


# Keys.


class ApiKeyInfo(BaseModel):
    """An API key as stored, without its secret. `prefix` is `None` for the bootstrap admin key."""

    id: uuid.UUID
    prefix: str | None
    name: str
    scopes: list[Scope]
    tier: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    created_by: uuid.UUID | None = None

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes


class VerifyKeyQuery(Message):
    """`auth.rpc.verify-key`: is the key with this hash valid now?"""

    key_hash: KeyHash


class VerifyKeyReply(AuthReply):
    """The key when it is valid, else `error` (`invalid-key`, `key-expired`, `key-revoked`).

    A caller that caches the key must drop it at `key.expires_at`, and on `auth.evt.key-revoked`.
    """

    key: ApiKeyInfo | None = None


class AdminCommand(Message):
    """Base of the key-management requests.

    `actor_key_hash` is the hash of the admin key making the request. The auth service checks that this
    key has the `admin` scope, so knowing a key id is not enough to manage keys over the bus.
    """

    actor_key_hash: KeyHash
    request_id: str | None = None


class CreateKeyCommand(AdminCommand):
    """`auth.rpc.create-key`."""

    name: KeyName
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)
    tier: TierName = DEFAULT_TIER
    expires_at: AwareDatetime | None = None


class CreateKeyReply(AuthReply):
    """The new key: `key` is its secret, returned here once and never stored."""

    key: str | None = None
    info: ApiKeyInfo | None = None


class ListKeysQuery(AdminCommand):
    """`auth.rpc.list-keys`: every key, newest first."""

    include_revoked: bool = True


class ListKeysReply(AuthReply):
    items: list[ApiKeyInfo] = Field(default_factory=list)


class RevokeKeyCommand(AdminCommand):
    """`auth.rpc.revoke-key`. Revoking a revoked key succeeds again and publishes the event again."""

    key_id: uuid.UUID


class RevokeKeyReply(AuthReply):
    info: ApiKeyInfo | None = None


class KeyRevoked(Message):
    """`auth.evt.key-revoked`: the key may no longer be used; caches drop it on receipt."""

    key_id: uuid.UUID
    revoked_at: datetime
    actor_key_id: uuid.UUID | None = None


# Sessions.


class CreateSessionCommand(Message):
    """`auth.rpc.create-session`: exchange a reCAPTCHA token for a session token."""

    captcha_token: Annotated[str, StringConstraints(max_length=8192)]
    remote_ip: str | None = None
    request_id: str | None = None


class CreateSessionReply(AuthReply):
    access_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int | None = Field(default=None, description="seconds")


# Token codec.

SESSION_TOKEN_PREFIX = "nzs1"  # noqa: S105 - a format marker, not a secret
MIN_SECRET_BYTES = 32
_MAX_TOKEN_LENGTH = 256
_SESSION_ID_BYTES = 16
_SIGNATURE_LENGTH = 43  # base64url of 32 bytes, without padding
_MAX_EXPIRES_DIGITS = 12


class TokenError(ValueError):
    """A session token or link signature that must not be accepted."""

    reason = "invalid"


class TokenMalformed(TokenError):
    reason = "malformed"


class TokenSignatureInvalid(TokenError):
    reason = "bad-signature"


class TokenExpired(TokenError):
    reason = "expired"


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """A verified session: `session_id` identifies the caller for rate limits and job ownership."""

    session_id: str
    expires_at: int

    @property
    def caller_id(self) -> str:
        return f"session:{self.session_id}"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str
    session_id: str
    expires_at: int
    expires_in: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _parse_expires(text: str) -> int:
    if not (0 < len(text) <= _MAX_EXPIRES_DIGITS and text.isascii() and text.isdigit()):
        raise TokenMalformed("expiry is not a Unix time")
    return int(text)


class TokenSigner:
    """Issue and verify session tokens and job link signatures under SESSION_SECRET.

    Build one per process: the HMAC keys are derived once, and each signature copies a keyed HMAC object
    instead of keying a new one.
    """

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"SESSION_SECRET must be at least {MIN_SECRET_BYTES} bytes, got {len(key)}")

        self._session_mac = hmac.new(self._derive(key, b"nadzu session token v1"), digestmod=hashlib.sha256)
        self._link_mac = hmac.new(self._derive(key, b"nadzu job link v1"), digestmod=hashlib.sha256)

    @staticmethod
    def _derive(secret: bytes, label: bytes) -> bytes:
        return hmac.new(secret, label, hashlib.sha256).digest()

    def _sign(self, mac: hmac.HMAC, message: str) -> str:
        keyed = mac.copy()
        keyed.update(message.encode("ascii"))
        return _b64(keyed.digest())

    # Sessions.

    def issue_session(self, ttl_seconds: int, now: float | None = None) -> IssuedSession:
        """Issue a session token valid for `ttl_seconds`."""
        issued_at = int(time.time() if now is None else now)
        expires_at = issued_at + ttl_seconds
        session_id = _b64(secrets.token_bytes(_SESSION_ID_BYTES))
        payload = f"{SESSION_TOKEN_PREFIX}.{session_id}.{expires_at}"
        token = f"{payload}.{self._sign(self._session_mac, payload)}"
        return IssuedSession(
            token=token, session_id=session_id, expires_at=expires_at, expires_in=ttl_seconds
        )

    def verify_session(self, token: str, now: float | None = None) -> SessionClaims:
        """Return the claims of a valid session token; raise a `TokenError` subclass otherwise."""
        if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenMalformed("not a session token")

        parts = token.split(".")
        if len(parts) != 4 or parts[0] != SESSION_TOKEN_PREFIX or len(parts[3]) != _SIGNATURE_LENGTH:
            raise TokenMalformed("not a session token")

        prefix, session_id, expires_text, signature = parts
        expires_at = _parse_expires(expires_text)
        expected = self._sign(self._session_mac, f"{prefix}.{session_id}.{expires_text}")
        if not hmac.compare_digest(expected, signature):
            raise TokenSignatureInvalid("session token signature does not match")

        # Checked after the signature, so an expiry reported to a caller is one we issued.
        if (time.time() if now is None else now) >= expires_at:
            raise TokenExpired("session token has expired")
        return SessionClaims(session_id=session_id, expires_at=expires_at)

    # Job links.

    def sign_job_link(self, job_id: uuid.UUID | str, expires_at: int) -> str:
        """Return the `sig` query parameter for links to one job's events and file, until `expires_at`."""
        return self._sign(self._link_mac, f"{_canonical_job_id(job_id)}.{expires_at}")

    def job_link_query(self, job_id: uuid.UUID | str, ttl_seconds: int, now: float | None = None) -> str:
        """Return the `exp=...&sig=...` query string for a link to one job, valid for `ttl_seconds`."""
        expires_at = int(time.time() if now is None else now) + ttl_seconds
        return f"exp={expires_at}&sig={self.sign_job_link(job_id, expires_at)}"

    def verify_job_link(
        self, job_id: uuid.UUID | str, expires: str | None, signature: str | None, now: float | None = None
    ) -> int:
        """Check a link's `exp` and `sig` query parameters for this job.

        Return the expiry time; raise a `TokenError` subclass when the link is malformed, forged or expired.
        """
        if not expires or not signature or len(signature) != _SIGNATURE_LENGTH or not signature.isascii():
            raise TokenMalformed("missing or malformed link signature")

        expires_at = _parse_expires(expires)
        try:
            canonical_id = _canonical_job_id(job_id)
        except ValueError:
            raise TokenMalformed("job id is not a UUID") from None

        expected = self._sign(self._link_mac, f"{canonical_id}.{expires}")
        if not hmac.compare_digest(expected, signature):
            raise TokenSignatureInvalid("link signature does not match this job")

        if (time.time() if now is None else now) >= expires_at:
            raise TokenExpired("link has expired")
        return expires_at


def looks_like_session_token(value: str) -> bool:
    """Tell a session token from an API key in an `Authorization: Bearer` header.

    The auth service rejects an ADMIN_API_KEY with this prefix, so no valid key is mistaken for a token.
    """
    return value.startswith(SESSION_TOKEN_PREFIX + ".")


def _canonical_job_id(job_id: uuid.UUID | str) -> str:
    return str(job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id))


# Client.

ReplyT = TypeVar("ReplyT", bound=AuthReply)


class AuthClient:
    """Requests to the auth service over core NATS, as the gateway makes them.

    A missing or silent auth service comes back as a reply whose error is `unavailable` (retryable), so a
    caller handles every outcome through `reply.error`.
    """

    def __init__(self, nc: NatsClient, timeout_seconds: float = 2.0) -> None:
        self._nc = nc
        self._timeout = timeout_seconds

    async def request(
        self,
        subject: str,
        body: Message,
        reply_model: type[ReplyT],
        request_id: str | None = None,
        timeout_seconds: float | None = None,
    ) -> ReplyT:
        try:
            with client_span(subject):
                message = await self._nc.request(
                    subject,
                    body.model_dump_json().encode(),
                    timeout=timeout_seconds or self._timeout,
                    headers=message_headers(request_id=request_id) or None,
                )
        except nats.errors.NoRespondersError:
            return reply_model(error=_unavailable("no auth service is running"))
        except nats.errors.TimeoutError:
            return reply_model(error=_unavailable("the auth service did not reply in time"))
        return reply_model.model_validate_json(message.data)

    async def verify_key(self, key: str, request_id: str | None = None) -> VerifyKeyReply:
        """Verify a presented key; only its hash is sent."""
        query = VerifyKeyQuery(key_hash=hash_api_key(key))
        return await self.request(AuthSubjects.VERIFY_KEY, query, VerifyKeyReply, request_id)

    async def create_key(self, command: CreateKeyCommand) -> CreateKeyReply:
        return await self.request(AuthSubjects.CREATE_KEY, command, CreateKeyReply, command.request_id)

    async def list_keys(self, query: ListKeysQuery) -> ListKeysReply:
        return await self.request(AuthSubjects.LIST_KEYS, query, ListKeysReply, query.request_id)

    async def revoke_key(self, command: RevokeKeyCommand) -> RevokeKeyReply:
        return await self.request(AuthSubjects.REVOKE_KEY, command, RevokeKeyReply, command.request_id)

    async def create_session(
        self, command: CreateSessionCommand, timeout_seconds: float | None = None
    ) -> CreateSessionReply:
        """Exchange a captcha token for a session.

        Give this a longer timeout than the auth service's RECAPTCHA_TIMEOUT_SECONDS (3 s by default), so a
        slow provider comes back as `captcha-unavailable` rather than as a timeout here.
        """
        return await self.request(
            AuthSubjects.CREATE_SESSION, command, CreateSessionReply, command.request_id, timeout_seconds
        )


def _unavailable(message: str) -> AuthError:
    return AuthError(code=AuthErrorCode.UNAVAILABLE, message=message, retryable=True)
