"""Private files for key material: atomic 0600 writes, 0700 directories, checked reads.

Used by ``keys.py`` (signing key rings), ``ca.py`` and ``pki.py`` (CA keys and state), and by the
host agent (``agent/server_client.py``: its host token and certificate), which is why the module is
public and imports nothing else of Cellplane. Reads refuse
anything group or others can access, the way ssh refuses a loose ``id_rsa``: a key that
leaked to other local users must be replaced, not silently used.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = [
    "KeyStoreError",
    "check_private",
    "ensure_private_dir",
    "read_private_file",
    "write_private_file",
]


class KeyStoreError(Exception):
    """A key directory is missing, unreadable, too widely readable or inconsistent."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def check_private(path: Path, *, is_dir: bool) -> None:
    """Refuse ``path`` unless it exists, has the right type and no group/other access."""
    try:
        st = path.stat()
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc}") from exc
    if is_dir != stat.S_ISDIR(st.st_mode):
        raise KeyStoreError(f"{path} is not a {'directory' if is_dir else 'file'}")
    if st.st_mode & 0o077:
        raise KeyStoreError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; group and others must have no access"
        )


def read_private_file(path: Path) -> bytes:
    """The bytes of ``path`` after :func:`check_private` on it and its directory."""
    check_private(path.parent, is_dir=True)
    check_private(path, is_dir=False)
    return path.read_bytes()


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600 from the first byte on.

    The temporary file is created 0600 (never readable by others, even briefly), fsynced,
    then renamed over the target, so a crash leaves the old or the new file, never half.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
