"""The sealed stream of a backup file: round trips, and every way a file can be refused."""

from __future__ import annotations

import base64
import io
import json
import struct

import pytest

from cellplane.backup.sealed import (
    MAGIC,
    BadPassphrase,
    NotABackup,
    SealedReader,
    SealedWriter,
    SealError,
)

FAST = {"n": 1 << 10, "r": 8, "p": 1}  # cheap scrypt: these tests are about the format


def seal(data: bytes, passphrase: str = "passphrase-1", chunk_size: int = 64) -> bytes:
    out = io.BytesIO()
    with SealedWriter(out, passphrase, chunk_size=chunk_size, **FAST) as w:
        for i in range(0, len(data), 37):  # writes that straddle chunk boundaries
            w.write(data[i : i + 37])
    return out.getvalue()


def unseal(blob: bytes, passphrase: str = "passphrase-1", size: int = 50) -> bytes:
    reader = SealedReader(io.BytesIO(blob), passphrase)
    parts = []
    while part := reader.read(size):
        parts.append(part)
    return b"".join(parts)


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    """(magic + header, [each chunk with its length prefix])"""
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    pos = len(MAGIC) + 4 + length
    head, out = blob[:pos], []
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        out.append(blob[pos : pos + 4 + n])
        pos += 4 + n
    return head, out


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_round_trip_of_any_length(size: int) -> None:
    data = bytes(range(256)) * 4
    data = data[:size]
    blob = seal(data)
    assert size < 16 or data not in blob  # sealed, not stored
    assert unseal(blob) == data
    assert len(chunks(blob)[1]) == max(1, -(-size // 64))


def test_a_wrong_passphrase_is_named_as_such() -> None:
    with pytest.raises(BadPassphrase, match="passphrase is wrong"):
        SealedReader(io.BytesIO(seal(b"secret")), "passphrase-2")


def test_an_empty_passphrase_is_refused() -> None:
    with pytest.raises(SealError, match="empty"):
        SealedWriter(io.BytesIO(), "", **FAST)


def test_another_file_is_not_a_backup() -> None:
    with pytest.raises(NotABackup, match="not a Cellplane backup"):
        SealedReader(io.BytesIO(b"PK\x03\x04 a zip file, say" * 4), "passphrase-1")


def test_a_dropped_last_chunk_reads_as_truncated() -> None:
    head, parts = chunks(seal(b"x" * 200))
    with pytest.raises(SealError, match="truncated"):
        unseal(head + b"".join(parts[:-1]))


def test_reordered_chunks_fail_authentication() -> None:
    head, parts = chunks(seal(b"a" * 64 + b"b" * 64 + b"c"))
    with pytest.raises(SealError, match="chunk 0 fails authentication"):
        unseal(head + parts[1] + parts[0] + parts[2])


def test_a_flipped_byte_fails_authentication() -> None:
    blob = bytearray(seal(b"z" * 150))
    blob[-5] ^= 0x01
    with pytest.raises(SealError, match="altered"):
        unseal(bytes(blob))


def test_bytes_after_the_last_chunk_are_refused() -> None:
    with pytest.raises(SealError, match="follows its last chunk"):
        unseal(seal(b"payload") + b"junk")


def _forge(blob: bytes, **changes: object) -> bytes:
    head, parts = chunks(blob)
    header = json.loads(head[len(MAGIC) + 4 :])
    for key, value in changes.items():
        if key in ("n", "r", "p", "salt"):
            header["kdf"][key] = value
        else:
            header[key] = value
    new = json.dumps(header).encode()
    return MAGIC + struct.pack(">I", len(new)) + new + b"".join(parts)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n": 1 << 30}, "scrypt n"),  # would take gigabytes and minutes
        ({"r": 1000}, "scrypt r"),
        ({"n": "1024"}, "scrypt n"),
        ({"chunk_size": 1 << 40}, "chunk size"),
        ({"cipher": "ROT13"}, "AES-256-GCM"),
        ({"check": base64.b64encode(b"short").decode()}, "check"),
        ({"nonce_prefix": "!!"}, "nonce_prefix"),
    ],
)
def test_a_forged_header_is_refused_before_any_work(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(NotABackup, match=message):
        SealedReader(io.BytesIO(_forge(seal(b"data"), **changes)), "passphrase-1")


def test_a_changed_salt_reads_as_a_wrong_passphrase() -> None:
    blob = _forge(seal(b"data"), salt=base64.b64encode(b"0" * 16).decode())
    with pytest.raises(BadPassphrase):
        SealedReader(io.BytesIO(blob), "passphrase-1")


def test_a_changed_chunk_size_fails_authentication() -> None:
    """The header is authenticated: a forged field that passes the checks still fails."""
    with pytest.raises(SealError, match="fails authentication"):
        unseal(_forge(seal(b"data" * 40), chunk_size=65))


def test_an_interrupted_writer_leaves_a_stream_that_cannot_be_read() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), SealedWriter(out, "passphrase-1", chunk_size=64, **FAST) as w:
        w.write(b"q" * 300)
        raise RuntimeError("disk gone")
    with pytest.raises(SealError, match="truncated"):
        unseal(out.getvalue())
