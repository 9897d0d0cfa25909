"""Access and ID tokens: round trips and every attack the verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey

from cellplane.identity.keys import KeyRing
from cellplane.identity.tokens import (
    ACCESS_TOKEN_TYP,
    ID_TOKEN_TYP,
    InvalidToken,
    Reason,
    TokenIssuer,
    TokenVerifier,
)

NOW = 1_700_000_000.0
ISS = "https://cellplane.test/identity/alpha"
AUD = "cellplane-api"
TTL = 600.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, sig = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), sig


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# Module-level so hypothesis tests (which cannot take function fixtures) share it.
RING = KeyRing.generate(NOW)
TOKEN = TokenIssuer(RING, ISS).issue_access_token("alice", AUD, {"r": 1}, NOW)


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return RING


@pytest.fixture(scope="module")
def issuer(ring: KeyRing) -> TokenIssuer:
    return TokenIssuer(ring, ISS)


@pytest.fixture()
def verifier(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(ring.jwks(NOW), ISS, AUD)


@pytest.fixture(scope="module")
def token(issuer: TokenIssuer) -> str:
    return issuer.issue_access_token("alice", AUD, {"scope": "cells:read"}, NOW, TTL)


def refused(verifier: TokenVerifier, token: str, now: float = NOW, **kw: Any) -> Reason:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token, now, **kw)
    return info.value.reason


def sign_raw(ring: KeyRing, header: dict[str, Any], payload: bytes) -> str:
    """Sign arbitrary bytes with the ring's real key: tokens a buggy issuer could emit."""
    key = ring.active_key(NOW)
    return jws.serialize_compact(
        {"alg": key.alg, "kid": key.kid, **header}, payload, ring.private_jwk(key.kid)
    )


def test_access_token_round_trip(ring: KeyRing, token: str, verifier: TokenVerifier) -> None:
    header, _, _ = segments(token)
    assert header == {"alg": "ES256", "kid": ring.active_key(NOW).kid, "typ": ACCESS_TOKEN_TYP}
    claims = verifier.verify(token, NOW + 1)
    assert claims["iss"] == ISS and claims["aud"] == AUD and claims["sub"] == "alice"
    assert claims["scope"] == "cells:read"
    assert claims["iat"] == claims["nbf"] == int(NOW)
    assert claims["exp"] == int(NOW + TTL)
    assert len(claims["jti"]) >= 20


def test_each_token_gets_a_fresh_jti(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    jtis = {
        verifier.verify(issuer.issue_access_token("a", AUD, None, NOW), NOW)["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_client_id_and_audience_list(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    tok = issuer.issue_access_token("a", ["other", AUD], None, NOW, client_id="cli")
    claims = verifier.verify(tok, NOW)
    assert claims["client_id"] == "cli" and claims["aud"] == ["other", AUD]


def test_returned_claims_do_not_alias_the_cache(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    tok = issuer.issue_access_token("a", AUD, {"roles": ["viewer"]}, NOW)
    verifier.verify(tok, NOW)["roles"].append("admin")
    assert verifier.verify(tok, NOW)["roles"] == ["viewer"]


def test_id_token(issuer: TokenIssuer, ring: KeyRing) -> None:
    tok = issuer.issue_id_token(
        "alice", "portal", {"email": "a@x"}, NOW, nonce="n1", auth_time=NOW - 5
    )
    assert segments(tok)[0]["typ"] == ID_TOKEN_TYP
    claims = TokenVerifier(ring.jwks(NOW), ISS, "portal").verify(tok, NOW, expected_typ="JWT")
    assert (claims["nonce"], claims["auth_time"], claims["aud"]) == ("n1", int(NOW - 5), "portal")


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"])
def test_extra_claims_cannot_override_registered_ones(issuer: TokenIssuer, claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        issuer.issue_access_token("alice", AUD, {claim: "evil"}, NOW)


def test_id_token_claims_cannot_override_nonce(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="nonce"):
        issuer.issue_id_token("alice", "portal", {"nonce": "x"}, NOW)


# -- attacks ------------------------------------------------------------------------------


def test_alg_none_refused(ring: KeyRing, token: str, verifier: TokenVerifier) -> None:
    _, claims, _ = segments(token)
    header = {"alg": "none", "kid": ring.active_key(NOW).kid, "typ": "at+jwt"}
    for sig in ("", "AAAA"):
        forged = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{sig}"
        assert refused(verifier, forged) is Reason.ALG_NOT_ALLOWED


def test_hs256_with_public_key_as_secret_refused(
    ring: KeyRing, token: str, verifier: TokenVerifier
) -> None:
    _, claims, _ = segments(token)
    claims["sub"] = "admin"
    kid = ring.active_key(NOW).kid
    public_jwk = ring.jwks(NOW)["keys"][0]
    for secret in (ECKey.import_key(public_jwk).as_pem(), json.dumps(public_jwk).encode()):
        header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        assert refused(verifier, f"{header}.{body}.{b64(mac)}") is Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize("algs", [("HS256",), ("ES256", "HS256"), ("none",), ()])
def test_verifier_refuses_symmetric_or_none_algorithms(
    ring: KeyRing, algs: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(ring.jwks(NOW), ISS, AUD, algorithms=algs)


def test_verifier_refuses_symmetric_keys_in_jwks() -> None:
    jwks = {"keys": [{"kty": "oct", "k": b64(b"x" * 32), "kid": "k1"}]}
    with pytest.raises(ValueError, match="symmetric"):
        TokenVerifier(jwks, ISS, AUD)


def test_key_is_bound_to_its_algorithm(ring: KeyRing) -> None:
    # An ES384-signed token naming the ES256 key's kid: the key's "alg" refuses it.
    other = KeyRing.generate(NOW, "ES384")
    key = other.active_key(NOW)
    header = {"alg": "ES384", "kid": ring.active_key(NOW).kid, "typ": "at+jwt"}
    payload = json.dumps({"iss": ISS, "aud": AUD, "sub": "x", "exp": NOW + 60, "iat": NOW})
    forged = jws.serialize_compact(header, payload, other.private_jwk(key.kid), ["ES384"])
    both = TokenVerifier(ring.jwks(NOW), ISS, AUD, algorithms=("ES256", "ES384"))
    assert refused(both, forged) is Reason.ALG_NOT_ALLOWED


def test_unknown_and_missing_kid_refused(
    issuer: TokenIssuer, ring: KeyRing, verifier: TokenVerifier
) -> None:
    stranger = TokenIssuer(KeyRing.generate(NOW), ISS)
    assert refused(verifier, stranger.issue_access_token("a", AUD, None, NOW)) is Reason.UNKNOWN_KID
    no_kid = jws.serialize_compact(
        {"alg": "ES256", "typ": "at+jwt"},
        json.dumps({"iss": ISS}),
        ring.private_jwk(ring.active_key(NOW).kid),
    )
    assert refused(verifier, no_kid) is Reason.UNKNOWN_KID


def test_token_from_another_tenant_refused(verifier: TokenVerifier) -> None:
    beta = TokenIssuer(KeyRing.generate(NOW), "https://cellplane.test/identity/beta")
    tok = beta.issue_access_token("alice", AUD, None, NOW)
    assert refused(verifier, tok) is Reason.UNKNOWN_KID
    # Even with beta's keys trusted by mistake, beta's issuer is not alpha's.
    assert beta.issuer != ISS


def test_wrong_issuer_with_trusted_key_refused(ring: KeyRing, verifier: TokenVerifier) -> None:
    tok = TokenIssuer(ring, "https://evil.test").issue_access_token("a", AUD, None, NOW)
    assert refused(verifier, tok) is Reason.WRONG_ISSUER


def test_wrong_audience_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    for aud in ("other-api", ["x", "y"]):
        tok = issuer.issue_access_token("a", aud, None, NOW)
        assert refused(verifier, tok) is Reason.WRONG_AUDIENCE


def test_tampered_payload_refused(token: str, verifier: TokenVerifier) -> None:
    verifier.verify(token, NOW)  # the genuine token is now in the signature cache
    header, _, sig = token.split(".")
    forged_claims = segments(token)[1] | {"sub": "admin"}
    forged = f"{header}.{b64(json.dumps(forged_claims).encode())}.{sig}"
    assert refused(verifier, forged) is Reason.BAD_SIGNATURE


def test_tampered_signature_refused(token: str, verifier: TokenVerifier) -> None:
    header, claims, sig = token.split(".")
    raw = bytearray(unb64(sig))
    raw[10] ^= 1
    assert refused(verifier, f"{header}.{claims}.{b64(bytes(raw))}") is Reason.BAD_SIGNATURE


def test_expiry_with_leeway_and_not_cached(
    ring: KeyRing, token: str, verifier: TokenVerifier
) -> None:
    exp = NOW + TTL
    verifier.verify(token, NOW)
    verifier.verify(token, exp + 29)  # inside the 30 s leeway
    assert refused(verifier, token, exp + 31) is Reason.EXPIRED
    strict = TokenVerifier(ring.jwks(NOW), ISS, AUD, leeway_s=0)
    assert refused(strict, token, exp) is Reason.EXPIRED
    assert strict.verify(token, exp - 1)["sub"] == "alice"


def test_not_yet_valid_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    future = issuer.issue_access_token("a", AUD, None, NOW + 1000)
    assert refused(verifier, future, NOW) is Reason.NOT_YET_VALID
    assert verifier.verify(future, NOW + 1000 - 29)["sub"] == "a"


def test_wrong_typ_refused(issuer: TokenIssuer, token: str, verifier: TokenVerifier) -> None:
    id_token = issuer.issue_id_token("alice", AUD, None, NOW)
    assert refused(verifier, id_token) is Reason.WRONG_TYP
    assert refused(verifier, token, expected_typ="JWT") is Reason.WRONG_TYP


def test_missing_claims_refused(ring: KeyRing, verifier: TokenVerifier) -> None:
    base = {"iss": ISS, "aud": AUD, "sub": "a", "exp": NOW + 60, "iat": NOW}
    for claim in ("exp", "sub", "iss", "aud", "iat"):
        body = {k: v for k, v in base.items() if k != claim}
        tok = sign_raw(ring, {"typ": "at+jwt"}, json.dumps(body).encode())
        assert refused(verifier, tok) is Reason.MISSING_CLAIM, claim


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2]", Reason.MALFORMED),
        (b"not json", Reason.MALFORMED),
        (b'"string"', Reason.MALFORMED),
        (b'{"iss": "%s", "aud": "%s", "sub": "a", "iat": 1, "exp": "tomorrow"}', Reason.MALFORMED),
        (b'{"iss": ["%s"], "aud": "%s", "sub": "a", "iat": 1, "exp": 1e12}', Reason.WRONG_ISSUER),
    ],
)
def test_bad_payload_refused(
    ring: KeyRing, verifier: TokenVerifier, payload: bytes, reason: Reason
) -> None:
    if b"%s" in payload:
        payload = payload % (ISS.encode(), AUD.encode())
    tok = sign_raw(ring, {"typ": "at+jwt"}, payload)
    assert refused(verifier, tok) is reason


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c.d", "e30.e30.", "!!!.???.###", "ünï.cø.de", "eyJhbGciOiJFUzI1NiJ9"],
)
def test_garbage_is_malformed(verifier: TokenVerifier, garbage: str) -> None:
    assert refused(verifier, garbage) is Reason.MALFORMED


def test_non_string_token_is_malformed(verifier: TokenVerifier) -> None:
    assert refused(verifier, b"abc") is Reason.MALFORMED  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_arbitrary_text_only_raises_invalid_token(text: str) -> None:
    verifier = TokenVerifier(RING.jwks(NOW), ISS, AUD)
    with pytest.raises(InvalidToken):
        verifier.verify(text, NOW)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_one_character_change_is_refused_or_harmless(data: st.DataObject) -> None:
    verifier = TokenVerifier(RING.jwks(NOW), ISS, AUD)
    original = verifier.verify(TOKEN, NOW)
    i = data.draw(st.integers(0, len(TOKEN) - 1))
    ch = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_."))
    mutated = TOKEN[:i] + ch + TOKEN[i + 1 :]
    try:
        claims = verifier.verify(mutated, NOW)
    except InvalidToken:
        return
    # Only a non-canonical base64 tail can decode to the same bytes; then nothing changed.
    assert claims == original


def test_cache_keyed_by_expected_typ(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    tok = issuer.issue_access_token("a", AUD, None, NOW)
    verifier.verify(tok, NOW)
    assert refused(verifier, tok, expected_typ="JWT") is Reason.WRONG_TYP


def test_private_parts_in_jwks_are_ignored(ring: KeyRing, token: str) -> None:
    key = ring.active_key(NOW)
    private = ring.private_jwk(key.kid).as_dict(private=True) | {"kid": key.kid, "alg": "ES256"}
    assert "d" in private
    assert TokenVerifier({"keys": [private]}, ISS, AUD).verify(token, NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    "jwks", [{}, {"keys": "x"}, {"keys": [{"kty": "EC"}]}, {"keys": [{"kid": "a", "kty": "zz"}]}]
)
def test_bad_jwks_refused(jwks: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(jwks, ISS, AUD)


def test_issue_argument_checks(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.issue_access_token("a", AUD, None, NOW, ttl_s=0)
    with pytest.raises(ValueError):
        issuer.issue_access_token("", AUD, None, NOW)
