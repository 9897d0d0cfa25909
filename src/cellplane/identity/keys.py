"""Token signing keys of one issuer: generation, rotation with overlap, JWKS, storage.

The identity service keeps one :class:`KeyRing` per tenant issuer. ``tokens.TokenIssuer``
signs with :meth:`KeyRing.active_key`; the JWKS endpoint serves :meth:`KeyRing.jwks`, and
``tokens.TokenVerifier`` is built from that JWKS. Nothing here reads the clock: every
method that depends on time takes ``now`` (unix seconds).

Lifecycle of a key::

    created_at ── signs and verifies ── retire_at ── verifies only ── expires_at ── gone

:meth:`KeyRing.rotate` retires the current key at ``now`` and keeps it in the JWKS for
``overlap_s`` more seconds, so ``overlap_s`` must be at least the longest token lifetime
signed with it; otherwise tokens die before their ``exp``.

On disk a ring is a directory (mode 0700) holding ``index.json`` (metadata) and one
PKCS#8 PEM private key per key (mode 0600). Loading refuses a directory or key file that
group or others can read, the way ssh does, and checks every key's ``kid`` against its
RFC 7638 thumbprint so a swapped key file is caught.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from cellplane.files import (
    KeyStoreError,
    check_private,
    ensure_private_dir,
    read_private_file,
    write_private_file,
)

__all__ = [
    "SIGNING_ALGORITHMS",
    "KeyRing",
    "KeyStoreError",
    "NoActiveKeyError",
    "SigningKey",
]

#: Asymmetric JWS algorithms a ring can generate keys for. Symmetric (HS*) keys are never
#: offered: a shared secret in the JWKS would let every verifier mint tokens.
SIGNING_ALGORITHMS: Final = ("ES256", "ES384", "Ed25519", "RS256")

_INDEX: Final = "index.json"
_FORMAT: Final = 1
_RSA_BITS: Final = 2048
_KID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


class NoActiveKeyError(Exception):
    """No key of the ring may sign at the given time (all retired, or none yet)."""


@dataclass(frozen=True)
class SigningKey:
    """One signing key and its lifecycle; ``private_pem`` is PKCS#8 PEM.

    ``retire_at`` (stops signing) and ``expires_at`` (leaves the JWKS) are ``None`` while
    the key is current.
    """

    kid: str
    alg: str
    created_at: float
    retire_at: float | None
    expires_at: float | None
    private_pem: bytes = field(repr=False)

    def can_sign(self, now: float) -> bool:
        return self.created_at <= now and (self.retire_at is None or now < self.retire_at)

    def can_verify(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


_AsymmetricKey = ECKey | OKPKey | RSAKey


def _generate_jwk(alg: str) -> _AsymmetricKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg == "ES384":
        return ECKey.generate_key("P-384")
    if alg == "Ed25519":
        return OKPKey.generate_key("Ed25519")
    if alg == "RS256":
        return RSAKey.generate_key(_RSA_BITS)
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose one of {SIGNING_ALGORITHMS}")


def _import_private(pem: bytes, alg: str) -> Key:
    key_cls: type[ECKey] | type[OKPKey] | type[RSAKey]
    if alg in ("ES256", "ES384"):
        key_cls = ECKey
    elif alg == "Ed25519":
        key_cls = OKPKey
    elif alg == "RS256":
        key_cls = RSAKey
    else:
        raise KeyStoreError(f"unsupported signing algorithm {alg!r}")
    try:
        key = key_cls.import_key(pem)
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyStoreError(f"cannot read private key: {exc}") from exc
    if not key.is_private:
        raise KeyStoreError("key file holds a public key, a private key is needed")
    return key


class KeyRing:
    """The signing keys of one issuer, newest last.

    Mutable on purpose: the identity service rotates and prunes in place, then
    :meth:`save`. Not thread-safe; callers serialise changes (one rotation job per issuer).
    """

    def __init__(self, keys: Iterable[SigningKey] = ()) -> None:
        self._keys: list[SigningKey] = []
        # Parsed joserfc keys by kid: PEM parsing costs far more than a signature.
        self._parsed: dict[str, Key] = {}
        for key in keys:
            self._add(key)

    def _add(self, key: SigningKey) -> None:
        if any(k.kid == key.kid for k in self._keys):
            raise ValueError(f"duplicate kid {key.kid!r}")
        parsed = _import_private(key.private_pem, key.alg)
        if parsed.thumbprint() != key.kid:
            raise KeyStoreError(f"key {key.kid!r} does not match its thumbprint")
        self._parsed[key.kid] = parsed  # before the key is visible to `active_key`
        self._keys.append(key)

    @staticmethod
    def new_key(now: float, alg: str = "ES256") -> SigningKey:
        """A fresh key whose ``kid`` is its RFC 7638 thumbprint (unique, stable on reload)."""
        jwk = _generate_jwk(alg)
        return SigningKey(
            kid=jwk.thumbprint(),
            alg=alg,
            created_at=now,
            retire_at=None,
            expires_at=None,
            private_pem=jwk.as_pem(private=True),
        )

    @classmethod
    def generate(cls, now: float, alg: str = "ES256") -> KeyRing:
        """A ring with one current key, for a new issuer."""
        return cls([cls.new_key(now, alg)])

    @property
    def keys(self) -> Sequence[SigningKey]:
        return tuple(self._keys)

    def active_key(self, now: float) -> SigningKey:
        """The newest key allowed to sign at ``now``."""
        for key in reversed(self._keys):
            if key.can_sign(now):
                return key
        raise NoActiveKeyError("no key of the ring may sign now; rotate first")

    def private_jwk(self, kid: str) -> Key:
        """The parsed private key for ``kid`` (cached), for signing."""
        return self._parsed[kid]

    def rotate(self, now: float, overlap_s: float, alg: str | None = None) -> SigningKey:
        """Add a new current key; retire the others at ``now``, verifiable ``overlap_s`` more.

        ``overlap_s`` must cover the longest token lifetime. A key already retired keeps its
        earlier dates: rotating twice quickly must not prolong an old key.
        """
        if overlap_s < 0:
            raise ValueError("overlap_s must be >= 0")
        new_alg = alg or (self._keys[-1].alg if self._keys else "ES256")
        fresh = self.new_key(now, new_alg)
        # The new key first: a thread signing meanwhile always finds a key that may sign.
        self._add(fresh)
        for i, key in enumerate(self._keys):
            if key is not fresh and (key.retire_at is None or key.retire_at > now):
                expires = now + overlap_s
                if key.expires_at is not None:
                    expires = min(expires, key.expires_at)
                self._keys[i] = replace(key, retire_at=now, expires_at=expires)
        return fresh

    def prune(self, now: float) -> list[str]:
        """Drop keys that can no longer verify; return their kids."""
        gone = [k.kid for k in self._keys if not k.can_verify(now)]
        self._keys = [k for k in self._keys if k.can_verify(now)]
        for kid in gone:
            del self._parsed[kid]
        return gone

    def jwks(self, now: float) -> dict[str, Any]:
        """The public JWK Set of every key still valid for verification at ``now``."""
        out: list[dict[str, Any]] = []
        for key in self._keys:
            if key.can_verify(now):
                jwk = self._parsed[key.kid].as_dict(private=False)
                jwk.update(kid=key.kid, alg=key.alg, use="sig")
                out.append(dict(jwk))
        return {"keys": out}

    # -- storage -----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the ring to ``directory`` (created 0700); files replaced atomically."""
        root = Path(directory)
        ensure_private_dir(root)
        for key in self._keys:
            write_private_file(root / f"{key.kid}.pem", key.private_pem)
        index = {
            "format": _FORMAT,
            "keys": [
                {
                    "kid": k.kid,
                    "alg": k.alg,
                    "created_at": k.created_at,
                    "retire_at": k.retire_at,
                    "expires_at": k.expires_at,
                }
                for k in self._keys
            ],
        }
        # The index goes last: a crash before it leaves the old index pointing at old files.
        write_private_file(root / _INDEX, json.dumps(index, indent=2).encode())
        kept = {f"{k.kid}.pem" for k in self._keys}
        for path in root.glob("*.pem"):
            if path.name not in kept:
                path.unlink()

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> KeyRing:
        """Read a ring written by :meth:`save`, refusing loose permissions."""
        root = Path(directory)
        check_private(root, is_dir=True)
        try:
            index = json.loads(read_private_file(root / _INDEX))
            if index.get("format") != _FORMAT:
                raise KeyStoreError(f"unknown key index format {index.get('format')!r}")
            keys = [
                SigningKey(
                    kid=str(entry["kid"]),
                    alg=str(entry["alg"]),
                    created_at=float(entry["created_at"]),
                    retire_at=_opt_float(entry["retire_at"]),
                    expires_at=_opt_float(entry["expires_at"]),
                    private_pem=read_private_file(root / f"{_safe_kid(entry['kid'])}.pem"),
                )
                for entry in index["keys"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"corrupt key index in {root}: {exc}") from exc
        return cls(keys)


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _safe_kid(kid: object) -> str:
    # kids are base64url thumbprints; anything else could walk out of the directory.
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
        raise ValueError(f"invalid kid {kid!r}")
    return kid
