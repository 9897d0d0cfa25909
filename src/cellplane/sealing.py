"""Secrets stored in the database, sealed with a key kept in the data directory.

What Cellplane must be able to read back (not merely check, as a password hash) is stored
sealed: the LDAP bind secret (`ldap_configs.bind_secret`), each host agent's secret
(`hosts.agent_secret`, which the server presents to the agent for exec and logs) and the
portal sessions' tokens (`portal_sessions.secrets`). A sealed value
is ``sealed:v1:`` + base64url(nonce | AES-256-GCM ciphertext and tag), with the column's name as
associated data, so a value copied into another column does not open. The key is 32 random
bytes in ``<server data dir>/secrets.key`` (0600, made on first use): a copy of the database
alone (a dump, a stolen backup file) does not reveal the secrets. Back the key file up with the
database; without it the sealed secrets are lost (set the LDAP secret again; agents register
again on restart).

Migration 0016 seals the rows written before. `cryptography` is imported on first use only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from pathlib import Path
from typing import Any, Final

from cellplane.files import ensure_private_dir, read_private_file, write_private_file

__all__ = [
    "AGENT_SECRET_COLUMN",
    "BIND_SECRET_COLUMN",
    "KEY_FILE",
    "PREFIX",
    "SealedSecretError",
    "Sealer",
    "is_sealed",
]

PREFIX: Final = "sealed:v1:"
KEY_FILE: Final = "secrets.key"
_NONCE = 12


class SealedSecretError(ValueError):
    """A stored secret that cannot be opened (another key, damaged, or never sealed)."""


def is_sealed(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class Sealer:
    """Seals and opens secrets with the key in ``key_dir / KEY_FILE`` (created when missing)."""

    def __init__(self, key_dir: Path) -> None:
        self.key_file = key_dir / KEY_FILE
        self._aead: Any = None
        self._lock = threading.Lock()

    def _cipher(self) -> Any:
        if self._aead is None:
            with self._lock:
                if self._aead is None:
                    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                    self._aead = AESGCM(self._key())
        return self._aead

    def _key(self) -> bytes:
        if not self.key_file.exists():
            ensure_private_dir(self.key_file.parent)
            write_private_file(self.key_file, base64.b64encode(os.urandom(32)) + b"\n")
        try:
            key = base64.b64decode(read_private_file(self.key_file).strip(), validate=True)
        except ValueError as exc:
            raise SealedSecretError(f"{self.key_file} is not a secrets key: {exc}") from None
        if len(key) != 32:
            raise SealedSecretError(f"{self.key_file} is not a 32-byte secrets key")
        return key

    def derive(self, label: str) -> str:
        """A secret of its own for ``label`` (HMAC-SHA256 under the key, hex): the same for the
        same label while the key is kept, never stored (cluster passwords, cellplane.clusters)."""
        mac = hmac.new(self._key(), b"cellplane-derive:v1:" + label.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()

    def seal(self, plain: str, column: str) -> str:
        """``plain`` sealed for ``column`` ("table.column")."""
        nonce = os.urandom(_NONCE)
        sealed = self._cipher().encrypt(nonce, plain.encode("utf-8"), column.encode("ascii"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, column: str) -> str:
        """The secret sealed in ``stored`` for ``column``; SealedSecretError if it does not open."""
        if not is_sealed(stored):
            raise SealedSecretError(f"{column} holds a value that is not sealed")
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX) :].encode("ascii"))
            plain = self._cipher().decrypt(raw[:_NONCE], raw[_NONCE:], column.encode("ascii"))
        except (InvalidTag, ValueError) as exc:
            raise SealedSecretError(
                f"{column}: the stored secret does not open with {self.key_file} "
                f"(another key, or a damaged value): {type(exc).__name__}"
            ) from None
        return bytes(plain).decode("utf-8")


#: The sealed columns (the associated data of their values).
AGENT_SECRET_COLUMN: Final = "hosts.agent_secret"
BIND_SECRET_COLUMN: Final = "ldap_configs.bind_secret"
