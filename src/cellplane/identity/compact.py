"""Compact JWS pieces that need no crypto library: peeking at a token's claims, strict base64url,
and why a token is refused (`InvalidToken`, `Reason`).

Shared by the verifier (`identity.tokens`, which re-exports them) and the authenticator
(`identity.authn`). Kept apart from joserfc and `cryptography` so that importing the
authenticator loads neither: a server loads them (~8 MB resident) with the first access token
it verifies or issues (`Services.tokens`), not at start.
"""

from __future__ import annotations

import binascii
import json
from enum import StrEnum
from typing import Any, Final

__all__ = ["InvalidToken", "Reason", "b64url_decode", "peek_claims"]


class Reason(StrEnum):
    """Why a token was refused. Values are stable: logs and metrics key on them."""

    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_TYP = "wrong_typ"
    MISSING_CLAIM = "missing_claim"


class InvalidToken(Exception):
    """A token was refused. ``reason`` is for code; ``detail`` for logs, not for clients."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


def peek_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWS *without* verifying anything (to pick its issuer's
    verifier); ValueError (or IndexError) if there is no JSON object in the payload segment.
    Lenient base64url (like `base64.urlsafe_b64decode`): the verifier decodes strictly."""
    seg = token.split(".")[1]  # IndexError if there is none
    raw = binascii.a2b_base64(seg.encode("ascii").translate(_TO_B64) + b"==")
    claims = _JSON.decode(raw.decode("utf-8"))
    if not isinstance(claims, dict):
        raise ValueError("payload is not a JSON object")
    return claims


_TO_B64: Final = bytes.maketrans(b"-_", b"+/")
_JSON: Final = json.JSONDecoder()
#: What the last character of a base64url segment may be when it is 2 or 1 padding characters
#: short: the unused low bits must be zero (RFC 4648 section 3.5, as joserfc checks).
_SAFE_ENDINGS: Final = ("AEIMQUYcgkosw048", "AQgw")


def b64url_decode(seg: str) -> bytes:
    """Strict base64url without padding, exactly as joserfc's `urlsafe_b64decode` judges it
    (no `+`, `/` or `=`, canonical last character, only the alphabet), in one C call;
    ValueError (UnicodeError for non-ASCII) otherwise."""
    if "+" in seg or "/" in seg or "=" in seg:
        raise ValueError("not base64url")
    pad = -len(seg) % 4
    if pad == 3 or (pad and seg[-1] not in _SAFE_ENDINGS[pad - 1]):
        raise ValueError("not base64url")
    return binascii.a2b_base64(
        seg.encode("ascii").translate(_TO_B64) + b"=" * pad, strict_mode=True
    )
