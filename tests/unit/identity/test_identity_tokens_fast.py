"""The RS256 known-header fast path of `TokenVerifier` and the strict base64url decoder: a header
segment that passed every check once is only signature-checked afterwards; nothing else about a
token may slip through that way."""

from __future__ import annotations

import base64
import binascii
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.util import urlsafe_b64decode

from cellplane.identity.keys import KeyRing
from cellplane.identity.tokens import (
    ACCESS_TOKEN_TYP,
    ID_TOKEN_TYP,
    InvalidToken,
    Reason,
    TokenIssuer,
    TokenVerifier,
    b64url_decode,
)
from cellplane.services.context import Services
from cellplane.state.db import Database

NOW = 1_700_000_000.0
ISS = "https://cellplane.test/identity/alpha"
AUD = "cellplane"
RING = KeyRing.generate(NOW, "RS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture()
def verifier() -> TokenVerifier:
    return TokenVerifier(RING.jwks(NOW), ISS, AUD, algorithms=("RS256",))


def issue(**claims: Any) -> str:
    return TokenIssuer(RING, ISS).issue_access_token("alice", AUD, claims or None, NOW)


def refused(
    verifier: TokenVerifier, token: str, typ: str = ACCESS_TOKEN_TYP, now: float = NOW
) -> Reason:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token, now, typ)
    return info.value.reason


def warm(verifier: TokenVerifier) -> str:
    """Verify one token, so its header segment is known; returns that token."""
    token = issue(n=0)
    assert verifier.verify(token, NOW)["n"] == 0
    assert token.split(".")[0] in verifier._headers
    return token


def test_a_known_header_still_verifies_every_new_token(verifier: TokenVerifier) -> None:
    warm(verifier)
    for n in range(1, 4):
        assert verifier.verify(issue(n=n), NOW)["n"] == n


def test_a_known_header_with_a_forged_payload_is_refused(verifier: TokenVerifier) -> None:
    token = warm(verifier)
    head, payload, sig = token.split(".")
    claims = json.loads(urlsafe_b64decode(payload.encode()))
    claims["roles"] = ["system-admin"]
    forged = f"{head}.{b64(json.dumps(claims).encode())}.{sig}"
    assert refused(verifier, forged) is Reason.BAD_SIGNATURE


def test_a_known_header_with_another_tokens_signature_is_refused(verifier: TokenVerifier) -> None:
    token = warm(verifier)
    other = issue(n=1)
    spliced = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    assert refused(verifier, spliced) is Reason.BAD_SIGNATURE


def test_a_non_canonical_signature_encoding_is_malformed(verifier: TokenVerifier) -> None:
    token = warm(verifier)
    head, payload, sig = token.split(".")
    # 256 bytes encode to 342 characters: the last one carries 4 unused bits, which must be 0.
    assert len(sig) % 4 == 2
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = sig[:-1] + last[last.index(sig[-1]) + 1]
    assert refused(verifier, f"{head}.{payload}.{tweaked}") is Reason.MALFORMED
    assert refused(verifier, f"{head}.{payload}.{sig}=") is Reason.MALFORMED


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h, p, s: f"{h}.{p}.{s}.x",  # a fourth segment
        lambda h, p, s: f"{h}.{p}.",  # no signature
        lambda h, p, s: f"{h}.{p}+.{s}",  # not base64url
        lambda h, p, s: f"{h}.{p}é.{s}",  # not ASCII
        lambda h, p, s: f"{h}.{'A' * 200_000}.{s}",  # over joserfc's payload size limit
    ],
)
def test_a_known_header_does_not_excuse_a_malformed_token(
    verifier: TokenVerifier, mangle: Any
) -> None:
    head, payload, sig = warm(verifier).split(".")
    assert refused(verifier, mangle(head, payload, sig)) is Reason.MALFORMED


def test_a_known_header_is_still_checked_against_the_expected_typ(verifier: TokenVerifier) -> None:
    token = warm(verifier)
    assert refused(verifier, token, ID_TOKEN_TYP) is Reason.WRONG_TYP


def test_claims_are_checked_after_a_known_header(verifier: TokenVerifier) -> None:
    warm(verifier)
    short = TokenIssuer(RING, ISS).issue_access_token("alice", AUD, None, NOW, ttl_s=60)
    assert refused(verifier, short, now=NOW + 3600) is Reason.EXPIRED


def test_a_header_with_other_fields_is_never_remembered(verifier: TokenVerifier) -> None:
    key = RING.active_key(NOW)
    header = {"alg": "RS256", "kid": key.kid, "typ": ACCESS_TOKEN_TYP, "cty": "JWT"}
    claims = {"iss": ISS, "aud": AUD, "sub": "a", "iat": NOW, "exp": NOW + 60}
    token = jws.serialize_compact(header, json.dumps(claims), RING.private_jwk(key.kid))
    assert verifier.verify(token, NOW)["sub"] == "a"
    assert verifier._headers == {}


_B64URL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. é\n",
    max_size=12,
)


@settings(max_examples=3000, deadline=None)
@given(_B64URL)
def test_b64url_decode_judges_exactly_as_joserfc(seg: str) -> None:
    try:
        expected: bytes | None = urlsafe_b64decode(seg.encode("utf-8"))
    except (binascii.Error, ValueError):
        expected = None
    try:
        got: bytes | None = b64url_decode(seg)
    except ValueError:
        got = None
    assert got == expected


def test_rs256_tokens_are_the_very_ones_joserfc_signs() -> None:
    """`TokenIssuer` signs RS256 itself (header segment and key looked up once); the output is
    byte for byte what joserfc's `jwt.encode` makes, for access and ID tokens, any claims."""
    key = RING.active_key(NOW)
    issuer = TokenIssuer(RING, ISS)
    claims = {"name": "Zoë 🚀", "roles": ["a", "b"], "projects": {"p": ["x"]}, "n": 1.5}
    for typ in (ACCESS_TOKEN_TYP, ID_TOKEN_TYP):
        body = {**claims, "iss": ISS, "sub": "s", "aud": AUD, "iat": 1, "exp": 2, "jti": "j"}
        mine = issuer._sign(typ, dict(body), NOW)
        header = {"alg": "RS256", "kid": key.kid, "typ": typ}
        assert mine == jwt.encode(header, dict(body), RING.private_jwk(key.kid), ["RS256"])


def test_first_tokens_of_concurrent_requests_share_one_key(tmp_path: Path) -> None:
    """Regression: the first key of a tenant was dated at the request that made it, so a
    concurrent request whose clock reading came a moment earlier found no key that may sign,
    rotated the new one away, and a third request could catch the ring mid-rotation (a 500 on
    the token endpoint under load). Now the key is dated `leeway_s` back, the rotation adds
    the new key before retiring the others, and `Services.tokens` is made once."""
    svc = Services(db=Database("sqlite://"), data_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        services = set(pool.map(lambda _: id(svc.tokens), range(32)))
    assert len(services) == 1
    tokens = svc.tokens
    first = tokens.issuer("tnt-a", ISS, NOW).issue_access_token("u", AUD, None, NOW)
    earlier = tokens.issuer("tnt-a", ISS, NOW - 0.5).issue_access_token("u", AUD, None, NOW - 0.5)
    kids = {
        json.loads(urlsafe_b64decode(t.split(".")[0].encode()))["kid"] for t in (first, earlier)
    }
    assert len(kids) == 1 and len(tokens.ring("tnt-a", NOW).keys) == 1
    ring = tokens.ring("tnt-a", NOW)
    fresh = ring.rotate(NOW + 10, overlap_s=60)
    assert ring.active_key(NOW + 10).kid == fresh.kid
    assert ring.private_jwk(fresh.kid) is not None
