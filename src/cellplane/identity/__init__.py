"""Identity primitives: signing keys, tokens, passwords, the certificate authority.

The per-tenant OpenID Connect service (``/identity/{tenant}``) and the API's
authentication build on these. They are pure and storage-agnostic: time comes in as
``now`` (unix seconds), storage is a directory or plain data in and out.

Modules: ``keys`` (KeyRing, rotation, JWKS, storage), ``tokens`` (TokenIssuer,
TokenVerifier), ``passwords`` (argon2id, lockout, secret hashing), ``ca`` (root and
per-tenant intermediates, CSR signing, revocation, chain verification).
"""

from cellplane.identity._files import KeyStoreError
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
