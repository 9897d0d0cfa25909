"""Copying a volume between hosts through their agents' endpoints, checksum verified.

The server moves a cell with a volume by streaming the volume from the old host's agent to the
new one's: ``GET /volumes/{name}/archive`` answers a tar of the volume's directory with its
sha256 in ``X-Cellplane-SHA256``; ``PUT /volumes/{name}/archive`` receives one, hashes it while
it arrives, and only when the hash equals the header it replaces the volume's content there (a
wrong or cut stream changes nothing); ``DELETE /volumes/{name}`` removes the old copy, which the
server asks for only after the new one was verified. The archive is built into (and received
into) a scratch file first, so the checksum is known before a byte is sent and nothing is
extracted before it is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from cellplane.drivers.base import Driver
from cellplane.drivers.errors import DriverError, VolumeInUse
from cellplane.wire import agent_plain as wire

__all__ = ["SHA_HEADER", "VolumeTransfer", "pack", "receive", "sha256_file", "unpack"]

SHA_HEADER = wire.VOLUME_SHA_HEADER
CHUNK = 1 << 20
_NAME = re.compile(r"cp-[A-Za-z0-9_-]{1,64}")  # the engine names of Cellplane volumes
_SHA = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pack(directory: Path, dest: Path) -> str:
    """A tar of `directory`'s content into `dest`; returns its sha256."""
    with tarfile.open(dest, "w") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name)
    return sha256_file(dest)


def receive(stream: BinaryIO, length: int, dest: Path) -> str:
    """Read exactly `length` bytes of `stream` into `dest`; returns their sha256."""
    h = hashlib.sha256()
    remaining = length
    with dest.open("wb") as f:
        while remaining:
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                raise ValueError(f"the stream ended after {length - remaining} of {length} bytes")
            h.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return h.hexdigest()


def unpack(archive: Path, directory: Path) -> None:
    """Replace `directory`'s content with the archive's (links out of it and devices refused)."""
    staging = Path(tempfile.mkdtemp(prefix=".cp-incoming-", dir=directory.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        for child in list(directory.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        for child in staging.iterdir():
            os.replace(child, directory / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Handler(Protocol):
    """What `VolumeTransfer` needs of the endpoint's request handler."""

    rfile: BinaryIO
    wfile: BinaryIO
    headers: object

    def send_response(self, code: int, message: str | None = None) -> None: ...
    def send_header(self, keyword: str, value: str) -> None: ...
    def end_headers(self) -> None: ...


def _json(h: Handler, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class VolumeTransfer:
    """The endpoint's volume routes; `path` is the part after ``/volumes/``."""

    def __init__(
        self, driver: Driver, scratch: Path | None = None, host_id: Callable[[], str] = str
    ) -> None:
        self.driver = driver
        self.scratch = scratch
        self.host_id = host_id  # the agent's, once registered: a label of the volumes it makes

    def _scratch(self) -> Path:
        return Path(tempfile.mkstemp(prefix="cp-volume-", suffix=".tar", dir=self.scratch)[1])

    @staticmethod
    def _name(h: Handler, path: str, suffix: str) -> str | None:
        name = path.removesuffix(suffix)
        if (suffix and not path.endswith(suffix)) or not _NAME.fullmatch(name):
            _json(h, 404, {"error": "not found"})
            return None
        return name

    def get(self, h: Handler, path: str) -> None:
        if (name := self._name(h, path, "/archive")) is None:
            return
        try:
            directory = self.driver.volume_path(name)
        except DriverError as e:
            _json(h, 404, {"error": f"volume {name}: {e}"})
            return
        tmp = self._scratch()
        try:
            sha = pack(directory, tmp)
            h.send_response(200)
            h.send_header("Content-Type", "application/x-tar")
            h.send_header("Content-Length", str(tmp.stat().st_size))
            h.send_header(SHA_HEADER, sha)
            h.end_headers()
            with tmp.open("rb") as f, contextlib.suppress(BrokenPipeError, ConnectionResetError):
                shutil.copyfileobj(f, h.wfile, CHUNK)
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, h: Handler, path: str, headers: dict[str, str]) -> None:
        if (name := self._name(h, path, "/archive")) is None:
            return
        want = headers.get(SHA_HEADER.lower(), "")
        length = headers.get("content-length", "")
        if not _SHA.fullmatch(want) or not length.isdigit():
            _json(h, 400, {"error": f"needs {SHA_HEADER} (hex sha256) and Content-Length"})
            return
        tmp = self._scratch()
        try:
            try:
                got = receive(h.rfile, int(length), tmp)
            except ValueError as e:
                _json(h, 400, {"error": str(e)})
                return
            if got != want:
                _json(h, 422, {"error": f"checksum mismatch: received {got}, expected {want}"})
                return
            try:
                labels = {"cellplane.host": self.host_id(), "cellplane.volume": name[3:]}
                self.driver.ensure_volume(name, labels)
                unpack(tmp, self.driver.volume_path(name))
            except (DriverError, tarfile.TarError, OSError) as e:
                _json(h, 502, {"error": f"volume {name}: {e}"})
                return
            _json(h, 200, {"volume": name, "sha256": got})
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, h: Handler, path: str) -> None:
        if (name := self._name(h, path, "")) is None:
            return
        try:
            self.driver.remove_volume(name)
        except VolumeInUse as e:
            _json(h, 409, {"error": str(e)})
            return
        except DriverError as e:
            _json(h, 502, {"error": str(e)})
            return
        _json(h, 200, {"removed": name})
