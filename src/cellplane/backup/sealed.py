"""A passphrase-sealed byte stream: the encryption of a backup file.

Layout (all lengths big-endian)::

    MAGIC (24 bytes) | header length (4) | header (JSON) | chunk*

    chunk = ciphertext length (4) | AES-256-GCM(plaintext <= chunk_size) with its 16-byte tag

The key comes from the passphrase with scrypt (the header carries its salt and cost). 64 bytes
are derived: the first 32 are the AES key, the hash of the last 32 is the header's `check`, so a
wrong passphrase is told apart from an altered file. Chunk ``i`` is sealed with the nonce
``prefix (7 random bytes) | i (4) | last (1)`` and the magic plus header as associated data (the
STREAM construction): a chunk moved, dropped, or cut off after the last one's flag, and any change
to the header, fail authentication. Both sides stream, so a backup of any size needs one chunk
of memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = [
    "MAGIC",
    "BadPassphrase",
    "NotABackup",
    "SealError",
    "SealedReader",
    "SealedWriter",
]

MAGIC = b"CELLPLANE-BACKUP\x00v1\x00\x00\x00\x00\n"
assert len(MAGIC) == 24
CHUNK = 1 << 20
_TAG = 16
_PREFIX = 7
# Defaults, and the bounds a file's header may ask for (a forged header must not make the
# reader spend gigabytes of memory or hours of scrypt).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_MAX_N, _MAX_R, _MAX_P = 1 << 20, 16, 4
_MAX_HEADER = 4096
_MAX_CHUNK = 16 << 20
_CHECK_LABEL = b"cellplane-backup-passphrase-check"


class SealError(Exception):
    """The sealed stream cannot be read: the message says why."""


class NotABackup(SealError):
    pass


class BadPassphrase(SealError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    if not passphrase:
        raise SealError("the passphrase is empty")
    material = Scrypt(salt=salt, length=64, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
    check = hashlib.sha256(_CHECK_LABEL + material[32:]).digest()
    return material[:32], check


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise SealError("the stream is too long (more than 2^32 chunks)")
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


class SealedWriter:
    """A write-only binary file object that seals what is written into ``out``.

    Call `close()` (or leave the `with` block without an exception) to write the last chunk;
    without it the stream reads as truncated."""

    def __init__(
        self,
        out: IO[bytes],
        passphrase: str,
        *,
        n: int = SCRYPT_N,
        r: int = SCRYPT_R,
        p: int = SCRYPT_P,
        chunk_size: int = CHUNK,
    ) -> None:
        salt = os.urandom(16)
        key, check = _derive(passphrase, salt, n, r, p)
        self._aead = AESGCM(key)
        self._prefix = os.urandom(_PREFIX)
        header = {
            "cipher": "AES-256-GCM",
            "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt)},
            "check": _b64(check),
            "nonce_prefix": _b64(self._prefix),
            "chunk_size": chunk_size,
        }
        head = json.dumps(header, sort_keys=True).encode("ascii")
        self._aad = MAGIC + head
        self._out = out
        self._chunk = chunk_size
        self._buf = bytearray()
        self._index = 0
        self.closed = False
        out.write(MAGIC + struct.pack(">I", len(head)) + head)

    def _emit(self, data: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), data, self._aad)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed sealed stream")
        self._buf += data
        while len(self._buf) > self._chunk:  # keep at least one byte back for the last chunk
            self._emit(bytes(self._buf[: self._chunk]), last=False)
            del self._buf[: self._chunk]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._buf), last=True)
            self._buf.clear()
            self.closed = True
            self._out.flush()

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.closed = True  # an interrupted stream stays truncated: it cannot be restored


def _int_field(kdf: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = kdf.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise NotABackup(f"the backup's header has an unusable scrypt {key}: {value!r}")
    return value


def _bytes_field(obj: dict[str, Any], key: str, size: int | None = None) -> bytes:
    try:
        value = base64.b64decode(str(obj[key]), validate=True)
    except (KeyError, ValueError) as e:
        raise NotABackup(f"the backup's header has no usable {key}") from e
    if size is not None and len(value) != size:
        raise NotABackup(f"the backup's header has a {key} of {len(value)} bytes, not {size}")
    return value


class SealedReader:
    """A read-only binary file object over a sealed stream; raises `SealError` subclasses:
    `NotABackup` (not this format), `BadPassphrase`, or `SealError` (altered or truncated)."""

    def __init__(self, src: IO[bytes], passphrase: str) -> None:
        self._src = src
        magic = src.read(len(MAGIC))
        if magic != MAGIC:
            raise NotABackup("this is not a Cellplane backup file (its first bytes do not match)")
        (length,) = struct.unpack(">I", self._exact(4, "header length"))
        if not 0 < length <= _MAX_HEADER:
            raise NotABackup(f"the backup's header length {length} is out of range")
        head = self._exact(length, "header")
        try:
            header = json.loads(head)
            kdf = header["kdf"]
            if not isinstance(header, dict) or not isinstance(kdf, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError) as e:
            raise NotABackup("the backup's header is not readable") from e
        if header.get("cipher") != "AES-256-GCM" or kdf.get("name") != "scrypt":
            raise NotABackup(
                f"the backup uses {header.get('cipher')!r} with {kdf.get('name')!r}; this "
                "version reads AES-256-GCM with scrypt"
            )
        n = _int_field(kdf, "n", 2, _MAX_N)
        r = _int_field(kdf, "r", 1, _MAX_R)
        p = _int_field(kdf, "p", 1, _MAX_P)
        chunk = header.get("chunk_size")
        if not isinstance(chunk, int) or not 0 < chunk <= _MAX_CHUNK:
            raise NotABackup(f"the backup's chunk size {chunk!r} is out of range")
        salt = _bytes_field(kdf, "salt")
        check = _bytes_field(header, "check", 32)
        self._prefix = _bytes_field(header, "nonce_prefix", _PREFIX)
        try:
            key, expected = _derive(passphrase, salt, n, r, p)
        except ValueError as e:  # e.g. n not a power of two
            raise NotABackup(f"the backup's scrypt parameters are unusable: {e}") from e
        if not hmac.compare_digest(check, expected):
            raise BadPassphrase("the passphrase is wrong for this backup")
        self._aead = AESGCM(key)
        self._aad = MAGIC + head
        self._max_sealed = chunk + _TAG
        self._index = 0
        self._buf = b""
        self._done = False

    def _exact(self, size: int, what: str) -> bytes:
        data = self._src.read(size)
        if len(data) != size:
            raise SealError(f"the backup is truncated (in its {what})")
        return data

    def _next(self) -> None:
        raw = self._src.read(4)
        if not raw:
            raise SealError(
                f"the backup is truncated: it ends after chunk {self._index} without its last one"
            )
        if len(raw) != 4:
            raise SealError("the backup is truncated (in a chunk length)")
        (length,) = struct.unpack(">I", raw)
        if not _TAG <= length <= self._max_sealed:
            raise SealError(f"the backup is corrupted: chunk {self._index} has length {length}")
        sealed = self._exact(length, f"chunk {self._index}")
        for last in (False, True):
            try:
                plain = self._aead.decrypt(
                    _nonce(self._prefix, self._index, last), sealed, self._aad
                )
            except InvalidTag:
                continue
            self._index += 1
            self._buf += plain
            if last:
                self._done = True
                if self._src.read(1):
                    raise SealError("the backup is corrupted: data follows its last chunk")
            return
        raise SealError(
            f"the backup is corrupted or was altered: chunk {self._index} fails authentication"
        )

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buf) < size):
            self._next()
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out
