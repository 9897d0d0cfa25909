"""Identity primitives: signing keys, tokens, passwords, the certificate authority.

The per-tenant OpenID Connect service (``/identity/{tenant}``) and the API's
authentication build on these. They are pure and storage-agnostic: time comes in as
``now`` (unix seconds), storage is a directory or plain data in and out.

Modules: ``keys`` (KeyRing, rotation, JWKS, storage), ``tokens`` (TokenIssuer,
TokenVerifier), ``passwords`` (argon2id, lockout, secret hashing), ``ca`` (root and
per-tenant intermediates, CSR signing, revocation, chain verification).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Re-exports resolve on first access (PEP 562): importing one submodule, say `files` for the
# agent, does not load cryptography's x509, joserfc and argon2 with it.
_EXPORTS: dict[str, str] = {
    "CAError": "cellplane.identity.ca",
    "CSRError": "cellplane.identity.ca",
    "CertReason": "cellplane.identity.ca",
    "CertificateAuthority": "cellplane.identity.ca",
    "CertificateError": "cellplane.identity.ca",
    "InvalidToken": "cellplane.identity.tokens",
    "IssuedCertificate": "cellplane.identity.ca",
    "KeyRing": "cellplane.identity.keys",
    "KeyStoreError": "cellplane.identity.files",
    "LockoutPolicy": "cellplane.identity.passwords",
    "LockoutState": "cellplane.identity.passwords",
    "NoActiveKeyError": "cellplane.identity.keys",
    "Profile": "cellplane.identity.ca",
    "Reason": "cellplane.identity.tokens",
    "SigningKey": "cellplane.identity.keys",
    "TenantCA": "cellplane.identity.ca",
    "TokenIssuer": "cellplane.identity.tokens",
    "TokenVerifier": "cellplane.identity.tokens",
    "VerifiedCertificate": "cellplane.identity.ca",
    "generate_secret": "cellplane.identity.passwords",
    "hash_password": "cellplane.identity.passwords",
    "hash_secret": "cellplane.identity.passwords",
    "needs_rehash": "cellplane.identity.passwords",
    "verify_password": "cellplane.identity.passwords",
    "verify_secret": "cellplane.identity.passwords",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from cellplane.identity.ca import (
        CAError,
        CertificateAuthority,
        CertificateError,
        CertReason,
        CSRError,
        IssuedCertificate,
        Profile,
        TenantCA,
        VerifiedCertificate,
    )
    from cellplane.identity.files import KeyStoreError
    from cellplane.identity.keys import KeyRing, NoActiveKeyError, SigningKey
    from cellplane.identity.passwords import (
        LockoutPolicy,
        LockoutState,
        generate_secret,
        hash_password,
        hash_secret,
        needs_rehash,
        verify_password,
        verify_secret,
    )
    from cellplane.identity.tokens import InvalidToken, Reason, TokenIssuer, TokenVerifier

__all__ = [
    "CAError",
    "CSRError",
    "CertReason",
    "CertificateAuthority",
    "CertificateError",
    "InvalidToken",
    "IssuedCertificate",
    "KeyRing",
    "KeyStoreError",
    "LockoutPolicy",
    "LockoutState",
    "NoActiveKeyError",
    "Profile",
    "Reason",
    "SigningKey",
    "TenantCA",
    "TokenIssuer",
    "TokenVerifier",
    "VerifiedCertificate",
    "generate_secret",
    "hash_password",
    "hash_secret",
    "needs_rehash",
    "verify_password",
    "verify_secret",
]
