"""Session tokens, job link signatures and API key helpers of nadzu_common.auth."""

from __future__ import annotations

import uuid

import pytest

from nadzu_common.auth import (
    API_KEY_PREFIX,
    SESSION_TOKEN_PREFIX,
    TokenExpired,
    TokenMalformed,
    TokenSignatureInvalid,
    TokenSigner,
    display_prefix,
    generate_api_key,
    hash_api_key,
    looks_like_session_token,
    plausible_api_key,
)

SECRET = "s" * 40
NOW = 1_800_000_000.0


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


def test_session_round_trip(signer: TokenSigner) -> None:
    issued = signer.issue_session(3600, now=NOW)

    claims = signer.verify_session(issued.token, now=NOW + 3599)

    assert issued.token.startswith(SESSION_TOKEN_PREFIX + ".")
    assert claims.session_id == issued.session_id
    assert claims.expires_at == int(NOW) + 3600
    assert claims.caller_id == f"session:{issued.session_id}"
    assert issued.expires_in == 3600


def test_session_ids_unique(signer: TokenSigner) -> None:
    ids = {signer.issue_session(60, now=NOW).session_id for _ in range(100)}
    assert len(ids) == 100


def test_session_expired(signer: TokenSigner) -> None:
    issued = signer.issue_session(60, now=NOW)

    with pytest.raises(TokenExpired):
        signer.verify_session(issued.token, now=NOW + 60)


def test_session_other_secret_rejected(signer: TokenSigner) -> None:
    issued = signer.issue_session(60, now=NOW)

    with pytest.raises(TokenSignatureInvalid):
        TokenSigner("t" * 40).verify_session(issued.token, now=NOW)


@pytest.mark.parametrize("part", [1, 2, 3])
def test_session_tampered_part_rejected(signer: TokenSigner, part: int) -> None:
    parts = signer.issue_session(60, now=NOW).token.split(".")
    original = parts[part]
    replacement = "A" if original[0] != "A" else "B"
    parts[part] = replacement + original[1:]
    if part == 2:
        # A later expiry is the tampering that matters most.
        parts[2] = str(int(original) + 86400)

    with pytest.raises(TokenSignatureInvalid):
        signer.verify_session(".".join(parts), now=NOW)


def test_session_expiry_extension_rejected(signer: TokenSigner) -> None:
    prefix, session_id, expires, signature = signer.issue_session(60, now=NOW).token.split(".")
    forged = f"{prefix}.{session_id}.{int(expires) + 10**6}.{signature}"

    with pytest.raises(TokenSignatureInvalid):
        signer.verify_session(forged, now=NOW + 120)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nzs1",
        "nzs1.a.b",
        "nzs1.abc.123.sig",
        "nzs2.abc.123." + "A" * 43,
        "nzs1.abc.-12." + "A" * 43,
        "nzs1.abc.12x." + "A" * 43,
        "nzs1.abc.١٢٣." + "A" * 43,
        "nzs1.abc.123." + "é" * 43,
        "nzs1.abc.1234567890123." + "A" * 43,
        "nzs1." + "a" * 300 + ".123." + "A" * 43,
    ],
)
def test_session_malformed_rejected(signer: TokenSigner, token: str) -> None:
    with pytest.raises(TokenMalformed):
        signer.verify_session(token, now=NOW)


def test_short_secret_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSigner("too-short")


def test_job_link_round_trip(signer: TokenSigner) -> None:
    job_id = uuid.uuid4()
    query = signer.job_link_query(job_id, 900, now=NOW)
    params = dict(item.split("=", 1) for item in query.split("&"))

    expires_at = signer.verify_job_link(str(job_id), params["exp"], params["sig"], now=NOW + 899)

    assert expires_at == int(NOW) + 900


def test_job_link_other_job_rejected(signer: TokenSigner) -> None:
    expires_at = int(NOW) + 900
    signature = signer.sign_job_link(uuid.uuid4(), expires_at)

    with pytest.raises(TokenSignatureInvalid):
        signer.verify_job_link(uuid.uuid4(), str(expires_at), signature, now=NOW)


def test_job_link_expired(signer: TokenSigner) -> None:
    job_id = uuid.uuid4()
    signature = signer.sign_job_link(job_id, int(NOW))

    with pytest.raises(TokenExpired):
        signer.verify_job_link(job_id, str(int(NOW)), signature, now=NOW)


def test_job_link_extended_expiry_rejected(signer: TokenSigner) -> None:
    job_id = uuid.uuid4()
    signature = signer.sign_job_link(job_id, int(NOW) + 60)

    with pytest.raises(TokenSignatureInvalid):
        signer.verify_job_link(job_id, str(int(NOW) + 86400), signature, now=NOW)


@pytest.mark.parametrize(
    ("expires", "signature"),
    [(None, "A" * 43), ("123", None), ("", "A" * 43), ("abc", "A" * 43), ("123", "short"), ("123", "é" * 43)],
)
def test_job_link_malformed_rejected(signer: TokenSigner, expires: str | None, signature: str | None) -> None:
    with pytest.raises(TokenMalformed):
        signer.verify_job_link(uuid.uuid4(), expires, signature, now=NOW)


def test_job_link_non_uuid_job_rejected(signer: TokenSigner) -> None:
    with pytest.raises(TokenMalformed):
        signer.verify_job_link("not-a-uuid", str(int(NOW) + 60), "A" * 43, now=NOW)


def test_link_signature_not_a_session(signer: TokenSigner) -> None:
    """A link signature for job X must not verify as a session token, nor the reverse."""
    issued = signer.issue_session(60, now=NOW)
    _, session_id, expires, signature = issued.token.split(".")

    with pytest.raises(TokenMalformed):
        signer.verify_job_link(session_id, expires, signature, now=NOW)

    job_id = uuid.uuid4()
    link_signature = signer.sign_job_link(job_id, int(NOW) + 60)
    with pytest.raises(TokenSignatureInvalid):
        signer.verify_session(f"{SESSION_TOKEN_PREFIX}.{job_id}.{int(NOW) + 60}.{link_signature}", now=NOW)


def test_generated_api_key_format() -> None:
    key = generate_api_key()

    assert key.startswith(API_KEY_PREFIX)
    assert len(key) == len(API_KEY_PREFIX) + 40
    assert key[len(API_KEY_PREFIX) :].isalnum()
    assert display_prefix(key) == key[:12]
    assert plausible_api_key(key)
    assert not looks_like_session_token(key)


def test_api_key_hash_stable() -> None:
    key = generate_api_key()

    assert hash_api_key(key) == hash_api_key(key)
    assert len(hash_api_key(key)) == 64
    assert hash_api_key(key) != hash_api_key(generate_api_key())


def test_display_prefix_hides_other_formats() -> None:
    assert display_prefix("operator-chosen-admin-secret-0123456789abcdef") is None
    assert display_prefix("nadzu_short") is None


def test_plausible_api_key_bounds() -> None:
    assert not plausible_api_key("x" * 31)
    assert plausible_api_key("x" * 32)
    assert plausible_api_key("x" * 256)
    assert not plausible_api_key("x" * 257)
