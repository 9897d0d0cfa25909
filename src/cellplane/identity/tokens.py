"""Signed JWT access tokens (RFC 9068) and OpenID Connect ID tokens: issue and verify.

The OIDC token endpoint calls :class:`TokenIssuer`; the API's authentication dependency
(and the introspection endpoint) call :class:`TokenVerifier` on every request, so the
verifier is built once per JWKS and is fast:

* the header is checked before any cryptography: ``alg`` against a pinned allow-list of
  asymmetric algorithms (so ``none`` and the HS256-with-the-public-key confusion are refused
  without touching a key), ``kid`` against the JWKS, the key's own ``alg``, and ``typ``;
* parsed public keys are held per ``kid``;
* a bounded LRU remembers tokens whose signature was already verified (clients present the
  same bearer token many times). Only the signature result is remembered: the claims are
  re-parsed and re-checked against ``now`` on every call, so expiry is never cached.

Keys named by a token's ``jku``/``x5u``/``jwk`` headers are never fetched or used: keys come
only from the JWKS the verifier was built with. Every refusal is an :class:`InvalidToken`
whose ``reason`` is a stable machine-readable :class:`Reason`.
"""

from __future__ import annotations

import binascii
import functools
import json
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from joserfc import jws
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import JWKRegistry, Key, OctKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry, encode
from joserfc.util import urlsafe_b64decode

from cellplane.identity.compact import InvalidToken, Reason, b64url_decode, peek_claims
from cellplane.identity.keys import KeyRing

__all__ = [
    "ACCESS_TOKEN_TYP",
    "ASYMMETRIC_ALGORITHMS",
    "ID_TOKEN_TYP",
    "InvalidToken",
    "Reason",
    "TokenIssuer",
    "TokenVerifier",
    "b64url_decode",
    "peek_claims",
]

#: ``typ`` header of access tokens, RFC 9068 section 2.1.
ACCESS_TOKEN_TYP: Final = "at+jwt"
#: ``typ`` header of ID tokens.
ID_TOKEN_TYP: Final = "JWT"
#: The only algorithms a verifier may be pinned to. Symmetric algorithms are excluded: a
#: verifier holds public keys only, and accepting HS* would let anyone who fetched the JWKS
#: forge tokens using the public key bytes as an HMAC secret.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"ES256", "ES384", "ES512", "Ed25519", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)

_ACCESS_RESERVED: Final = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
_ID_RESERVED: Final = _ACCESS_RESERVED | {"nonce", "auth_time"}


class TokenIssuer:
    """Mints tokens for one issuer URL with the ring's active key at ``now``."""

    def __init__(self, keyring: KeyRing, issuer: str) -> None:
        self._ring = keyring
        self.issuer = issuer

    def _sign(self, typ: str, claims: dict[str, Any], now: float) -> str:
        key = self._ring.active_key(now)
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        jwk = self._ring.private_jwk(key.kid)
        if key.alg == "RS256" and isinstance(jwk, RSAKey):
            return _sign_rs256(header, claims, jwk)
        return encode(header, claims, jwk, algorithms=[key.alg])

    def _base_claims(
        self,
        subject: str,
        audience: str | Sequence[str],
        extra: Mapping[str, Any] | None,
        reserved: frozenset[str],
        now: float,
        ttl_s: float,
    ) -> dict[str, Any]:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if not subject:
            raise ValueError("subject must not be empty")
        extra = extra or {}
        clash = reserved & extra.keys()
        if clash:
            raise ValueError(f"claims may not override registered claims: {sorted(clash)}")
        iat = math.floor(now)
        return {
            **extra,
            "iss": self.issuer,
            "sub": subject,
            "aud": audience if isinstance(audience, str) else list(audience),
            "iat": iat,
            "nbf": iat,
            "exp": math.floor(now + ttl_s),
            "jti": secrets.token_urlsafe(16),
        }

    def issue_access_token(
        self,
        subject: str,
        audience: str | Sequence[str],
        claims: Mapping[str, Any] | None,
        now: float,
        ttl_s: float = 300.0,
        *,
        client_id: str | None = None,
    ) -> str:
        """A compact RFC 9068 access token (``typ: at+jwt``).

        ``claims`` adds e.g. ``scope``, ``roles``, ``tenant``; it cannot override the
        registered claims this method sets. ``ttl_s`` must not exceed the rotation overlap.
        """
        body = self._base_claims(subject, audience, claims, _ACCESS_RESERVED, now, ttl_s)
        if client_id is not None:
            body["client_id"] = client_id
        return self._sign(ACCESS_TOKEN_TYP, body, now)

    def issue_id_token(
        self,
        subject: str,
        client_id: str,
        claims: Mapping[str, Any] | None,
        now: float,
        ttl_s: float = 300.0,
        *,
        nonce: str | None = None,
        auth_time: float | None = None,
    ) -> str:
        """An OpenID Connect ID token (``typ: JWT``) for relying party ``client_id``."""
        body = self._base_claims(subject, client_id, claims, _ID_RESERVED, now, ttl_s)
        if nonce is not None:
            body["nonce"] = nonce
        if auth_time is not None:
            body["auth_time"] = math.floor(auth_time)
        return self._sign(ID_TOKEN_TYP, body, now)


def _sign_rs256(header: dict[str, str], claims: dict[str, Any], jwk: RSAKey) -> str:
    """What joserfc's `jwt.encode` makes of an RS256 header and plain JSON claims (the same
    JSON text and segments), with the header segment and the `cryptography` key looked up once
    per key instead of resolved per token."""
    cached = _RS256_SIGNERS.get(id(jwk))
    if cached is None or cached[0] is not jwk:
        cached = (jwk, jwk.get_op_key("sign"), {})
        if len(_RS256_SIGNERS) >= 64:
            _RS256_SIGNERS.clear()
        _RS256_SIGNERS[id(jwk)] = cached
    _, private, headers = cached
    typ = header["typ"]
    head = headers.get((header["kid"], typ))
    if head is None:
        # joserfc's order: `typ` first (its default), then the given fields; ASCII JSON.
        text = json.dumps({"typ": typ, **header}, ensure_ascii=True, separators=(",", ":"))
        head = headers[(header["kid"], typ)] = _b64url(text.encode("ascii"))
    payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signing_input = head + b"." + _b64url(payload)
    signature = private.sign(signing_input, _PKCS1V15, _SHA256)
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def _b64url(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_B64URL)


_TO_B64URL: Final = bytes.maketrans(b"+/", b"-_")


#: id(private JWK) -> (that JWK, its `cryptography` key, {(kid, typ): header segment}). The JWK
#: is kept so the id cannot be reused by another key while the entry lives.
_RS256_SIGNERS: dict[int, tuple[RSAKey, Any, dict[tuple[str, str], bytes]]] = {}


def _import_public_keys(jwks: Mapping[str, Any]) -> dict[str, Key]:
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS must be an object with a 'keys' list")
    keys: dict[str, Key] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise ValueError("every JWKS entry must be an object with a string 'kid'")
        try:
            key = JWKRegistry.import_key(entry)
        except JoseError as exc:
            raise ValueError(f"bad JWK {entry.get('kid')!r}: {exc}") from exc
        if isinstance(key, OctKey):
            raise ValueError("symmetric keys are never accepted for token verification")
        if key.is_private:
            # A verifier never needs a private part; keep only what a JWKS should carry.
            key = JWKRegistry.import_key(key.as_dict(private=False, kid=entry["kid"]))
        if entry["kid"] in keys:
            raise ValueError(f"duplicate kid {entry['kid']!r} in JWKS")
        keys[entry["kid"]] = key
    return keys


class TokenVerifier:
    """Verifies tokens of one issuer for one audience against a fixed JWKS.

    Immutable: after key rotation build a new verifier from the new JWKS (which also
    drops the signature cache). Thread-safe (``functools.lru_cache`` is).
    """

    def __init__(
        self,
        jwks: Mapping[str, Any],
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = ("ES256",),
        leeway_s: int = 30,
        cache_size: int = 4096,
    ) -> None:
        self._algorithms = frozenset(algorithms)
        bad = self._algorithms - ASYMMETRIC_ALGORITHMS
        if bad or not self._algorithms:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(ASYMMETRIC_ALGORITHMS)}; "
                f"refused {sorted(bad)}"
            )
        if leeway_s < 0:
            raise ValueError("leeway_s must be >= 0")
        self._keys = _import_public_keys(jwks)
        self.issuer = issuer
        self.audience = audience
        self._leeway = leeway_s
        self._registry = jws.JWSRegistry(algorithms=sorted(self._algorithms))
        #: kid -> the `cryptography` key of an RSA key that may verify RS256 (the common case):
        #: its signature is checked directly, without joserfc's per-call key and algorithm
        #: resolution. Obtained through joserfc's own `get_op_key("verify")`, so a key whose
        #: `use`/`key_ops` forbid verifying is left to the general path (which refuses it).
        self._rs256: dict[str, RSAPublicKey] = {}
        if "RS256" in self._algorithms:
            for kid, key in self._keys.items():
                if isinstance(key, RSAKey) and key.alg in (None, "RS256"):
                    try:
                        op = key.get_op_key("verify")
                    except JoseError:
                        continue
                    if isinstance(op, RSAPublicKey):
                        self._rs256[kid] = op
        #: header segment -> (typ, key) of headers that passed every check below and name an
        #: RS256 key of `_rs256`: the same segment always parses to the same header, so the next
        #: token with it only has its signature checked (the `_verify_signature` fast path).
        #: Only headers of exactly alg/kid/typ are remembered (what `TokenIssuer` writes), so
        #: nothing like `crit` or `b64` ever skips joserfc. Bounded; cleared when full.
        self._headers: dict[str, tuple[str, RSAPublicKey]] = {}
        self._verified = functools.lru_cache(maxsize=cache_size)(self._verify_signature)

    def verify(
        self,
        token: str,
        now: float,
        expected_typ: str = ACCESS_TOKEN_TYP,
        *,
        peeked: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The token's claims if it is valid at ``now``; otherwise :class:`InvalidToken`.

        ``peeked``: what `peek_claims(token)` returned for this very token (the caller read it
        to pick the issuer); used, once the signature verifies, instead of parsing the payload
        again. It is the same segment: a payload that joserfc's strict base64url decoding
        accepts decodes to the same bytes under the lenient one.
        """
        if not isinstance(token, str):
            raise InvalidToken(Reason.MALFORMED, "token must be a string")
        payload = self._verified(token, expected_typ)
        if peeked is not None:
            claims = peeked
        else:
            try:
                claims = json.loads(payload)
            except ValueError as exc:
                raise InvalidToken(Reason.MALFORMED, "payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise InvalidToken(Reason.MALFORMED, "payload is not a JSON object")
        self._check_claims(claims, now)
        return claims

    def _verify_signature(self, token: str, expected_typ: str) -> bytes:
        """Header checks, then the signature; the payload bytes if both pass.

        Memoised per (token, expected_typ): only successes are cached, since exceptions
        pass through ``lru_cache`` without being stored.
        """
        head, _, rest = token.partition(".")
        known = self._headers.get(head)
        if known is not None and known[0] == expected_typ:
            return self._verify_known_header(token, head, rest, known[1])
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken(Reason.MALFORMED, str(exc)) from exc
        header = obj.headers()
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidToken(Reason.ALG_NOT_ALLOWED, f"alg {alg!r} is not allowed")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken(Reason.UNKNOWN_KID, f"kid {kid!r} is not in the JWKS")
        if key.alg is not None and key.alg != alg:
            # A key is bound to one algorithm; using it with another is an attack.
            raise InvalidToken(Reason.ALG_NOT_ALLOWED, f"key {kid!r} is for {key.alg}, not {alg}")
        if header.get("typ") != expected_typ:
            raise InvalidToken(Reason.WRONG_TYP, f"typ {header.get('typ')!r} != {expected_typ!r}")
        fast = self._rs256.get(kid) if alg == "RS256" and isinstance(kid, str) else None
        try:
            if fast is not None:
                # What jws.validate_compact does for RS256, minus resolving key and algorithm.
                self._registry.check_header(header)
                ok = _verify_rs256(fast, obj)
            else:
                ok = jws.validate_compact(obj, key, registry=self._registry)
        except JoseError as exc:
            raise InvalidToken(Reason.BAD_SIGNATURE, str(exc)) from exc
        if not ok or obj.payload is None:
            raise InvalidToken(Reason.BAD_SIGNATURE, "signature does not verify")
        if fast is not None and header.keys() <= _PLAIN_HEADER:
            if len(self._headers) >= _MAX_HEADERS:
                self._headers.clear()
            self._headers[head] = (expected_typ, fast)
        return obj.payload

    def _verify_known_header(self, token: str, head: str, rest: str, key: RSAPublicKey) -> bytes:
        """`_verify_signature` for a header segment that already passed its checks: what
        joserfc's extract and validate still do for such a token (three segments, sizes, strict
        base64url, ASCII), then the RS256 signature; the payload bytes."""
        payload_seg, _, sig_seg = rest.partition(".")
        registry = self._registry
        if (
            not sig_seg
            or "." in sig_seg
            or len(payload_seg) > registry.max_payload_length
            or len(sig_seg) > registry.max_signature_length
        ):
            raise InvalidToken(Reason.MALFORMED, "not a compact JWS of this issuer")
        try:
            signing_input = token[: len(head) + 1 + len(payload_seg)].encode("ascii")
            sig = b64url_decode(sig_seg)
            payload = b64url_decode(payload_seg)
        except ValueError as exc:
            raise InvalidToken(Reason.MALFORMED, "bad base64url segment") from exc
        try:
            key.verify(sig, signing_input, _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise InvalidToken(Reason.BAD_SIGNATURE, "signature does not verify") from None
        return payload

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        if self._plainly_valid(claims, math.floor(now)):
            return
        # Anything unusual (or invalid) is judged by joserfc, which also names the reason.
        registry = JWTClaimsRegistry(
            now=math.floor(now),
            leeway=self._leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise InvalidToken(Reason.EXPIRED, str(exc)) from exc
        except MissingClaimError as exc:
            raise InvalidToken(Reason.MISSING_CLAIM, exc.claim) from exc
        except ClaimError as exc:
            raise InvalidToken(_CLAIM_REASONS.get(exc.claim, Reason.MALFORMED), str(exc)) from exc

    def _plainly_valid(self, claims: dict[str, Any], now: int) -> bool:
        """True only if joserfc's JWTClaimsRegistry (as `_check_claims` configures it) would
        accept `claims`: the usual token, checked without building a registry per call. False
        means "ask joserfc", never "invalid"."""
        iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
        exp, iat = claims.get("exp"), claims.get("iat")
        if iss != self.issuer or not isinstance(iss, str):
            return False
        if not isinstance(sub, str) or not sub:
            return False
        if aud != self.audience and not (
            isinstance(aud, list) and self.audience in aud and all(isinstance(a, str) for a in aud)
        ):
            return False
        if not _numeric(exp) or exp <= now - self._leeway:
            return False
        if not _numeric(iat) or iat > now + self._leeway:
            return False
        if "nbf" in claims:
            nbf = claims["nbf"]
            if not _numeric(nbf) or nbf > now + self._leeway:
                return False
        return "jti" not in claims or isinstance(claims["jti"], str)


def _numeric(value: object) -> TypeGuard[int | float]:
    """A JSON NumericDate: an int or a finite float, not a bool (joserfc's rule)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


_PKCS1V15: Final = padding.PKCS1v15()
_SHA256: Final = hashes.SHA256()
#: The header fields `TokenIssuer` writes; only such headers take the known-header fast path.
_PLAIN_HEADER: Final = frozenset({"alg", "kid", "typ"})
#: Distinct header segments remembered per verifier (one per kid and typ in practice).
_MAX_HEADERS: Final = 64


def _verify_rs256(key: RSAPublicKey, obj: jws.CompactSignature) -> bool:
    """joserfc's verify_compact with its RS256 algorithm, on an already resolved key."""
    signing_input = obj.segments["header"] + b"." + obj.segments["payload"]
    try:
        sig = urlsafe_b64decode(obj.segments["signature"])
    except (TypeError, ValueError):
        return False
    try:
        key.verify(sig, signing_input, _PKCS1V15, _SHA256)
    except InvalidSignature:
        return False
    return True


_CLAIM_REASONS: Final[Mapping[str, Reason]] = {
    "iss": Reason.WRONG_ISSUER,
    "aud": Reason.WRONG_AUDIENCE,
    "nbf": Reason.NOT_YET_VALID,
    # An iat in the future (beyond leeway) means the token is not valid yet either.
    "iat": Reason.NOT_YET_VALID,
}
