"""Who is calling: anonymous, an API key or a captcha session, with the scopes and tier that go with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from nadzu_common.auth import SESSION_SCOPES, SESSION_TIER, ApiKeyInfo, Scope, SessionClaims

ANONYMOUS_TIER = "anonymous"


class CallerKind(StrEnum):
    ANONYMOUS = "anonymous"
    KEY = "key"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity of a request.

    `owner` is the id that jobs, stream caps and rate limits are kept under: the key id for an API key,
    `session:<id>` for a session, the address group for anonymous callers. `key_hash` is the SHA-256 of the
    presented key, sent as `actor_key_hash` in key management requests; it is kept out of `repr`.
    """

    kind: CallerKind
    owner: str
    tier: str
    scopes: frozenset[Scope]
    key_id: uuid.UUID | None = None
    key_name: str | None = None
    key_hash: str | None = field(default=None, repr=False)
    # Unix time after which the key or session is no longer valid; None when it does not expire.
    expires_at: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.kind is not CallerKind.ANONYMOUS

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def has_scope(self, scope: Scope) -> bool:
        """Tell whether the caller may act with `scope`; the admin scope includes every other."""
        return scope in self.scopes or Scope.ADMIN in self.scopes

    @classmethod
    def anonymous(cls, address_group: str) -> Caller:
        return cls(CallerKind.ANONYMOUS, f"ip:{address_group}", ANONYMOUS_TIER, frozenset())

    @classmethod
    def from_key(cls, info: ApiKeyInfo, key_hash: str) -> Caller:
        return cls(
            CallerKind.KEY,
            str(info.id),
            info.tier,
            frozenset(info.scopes),
            key_id=info.id,
            key_name=info.name,
            key_hash=key_hash,
            expires_at=info.expires_at.timestamp() if info.expires_at else None,
        )

    @classmethod
    def from_session(cls, claims: SessionClaims) -> Caller:
        return cls(
            CallerKind.SESSION,
            claims.caller_id,
            SESSION_TIER,
            frozenset(SESSION_SCOPES),
            expires_at=float(claims.expires_at),
        )
